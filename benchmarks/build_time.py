"""How long building cells takes: parse + IR, exact derivatives, generated source, compiled module.

Cold builds run with the disk cache disabled, in a fresh process per cell so that nothing
(SymPy's caches, imported modules aside) carries over; cached builds read the generated source
from a warm cache directory. Prints a Markdown table; `--cells` selects cells.

    python benchmarks/build_time.py [--cells lstm gru ...] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

_CHILD = r"""
import json, sys, time
import torch  # noqa: F401  (its import, ~0.7 s, is not part of building a cell)
t0 = time.perf_counter()
import lstm_verify as lv
from lstm_verify import derive
t_import = time.perf_counter() - t0
name = sys.argv[1]
t0 = time.perf_counter(); cell = lv.load(name); t_parse = time.perf_counter() - t0
t0 = time.perf_counter(); derive.jacobian_blocks(cell.ir); t_derive = time.perf_counter() - t0
t0 = time.perf_counter(); cell.numpy(); cell.numpy().module; t_np = time.perf_counter() - t0
t0 = time.perf_counter(); cell.torch(); cell.torch().module; t_torch = time.perf_counter() - t0
print(json.dumps(dict(parse=t_parse, derive=t_derive, numpy=t_np, torch=t_torch, imp=t_import)))
"""


def run_child(name: str, cache: str) -> dict:
    env = dict(os.environ, LSTM_VERIFY_CACHE=cache)
    out = subprocess.run([sys.executable, "-c", _CHILD, name], env=env, check=True,
                         capture_output=True, text=True).stdout  # fmt: skip
    return json.loads(out.strip().splitlines()[-1])


def main(argv=None) -> int:
    import lstm_verify as lv

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", nargs="*", default=None)
    ap.add_argument("--repeat", type=int, default=1, help="runs per cell; the minimum is shown")
    args = ap.parse_args(argv)
    cells = args.cells or lv.catalog()
    rows = []
    with tempfile.TemporaryDirectory() as warm:
        for name in cells:
            cold = [run_child(name, "0") for _ in range(args.repeat)]
            run_child(name, warm)  # fill the cache
            cached = [run_child(name, warm) for _ in range(args.repeat)]
            rows.append((name, cold, cached))
    print("| cell | parse+IR | exact Jacobians | numpy (cold) | torch (cold) | total cold "
          "| numpy+torch (cached) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    tot_cold = tot_cached = 0.0
    for name, cold, cached in rows:
        best = min(cold, key=lambda r: r["parse"] + r["numpy"] + r["torch"])
        c = min(cached, key=lambda r: r["numpy"] + r["torch"])
        total = best["parse"] + best["derive"] + best["numpy"] + best["torch"]
        tot_cold += total
        tot_cached += c["parse"] + c["numpy"] + c["torch"]
        print(f"| {name} | {best['parse']*1e3:.0f} ms | {best['derive']*1e3:.0f} ms "
              f"| {best['numpy']*1e3:.0f} ms | {best['torch']*1e3:.0f} ms | {total*1e3:.0f} ms "
              f"| {(c['numpy'] + c['torch'])*1e3:.1f} ms |")  # fmt: skip
    print(f"\nwhole catalog ({len(rows)} cells): cold {tot_cold:.1f} s, "
          f"cached (parse + load) {tot_cached:.2f} s; import of lstm_verify "
          f"{rows[0][1][0]['imp']*1e3:.0f} ms per process, not counted")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
