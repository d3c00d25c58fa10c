"""Hostile specs: no spec text runs as code or changes the numbers, and every bad input is a
SpecError at load. Regressions for each case found, then properties over arbitrary text and
names: generation and export either refuse the spec or give audited code that imports without
side effects and equals the mpmath reference."""

from __future__ import annotations

import ctypes
import importlib.util
import io
import os
import subprocess
import tokenize
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import lstm_verify as lv
from lstm_verify import gradflow, runtime
from lstm_verify.cell import Cell
from lstm_verify.check import backward_vs_finite_differences, forward_vs_mpmath
from lstm_verify.codegen import generate
from lstm_verify.errors import LstmVerifyError, SpecError
from lstm_verify.export import c_compiler, export
from lstm_verify.hygiene import GeneratedCodeError, audit_python, c_comment
from lstm_verify.ir import build_ir
from lstm_verify.functions import SPEC_FUNCTIONS
from lstm_verify.spec import RESERVED, parse_spec, read_spec

SENTINEL = "lstm_verify_sentinel"


def toml_string(text: str) -> str:
    """A TOML basic string holding any text (control characters and DEL escaped)."""
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def spec_text(title="t", cite=("c",), notes="", eq_comment="", x="x", h="h", node="a", p="p",
              name="hostile"):
    """A small cell with one pointwise node and one diagonal parameter, every name chosen."""
    comment = f"  # {eq_comment}" if eq_comment else ""
    equations = [f"{node} = tanh(lin({x}, {h})) + {p}*{h}/3{comment}", f"{h}' = {node}*sigmoid(0.5*{h})"]
    return "\n".join([
        f"name = {toml_string(name)}",
        f"title = {toml_string(title)}",
        "cite = [" + ", ".join(toml_string(c) for c in cite) + "]",
        f"notes = {toml_string(notes)}",
        f"input = {toml_string(x)}",
        f"state = [{toml_string(h)}]",
        f"diagonal = [{toml_string(p)}]",
        "equations = [" + ", ".join(toml_string(e) for e in equations) + "]",
    ]) + "\n"  # fmt: skip


def cell_of(text: str) -> Cell:
    return Cell(build_ir(parse_spec(text)))


def payloads(tmp: Path) -> list[str]:
    """Texts that would run code (writing a sentinel file) if spliced raw into Python or C."""
    target = str(tmp / SENTINEL)
    code = f"open({target!r}, 'w').write('x')"
    return [
        f"x\n{code}\n#",
        f'"""\n{code}\n"""',
        f"'''\n{code}\n'''",
        f"\\\n{code}",
        f"\r{code}",
        f"\u2028{code}",
        f"\x0c{code}",
        "*/ int injected_symbol = 1; /*",
        "*/\n#error injected\n/*",
        "??/\n#error injected",
        "\\",
        "\x00",
    ]


