"""The functions added for modern cells: log, softplus, max, min, division by a state, per-head
masks and state ranges. Each is checked against mpmath (values and derivatives), torch autograd
(the tie convention of max and min), a spec that uses all of them run through the oracles of
``lstm-verify check``, and its C export."""

from __future__ import annotations

import mpmath
import numpy as np
import pytest
import sympy

import lstm_verify as lv
from lstm_verify.check import backward_vs_autograd, backward_vs_finite_differences, forward_vs_mpmath
from lstm_verify.errors import ShapeError, SpecError
from lstm_verify.functions import FUNCTIONS, maximum, minimum, softplus
from lstm_verify.reference import _compiled
from lstm_verify.cell import Cell
from lstm_verify.ir import build_ir
from lstm_verify.spec import parse_spec

a, b = sympy.symbols("a b", real=True)

EVERY_NEW = """
name = "every_new"
cite = ["test: log, softplus, max, min and a division by a state"]
input = "x"
state = ["h", "n", "m"]
ranges = { n = [0.5, 1.5] }
buffers = { head = { init = "heads", heads = 2 } }
masks = { W_g_h = "head_in == head_out" }
equations = [
  "g = lin(x, h)",
  "m' = max(log(sigmoid(g)) + m, lin(x, h))",
  "n' = exp(-m')*n + softplus(lin(x, h))",
  "h' = tanh(min(g, h))*log(n')/n' + h/n",
]
"""


def _every_new(tmp_path):
    path = tmp_path / "every_new.toml"
    path.write_text(EVERY_NEW)
    return lv.load(path)


@pytest.mark.parametrize("expr", [sympy.log(a), softplus(a), maximum(a, b), minimum(a, b)], ids=str)
def test_exact_derivatives_match_mpmath_numeric_differentiation(expr):
    rng = np.random.default_rng(0)
    names, fn = _compiled(expr)
    for var in sorted(expr.free_symbols, key=str):
        dnames, dfn = _compiled(sympy.diff(expr, var))
        for _ in range(20):
            point = {"a": mpmath.mpf(rng.uniform(0.1, 30)), "b": mpmath.mpf(rng.uniform(0.1, 30))}
            with mpmath.workdps(40):
                def f(v):
                    return fn(*[v if n == var.name else point[n] for n in names])

                numeric = mpmath.diff(f, point[var.name])
                exact = dfn(*[point[n] for n in dnames])
            assert abs(numeric - exact) <= mpmath.mpf(10) ** -25 * max(1, abs(exact)), (expr, var, point)


def _one_step(equation, bias, dtype, backend):
    """h' = equation with lin(x, h) equal to ``bias`` exactly (zero weights, zero state): the
    generated code's value of a function at the points ``bias``."""
    import torch

    spec = parse_spec(f'name = "one"\ncite = ["t"]\nstate = ["h"]\nequations = ["{equation}"]')
    cell = Cell(build_ir(spec))
    H = len(bias)
    p = {"W_h_x": np.zeros((H, 1), dtype), "W_h_h": np.zeros((H, H), dtype), "b_h": np.asarray(bias, dtype)}
    x, s = {"x": np.zeros((1, 1, 1), dtype)}, {"h": np.zeros((1, H), dtype)}
    conv = torch.as_tensor if backend == "torch" else np.asarray
    impl = cell.torch() if backend == "torch" else cell.numpy()
    out = impl.forward({k: conv(v) for k, v in p.items()}, {"x": conv(x["x"])}, {"h": conv(s["h"])}).outputs
    return np.asarray(out)[0, 0]


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_softplus_and_log_sigmoid_are_finite_and_accurate_at_extremes(dtype, backend):
    """The generated NumPy and torch code against mpmath, including where log(1 + exp(x)) and
    log(sigmoid(x)) as written overflow or give log(0)."""
    xs = np.array([-1000, -120, -50, -1, 0, 1, 20, 39, 41, 50, 120, 1000], dtype=dtype)
    f = FUNCTIONS["softplus"]
    eps, tiny = np.finfo(dtype).eps, np.finfo(dtype).tiny
    for equation, sign in (("h' = softplus(lin(x, h))", 1), ("h' = log(sigmoid(lin(x, h)))", -1)):
        got = _one_step(equation, xs, dtype, backend)
        exact = np.array([sign * float(f.mpmath(mpmath.mpf(sign * float(x)))) for x in xs])
        assert got.dtype == dtype
        assert np.all(np.isfinite(got)), (equation, got)
        assert np.all(np.abs(got - exact) <= 4 * eps * np.maximum(np.abs(exact), tiny)), (equation, got, exact)


