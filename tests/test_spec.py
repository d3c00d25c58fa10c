"""Spec files under attack: every failure is a fast SpecError that says where, and nothing runs.

Most cases start from one small valid spec (``PROBE``) and replace a single equation. A ``§``
written inside an equation marks the token the error's column must point at; the helpers strip
it before the spec is written.
"""

from __future__ import annotations

import sys
import tomllib

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import lstm_verify as lv
from lstm_verify.cell import SPEC_DIR
from lstm_verify.errors import SpecError
from lstm_verify.functions import SPEC_FUNCTIONS
from lstm_verify.ir import build_ir
from lstm_verify.spec import MAX_EQUATION_CHARS, parse_spec, read_spec

MARK = "§"
HEADER = """\
name = "probe"
cite = ["lstm-verify test suite"]
input = "x"
state = ["h", "c"]
diagonal = ["p"]
"""
PROBE = [
    "g = sigmoid(lin(x, h) + p*c)",
    "c' = g*c + (1 - g)*tanh(lin(x, h))",
    "h' = tanh(c')",
]
HEADER_NO_DIAGONAL = HEADER.replace('diagonal = ["p"]\n', "")
MAX_LOAD_CALLS = 1_000_000  # work bound on rejecting any hostile spec file; the most seen is 2e5


# --------------------------------------------------------------------------- helpers


def toml_str(s: str) -> str:
    """``s`` as a TOML basic string, escaping what TOML forbids raw."""
    out = []
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def spec_text(equations, extra="", header=HEADER) -> str:
    body = "".join(f"  {toml_str(e)},\n" for e in equations)
    return f"{header}equations = [\n{body}]\n{extra}"


def with_equation(lhs, rhs, equations=PROBE):
    """``equations`` with the one defining ``lhs`` replaced by ``lhs = rhs``."""
    out = list(equations)
    i = next(i for i, e in enumerate(out) if e.split("=")[0].strip() == lhs)
    out[i] = f"{lhs} = {rhs}"
    return out


def unmark(equations):
    """Strip the ``§`` marker: (equations, the marked equation or None, its 1-based column)."""
    clean, faulty, column = [], None, None
    for e in equations:
        if MARK in e:
            column = e.index(MARK) + 1
            e = e.replace(MARK, "", 1)
            faulty = e
        clean.append(e)
    return clean, faulty, column


