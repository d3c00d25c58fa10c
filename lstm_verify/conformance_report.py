"""The conformance matrix: every built-in framework subject against the catalog.

For each subject (every built-in reference with its framework's defaults, then the options
users meet: Keras's reset_after, ONNX's linear_before_reset, a ReLU RNN, a hard-sigmoid
gate), :func:`row` finds which catalog cell or convention variant it computes
(:func:`lstm_verify.identify.identify` over the whole catalog), checks it against that cell
with the full property suite (:func:`lstm_verify.conformance.check`) and records the
precision it computes in, the worst error per property and each convention difference the
layout encodes, in one sentence each. Keras runs once per backend: the one this process has,
and JAX in a subprocess (Keras picks its backend once, at import).

    lstm-verify conformance-report -o reports/conformance
"""

from __future__ import annotations

import html
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field

from .errors import LstmVerifyError, MissingExtraError

# option variants users meet, beside each reference's defaults
VARIANTS = [
    ("keras.layers:LSTMCell", {"recurrent_activation": "hard_sigmoid"}),
    ("keras.layers:GRUCell", {"reset_after": False}),
    ("keras.layers:SimpleRNNCell", {"activation": "relu"}),
    ("onnx:GRU", {"linear_before_reset": 1}),
    ("onnx:RNN", {"activations": "Relu"}),
    ("onnx:LSTM", {"activations": "HardSigmoid,Tanh,Tanh"}),
    ("onnx:LSTM", {"peepholes": True}),
    ("haiku:VanillaRNN", {"double_bias": False}),
    ("sru:SRUCell", {"rescale": False}),
]