def import_file(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def exercise(cell: Cell, tmp: Path, c=True):
    """Generate, load and export every target; run what was loaded. Returns the forward of
    each Python implementation on one small problem."""
    for backend in ("numpy", "torch"):
        audit_python(generate(cell.ir, backend))
    results = {}
    sizes = {k: 3 for k in cell.ir.size_names}
    params = cell.init_params(sizes=sizes, seed=1)
    rng = np.random.default_rng(1)
    xs = {n: rng.standard_normal((4, 2, 3)) for n, _ in cell.ir.inputs}
    state = {s: rng.standard_normal((2, 3)) * 0.5 for s, _ in cell.ir.states}
    ref, _ = cell.reference(params, xs, state)
    ref = np.asarray(ref, dtype=float)
    results["numpy"] = np.asarray(cell.numpy().forward(params, xs, state).outputs)
    results["torch"] = cell.torch().forward(params, xs, state).outputs.numpy()
    for target in ("numpy", "torch"):
        path = tmp / f"exported_{target}_{abs(hash(cell.spec.sha256)) % 10**8}.py"
        path.write_text(export(cell, target))
        module = import_file(path)
        if target == "numpy":
            out, _, _ = module.forward(params, xs, state)
            results["export-numpy"] = out
    if c and c_compiler():
        path = tmp / "exported.c"
        path.write_text(export(cell, "c"))
        so = tmp / "exported.so"
        proc = subprocess.run([c_compiler(), "-std=c99", "-O0", "-Wall", "-Werror", "-shared", "-fPIC",
                               str(path), "-o", str(so)], capture_output=True, text=True)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert not hasattr(ctypes.CDLL(str(so)), "injected_symbol")
    assert not (tmp / SENTINEL).exists(), "spec text ran as code"
    for label, got in results.items():
        assert np.max(np.abs(got - ref)) < 1e-12, label


# ----------------------------------------------------------------------------- regressions


@pytest.mark.parametrize("field", ["title", "cite", "notes", "eq_comment"])
def test_free_text_never_runs(tmp_path, field):
    """A newline, triple quotes, a line continuation, line separators, `*/` and trigraphs in
    any free-text field: quoted in Python, neutralised in C comments, never executed."""
    for k, payload in enumerate(payloads(tmp_path)):
        if field == "eq_comment" and (not payload.isprintable() or "\n" in payload):
            with pytest.raises(SpecError, match="one line of text"):
                cell_of(spec_text(eq_comment=payload))
            continue
        value = (payload,) if field == "cite" else payload
        cell = cell_of(spec_text(**{field: value}))
        exercise(cell, tmp_path, c=k in (0, 7, 8, 9))
        held = [cell.spec.title, *cell.spec.cite, cell.spec.notes, cell.spec.equations[0].text]
        assert any(payload in text for text in held)  # kept as data, verbatim


def test_spec_file_name_never_runs(tmp_path):
    """The file name reaches the export's description too."""
    folder = tmp_path / 'a"""\nimport os\n"""'
    folder.mkdir()
    path = folder / "cell.toml"
    path.write_text(spec_text())
    cell = Cell(build_ir(read_spec(path)))
    exercise(cell, tmp_path, c=False)


def test_generated_source_holds_spec_text_only_as_literals():
    """Outside string literals (comments included) no token carries the spec's free text."""
    marker = "ZQXJ"
    cell = cell_of(spec_text(title=f"{marker}'\n\"{marker}", cite=(marker,), notes=marker,
                             eq_comment=marker))  # fmt: skip
    sources = [generate(cell.ir, b) for b in ("numpy", "torch")]
    sources += [export(cell, t) for t in ("numpy", "torch")]
    for source in sources:
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
        assert any(t.type == tokenize.STRING and marker in t.string for t in tokens)
        assert not [t for t in tokens if t.type != tokenize.STRING and marker in t.string]


def test_backslash_newline_in_an_equation_is_refused():
    """A state named r and a backslash-newline once made r' a raw-string prefix."""
    with pytest.raises(SpecError, match="one line of text"):
        cell_of(spec_text(h="r", eq_comment="\\\nimport os"))
    equation = toml_string("r' = tanh(lin(x, r)) \\\n + r")
    text = 'name = "r"\ncite = ["c"]\nstate = ["r"]\nequations = [' + equation + "]\n"
    with pytest.raises(SpecError, match="one line of text"):
        parse_spec(text)


GENERATED_NAMES = [
    "t0", "save", "cache", "params", "inputs", "state", "grads", "d_inputs", "d_state",
    "d_outputs", "trace", "range", "dict", "len", "list", "sum", "sys", "weakref", "forward",
    "backward", "product", "out", "v_h", "v_x", "POOL_BYTES", "PACKED_GEMM", "step", "init_params",
    "Layer", "INPUTS", "STATES", "n", "p", "b", "j", "k", "t", "T", "batch", "acc", "outputs",
    "float", "double", "linux", "print", "isinstance", "zip",
    # names of the mpmath and NumPy namespaces the reference oracles evaluate in
    "mpf", "mpc", "pi", "e", "E", "I", "oo", "nan", "inf", "sqrt", "sin", "log", "builtins", "Dummy",
]  # fmt: skip


@pytest.mark.parametrize("name", [n for n in GENERATED_NAMES if n not in RESERVED and n not in SPEC_FUNCTIONS])
def test_a_node_may_have_any_name(tmp_path, name):
    """A node named like anything in the generated code computes the cell's numbers: forward
    against mpmath and the backward against finite differences, NumPy and torch."""
    try:
        cell = cell_of(spec_text(node=name, x="xin", h="hid", p="peep"))
    except SpecError as exc:
        pytest.fail(f"{name!r} refused: {exc}")
    errors, _ = forward_vs_mpmath(cell, np.float64, T=4)
    assert errors.normwise < 1e-13
    fd, ok = backward_vs_finite_differences(cell, T=4)
    assert ok and fd < 1e-6
    # the float64 IR walk of the gradient-flow analysis evaluates in NumPy's namespace
    params = cell.init_params(sizes={"input": 3, "hidden": 4}, seed=0)
    xs = {"xin": np.random.default_rng(0).standard_normal((3, 2, 3))}
    state = {"hid": np.zeros((2, 4))}
    walked = gradflow.node_values(cell, params, xs, state)["hid_"]
    assert np.max(np.abs(walked - cell.numpy().forward(params, xs, state).outputs)) < 1e-14


def test_step_counter_beside_a_node_named_t0():
    """A node named t0 once overwrote the forward's t0 argument: 0.46 off mpmath in 6 steps."""
    text = "\n".join([
        'name = "clock_t0"', 'cite = ["test"]', 'input = "x"', 'state = ["h"]', 'step = "t"',
        'buffers = { period = { init = "clockwork_periods", modules = 2 } }',
        'equations = ["t0 = tick(t, period)*tanh(lin(x, h))", "h\' = t0 + (1 - tick(t, period))*h"]',
    ])  # fmt: skip
    cell = cell_of(text)
    sizes = {"input": 3, "hidden": 4}
    params = cell.init_params(sizes=sizes, seed=0)
    rng = np.random.default_rng(0)
    xs = {"x": rng.standard_normal((6, 2, 3))}
    state = {"h": rng.standard_normal((2, 4))}
    for t0 in (0, 3):
        ref, _ = cell.reference(params, xs, state, t0=t0)
        for impl in (cell.numpy(), cell.torch()):
            got = impl.forward(params, xs, state, t0=t0).outputs
            got = got.numpy() if hasattr(got, "numpy") else got
            assert np.max(np.abs(got - np.asarray(ref, dtype=float))) < 1e-13


@pytest.mark.parametrize("equation, message", [
    ("h' = h*0**-1", "not finite"),
    ("h' = (h - h)**-1*h", "not finite"),
    ("h' = h/(h - h)", "division by zero"),
    ("h' = h*exp(100)", "float32"),
    ("h' = h*exp(exp(exp(exp(10))))", "float32"),
    ("h' = h + (1000000**8)**8", "float32"),
    ("h' = tanh(lin(x, h))\n + h", "one line of text"),
    ("h' = tanh(lin(x, h)) \r+ h", "one line of text"),
    ("h' = tanh(lin(x, h))\u2028", "one line of text"),
    ("h' = tanh(lin(x, \uff48))", "U\\+FF48"),
    ("h' = tanh(lin(x, h)) + 'x'", "quotes"),
    ('h\' = tanh(lin(x, h)) + "h\'"', "quotes"),
    ("h' = tanh(lin(x, h)) + h'h'", "syntax|unknown|cycle"),
])  # fmt: skip
def test_invalid_equations_are_refused_at_load(equation, message):
    text = f'name = "bad"\ncite = ["c"]\ninput = "x"\nstate = ["h"]\nequations = [{toml_string(equation)}]\n'
    with pytest.raises(SpecError, match=message) as info:
        parse_spec(text)
    assert info.value.column is not None


def test_irrational_constants_are_exact_and_keep_the_dtype(tmp_path):
    """exp(1) folds to E, which the NumPy printer spelled math.e (never imported; the audit now
    refuses it) and C as M_E (not in C99); exp(2) printed as numpy.exp(2), a float64 scalar
    that made float32 outputs float64."""
    equation = "h' = tanh(lin(x, h))*exp(1) + h*exp(2)/10 + tanh(exp(1))*h/10 + sigmoid(3)*h/10"
    cell = cell_of(f'name = "consts"\ncite = ["c"]\ninput = "x"\nstate = ["h"]\nequations = [{toml_string(equation)}]\n')
    exercise(cell, tmp_path)
    params = {k: v.astype(np.float32) for k, v in cell.init_params(3, 4).items()}
    xs = np.random.default_rng(0).standard_normal((3, 2, 3)).astype(np.float32)
    assert cell.numpy().forward(params, xs).outputs.dtype == np.float32
    assert str(cell.torch().forward(params, xs).outputs.dtype) == "torch.float32"


def test_non_ascii_is_welcome_in_comments():
    cell = cell_of(spec_text(eq_comment="σ(x) ⊙ h, «peephole»"))
    assert "σ(x)" in cell.spec.equations[0].text


@pytest.mark.parametrize("options, message", [
    ("modules = nan", "integer"),
    ("modules = inf", "integer"),
    ("modules = 4.5", "integer"),
    ("modules = true", "integer"),
    ('modules = "4"', "integer"),
    ("modules = 0", "integer from 1"),
    ("modules = 4, base = 1000000000000", "integer from 2"),
    ("modules = 40, base = 1000", "2\\*\\*53"),
    ("modules = 4, speed = 2", "unknown options"),
])  # fmt: skip
def test_invalid_buffer_options_are_refused_at_load(options, message):
    text = (Path(lv.cell.SPEC_DIR) / "clockwork_rnn.toml").read_text().replace("modules = 4", options)
    with pytest.raises(SpecError, match=message):
        parse_spec(text)


@pytest.mark.parametrize("mask, message", [
    ("\uff50eriod_in >= period_out", "ASCII"),
    ("period_in >= 1e999", "not finite"),
    ("period_in >= period_out\n", "ASCII"),
])  # fmt: skip
def test_invalid_masks_are_refused_at_load(mask, message):
    text = (Path(lv.cell.SPEC_DIR) / "clockwork_rnn.toml").read_text()
    with pytest.raises(SpecError, match=message):
        parse_spec(text.replace('"period_in >= period_out"', toml_string(mask)))


def test_names_are_bounded():
    with pytest.raises(SpecError, match="at most 64"):
        cell_of(spec_text(node="a" * 65))
    with pytest.raises(SpecError, match="at most 64"):
        cell_of(spec_text(name="a" * 65))
    cell_of(spec_text(node="a" * 64))


def test_unknown_buffer_initialiser_is_refused():
    text = (Path(lv.cell.SPEC_DIR) / "clockwork_rnn.toml").read_text()
    with pytest.raises(SpecError, match="unknown initialiser"):
        parse_spec(text.replace('"clockwork_periods"', '"os_system"'))


def test_buffer_option_table_matches_the_initialisers():
    from lstm_verify.params import BUFFER_INITS
    from lstm_verify.spec import BUFFER_OPTIONS

    assert set(BUFFER_OPTIONS) == set(BUFFER_INITS)


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
def test_special_files_are_not_read_without_bound(tmp_path):
    """/dev/zero once grew to 4.5 GB in 30 s (the size check trusted st_size)."""
    for special in ("/dev/zero", "/dev/urandom"):
        with pytest.raises(SpecError, match="not a regular file"):
            read_spec(special)
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)
    with pytest.raises(SpecError, match="not a regular file"):  # and does not wait for a writer
        read_spec(fifo)
    with pytest.raises(SpecError, match="not a regular file|cannot read"):
        read_spec(tmp_path)
    with pytest.raises(SpecError, match="cannot read"):
        read_spec(tmp_path / "missing.toml")