def write(tmp_path, text, name="probe.toml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load_error(path) -> SpecError:
    """The SpecError loading ``path`` raises, which must name the file and come after bounded
    work (counted in Python calls, which a loaded machine does not change)."""
    calls, err = count_calls(lv.load, path)
    assert calls < MAX_LOAD_CALLS, f"{calls} calls to reject {path.name}"
    assert err.path == str(path)
    assert path.name in str(err)
    return err


def assert_points_at(err: SpecError, equation: str, column: int | None):
    """The error names ``equation`` (and its left-hand side) and, if given, exactly ``column``."""
    lhs = equation.split("=")[0].strip()
    assert err.equation is not None and err.equation.startswith(equation[:40])
    assert lhs in err.equation[:40] and f"equation {err.equation!r}" in str(err)
    assert isinstance(err.column, int), str(err)
    if column is None:
        assert 1 <= err.column <= len(equation) + 1, str(err)
    else:
        assert err.column == column, f"column {err.column}, expected {column}: {err}"
    assert f"column {err.column}" in str(err)


def parse_and_build(text, path="<fuzz>"):
    """Parse and build; only SpecError may escape."""
    try:
        return build_ir(parse_spec(text, path))
    except SpecError as err:
        assert err.path == path and str(err).startswith(path)
        return None


# --------------------------------------------------------------------------- valid specs


def test_probe_spec_is_valid(tmp_path):
    ir = lv.load(write(tmp_path, spec_text(PROBE))).ir
    assert ir.name == "probe" and {n for n, _ in ir.states} == {"h", "c"}


@pytest.mark.parametrize("name", lv.catalog())
def test_catalog_specs_parse_and_build(name):
    path = SPEC_DIR / f"{name}.toml"
    spec = read_spec(path)
    assert spec.name == name and spec.path == str(path)
    assert parse_spec(path.read_text(encoding="utf-8"), str(path)) == spec
    ir = build_ir(spec)
    assert ir.output in {n for n, _ in ir.states}
    assert {ir.new(s) for s, _ in ir.states} <= set(ir.node_map)
    assert lv.load(name).ir.spec.sha256 == spec.sha256


def test_longest_allowed_chain_builds():
    """200 equations, each feeding the next through a lin() argument node: no recursion limit."""
    chain = ["a0 = tanh(lin(x, h))"] + [f"a{i} = lin(x, 2*a{i - 1})" for i in range(1, 198)]
    text = spec_text(chain + ["c' = a197*c", "h' = tanh(c')"], header=HEADER_NO_DIAGONAL)
    ir = build_ir(parse_spec(text))
    assert len(ir.nodes) > 3 * 197


# --------------------------------------------------------------------------- hostile equations

HOSTILE_RHS = [
    # calls outside the vocabulary
    "tanh(lin(x, h)) + §open(1)",
    'open(§"x", "w")',
    "open('x')",  # ' after a letter reads as a prime, so this is a syntax error
    'eval(§"1")',
    'exec(§"h")',
    "§print(1)",
    "§globals()",
    "tanh(c') * §getattr(h, 1)",
    # attribute access
    "§h.__class__",
    "§x.real",
    "tanh(c') + §h.__class__.__mro__",
    # imports
    '__import__(§"os")',
    '__import__(§"os").system("true")',
    # lambdas and comprehensions
    "§lambda: h",
    "§(lambda: h)()",
    "§[h for h in x]",
    "§{h for h in x}",
    "§{h: h for h in x}",
    "§(h for h in x)",
    "§[h]",
    "§{h}",
    "§{h: h}",
    "§(h, h)",
    # subscripts
    "§h[0]",
    "tanh(c') + §h[0:1]",
    # huge powers and constants
    "9**§9**9",
    "h**§9**9**9",
    "h**§10**1000",
    "10**§1000",
    "h*2**§100",
    "h**§-9",
    "h**§0.5",
    "h**§x",
    "§1e7*h",
    "§1e309*h",
    "h*§" + "9" * 500,
    # dunder and unknown names
    "§__h",
    "tanh(c') + §__builtins__",
    "§__import__",
    "§y",
    "§x'",
    # string-like constants
    '§"abc"',
    '§"x"*h',
    "h + 'x'",
    'f§"{h}"',
    "f'{h}'",
    'b§"x"*h',
    "b'x'",
    "§1j*h",
    "h + §2j",
    "§...",
    "h*§...",
    "§None",
    "§True*h",
    # argument forms
    "§tanh(*h)",
    "§tanh(x=h)",
    "§tanh(h, h)",
    "§lin(*x)",
    "lin(x, foo=§1)",
    "lin(x, **§h)",
    "lin(x, bias=§open(1))",
    "lin(§lin(x))",
    "lin(§1)",
    # other Python syntax
    "(§y := h)",
    "§h if h else x",
    "§h and h",
    "§h or x",
    "§not h",
    "§~h",
    "§h < x",
    "§h == h",
    "§h @ h",
    "§h // h",
    "§h % h",
    "§h / 0",
    "§await h",
    "yield h",
    "h; import os",
    "h\n+ 1",
    "h\x00",
    "",
    "h +",
    "—h",
]


@pytest.mark.parametrize("rhs", HOSTILE_RHS, ids=lambda r: repr(r.replace(MARK, ""))[:40])
def test_hostile_right_hand_side(tmp_path, rhs):
    equations, faulty, column = unmark(with_equation("h'", rhs))
    path = write(tmp_path, spec_text(equations))
    assert_points_at(load_error(path), faulty or equations[-1], column)


@pytest.mark.parametrize(
    "equations, extra, message",
    [
        (with_equation("h'", "tanh(c') + §x"), "", "size mismatch: 'x' has size 'input'"),
        (with_equation("h'", "tanh(lin(x + §h))"), "", "size mismatch: 'h' has size 'hidden'"),
        (with_equation("h'", "tanh(lin(§p*x))"), "", "'p' has size 'hidden'"),
        (with_equation("h'", "tanh(§c')"), 'sizes = { h = "proj" }', "has size 'hidden'"),
        (with_equation("h'", "tanh(lin(x, h, §h'))"), "", "share the weight name"),
    ],
    ids=["add-input-to-hidden", "lin-arg-mixes-sizes", "diagonal-on-input", "proj", "weight-clash"],
)
def test_size_mismatch(tmp_path, equations, extra, message):
    equations, faulty, column = unmark(equations)
    err = load_error(write(tmp_path, spec_text(equations, extra)))
    assert_points_at(err, faulty, column)
    assert message in str(err)


@pytest.mark.parametrize(
    "equations",
    [
        ["a = sigmoid(lin(x, §b))", "b = tanh(lin(x, a))", *PROBE],
        ["a = sigmoid(§b)", "b = tanh(a)", *with_equation("h'", "tanh(c') * a*b")],
        with_equation("g", "sigmoid(lin(x, §c') + p*c)"),
        with_equation("h'", "tanh(c') + §h'"),
        with_equation("h'", "tanh(lin(x, §h'))"),
    ],
    ids=["through-lin", "direct", "new-state", "self", "self-through-lin"],
)
def test_cycle_between_equations(tmp_path, equations):
    equations, faulty, column = unmark(equations)
    err = load_error(write(tmp_path, spec_text(equations)))
    assert "cycle between equations" in err.detail
    assert_points_at(err, faulty, column)


@pytest.mark.parametrize(
    "equations, message",
    [
        (["§__a = tanh(lin(x, h))", *PROBE], "expected 'name = expression'"),
        (["§x = tanh(h)", *PROBE], "cannot assign to 'x', which is a input"),
        (["§h = tanh(x)", *PROBE], "write h' for its new value"),
        (["§x' = tanh(h)", *PROBE], "only state variables take a prime"),
        ([*PROBE, "§g = tanh(h)"], "cannot assign to 'g', which is a node"),
        ([*PROBE, "§h' = tanh(c')"], "\"h'\" is defined twice"),
        ([*PROBE, "§= h"], "expected 'name = expression'"),
        ([*PROBE, "§a == h"], "expected 'name = expression'"),
    ],
)
def test_bad_left_hand_side(tmp_path, equations, message):
    equations, faulty, column = unmark(equations)
    err = load_error(write(tmp_path, spec_text(equations)))
    assert message in err.detail
    assert_points_at(err, faulty, column)


def test_column_counts_from_the_start_of_the_equation(tmp_path):
    equation = "  h' =   tanh(lin(x, h)) +  open (1)"
    path = write(tmp_path, spec_text(with_equation("h'", "x")[:-1] + [equation]))
    assert_points_at(load_error(path), equation, equation.index("open") + 1)


# --------------------------------------------------------------------------- sizes and nesting


@pytest.mark.parametrize(
    "rhs, column, message",
    [
        ("(" * 10_000 + "h" + ")" * 10_000, MAX_EQUATION_CHARS + 1, "characters long"),
        ("-" * 10_000 + "h", MAX_EQUATION_CHARS + 1, "characters long"),
        ("h" + "+h" * 50_000, MAX_EQUATION_CHARS + 1, "characters long"),  # 100 KB equation
        ("(" * 400 + "h" + ")" * 400, len("h' = ") + 49, "nesting deeper than"),
        ("-" * 990 + "h", len("h' = ") + 49, "nested deeper than"),
        ("tanh(" * 100 + "h" + ")" * 100, len("h' = ") + 5 * 48 + 5, "nesting deeper than"),
        ("h" + "+h" * 400, len("h' = ") + 1, "nested deeper than"),
    ],
    ids=["parens-10000", "minus-10000", "100KB", "parens-400", "minus-990", "calls-100", "sum-400"],
)
def test_deep_or_long_equation(tmp_path, rhs, column, message):
    equations = with_equation("h'", rhs)
    err = load_error(write(tmp_path, spec_text(equations)))
    assert message in err.detail
    assert_points_at(err, equations[-1], column)


@pytest.mark.parametrize(
    "text, message",
    [
        (spec_text(with_equation("h'", "h" + "+h" * 500_000)), "bytes"),  # a 1 MB equation
        (spec_text(PROBE) + "#" * 1_000_000 + "\n", "bytes"),  # a 1 MB file
        (spec_text(PROBE, "notes = " + "[" * 20_000 + "]" * 20_000), "nested too deeply"),
        (spec_text(PROBE, "notes = " + "{a=" * 20_000 + "1" + "}" * 20_000), "nested too deeply"),
        (spec_text(PROBE + [f"a{i} = h" for i in range(300)]), "at most 200"),
    ],
    ids=["1MB-equation", "1MB-file", "deep-toml-array", "deep-toml-table", "300-equations"],
)
def test_oversized_or_overnested_file(tmp_path, text, message):
    """Rejected, naming the file, after bounded work: the Python calls made while loading and
    while parsing are counted (a measure machine load cannot change, unlike time), and stay
    under MAX_CALLS however large the text (the largest case makes about 5000)."""
    path = write(tmp_path, text)
    for load, arg in ((lv.load, path), (lambda t: parse_spec(t, str(path)), text)):
        calls, err = count_calls(load, arg)
        assert message in err.detail and err.path == str(path)
        assert calls < MAX_CALLS, f"{calls} calls to reject a {len(text)}-character spec"


MAX_CALLS = 25_000


def count_calls(fn, arg):
    """(Python and builtin function calls made by fn(arg), the SpecError it raised)."""
    calls = 0

    def profile(frame, event, _):
        nonlocal calls
        if event in ("call", "c_call"):
            calls += 1

    sys.setprofile(profile)
    try:
        fn(arg)
    except SpecError as exc:
        error = exc
    else:
        error = None
    finally:
        sys.setprofile(None)
    assert error is not None, "no SpecError"
    return calls, error


# --------------------------------------------------------------------------- structure and TOML


@pytest.mark.parametrize(
    "text, message",
    [
        (spec_text(PROBE, "foo = 1\n"), "unknown keys ['foo']"),
        (spec_text(PROBE, "[layouts.t]\ntarget = \"x\"\ntensors = { w = [\"b_h\"] }\nfoo = 1\n"),
         "unknown keys ['foo']"),  # fmt: skip
        (HEADER + "[equations]\nh = \"tanh(lin(x, h))\"\n", "'equations' must be a list"),
        (HEADER + "equations = \"h' = tanh(lin(x, h))\"\n", "'equations' must be a list"),
        (HEADER + "equations = [1, 2]\n", "'equations' must be a list"),
        (HEADER + "equations = []\n", "'equations' is empty"),
        (HEADER, "missing required key 'equations'"),
        (spec_text(PROBE, "sizes = { h = 3 }\n"), "'sizes' must map"),
        (spec_text(PROBE, "sizes = 3\n"), "'sizes' must map"),
        (spec_text(PROBE, 'sizes = { y = "proj" }\n'), "'sizes' names unknown variables"),
        (spec_text(PROBE, header=HEADER.replace('["h", "c"]', '"h"')), "'state' must be a list"),
        (spec_text(PROBE, header=HEADER.replace('"probe"', "3")), "'name' must be a string"),
        (spec_text(PROBE, header=HEADER.replace('"probe"', '"Probe!"')), "'name' must be"),
        (spec_text(PROBE, header=HEADER.replace('"x"', '"__x"')), "'__x' is not a valid name"),
        (spec_text(PROBE, header=HEADER.replace('"x"', '"lin"')), "'lin' is reserved"),
        (spec_text(PROBE, header=HEADER.replace('["lstm-verify test suite"]', "[]")),
         "'cite' must be a non-empty list"),  # fmt: skip
        (spec_text(PROBE, header=HEADER.replace('["p"]', '["p", "q"]')), "never used"),
        (spec_text(PROBE, 'masks = { W_g_x = "__import__(\'os\')" }\n'), "mask of W_g_x"),
        (spec_text(PROBE, 'masks = { W_nope = "1 < 2" }\n'), "unknown weights ['W_nope']"),
        (spec_text(PROBE, "[layouts.t]\ntarget = \"x\"\ntensors = { w = [\"nope\"] }\n"),
         "'nope' is not a parameter"),  # fmt: skip
        (spec_text(PROBE)[:-3], "not valid TOML"),  # unclosed array
        ("name = = =\n", "not valid TOML"),
        ('name = "a"\nname = "b"\n', "not valid TOML"),
        (spec_text(PROBE).replace('"probe"', "'''probe"), "not valid TOML"),
        (spec_text(PROBE) + "\x00", "not valid TOML"),
    ],
    ids=[
        "unknown-key", "unknown-layout-key", "equations-table", "equations-string",
        "equations-ints", "equations-empty", "equations-missing", "sizes-int", "sizes-not-table",
        "sizes-unknown", "state-string", "name-int", "name-bad", "dunder-input", "reserved-input",
        "cite-empty", "diagonal-unused", "mask-hostile", "mask-unknown-weight", "layout-unknown",
        "toml-unclosed", "toml-garbage", "toml-duplicate-key", "toml-unclosed-string", "toml-nul",
    ],  # fmt: skip
)
def test_malformed_structure(tmp_path, text, message):
    err = load_error(write(tmp_path, text))
    assert message in str(err)


def test_invalid_toml_reports_the_path(tmp_path):
    path = write(tmp_path, "name = [\n", name="broken spec.toml")
    err = load_error(path)
    assert str(err).startswith(str(path)) and "not valid TOML" in err.detail
    assert err.equation is None and err.column is None


def test_state_never_updated(tmp_path):
    equations = [e for e in PROBE if not e.startswith("h'")]
    err = load_error(write(tmp_path, spec_text(equations)))
    assert "state 'h' is never updated: add an equation for h'" in str(err)


@pytest.mark.parametrize("make", ["missing", "directory", "latin-1"])
def test_unreadable_file_is_a_spec_error_naming_it(tmp_path, make):
    path = tmp_path / "cell.toml"
    if make == "directory":
        path.mkdir()
    elif make == "latin-1":
        path.write_bytes(spec_text(PROBE).replace("probe", "café").encode("latin-1"))
    err = load_error(path)
    assert not isinstance(err, OSError) and err.equation is None
    with pytest.raises(SpecError, match="cell.toml"):
        read_spec(str(path))


# --------------------------------------------------------------------------- nothing runs

PAYLOADS = [
    '__import__("os").system("touch {p}")',
    "__import__('os').system('touch {p}')",
    'open("{p}", "w")',
    "open('{p}', 'w')",
    'exec("open(\'{p}\', \'w\')")',
    'eval("__import__(\'os\').system(\'touch {p}\')")',
    '(lambda: open("{p}", "w"))()',
    '[open("{p}", "w") for _ in x]',
    'tanh(h).__class__.__init__.__globals__["os"].system("touch {p}")',
    'h if open("{p}", "w") else h',
    '(y := open("{p}", "w"))',
    'lin(x, bias=open("{p}", "w"))',
]


@pytest.mark.parametrize("payload", PAYLOADS)
@pytest.mark.parametrize("where", ["rhs", "inside", "mask"])
def test_nothing_is_executed(tmp_path, payload, where):
    sentinel = tmp_path / "pwned"
    code = payload.format(p=sentinel)
    extra = ""
    if where == "rhs":
        equations = with_equation("h'", code)
    elif where == "inside":
        equations = with_equation("h'", f"tanh(c') * sigmoid({code})")
    else:
        equations, extra = PROBE, f"masks = {{ W_g_x = {toml_str(code)} }}\n"
    err = load_error(write(tmp_path, spec_text(equations, extra)))
    assert err.equation is not None and err.column is not None
    assert not sentinel.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["probe.toml"]


# --------------------------------------------------------------------------- fuzzing

NAMES = ["x", "h", "c", "g", "p", "h'", "c'", "q", "__x"]
TOKENS = NAMES + [f"{f}(" for f in SPEC_FUNCTIONS] + [
    "lin(", "(", ")", ",", "'", " ", "+", "-", "*", "/", "**", ".", "[", "]", "=",
    "0", "1", "2", "9", "1e9", "0.5", "bias=", "true", "false", '"', "#", ":", "\n",
]  # fmt: skip
token_text = st.lists(st.sampled_from(TOKENS), max_size=30).map("".join)
# well-formed expressions over the vocabulary; about a quarter of them build
expr = st.recursive(
    st.sampled_from(["x", "h", "c", "g", "p", "h'", "c'", "1", "2"]),
    lambda sub: st.one_of(
        st.tuples(sub, st.sampled_from(["+", "-", "*", "/", "**"]), sub).map("".join),
        st.tuples(st.sampled_from([*SPEC_FUNCTIONS, "lin", ""]), sub).map("{0[0]}({0[1]})".format),
        st.tuples(sub, sub).map(lambda t: f"lin({t[0]}, {t[1]})"),
        sub.map(lambda s: "-" + s),
    ),
    max_leaves=12,
)


@settings(max_examples=300)
@given(st.text())
def test_fuzz_whole_file(text):
    parse_and_build(text)


@settings(max_examples=100, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=2000))
def test_fuzz_file_bytes(tmp_path, data):
    path = tmp_path / "fuzz.toml"
    path.write_bytes(data)
    try:
        build_ir(read_spec(path))
    except SpecError as err:
        assert err.path == str(path)


@settings(max_examples=300)
@given(rhs=st.one_of(st.text(), token_text, expr))
def test_fuzz_right_hand_side(rhs):
    assert tomllib.loads("v = " + toml_str(rhs))["v"] == rhs  # the fuzz reaches the equation
    ir = parse_and_build(spec_text(with_equation("h'", rhs)))
    if ir is not None:
        assert "h_" in ir.node_map


@settings(max_examples=200)
@given(
    equations=st.lists(
        st.tuples(st.sampled_from(["g", "c'", "h'", "a", "b", "x", "h'", "__a"]),
                  st.one_of(expr, token_text)),  # fmt: skip
        min_size=1,
        max_size=6,
    )
)
def test_fuzz_equation_lists(equations):
    parse_and_build(spec_text([f"{lhs} = {rhs}" for lhs, rhs in equations]))