@dataclass
class MatrixRow:
    subject: str
    options: dict
    backend: str = ""  # Keras's backend
    computes: str = ""  # the catalog cell or convention variant, as identification words it
    cell: str = ""  # the catalog cell checked against ("" when none)
    variant: bool = False  # a convention variant of ``cell``, not the cell itself
    passed: bool | None = None
    precision: str = ""
    properties: list = field(default_factory=list)  # [name, examples, worst |diff|, worst/tol, result]
    conventions: list = field(default_factory=list)
    seconds: float = 0.0
    error: str = ""  # why the subject could not be checked (a missing framework, a crash)
    failure: str = ""  # the first failing property's message: the case and what differs

    @property
    def label(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return self.subject + (f" ({opts})" if opts else "") + (f" [{self.backend}]" if self.backend else "")


def subjects() -> list[tuple[str, dict]]:
    from .frameworks import references

    refs = [(r, {}) for r in references()]
    for ref, opts in VARIANTS:
        at = max(i for i, (r, _) in enumerate(refs) if r == ref)
        refs.insert(at + 1, (ref, opts))
    return refs


def conventions(cell, layout) -> list[str]:
    """One sentence per difference between a framework's storage and the spec, from the layout."""
    spec_states = [s for s, _ in cell.ir.states]
    out = []
    if list(layout.state) != spec_states:
        out.append(f"state passed as ({', '.join(layout.state)}); the spec writes ({', '.join(spec_states)})")
    for tensor, blocks in layout.tensors:
        kind, groups = layout.form(tensor)
        t = " (stored transposed)" if tensor in layout.transpose else ""
        if kind == "stack":
            text = " and ".join(f"[{', '.join(g)}]" for g in groups)
            out.append(f"`{tensor}` has a leading axis of {len(groups)}: {text}{t}")
        elif kind == "grid":
            text = "; ".join(", ".join(g) for g in groups)
            out.append(f"`{tensor}` is one matrix over the concatenated inputs, rows [{text}]{t}")
        elif kind == "interleave":
            out.append(f"`{tensor}` interleaves {', '.join(blocks)} unit by unit (unit j's rows of each, "
                       f"then unit j+1's){t}")
        elif kind.startswith("heads:"):
            out.append(f"`{tensor}` holds only the {kind[6:]} diagonal blocks (one per head) of "
                       f"{', '.join(blocks)}, one slice per head{t}")
        elif len(blocks) > 1:
            out.append(f"`{tensor}` stacks {', '.join(blocks)}{t}")
        elif t:
            out.append(f"`{tensor}` is {blocks[0]}{t}")
    counts: dict = {}
    for _, blocks in layout.tensors:
        for b in blocks:
            counts[b] = counts.get(b, 0) + 1
    summed = sorted(b for b, n in counts.items() if n > 1)
    if summed:
        out.append(f"{', '.join(summed)}: the sum of {max(counts.values())} stored biases")
    if layout.zero:
        out.append(f"no {', '.join(layout.zero)}: the spec's cell with {', '.join(layout.zero)} = 0")
    for b, v in layout.shift:
        out.append(f"the framework adds {v:g} to {b} at run time: the spec's {b} is the stored one + {v:g}")
    negated = [b for b, v in layout.scale if v == -1.0]
    if negated:
        out.append(f"{', '.join(negated)} negated: the framework's gate is 1 minus the spec's "
                   "(sigmoid(-a) = 1 - sigmoid(a))")  # fmt: skip
    for b, v in layout.scale:
        if v != -1.0:
            out.append(f"the spec's {b} is {v:g} times the stored one")
    return out


def row(ref: str, options: dict, examples: int = 20, seed: int = 0) -> MatrixRow:
    """Identify and check one subject; a framework that is missing or fails is said, not raised."""
    from .conformance import check, subject
    from .identify import identify

    out = MatrixRow(ref, dict(options))
    start = time.perf_counter()
    try:
        subj = subject(ref, options=options)
        if ref.startswith("keras."):
            from .frameworks.keras_cells import backend_name

            out.backend = backend_name()
        ident = identify(subj)
        if not ident.matches:
            out.computes = ident.summary()
            return out
        best = ident.matches[0]
        out.computes = best.description
        out.cell, out.variant = best.cell.name, best.kind not in ("claimed", "catalog")
        if out.variant:
            out.cell = best.description.split("`")[1]
        report = check(best.cell, subject(ref, options=options, layout=best.layout, state=best.state_order),
                       examples=examples, seed=seed, identify=False, ci=True)  # fmt: skip
        out.passed, out.precision = report.passed, report.precision
        out.failure = next((f"{r.name}: {r.message}" for r in report.rows if not r.passed and not r.skipped), "")
        for r in report.rows:
            result = r.skipped or ("ok" if r.passed else "FAIL")
            name = "gradients" if r.name.startswith("gradients (") else r.name  # the precision has its column
            out.properties.append([name, r.examples, r.worst, r.worst_ratio, result])
        out.conventions = conventions(best.cell, best.layout)  # a framework cell's candidates carry theirs
        if out.variant:
            out.conventions.insert(0, best.description)
        if report.precision == "float32":
            out.conventions.append(report.precision_note)
    except MissingExtraError as exc:
        out.error = str(exc)
    except LstmVerifyError as exc:
        out.error = f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # noqa: BLE001 - a framework that fails here is a finding of the matrix
        out.error = f"{type(exc).__name__}: {exc}"
    finally:
        out.seconds = time.perf_counter() - start
    return out


def _keras_backends() -> list[str]:
    """The Keras backends other than this process's that can run here (each in a subprocess)."""
    import importlib.util

    here = os.environ.get("KERAS_BACKEND") or ("torch" if importlib.util.find_spec("torch") else "jax")
    return [b for b in ("torch", "jax") if b != here and importlib.util.find_spec(b)]


def rows_in_subprocess(refs: list, backend: str, examples: int, seed: int) -> list[MatrixRow]:
    """Keras rows on another backend: Keras reads KERAS_BACKEND once, at import."""
    code = ("import json, sys; from dataclasses import asdict; from lstm_verify.conformance_report import row; "
            "refs = json.loads(sys.argv[1]); "
            "print(json.dumps([asdict(row(r, o, int(sys.argv[2]), int(sys.argv[3]))) for r, o in refs]))")  # fmt: skip
    env = dict(os.environ, KERAS_BACKEND=backend)
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(refs), str(examples), str(seed)],
                          capture_output=True, text=True, env=env)  # fmt: skip
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return [MatrixRow(r, o, backend=backend, error=f"the {backend} backend's run failed: {tail}") for r, o in refs]
    return [MatrixRow(**d) for d in json.loads(proc.stdout.strip().splitlines()[-1])]


def build(examples: int = 20, seed: int = 0, only=None, progress=None) -> list[MatrixRow]:
    todo = [(r, o) for r, o in subjects() if only is None or any(r.startswith(p) for p in only)]
    rows = []
    for ref, opts in todo:
        rows.append(row(ref, opts, examples, seed))
        if progress is not None:
            progress(rows[-1])
    keras = [(r, o) for r, o in todo if r.startswith("keras.")]
    for backend in _keras_backends() if keras else []:
        for r in rows_in_subprocess(keras, backend, examples, seed):
            rows.append(r)
            if progress is not None:
                progress(r)
    return rows


def _md(text) -> str:
    """Text for a Markdown table cell: a | would end the cell."""
    return str(text).replace("|", "\\|")


def _fmt(v) -> str:
    return "" if v is None else f"{v:.1e}"


