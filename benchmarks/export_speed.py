"""The exported NumPy module against the in-memory generated one: same code, same speed.

Times forward + backward of both on the same inputs, interleaved, and prints the ratio.

    python benchmarks/export_speed.py [--cells lstm gru] [--T 100] [--batch 32] [--hidden 256]
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import timeit
from pathlib import Path

import numpy as np

import lstm_verify as lv
from lstm_verify.export import export


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", nargs="*", default=["lstm", "gru", "lstm_peephole", "mgu"])
    ap.add_argument("--T", type=int, default=100)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--input", type=int, default=128)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args(argv)
    print("| cell | in-memory fwd+bwd (ms) | exported fwd+bwd (ms) | exported / in-memory |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.cells:
            cell = lv.load(name)
            path = Path(tmp) / f"{name}_numpy.py"
            path.write_text(export(cell, "numpy"))
            spec = importlib.util.spec_from_file_location(f"{name}_exported", path)
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)
            sizes = {k: {"input": args.input, "hidden": args.hidden, "proj": args.hidden // 2}[k]
                     for k in cell.ir.size_names}  # fmt: skip
            rng = np.random.default_rng(0)
            p = cell.init_params(sizes=sizes, dtype=np.float32)
            x = {n: rng.standard_normal((args.T, args.batch, sizes[d])).astype(np.float32) for n, d in cell.ir.inputs}
            s = {k: np.zeros((args.batch, sizes[d]), np.float32) for k, d in cell.ir.states}
            d = rng.standard_normal((args.T, args.batch, sizes[dict(cell.ir.states)[cell.ir.output]])).astype(np.float32)

            def run(m):
                _, _, cache = m.forward(p, x, s, 0, True)
                m.backward(p, cache, d)

            mem = cell.numpy().module
            a, b = [], []
            for _ in range(args.repeat):  # interleaved, so machine noise hits both alike
                a.append(timeit.timeit(lambda: run(mem), number=1))
                b.append(timeit.timeit(lambda: run(mod), number=1))
            ta, tb = np.median(a) * 1e3, np.median(b) * 1e3
            print(f"| {name} | {ta:.1f} | {tb:.1f} | {tb / ta:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
