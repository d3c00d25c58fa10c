"""``lstm-verify``: list, show, check and compare cells. Parses arguments and delegates."""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

from .errors import LstmVerifyError

MAX_EXAMPLES = 100_000  # --examples above this would run for days; more is a mistake
DEFAULT_EXAMPLES = 100
DEFAULT_TIMEOUT = 60.0  # seconds per call of an implementation (as lstm_verify.limits)


def _examples(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 1 <= n <= MAX_EXAMPLES:
        raise argparse.ArgumentTypeError(f"must be between 1 and {MAX_EXAMPLES}, got {n}")
    return n


def _seconds(text: str) -> float:
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not math.isfinite(x) or x < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds >= 0, got {text}")
    return x


def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {n}")
    return n


def main(argv=None) -> int:
    from .jobs import quiet_threads

    quiet_threads()  # idle OpenMP threads sleep: the CLI shares the machine with other work
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
                       help="your implementation: a function fn(params, x, state) of the spec's "
                       "named parameters, or a factory called with input_size=, hidden_size= (a "
                       "torch.nn.Module class, or a function returning fn), or a lstm_verify Subject")  # fmt: skip
        p.add_argument("--layout", help="a layout name of the spec (e.g. torch), or a .toml/.json "
                       "file: {tensors = {name = [spec parameters]}, transpose = [...], state = [...]}")  # fmt: skip
        p.add_argument("--state", help="state order of your calls, comma-separated (e.g. c,h): exactly "
                       "the cell's state names" + (" (only cells with these states are considered)"
                                                   if p is ident else ""))  # fmt: skip
        p.add_argument("--backend", choices=["numpy", "torch"], help="what a function implementation takes")
        p.add_argument("--impl-option", action="append", default=[], metavar="KEY=VALUE", dest="impl_options",
                       help="an option of a built-in subject (a constructor option or an ONNX attribute, "
                       "e.g. reset_after=false, linear_before_reset=1); repeat for several. VALUE is "
                       "read as a TOML value (true, 1, 0.5, \"relu\"), else as a string")  # fmt: skip
        p.add_argument("--dtype", choices=["auto", "float64", "float32"], default="auto",
                       help="precision of the check (default auto: one probe finds the precision "
                       "the implementation computes in, and the check runs at it)")  # fmt: skip
        p.add_argument("--timeout", type=_seconds, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                       help=f"limit on each call of your implementation (default {DEFAULT_TIMEOUT:g}; "
                       "0: none); a call that does not return in time stops the run with exit status 1. "
                       "Interrupts Python code; a call stuck inside one C function stops when it returns")  # fmt: skip
        p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                       help="count calls of your implementation on stderr (default: when stderr is a "
                       "terminal)")  # fmt: skip
    check.add_argument("--examples", type=_examples,
                       help=f"with --impl: Hypothesis examples of the main property, 1 to {MAX_EXAMPLES} "
                       f"(default {DEFAULT_EXAMPLES})")  # fmt: skip
    check.add_argument("--seed", type=int, help="with --impl: Hypothesis seed, for a reproducible run")
    check.add_argument("--wide", "--verbose", action="store_true", dest="wide",
                       help="without --impl: every measurement (ULPs, both torch.nn differences) in "
                       "wide rows; the default table fits 100 columns")  # fmt: skip
    report = sub.add_parser("report", help="gradient-flow report: HTML, Markdown, PNG plots and JSON")
    report.add_argument("cells", nargs="*", help="catalog cells (default: all)")
    report.add_argument("-o", "--output", default="report",
                        help="output folder (default: report). It must not exist, be empty, or hold a "
                        "previous report (recognised by its .lstm-verify-report marker), which is "
                        "replaced atomically; anything else is refused, before computing")  # fmt: skip
    report.add_argument("--force", action="store_true",
                        help="write into an existing folder that is not a previous report: only the "
                        "report's own files (report.html, report.md, data.json, its PNG plots and the "
                        "marker) are replaced, one by one; no other file is touched")  # fmt: skip
    report.add_argument("--quick", action="store_true", help="200 lags, one seed, fewer training runs")
    report.add_argument("-j", "--jobs", type=_positive, default=None, metavar="N",
                        help="local processes running the report's jobs (default: one a core; 1: in this "
                        "process). Each job runs on one thread, so results do not depend on N")
    report.add_argument("--scheduler", metavar="ADDRESS", default=None,
                        help="run the jobs on the Dask cluster whose scheduler is at ADDRESS "
                        "(tcp://host:8786) instead of local processes; needs the extra 'dask'")
    report.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                        help="progress bar on stderr (default: on)")  # fmt: skip
    conf = sub.add_parser("conformance-report", help="the conformance matrix: every built-in framework "
                          "subject (Keras, Flax, Equinox, Haiku, ONNX) identified and checked against the "
                          "catalog; HTML, Markdown and JSON")  # fmt: skip
    conf.add_argument("-o", "--output", default="conformance",
                      help="output folder (default: conformance); the same rules as report's -o")
    conf.add_argument("--force", action="store_true", help="as report's --force")
    conf.add_argument("--examples", type=_examples, default=20,
                      help="Hypothesis examples of each subject's main property (default 20)")
    conf.add_argument("--only", action="append", metavar="PREFIX",
                      help="only the subjects whose reference starts with PREFIX (e.g. onnx, flax.nnx); repeat")
    conf.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                      help="a line per subject on stderr (default: on)")
    eq = sub.add_parser("equiv", help="whether two specs compute the same outputs for all inputs, "
                        "parameters and states: proved with SymPy, else tested with mpmath (exit 0 "
                        "equivalent, 1 not, 2 bad input)")  # fmt: skip
    eq.add_argument("a", help="catalog name or spec path")
    eq.add_argument("b", help="catalog name or spec path")
    eq.add_argument("--points", type=_examples, default=200,
                    help="random points of the counterexample search when no proof is found (default 200)")
    eq.add_argument("--seed", type=int, default=0, help="seed of the random points (default 0)")
    eq.add_argument("--budget", type=_seconds, default=10.0, metavar="SECONDS",
                    help="SymPy simplification time per proof obligation (default 10; 0: test only)")
    eq.add_argument("--ramp", action=argparse.BooleanOptionalAction, default=True,
                    help="when equivalent, compare non-finite outputs of both cells' NumPy code in "
                    "float32 and float64 on a ramp of pre-activations (default: on)")  # fmt: skip
    bounds = sub.add_parser("bounds", help="an upper bound on the per-step state Jacobian and on the gradient over "
                            "k steps, from the closed-form blocks, and its tightness at an initialisation")  # fmt: skip
    bounds.add_argument("cell", help="catalog name or path to a spec .toml")
    bounds.add_argument("--init", default="torch_default", help="named initialisation (default torch_default)")
    bounds.add_argument("--input-bound", type=float, default=1.0, help="|x| <= this for every input (default 1)")
    bounds.add_argument("--steps", type=int, default=10, help="lags of the k-step bound (default 10)")
    bounds.add_argument("--seed", type=int, default=0)
    bounds.add_argument("--json", action="store_true", help="print the numbers as JSON")
    export = sub.add_parser("export", help="a standalone NumPy, torch or C module for a cell")
    export.add_argument("cell", help="catalog name or spec path")
    export.add_argument("--target", required=True, choices=["numpy", "torch", "c"])
    export.add_argument("-o", "--output", help="file or folder (default: CELL_TARGET.py / .c)")
    export.add_argument("--force", action="store_true",
                        help="replace an existing regular file (never a link, folder, FIFO or device)")  # fmt: skip
    try:
        args = parser.parse_args(argv)
        return {"list": _list, "show": _show, "check": _check, "identify": _identify,
                "report": _report, "export": _export, "equiv": _equiv,
                "conformance-report": _conformance_report, "bounds": _bounds}[args.command](args)  # fmt: skip
    except LstmVerifyError as exc:
        print(f"lstm-verify: error: {_message(exc)}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into head and friends
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("\nlstm-verify: interrupted", file=sys.stderr)
        return 130
    except BaseException as exc:
        from .limits import CallTimeout

        if not isinstance(exc, CallTimeout):
            raise
        print(f"lstm-verify: FAIL: {exc}", file=sys.stderr)
        return 1


def _message(exc) -> str:
    """An error's text as the command line says it: options as flags (``--layout``), where the
    library's own message names keyword arguments (``layout=``)."""
    return getattr(exc, "cli_message", None) or str(exc)


def _bounds(args) -> int:
    import json
    import math

    from .bounds import summary
    from .cell import load
    from .errors import LstmVerifyError
    from .inits import NAMED

    if args.init not in NAMED:
        raise LstmVerifyError(f"unknown initialisation {args.init!r}; known: {', '.join(NAMED)}")
    if not (math.isfinite(args.input_bound) and args.input_bound >= 0) or args.steps < 1:
        raise LstmVerifyError("--input-bound must be a finite number >= 0 and --steps at least 1")
    s = summary(load(args.cell), args.init, args.input_bound, args.steps, seed=args.seed)
    if args.json:
        print(json.dumps(s, indent=1))
        return 0
    ranges = ", ".join(f"{k} in [{lo:g}, {hi:g}]" for k, (lo, hi) in s["state_ranges"].items())
    print(f"{s['cell']} ({s['init']}, sizes {s['sizes']}): |x| <= {s['input_bound']:g}, {ranges}")
    print(f"  ||d s'/d s||_2 <= {s['step_bound']:.4g} per step; measured up to {s['measured_step_norm']:.4g} "
          f"(tightness {s['step_tightness']:.3g})" if s["step_tightness"] is not None else
          f"  ||d s'/d s||_2 <= {s['step_bound']:.4g} per step")  # fmt: skip
    for k, v in s["blocks"].items():
        print(f"    {k} <= {s['expressions'][k]} = {v:.4g}")
    for k, e in s["extremes"].items():
        print(f"  {k}: ||d s'/d s||_2 <= {e['step_bound']:.4g}; measured up to {e['measured_step_norm']:.4g}")
    T = s["steps"]
    print(f"  ||d s_{T}/d s_0||_2 <= {s['lag_bounds'][-1]:.4g}; measured up to {s['measured_lag_norm']:.4g}")
    for k, d in s["carousels"].items():
        print(f"  along {k}'s own path (d {k}'/d {k} = diag({d})) alone, every unit keeps at least "
              f"{s['carousel_lower_bounds'][k]:.4g} of its gradient over {T} steps")  # fmt: skip
    for k, c in s["closed_forms"].items():
        ends = "; ".join(f"{a} in [{lo}, {hi}]" for a, (lo, hi) in c["ends"].items())
        print(f"  in closed form ({ends}): {c['d']} in [{c['low']}, {c['high']}] = "
              f"[{c['low_value']:.4g}, {c['high_value']:.4g}]")  # fmt: skip
    return 0


def _list(args) -> int:
    from .cell import catalog, load

    names = catalog()
    width = max(map(len, names), default=0)
    for name in names:
        print(f"{name:{width}s} {load(name).spec.title}")
    return 0


def _show(args) -> int:
    from .cell import load
    from .spec import SET

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
    sets = "".join(f"; set input: {n} ({SET}, {d}), fixed over time" for n, d in ir.sets)
    print(f"inputs: {', '.join(f'{n} ({d})' for n, d in ir.inputs)}{sets}; "
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
    from .scan import ScanError, scan_form

    try:
        form = scan_form(ir)
    except ScanError:
        form = None
    if form is not None:  # gates and candidate free of the state: cell.scan(...) runs it
        print("runs as an associative scan (cell.scan): " + "; ".join(str(r) for r in form.recurrences))
    from .derive import shown_blocks

    rows = shown_blocks(ir)
    if ir.reduces:
        print("local Jacobians of the equations with reductions, the other vectors held fixed "
              "([u] a column, [v]ᵀ a row, (s) a number, n the units reduced):")  # fmt: skip
    if ir.sets:
        print("  over the set's members: xᵢ member i of the vector differentiated, xₖ member k of the one "
              "differentiated by, Σₘ(...) a sum over the members m, δᵢₖ 1 where i = k and 0 elsewhere")  # fmt: skip
    heading = False
    for local, of, wrt, text, latex in rows:
        if not local and not heading:
            print("one-step Jacobian blocks:")
            heading = True
        body = latex if args.latex else text
        if args.latex:
            print(f"  \\frac{{\\partial {of}}}{{\\partial {wrt}}} = {body}")
        else:
            print(f"  d{of}/d{wrt} = {body}")
    if not args.latex:
        from .bounds import theorem

        print("gradient bound per step (lstm-verify bounds CELL evaluates it for given weights):")
        for line in theorem(ir).statements():
            print("  " + line)
    return 0


def _mask_str(mask):
    def side(o):
        return f"{o.buffer}_{o.side}" if o.buffer else f"{o.value:g}"

    return f"{side(mask.left)} {mask.op} {side(mask.right)}"


def _state_names(args):
    if args.state is None:
        return None
    names = [s.strip() for s in args.state.split(",")]
    if not all(names):
        raise LstmVerifyError(f"--state {args.state!r}: expected state names separated by commas, e.g. c,h")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise LstmVerifyError(f"--state {args.state!r}: {', '.join(dup)} given twice")
    return names


def _check_states(names, cell, flag="--state"):
    states = [s for s, _ in cell.ir.states]
    unknown = [n for n in names if n not in states]
    if unknown:
        raise LstmVerifyError(f"{flag} {','.join(names)}: {', '.join(unknown)} "
                              f"{'is not a state' if len(unknown) == 1 else 'are not states'} of "
                              f"{cell.name}, whose states are {', '.join(states)}")  # fmt: skip
    missing = [s for s in states if s not in names]
    if missing:
        raise LstmVerifyError(f"{flag} {','.join(names)}: must list every state of {cell.name} once "
                              f"({', '.join(states)}); missing {', '.join(missing)}")  # fmt: skip


def _impl_options(args) -> dict:
    """``--impl-option KEY=VALUE`` pairs: VALUE as a TOML value, else the string itself."""
    import tomllib

    out = {}
    for text in args.impl_options:
        key, sep, value = text.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise LstmVerifyError(f"--impl-option {text!r}: expected KEY=VALUE, e.g. reset_after=false")
        try:
            out[key] = tomllib.loads(f"v = {value.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            out[key] = value.strip()
    return out


def _subject(args):
    from .conformance import Subject, subject
    from .frameworks import is_builtin
    from .loading import load_object, read_layout

    options = _impl_options(args)
    layout = read_layout(args.layout) if args.layout else None
    if is_builtin(args.impl):
        return subject(args.impl, layout=layout, state=_state_names(args), options=options, label=args.impl)
    impl = load_object(args.impl)
    if not isinstance(impl, Subject) and not callable(impl):
        raise LstmVerifyError(f"--impl {args.impl}: {type(impl).__name__} object {_short(impl)} is not "
                              "callable; expected a factory (a torch.nn.Module class, or a function "
                              "returning fn(params, x, state)) or a lstm_verify Subject")  # fmt: skip
    try:
        return subject(impl, layout=layout, state=_state_names(args), backend=args.backend, label=args.impl,
                       options=options)  # fmt: skip
    except ValueError as exc:
        raise LstmVerifyError(f"--impl-option: {exc}") from None


def _short(obj) -> str:
    text = repr(obj)
    return text if len(text) <= 60 else text[:57] + "..."


class _Progress:
    """Calls of the implementation counted on stderr (tqdm), if wanted."""

    def __init__(self, args, desc):
        from tqdm import tqdm

        on = args.progress if args.progress is not None else sys.stderr.isatty()
        self.bar = tqdm(desc=desc, unit=" calls", disable=not on, file=sys.stderr, mininterval=0.5,
                        bar_format="{desc}: {n_fmt}{unit} of the implementation [{elapsed}, {rate_fmt}]")  # fmt: skip

    def __call__(self, limiter):
        self.bar.update(1)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.bar.close()


def _limited(args, subj, progress):
    from .limits import limit_subject

    limited, _ = limit_subject(subj, args.timeout or None, on_call=progress)
    return limited


def _check_impl(args) -> int:
    from .cell import load
    from .conformance import check

    if len(args.cells) != 1:
        print("lstm-verify: error: check --impl takes exactly one cell, the one your code claims "
              "to compute (use identify to find it)", file=sys.stderr)  # fmt: skip
        return 2
    cell = load(args.cells[0])
    subj = _subject(args)
    if subj.state is not None:
        _check_states(list(subj.state), cell)
    examples = DEFAULT_EXAMPLES if args.examples is None else args.examples
    with _Progress(args, f"check {cell.name}") as progress:
        report = check(cell, _limited(args, subj, progress), examples=examples, seed=args.seed, dtype=args.dtype)
    print(report.table())
    return 0 if report.passed else 1


def _identify(args) -> int:
    from .cell import catalog, load
    from .identify import identify

    subj = _subject(args)
    cells = [load(c) for c in (args.cells or catalog())]
    if subj.state is not None:
        names = list(subj.state)
        if args.cells:
            for cell in cells:
                _check_states(names, cell)
        else:
            cells = [c for c in cells if sorted(s for s, _ in c.ir.states) == sorted(names)]
            if not cells:
                kinds = sorted({", ".join(s for s, _ in c.ir.states) for c in map(load, catalog())})
                raise LstmVerifyError(f"--state {','.join(names)}: no catalog cell has exactly these "
                                      f"states (the catalog's states: {'; '.join(kinds)})")  # fmt: skip
    with _Progress(args, "identify") as progress:
        result = identify(_limited(args, subj, progress), cells=cells,
                          precision="auto" if args.dtype == "auto" else args.dtype)  # fmt: skip
    print(f"{args.impl}: {result.summary()}")
    if not result.tried:
        print(_why_none_tried(subj, cells))
    return 0 if result.matches else 1


def _why_none_tried(subj, cells, shown=6) -> str:
    """Why identify could run the implementation as none of ``cells``: each cell's reason (the
    factory rejected the sizes, no layout maps the module's tensors, ...)."""
    import numpy as np

    from .conformance import Runner, _probe_sizes

    reasons: dict = {}  # reason -> cells
    for cell in cells:
        try:
            Runner(subj, cell, _probe_sizes(cell), np.float64)
        except (LstmVerifyError, KeyError, TypeError, ValueError) as exc:
            reason = _message(exc).removeprefix(f"{subj.label}: ").replace(cell.name, "the cell")
            reasons.setdefault(reason, []).append(cell.name)
        else:  # pragma: no cover - identify would have tried it
            reasons.setdefault("could be built now, but not during identify", []).append(cell.name)
    lines = [f"  {', '.join(names)}: {reason}" for reason, names in reasons.items()]
    more = f"\n  ... and {len(lines) - shown} more" if len(lines) > shown else ""
    return ("why: no candidate cell could be given to the implementation (its factory must accept the "
            "cell's sizes, and a module's parameters must match one of the cell's layouts, or "
            "--layout):\n" + "\n".join(lines[:shown]) + more)  # fmt: skip


def _equiv(args) -> int:
    from .equiv import equiv

    result = equiv(args.a, args.b, points=args.points, seed=args.seed, budget=args.budget, ramp=args.ramp)
    print(result.text())
    return result.exit_code


def _export(args) -> int:
    from .export import write

    path = write(args.cell, args.target, args.output, args.force)
    print(f"wrote {path}")
    return 0


def _conformance_report(args) -> int:
    from .conformance_report import build, render, subjects
    from .report_folder import install, prepare

    target = prepare(args.output, args.force)  # refuse a bad path before the long computation
    if args.only:
        known = {r for r, _ in subjects()}
        bad = [p for p in args.only if not any(r.startswith(p) for r in known)]
        if bad:
            raise LstmVerifyError(f"--only {', '.join(bad)}: no built-in subject starts so; they are "
                                  f"{', '.join(sorted(known))}")  # fmt: skip

    def progress(row):
        if args.progress:
            verdict = row.error or ("conforms" if row.passed else "DOES NOT CONFORM")
            print(f"{row.label}: {row.computes or '-'}; {verdict} ({row.seconds:.0f} s)", file=sys.stderr, flush=True)

    start = time.perf_counter()
    rows = build(examples=args.examples, only=args.only, progress=progress)
    command = "lstm-verify conformance-report" + (f" --examples {args.examples}" if args.examples != 20 else "") + \
        "".join(f" --only {p}" for p in args.only or [])  # fmt: skip
    path = install(prepare(target.path, target.force), render(rows, command, time.perf_counter() - start), command)
    print(f"wrote {path}/conformance.html, conformance.md and data.json: {len(rows)} subjects, "
          f"{sum(bool(r.passed) for r in rows)} conform")  # fmt: skip
    return 0


def _report(args) -> int:
    from .cell import catalog
    from .report import Settings, build, prepare, write

    unknown = [c for c in args.cells if c not in catalog()]
    if unknown:
        raise LstmVerifyError(f"unknown cells {unknown}; known: {', '.join(catalog())}")
    command = "lstm-verify report" + "".join(f" {c}" for c in args.cells) + f" -o {args.output}" + (
        " --quick" if args.quick else "")  # fmt: skip
    target = prepare(args.output, args.force)  # before the computation, which takes minutes
    for note in target.notes:
        print(f"lstm-verify: note: {note}", file=sys.stderr)
    data = build(Settings.make(args.cells, args.quick), progress=args.progress, workers=args.jobs,
                 scheduler=args.scheduler)  # fmt: skip
    out = write(data, target, command)
    print(f"wrote {out}/report.html, report.md, data.json and {len(list(out.glob('*.png')))} plots "
          f"in {data['seconds']:.0f} s")  # fmt: skip
    return 0


COLUMNS = ["fwd64", "fwd32", "sat64", "sat32", "bwd/autograd", "bwd/fd"]
IMPL_ONLY = ("layout", "state", "backend", "examples", "seed", "impl_options")  # flags that need --impl


def _check(args) -> int:
    from .cell import load
    from .check import check_cell, not_run_note

    if args.impl:
        if args.wide:
            raise LstmVerifyError("--wide/--verbose applies to the catalog check, not with --impl")
        return _check_impl(args)
    given = [f"--{name.replace('_options', '-option')}" for name in IMPL_ONLY if getattr(args, name) not in (None, [])]
    if given:
        raise LstmVerifyError(f"{', '.join(given)} {'applies' if len(given) == 1 else 'apply'} only with "
                              "--impl (checking your implementation)")  # fmt: skip
    cells = [load(name) for name in _catalog_names(args.cells)]  # every name checked before any output
    start = time.perf_counter()
    rows = []
    print(_legend(args.wide))
    header, row_text = _wide_row if args.wide else _narrow_row
    width = max([16] + [len(c.name) for c in cells])  # the cell column fits the longest name
    print(header(width))
    for cell in cells:
        row = check_cell(cell)
        rows.append(row)
        print(row_text(row, width), flush=True)
    failed = [r.cell for r in rows if not r.passed]
    total = time.perf_counter() - start
    note = not_run_note(rows)
    if note:
        print(f"\n{note}")
    print(f"\n{len(rows) - len(failed)} passed, {len(failed)} failed in {total:.1f}s"
          + (f": {', '.join(failed)}" if failed else ""))  # fmt: skip
    return 1 if failed else 0


def _catalog_names(names):
    from .cell import catalog

    return names or catalog()


def limits_sentence() -> str:
    """The check's pass limits (lstm_verify.check.LIMITS) as a sentence."""
    from .check import LIMITS

    third = LIMITS["thirdparty"]
    return (f"A row passes when the forward is within {LIMITS['fwd64']:g} (float64) and "
            f"{LIMITS['fwd32']:g} (float32) of mpmath, normwise; the backward within "
            f"{LIMITS['bwd_autograd']:g} of autograd and {LIMITS['bwd_fd']:g} of finite differences, "
            f"relative; and a torch.nn cell within {third['float64']:g} (float64) and "
            f"{third['float32']:g} (float32) where the spec says it is the same function. A forward "
            "whose exact intermediate values exceed the dtype's range (exp(100) in float32) cannot be "
            "computed as written: it shows ovf, and the row says how large they get.")


def _wrap(text, width=100, indent=""):
    import textwrap

    return textwrap.fill(text, width=width, subsequent_indent=indent)


def _legend(wide) -> str:
    lines = [
        "fwd64, fwd32  generated NumPy and torch forward vs mpmath (60 digits), 4 steps: normwise error",
        "              max |error| / max |reference|, the worse of the two",
        "sat64, sat32  the same with uniform weights scaled so |pre-activation| reaches max|z|",
        f"{'bwd/autograd' if wide else 'bwd/ag':14s}generated backward, 50 steps, float64, vs torch autograd: "
        "relative error",
        "bwd/fd        the same vs float64 finite differences (and torch.autograd.gradcheck)",
        "torch.nn      the real torch cell, same weights via the layout, 100 steps: equal or differs"
        + (",\n              with the max difference in float64/float32" if wide else ""),
    ]
    if wide:
        lines.append(_wrap("ulp: the worst element's error in units in the last place of that element. "
                           "Elements near zero have tiny units, so a count in the thousands next to a "
                           "normwise error of 1e-16 is rounding, not a fault; rows pass or fail on the "
                           "normwise error.", indent="     "))  # fmt: skip
    return "\n".join(lines) + "\n" + _wrap(limits_sentence()) + "\n"


def _zmax(row) -> str:
    """The saturated columns' max |z| (check_cell writes it into their text as |z|<=N)."""
    import re

    found = [m.group(1) for c in ("sat64", "sat32") for m in [re.search(r"\|z\|<=(\S+)", row.results[c][2])] if m]
    return found[0] if found else "-"


def _torch_nn(row, wide) -> str:
    """The torch.nn comparisons: ``LSTMCell equal``; wide adds both differences."""
    out = []
    for key, (value, ok, text) in row.results.items():
        if key in COLUMNS:
            continue
        if value is None:  # not run: the note under the table says what brings it
            out.append(text if wide else f"{key.split('.')[-1]} -")
            continue
        verdict, _, rest = text.partition(" ")
        diffs, _, expected = rest.partition(" ")
        name = key.split(".")[-1]
        out.append(f"{name} {verdict}" + (f" {diffs}" if wide else "") + (f" {expected}" if expected and wide else ""))
    return "; ".join(out) or "-"


def _narrow_header(width=16) -> str:
    return (f"{'cell':{width}s} {'fwd64':>5s} {'fwd32':>5s} {'sat64':>5s} {'sat32':>5s} {'max|z|':>6s} "
            f"{'bwd/ag':>8s} {'bwd/fd':>7s}  {'torch.nn':18s} {'time':>5s} result")  # fmt: skip


def _narrow(row, width=16) -> str:
    r = row.results
    fwd = " ".join(f"{'ovf':>5s}" if r[c][2].startswith("beyond") else f"{r[c][0].normwise:5.0e}"
                   for c in ("fwd64", "fwd32", "sat64", "sat32"))  # fmt: skip
    autograd = f"{'-':>8s}" if r["bwd/autograd"][0] is None else f"{r['bwd/autograd'][0]:8.1e}"  # not run
    line = (f"{row.cell:{width}s} {fwd} {_zmax(row):>6s} {autograd} {r['bwd/fd'][0]:7.1e}  "
            f"{_torch_nn(row, False):18s} {row.seconds:4.1f}s {'ok' if row.passed else 'FAIL'}")  # fmt: skip
    failed = [f"{c} {text}" for c, (_, ok, text) in r.items() if not ok]
    if failed:  # what failed, in full, on a line of its own
        line += "\n" + _wrap(f"  {row.cell} fails: " + "; ".join(failed), indent="    ")
    return line


def _wide_header(width=16) -> str:
    return f"{'cell':{width + 1}s} " + " ".join(f"{c:>22s}" for c in COLUMNS) + f" {'torch.nn':>34s} {'time':>6s}  result"


def _wide(row, width=16) -> str:
    cells = " ".join(f"{row.results[c][2]:>22s}" for c in COLUMNS)
    return (f"{row.cell:{width + 1}s} {cells} {_torch_nn(row, True):>34s} {row.seconds:5.1f}s  "
            f"{'ok' if row.passed else 'FAIL'}")  # fmt: skip


_narrow_row = (_narrow_header, _narrow)
_wide_row = (_wide_header, _wide)


if __name__ == "__main__":
    sys.exit(main())