def test_oversized_file_is_refused(tmp_path):
    from lstm_verify.spec import MAX_FILE_BYTES

    path = tmp_path / "big.toml"
    path.write_bytes(b"#" * (MAX_FILE_BYTES + 1))
    with pytest.raises(SpecError, match="larger than"):
        read_spec(path)


def test_c_export_refuses_names_that_are_c_keywords_or_macros():
    for name in ("int", "NAN", "linux", "errno"):
        cell = cell_of(spec_text(p=name))
        with pytest.raises(LstmVerifyError, match="C keywords or macros"):
            export(cell, "c")
        export(cell, "numpy")  # Python has no such limit: the names live behind v_


def test_c_comment_is_inert():
    for text in ["*/", "/*", "??/", "a\\", "\n", "\x00", "\u2028", "é", "😀", "*/*/", "**//"]:
        safe = c_comment(text)
        assert "*/" not in safe and "/*" not in safe and "??" not in safe
        assert all(0x20 <= ord(ch) < 0x7F for ch in safe)


# ----------------------------------------------------------------------------- the audit


def test_audit_passes_every_catalog_cell_and_backend():
    """(Every export is audited as it is made: test_export exports every cell and target.)"""
    for name in lv.catalog():
        cell = lv.load(name)
        for backend in ("numpy", "torch"):
            audit_python(generate(cell.ir, backend), name)


