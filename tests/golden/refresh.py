"""Rewrite the golden exports (every catalog cell, every target) after an intended change to
the generator, then review the diff (git diff tests/golden) before committing it."""

import argparse
from pathlib import Path

import lstm_verify as lv
from lstm_verify.export import SUFFIX, TARGETS, export

HERE = Path(__file__).parent


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("cells", nargs="*", help="catalog cells to refresh (default: all)")
    args = parser.parse_args(argv)
    for name in args.cells or lv.catalog():
        for target in TARGETS:
            path = HERE / f"{name}_{target}{SUFFIX[target]}"
            path.write_text(export(name, target))
            print(f"wrote {path}")


if __name__ == "__main__":
    main()