def test_log_of_sigmoid_is_written_as_minus_softplus():
    spec = parse_spec('name = "t"\ncite = ["t"]\nstate = ["h"]\nequations = ["h\' = log(sigmoid(lin(x, h)))"]')
    (eq,) = spec.equations
    assert eq.expr.has(softplus) and not eq.expr.has(sympy.log)
    cell = Cell(build_ir(spec))
    p = cell.init_params(input_size=1, hidden_size=1)
    p["b_h"][:] = -800.0
    run = cell.numpy().forward(p, {"x": np.zeros((1, 1, 1))}, {"h": np.zeros((1, 1))})
    assert run.outputs[0, 0, 0] == -800.0  # log(sigmoid(-800)) = -800 - log1p(e^-800)


def test_the_log_of_a_negative_constant_is_refused():
    with pytest.raises(SpecError, match="complex"):
        parse_spec('name = "t"\ncite = ["t"]\nstate = ["h"]\nequations = ["h\' = h + log(-2)"]')


@pytest.mark.parametrize("op", ["max", "min"])
def test_ties_give_each_argument_half_as_torch_does(op):
    """h' = op(lin(x, h), h) with W_h_h = I, W_h_x = 0, b = 0: the two arguments are equal
    exactly. The generated backward (NumPy and torch) and torch autograd through
    torch.maximum/minimum must agree: half the gradient to each argument."""
    import torch

    spec = parse_spec(f'name = "tie"\ncite = ["t"]\nstate = ["h"]\nequations = ["h\' = {op}(lin(x, h), h)"]')
    cell = Cell(build_ir(spec))
    H = 3
    p = {"W_h_x": np.zeros((H, 2)), "W_h_h": np.eye(H), "b_h": np.zeros(H)}
    x = {"x": np.ones((1, 1, 2))}
    s = {"h": np.array([[0.3, -0.7, 1.1]])}
    d_out = np.array([[[1.0, 2.0, -1.0]]])
    for impl, conv in ((cell.numpy(), np.asarray), (cell.torch(), torch.as_tensor)):
        run = impl.forward({k: conv(v) for k, v in p.items()}, {k: conv(v) for k, v in x.items()},
                           {k: conv(v) for k, v in s.items()}, save=True)  # fmt: skip
        g = impl.backward({k: conv(v) for k, v in p.items()}, run.cache, conv(d_out))
        np.testing.assert_array_equal(np.asarray(g.params["W_h_h"]), 0.5 * np.outer(d_out[0, 0], s["h"][0]))
        np.testing.assert_array_equal(np.asarray(g.state["h"]), d_out[0])  # 1/2 through W = I, 1/2 direct
    tp = {k: torch.tensor(v, requires_grad=True) for k, v in p.items()}
    th = torch.tensor(s["h"], requires_grad=True)
    a_ = th @ tp["W_h_h"].T + torch.tensor(x["x"][0]) @ tp["W_h_x"].T + tp["b_h"]
    out = (torch.maximum if op == "max" else torch.minimum)(a_, th)
    (out * torch.tensor(d_out[0])).sum().backward()
    np.testing.assert_array_equal(tp["W_h_h"].grad.numpy(), 0.5 * np.outer(d_out[0, 0], s["h"][0]))
    np.testing.assert_array_equal(th.grad.numpy(), d_out[0])


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_max_gradients_keep_the_dtype(backend):
    """h' = max(lin(x, h), 2) at lin = 1, 2, 3 in float32: gradients 0, 1/2, 1, in float32."""
    import torch

    spec = parse_spec('name = "m"\ncite = ["t"]\nstate = ["h"]\nequations = ["h\' = max(lin(x, h), 2)"]')
    cell = Cell(build_ir(spec))
    conv = torch.as_tensor if backend == "torch" else np.asarray
    impl = cell.torch() if backend == "torch" else cell.numpy()
    f32 = np.float32
    p = {"W_h_x": conv(np.zeros((3, 1), f32)), "W_h_h": conv(np.zeros((3, 3), f32)),
         "b_h": conv(np.array([1, 2, 3], f32))}  # fmt: skip
    run = impl.forward(p, {"x": conv(np.zeros((1, 1, 1), f32))}, {"h": conv(np.zeros((1, 3), f32))}, save=True)
    g = np.asarray(impl.backward(p, run.cache, conv(np.ones((1, 1, 3), f32))).params["b_h"])
    assert g.dtype == np.float32 and g.tolist() == [0.0, 0.5, 1.0]


