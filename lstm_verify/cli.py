"""``lstm-verify``: list, show and check cells. Parses arguments and delegates."""

from __future__ import annotations

import argparse
import os
import sys
import time

from .errors import LstmVerifyError


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="lstm-verify", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the catalog's cells")
    show = sub.add_parser("show", help="a cell's equations, parameters and exact Jacobian blocks")
    show.add_argument("cell", help="catalog name or path to a spec .toml")
    show.add_argument("--latex", action="store_true", help="print the Jacobian blocks as LaTeX")
    show.add_argument("--source", choices=["numpy", "torch"], help="print the generated source")
    check = sub.add_parser(
        "check", help="self-check cells against every oracle, or (--impl) check your implementation "
        "against a cell (exit 1 on failure)")  # fmt: skip
    check.add_argument("cells", nargs="*", help="catalog names or spec paths (default: all)")
    ident = sub.add_parser("identify", help="which catalog cell (or convention variant) an "
                           "implementation computes")  # fmt: skip
    ident.add_argument("cells", nargs="*", help="only consider these cells (default: the catalog)")
    for p in (check, ident):
        p.add_argument("--impl", metavar="MODULE:FACTORY", required=p is ident,
                       help="your implementation: a factory called with input_size=, hidden_size= "
                       "(a torch.nn.Module class, or a function returning fn(params, x, state)), "
                       "or a lstm_verify Subject")  # fmt: skip
        p.add_argument("--layout", help="a layout name of the spec (e.g. torch), or a .toml/.json "
                       "file: {tensors = {name = [spec parameters]}, transpose = [...], state = [...]}")  # fmt: skip
        p.add_argument("--state", help="state order of your calls, comma-separated (e.g. c,h)")
        p.add_argument("--backend", choices=["numpy", "torch"], help="what a function implementation takes")
    check.add_argument("--examples", type=int, default=100, help="Hypothesis examples (default 100)")
    check.add_argument("--seed", type=int, help="Hypothesis seed, for a reproducible run")
    report = sub.add_parser("report", help="gradient-flow report: HTML, Markdown, PNG plots and JSON")
    report.add_argument("cells", nargs="*", help="catalog cells (default: all)")
    report.add_argument("-o", "--output", default="report", help="output folder (replaced atomically)")
    report.add_argument("--quick", action="store_true", help="short lags, one seed: about a minute")
    report.add_argument("--no-progress", action="store_true", help="no progress bar")
    export = sub.add_parser("export", help="a standalone NumPy, torch or C module for a cell")
    export.add_argument("cell", help="catalog name or spec path")
    export.add_argument("--target", required=True, choices=["numpy", "torch", "c"])
    export.add_argument("-o", "--output", help="file or folder (default: CELL_TARGET.py / .c)")
    export.add_argument("--force", action="store_true", help="replace an existing file")
    args = parser.parse_args(argv)
    try:
        return {"list": _list, "show": _show, "check": _check, "identify": _identify,
                "report": _report, "export": _export}[args.command](args)  # fmt: skip
    except LstmVerifyError as exc:
        print(f"lstm-verify: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into head and friends
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _list(args) -> int:
    from .cell import catalog, load

    for name in catalog():
        cell = load(name)
        print(f"{name:18s} {cell.spec.title}")
    return 0


def _show(args) -> int:
    from .cell import load
    from .derive import block_latex, block_text
    from .spec import display

    cell = load(args.cell)
    ir = cell.ir
    if args.source:
        print(getattr(cell, args.source)().source, end="")
        return 0
    print(f"{ir.name}: {ir.spec.title}")
    for c in ir.spec.cite:
        print(f"  source: {c}")
    if ir.spec.notes:
        print(f"  note: {ir.spec.notes}")
    print(f"inputs: {', '.join(f'{n} ({d})' for n, d in ir.inputs)}; "
          f"state: {', '.join(f'{n} ({d})' for n, d in ir.states)}; output: {ir.output}")  # fmt: skip
    print("equations:")
    for eq in ir.spec.equations:
        print(f"  {eq.text}")
    print("parameters:")
    for w in ir.weights:
        mask = "" if w.mask is None else f", masked where not {_mask_str(w.mask)}"
        print(f"  {w.name:10s} ({w.out_dim}, {w.in_dim}){mask}")
    for name, dim in list(ir.biases) + list(ir.diagonals):
        print(f"  {name:10s} ({dim},)")
    for name, dim, spec in ir.buffers:
        print(f"  {name:10s} ({dim},) buffer, {spec.init}")
    print("one-step Jacobian blocks:")
    for (of, wrt), terms in cell.jacobian_blocks().items():
        body = block_latex(terms) if args.latex else block_text(terms)
        if args.latex:
            print(f"  \\frac{{\\partial {display(of)}}}{{\\partial {wrt}}} = {body}")
        else:
            print(f"  d{display(of)}/d{wrt} = {body}")
    return 0


def _mask_str(mask):
    def side(o):
        return f"{o.buffer}_{o.side}" if o.buffer else f"{o.value:g}"

    return f"{side(mask.left)} {mask.op} {side(mask.right)}"


def _subject(args):
    from .conformance import subject
    from .loading import load_object, read_layout

    impl = load_object(args.impl)
    layout = read_layout(args.layout) if args.layout else None
    state = [s.strip() for s in args.state.split(",")] if args.state else None
    return subject(impl, layout=layout, state=state, backend=args.backend, label=args.impl)


def _check_impl(args) -> int:
    from .conformance import check

    if len(args.cells) != 1:
        print("lstm-verify: error: check --impl takes exactly one cell, the one your code claims "
              "to compute (use identify to find it)", file=sys.stderr)  # fmt: skip
        return 2
    report = check(args.cells[0], _subject(args), examples=args.examples, seed=args.seed)
    print(report.table())
    return 0 if report.passed else 1


def _identify(args) -> int:
    from .identify import identify

    result = identify(_subject(args), cells=args.cells or None)
    print(f"{args.impl}: {result.summary()}")
    return 0 if result.matches else 1


def _export(args) -> int:
    from .export import write

    path = write(args.cell, args.target, args.output, args.force)
    print(f"wrote {path}")
    return 0


def _report(args) -> int:
    from .cell import catalog
    from .report import Settings, build, write

    unknown = [c for c in args.cells if c not in catalog()]
    if unknown:
        raise LstmVerifyError(f"unknown cells {unknown}; known: {', '.join(catalog())}")
    command = "lstm-verify report" + "".join(f" {c}" for c in args.cells) + f" -o {args.output}" + (
        " --quick" if args.quick else "")  # fmt: skip
    data = build(Settings.make(args.cells, args.quick), progress=not args.no_progress)
    out = write(data, args.output, command)
    print(f"wrote {out}/report.html, report.md, data.json and {len(list(out.glob('*.png')))} plots "
          f"in {data['seconds']:.0f} s")  # fmt: skip
    return 0


def _check(args) -> int:
    from .cell import catalog, load
    from .check import LIMITS, check_cell

    if args.impl:
        return _check_impl(args)
    names = args.cells or catalog()
    start = time.perf_counter()
    rows = []
    columns = ["fwd64", "fwd32", "sat64", "sat32", "bwd/autograd", "bwd/fd"]
    print(
        "Oracles: fwd = generated NumPy and torch vs mpmath (60 digits), normwise error and max ULPs,\n"
        "4 steps; sat = uniform weights so |pre-activation| reaches the shown bound; bwd = generated\n"
        "backward over 50 steps vs torch autograd and vs float64 finite differences (+ gradcheck);\n"
        "torch.nn = max difference from the real torch cell given the same weights via the layout,\n"
        f"100 steps, float64/float32. Limits: {LIMITS}\n"
    )
    header = f"{'cell':17s} " + " ".join(f"{c:>22s}" for c in columns) + f" {'torch.nn':>34s} {'time':>6s}  result"
    print(header)
    for name in names:
        cell = load(name)
        row = check_cell(cell)
        rows.append(row)
        other = [f"{k.split('.')[-1]} {v[2]}" for k, v in row.results.items() if k not in columns]
        cells = " ".join(f"{row.results[c][2]:>22s}" for c in columns)
        print(f"{row.cell:17s} {cells} {'; '.join(other) or '-':>34s} {row.seconds:5.1f}s  "
              f"{'ok' if row.passed else 'FAIL'}", flush=True)  # fmt: skip
    failed = [r.cell for r in rows if not r.passed]
    total = time.perf_counter() - start
    print(f"\n{len(rows) - len(failed)} passed, {len(failed)} failed in {total:.1f}s"
          + (f": {', '.join(failed)}" if failed else ""))  # fmt: skip
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