def test_every_spec_function_passes_the_audit(tmp_path):
    """Each function of the spec vocabulary, printed by every backend, is on the allowlist."""
    text = "\n".join([
        'name = "vocabulary"', 'cite = ["test"]', 'input = "x"', 'state = ["h", "c"]',
        'equations = ["a = sigmoid(lin(x, h))", "g = tanh(lin(x))", "b = relu(lin(x, h)) + hard_sigmoid(c)",',
        '  "c\' = exp(-b*b)*c + a*g", "h\' = tanh(c\')"]',
    ])  # fmt: skip
    exercise(cell_of(text), tmp_path)


@pytest.mark.parametrize("evil", [
    "import os",
    "from os import system",
    "def forward(params):\n    import subprocess",
    "x = ().__class__.__bases__[0]",
    "eval('1')",
    "exec('1')",
    "__import__('os')",
    "open('f', 'w')",
    "getattr(object, 'x')",
    "def forward(params, inputs, state):\n    h = 1",
    "lambda: (yield)",
    "async def f(): pass",
    "x = b'bytes'",
    "x = numpy.load('f')",
])  # fmt: skip
def test_audit_rejects_what_generated_code_never_does(evil):
    with pytest.raises(GeneratedCodeError):
        audit_python(evil)


def test_a_module_failing_the_audit_is_never_executed(tmp_path):
    target = tmp_path / SENTINEL
    source = generate(lv.load("rnn_tanh").ir, "numpy") + f"\nopen({str(target)!r}, 'w')\n"
    with pytest.raises(GeneratedCodeError, match="call of 'open'"):
        runtime.load(source, "tampered")
    assert not target.exists()


