"""Mutation score of the conformance check: how many convention bugs it catches and identifies.

Runs `lstm_verify.conformance.check` on the correct implementations and on every mutant in
tests/mutants.py with the default example budget, and prints a Markdown table: caught or not,
the example at which the first failure appeared, what identification says, and whether that is
the expected alternative.

    python benchmarks/mutation_score.py [--examples 100] [--shrink]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from mutants import CORRECT, MUTANTS, as_subject  # noqa: E402

from lstm_verify.conformance import check  # noqa: E402


def score(name, cell, factory, options, expected, examples, shrink):
    start = time.perf_counter()
    report = check(cell, as_subject(name, factory, options), examples=examples, shrink=shrink, seed=0)
    failed = next((r for r in report.rows if not r.passed), None)
    ident = report.identification.summary() if report.identification is not None else ""
    identified = expected is not None and expected in ident.split("; against")[0]
    return dict(name=name, cell=cell, caught=not report.passed, row=failed.name if failed else "",
                first=failed.first_failure if failed else None, ident=ident, expected=expected,
                identified=identified, seconds=time.perf_counter() - start)  # fmt: skip


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=100)
    ap.add_argument("--shrink", action="store_true", help="minimise each counterexample (slower)")
    args = ap.parse_args(argv)
    print("| implementation | claimed | result | property | first failing example | identification | expected |")
    print("|---|---|---|---|---|---|---|")
    correct_ok = True
    for name, cell, fac, opts, exp in CORRECT:
        r = score(name, cell, fac, opts, exp, args.examples, args.shrink)
        correct_ok &= not r["caught"]
        print(f"| {name} (correct) | {cell} | {'FALSE ALARM' if r['caught'] else 'passes'} | {r['row']} | | | |")
    caught = identified = expecting = 0
    for name, cell, fac, opts, exp in MUTANTS:
        r = score(name, cell, fac, opts, exp, args.examples, args.shrink)
        caught += r["caught"]
        expecting += exp is not None
        identified += r["identified"]
        verdict = "caught" if r["caught"] else "MISSED"
        idtext = r["ident"].split("; against")[0]
        mark = "" if exp is None else (" ✓" if r["identified"] else " ✗")
        print(f"| {name} | {cell} | {verdict} | {r['row']} | {r['first'] or ''} | {idtext}{mark} | {exp or '(none)'} |")
    print(f"\ncaught {caught}/{len(MUTANTS)}; identified as the expected alternative {identified}/{expecting} "
          f"(the others have no catalog cell or convention variant to name); "
          f"correct implementations {'all pass' if correct_ok else 'FALSE ALARMS'}")
    return 0 if caught == len(MUTANTS) and correct_ok else 1


if __name__ == "__main__":
    sys.exit(main())