def render(rows: list[MatrixRow], command: str, seconds: float) -> dict:
    """conformance.md, conformance.html and data.json."""
    from . import __version__

    props = []
    for r in rows:
        for p in r.properties:
            if p[0] not in props:
                props.append(p[0])
    head = ["| subject | computes | precision | result | " + " | ".join(_md(p) for p in props) +
            " | conventions | time |",
            "|" + "---|" * (len(props) + 6)]  # fmt: skip
    md = ["# Conformance of framework cells to the catalog", "",
          f"Generated by `{command}` (lstm-verify {__version__}) in {seconds:.0f} s. Each framework cell, "
          "with its defaults or the options named, is identified among the catalog's cells and their "
          "convention variants, then checked against that cell by the property suite of `lstm-verify "
          "check --impl` (Hypothesis cases: ordinary, saturated, extreme, long sequences, gradients). Each "
          "property cell of the table gives the worst |implementation - spec| over its examples, and "
          "in brackets that error over the tolerance the check allows (pass: <= 1). Conventions "
          "are read from the spec's layout for that framework.", ""]  # fmt: skip
    md += head
    for r in rows:
        if r.error:
            md.append(f"| `{r.label}` | not checked: {_md(r.error)} |" + " |" * (len(props) + 4))
            continue
        result = "conforms" if r.passed else ("DOES NOT CONFORM" if r.passed is False else "")
        cells = []
        for name in props:
            p = next((p for p in r.properties if p[0] == name), None)
            if p is None:
                cells.append("")
            elif p[2] is None:
                cells.append(_md(p[4]))
            else:
                cells.append(f"{_fmt(p[2])} ({p[3]:.2g})" + ("" if p[4] == "ok" else f" {p[4]}"))
        computes = _md(r.computes)
        md.append(f"| `{r.label}` | {computes} | {r.precision} | {result} | " + " | ".join(cells) +
                  f" | {_md('; '.join(r.conventions))} | {r.seconds:.0f} s |")  # fmt: skip
    failures = [r for r in rows if r.failure]
    if failures:
        md += ["", "## Why each non-conforming subject fails", "",
               "The first failing property of each, with the smallest case Hypothesis found:", ""]
        for r in failures:
            md += [f"`{r.label}`:", "", "```", r.failure, "```", ""]
    md.append("")
    page = ["<!doctype html><html><head><meta charset='utf-8'><title>Conformance of framework cells</title>",
            "<style>body{font-family:sans-serif;margin:1em}table{border-collapse:collapse;font-size:85%}"
            "td,th{border:1px solid #ccc;padding:3px 6px;text-align:left;vertical-align:top}"
            ".fail{background:#fdd}.ok{background:#efe}</style></head><body>",
            f"<h1>Conformance of framework cells to the catalog</h1><p>{html.escape(md[2])}</p><table><tr>"]  # fmt: skip
    page += [f"<th>{html.escape(h)}</th>" for h in ["subject", "computes", "precision", "result", *props, "conventions", "time"]]
    page.append("</tr>")
    for r in rows:
        cls = "ok" if r.passed else "fail"
        if r.error:
            page.append(f"<tr class='fail'><td><code>{html.escape(r.label)}</code></td>"
                        f"<td colspan='{len(props) + 5}'>not checked: {html.escape(r.error)}</td></tr>")  # fmt: skip
            continue
        tds = [f"<code>{html.escape(r.label)}</code>", html.escape(r.computes), r.precision,
               "conforms" if r.passed else "DOES NOT CONFORM"]  # fmt: skip
        for name in props:
            p = next((p for p in r.properties if p[0] == name), None)
            tds.append("" if p is None else html.escape(p[4]) if p[2] is None else
                       f"{_fmt(p[2])} ({p[3]:.2g}){'' if p[4] == 'ok' else ' ' + html.escape(p[4])}")  # fmt: skip
        tds.append("<br>".join(html.escape(c) for c in r.conventions))
        tds.append(f"{r.seconds:.0f} s")
        page.append(f"<tr class='{cls}'>" + "".join(f"<td>{t}</td>" for t in tds) + "</tr>")
    page.append("</table>")
    if failures:
        page.append("<h2>Why each non-conforming subject fails</h2>")
        page += [f"<p><code>{html.escape(r.label)}</code></p><pre>{html.escape(r.failure)}</pre>" for r in failures]
    page.append("</body></html>")
    data = {"command": command, "version": __version__, "seconds": seconds, "rows": [asdict(r) for r in rows]}
    return {
        "conformance.md": "\n".join(md).encode("utf-8"),
        "conformance.html": "\n".join(page).encode("utf-8"),
        "data.json": json.dumps(data, indent=1).encode("utf-8"),
    }