def test_a_spec_using_every_new_function_passes_the_oracles(tmp_path):
    cell = _every_new(tmp_path)
    e, _ = forward_vs_mpmath(cell, np.float64)
    assert e.normwise <= 1e-13, str(e)
    e32, _ = forward_vs_mpmath(cell, np.float32)
    assert e32.normwise <= 2e-5, str(e32)
    assert backward_vs_autograd(cell, T=20) <= 1e-10
    rel, ok = backward_vs_finite_differences(cell, T=20)
    assert ok and rel <= 1e-6


def test_a_spec_using_every_new_function_exports_to_c(tmp_path):
    from test_export import _compile, _problem, _run_c

    from lstm_verify.export import export

    cell = _every_new(tmp_path)
    lib = _compile(tmp_path, "every_new", export(cell, "c"))
    for dtype, limit in ((np.float64, 1e-13), (np.float32, 2e-6)):
        sizes, p, x, s, _ = _problem(cell, dtype=dtype)
        out, final, _ = _run_c(lib, cell, dtype, sizes, p, x, s)
        ref_out, ref_state = cell.reference(p, x, s)
        assert np.max(np.abs(out - ref_out.astype(float))) <= limit * np.max(np.abs(ref_out.astype(float)))
        for k in ref_state:
            r = ref_state[k].astype(float)
            assert np.max(np.abs(final[k] - r)) <= limit * np.max(np.abs(r)), k


def test_heads_make_recurrent_weights_block_diagonal():
    cell = lv.load("slstm")
    p = cell.init_params(input_size=2, hidden_size=8)
    assert p["head"].tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    w = next(w for w in cell.ir.weights if w.name == "W_it_h")
    keep = w.mask.evaluate({"head": p["head"]})
    assert np.array_equal(keep, np.kron(np.eye(4), np.ones((2, 2))).astype(bool))
    # entries outside the blocks change nothing and get no gradient
    x = {"x": np.random.default_rng(0).standard_normal((3, 1, 2))}
    s = {k: np.full((1, 8), 0.5) for k in ("h", "c", "n", "m")}
    run = cell.numpy().forward(p, x, s, save=True)
    q = dict(p, W_it_h=p["W_it_h"] + 10 * ~keep)
    np.testing.assert_array_equal(cell.numpy().forward(q, x, s).outputs, run.outputs)
    g = cell.numpy().backward(p, run.cache, np.ones_like(run.outputs))
    assert np.all(g.params["W_it_h"][~keep] == 0) and np.any(g.params["W_it_h"][keep] != 0)
    with pytest.raises(ShapeError, match="4 heads"):
        cell.init_params(input_size=2, hidden_size=3)


@pytest.mark.parametrize("ranges, message", [
    ("{ q = [0, 1] }", "not a state"),
    ("{ n = [1, 0] }", "low < high"),
    ("{ n = [0, inf] }", "finite"),
    ("{ n = 3 }", "low, high"),
    ("[1, 2]", "must map"),
])  # fmt: skip
def test_bad_ranges_are_refused_naming_the_problem(ranges, message):
    text = f'name = "t"\ncite = ["t"]\nstate = ["h", "n"]\nranges = {ranges}\n' \
           'equations = ["h\' = tanh(lin(x, h))", "n\' = n + h\'"]'  # fmt: skip
    with pytest.raises(SpecError, match=message):
        parse_spec(text)


def test_drawn_states_respect_the_ranges():
    from hypothesis import given, settings

    from lstm_verify.strategies import cases

    cell = lv.load("slstm")

    @settings(max_examples=15, deadline=None, database=None)
    @given(cases(cell, max_size=4))
    def run(case):
        assert np.all(case.state["n"] >= 0)
        assert np.all(case.state["n"] <= 1)

    run()