# ----------------------------------------------------------------------------- properties

# examples per property: 25 by default (about 40 s for the three); LSTM_VERIFY_HOSTILE_EXAMPLES
# raises it for a deep run
EXAMPLES = int(os.environ.get("LSTM_VERIFY_HOSTILE_EXAMPLES", "25"))
TEXT = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=40)
TRICKY = st.sampled_from(["\n", '"""', "'''", "\\", "*/", "/*", "??/", "\r", "\x00", "\u2028",
                          "#", "'", '"', "\t", "\x7f", "${x}", "{}", "%s"])  # fmt: skip
HOSTILE_TEXT = st.lists(st.one_of(TEXT, TRICKY), max_size=6).map("".join)
IDENTIFIERS = st.one_of(st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,8}", fullmatch=True),
                        st.sampled_from(GENERATED_NAMES))  # fmt: skip
NAMES = st.one_of(IDENTIFIERS, IDENTIFIERS.map(lambda n: n + "_"), HOSTILE_TEXT)


def _check_or_refused(text: str, tmp: Path, c: bool):
    try:
        cell = cell_of(text)
    except SpecError:
        return False
    for f in tmp.iterdir():
        f.unlink()
    exercise(cell, tmp, c=c)
    return True


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])  # fmt: skip
@given(title=HOSTILE_TEXT, cite=st.lists(HOSTILE_TEXT, min_size=1, max_size=3), notes=HOSTILE_TEXT,
       comment=HOSTILE_TEXT)  # fmt: skip
def test_any_free_text_is_data(tmp_path_factory, title, cite, notes, comment):
    tmp = tmp_path_factory.mktemp("text")
    accepted = _check_or_refused(spec_text(title=title, cite=cite, notes=notes), tmp, c=True)
    assert accepted  # free text is never a reason to refuse a spec
    _check_or_refused(spec_text(eq_comment=comment), tmp, c=False)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])  # fmt: skip
@given(names=st.lists(IDENTIFIERS, min_size=4, max_size=4, unique=True))
def test_any_identifiers_are_refused_or_exact(tmp_path_factory, names):
    """Names drawn from identifiers and the generator's own names: the spec is refused with a
    SpecError (a keyword, a reserved word, a clash with a derived name), or everything
    generated is audited, inert and exact."""
    tmp = tmp_path_factory.mktemp("names")
    x, h, node, p = names
    accepted = _check_or_refused(spec_text(x=x, h=h, node=node, p=p), tmp, c=False)
    event("accepted" if accepted else "refused")


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])  # fmt: skip
@given(name=NAMES, role=st.sampled_from(["x", "h", "node", "p", "name"]))
def test_any_text_as_a_name_is_refused_or_exact(tmp_path_factory, name, role):
    tmp = tmp_path_factory.mktemp("names")
    accepted = _check_or_refused(spec_text(**{role: name}), tmp, c=False)
    event("accepted" if accepted else "refused")
