"""Speed of the scan implementations (cell.scan) against the sequential generated loop
(cell.numpy() / cell.torch()) of the same cell, measured in one run on the same inputs.

For each cell, backend and sequence length: forward only, and forward + backward (the
generated backward of each, after a forward that saves what it needs), both under
torch.no_grad() on torch (the scan then runs its in-place work-efficient form). Each round runs
the loop and the scan back to back; the speed-up is the median of the per-round ratios
loop / scan (a shared machine's slow minute slows both), the times are medians.

    python benchmarks/scan_speed.py                        # min_gru and min_lstm, T = 100, 1000, 10000
    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python benchmarks/scan_speed.py --threads 1
    python benchmarks/scan_speed.py --device cuda          # torch only

On a shared machine, several threads per process make the large operations of the scan (and
NumPy's GEMMs) wait for cores that other processes hold, while the loop's small per-step
operations run on one thread anyway: compare the one-thread run as well.

Writes a Markdown table to stdout (and, with --out FILE, to a file).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np
import torch

import lstm_verify as lv


def _rounds(fns: dict, repeat: int, sync) -> dict:
    """{name: [ms per round]}: every round runs each function once, back to back."""
    times = {k: [] for k in fns}
    for f in fns.values():  # warm-up
        f()
        sync()
    for _ in range(repeat):
        for k, f in fns.items():
            t = time.perf_counter()
            f()
            sync()
            times[k].append((time.perf_counter() - t) * 1e3)
    return times


def measure(name, backend, T, B, H, dtype, device, repeat):
    """{(mode): (loop ms, scan ms, loop/scan)} for one cell, backend and length."""
    cell = lv.load(name)
    p = cell.init_params(input_size=H, hidden_size=H, seed=0, dtype=dtype)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((T, B, H)).astype(dtype)
    s0 = {s: np.zeros((B, H), dtype) for s, _ in cell.ir.states}
    d = np.ones((T, B, H), dtype)
    if backend == "torch":
        dev = torch.device(device)
        p = {k: torch.as_tensor(v, device=dev) for k, v in p.items()}
        x, d = torch.as_tensor(x, device=dev), torch.as_tensor(d, device=dev)
        s0 = {k: torch.as_tensor(v, device=dev) for k, v in s0.items()}
    sync = torch.cuda.synchronize if backend == "torch" and device.startswith("cuda") else (lambda: None)
    xs = {cell.ir.inputs[0][0]: x}
    impls = {"loop": getattr(cell, backend)(), "scan": cell.scan(backend)}
    out = {}
    for mode in ("forward", "fwd+bwd"):
        fns = {}
        for k, impl in impls.items():
            m = impl.module
            if mode == "forward":
                fns[k] = lambda m=m: m.forward(p, xs, s0, 0, False)
            else:

                def fb(m=m):
                    cache = m.forward(p, xs, s0, 0, True)[2]
                    m.backward(p, cache, d)

                fns[k] = fb
        with torch.no_grad():
            times = _rounds(fns, repeat, sync)
        ratio = statistics.median(a / b for a, b in zip(times["loop"], times["scan"]))
        out[mode] = (statistics.median(times["loop"]), statistics.median(times["scan"]), ratio)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", nargs="*", default=["min_gru", "min_lstm"])
    parser.add_argument("--backends", nargs="*", default=["numpy", "torch"])
    parser.add_argument("--T", nargs="*", type=int, default=[100, 1000, 10000])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=64, help="hidden size, also the input size")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--budget", type=int, default=30000, help="steps per cell, backend, T and mode to "
                        "spend on rounds: repeat = budget // T, between 3 and 30")  # fmt: skip
    parser.add_argument("--out", help="also write the table to this file")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    backends = [b for b in args.backends if b == "torch" or args.device == "cpu"]
    lines = [
        f"## scan vs sequential loop: {args.dtype}, batch {args.batch}, hidden {args.hidden} (input "
        f"{args.hidden}), device {args.device}, {torch.get_num_threads()} torch threads, "
        f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}",
        "",
        "| cell | backend | T | loop fwd ms | scan fwd ms | fwd speed-up | loop fwd+bwd ms | scan fwd+bwd ms | fwd+bwd speed-up |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    print("\n".join(lines), flush=True)
    for name in args.cells:
        for backend in backends:
            for T in args.T:
                repeat = max(3, min(30, args.budget // T))
                r = measure(name, backend, T, args.batch, args.hidden, np.dtype(args.dtype), args.device, repeat)
                (lf, sf, rf), (lb, sb, rb) = r["forward"], r["fwd+bwd"]
                row = (f"| {name} | {backend} | {T} | {lf:.2f} | {sf:.2f} | {rf:.2f}x | {lb:.2f} | {sb:.2f} | "
                       f"{rb:.2f}x |")  # fmt: skip
                print(row, flush=True)
                lines.append(row)
    if args.out:
        with open(args.out, "w") as f:
            f.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
