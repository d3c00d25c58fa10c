"""Reductions in the spec language: parsing, sizes, errors, and what show prints."""

from __future__ import annotations

import numpy as np
import pytest

from hypothesis import given, settings, strategies as st

import lstm_verify as lv
from lstm_verify import strategies as lst
from lstm_verify.cli import main
from lstm_verify.derive import ONES, REDUCE, local_jacobian
from lstm_verify.errors import SpecError
from lstm_verify.cell import Cell
from lstm_verify.ir import Reduce, build_ir
from lstm_verify.reference import reference_forward
from lstm_verify.spec import SCALAR, parse_spec

HEAD = 'name = "t"\ncite = ["test"]\ninput = "x"\nstate = ["h"]\ndiagonal = ["a", "b"]\n'


def spec(*equations, head=HEAD):
    return head + "equations = [" + ", ".join(f'"{e}"' for e in equations) + "]\n"


def test_reduction_values_have_size_one_and_broadcast():
    ir = build_ir(parse_spec(spec("u = lin(x, h)", "m = mean(u)", "s = sqrt(var(u) + 1e-5)",
                                  "h' = tanh(a*(u - m)/s + b)")))  # fmt: skip
    assert ir.dims["m"] == ir.dims["s"] == SCALAR and ir.dims["u"] == "hidden"
    reduces = {n.name: n for n in ir.nodes if isinstance(n, Reduce)}
    assert {(n.op, n.args) for n in reduces.values()} == {("mean", ("u",)), ("var", ("u",))}
    var = next(n for n in reduces.values() if n.op == "var")
    assert reduces[var.center].op == "mean"  # var is two-pass about the mean of the same units
    assert ir.size_names == ("hidden", "input")


def test_layernorm_is_its_definition():
    """layernorm(v, g, b, eps) and the same thing written out compute the same numbers."""
    a = Cell(build_ir(parse_spec(spec("h' = tanh(layernorm(lin(x, h), a, b, 1e-3))"))))
    b = Cell(build_ir(parse_spec(spec("u = lin(x, h)", "m = mean(u)",
                                      "h' = tanh(a*(u - m)/sqrt(mean((u - m)**2) + 1e-3) + b)"))))  # fmt: skip
    sizes = {"input": 3, "hidden": 5}
    params = a.init_params(sizes=sizes, init="uniform", seed=3)
    params_b = {"W_u_x": params["W_h_x"], "W_u_h": params["W_h_h"], "b_u": params["b_h"],
                "a": params["a"], "b": params["b"]}  # fmt: skip
    rng = np.random.default_rng(0)
    x = {"x": rng.standard_normal((4, 2, 3))}
    s = {"h": rng.standard_normal((2, 5))}
    out_a = a.numpy().forward(params, x, s).outputs
    out_b = b.numpy().forward(params_b, x, s).outputs
    assert np.abs(out_a).max() > 0.1
    np.testing.assert_allclose(out_a, out_b, rtol=0, atol=1e-14)


@pytest.mark.parametrize("equations, message", [
    (("h' = tanh(lin(mean(x)))",), "cannot appear inside lin"),
    (("h' = tanh(mean(var(h)) + h)",), "another reduction"),
    (("m = mean(h)", "h' = tanh(lin(m, h))"), "lin() arguments are vectors"),
    (("m = mean(h) + a", "h' = tanh(h + m)"), "is per unit"),
    (("h' = tanh(layernorm(h, a, b, 2))",), "eps must be a number in (0, 1]"),
    (("h' = tanh(layernorm(h, a, b, x))",), "eps must be a number"),
    (("h' = tanh(layernorm(h, a))",), "layernorm() takes (v, gain, bias)"),
    (("h' = tanh(mean())",), "needs one or more vector arguments"),
    (("h' = tanh(h + mean(2))",), "must involve a vector"),
    (("h' = tanh(h + mean(h - h))",), "simplifies to a constant"),
    (("h' = tanh(layernorm(0*h, a, b))",), "simplifies to a constant"),
    (("m = mean(h)", "h' = tanh(layernorm(m, a, b))"), "must involve a vector"),
])  # fmt: skip
def test_bad_reductions_are_spec_errors(equations, message):
    with pytest.raises(SpecError, match=message.replace("(", r"\(").replace(")", r"\)")) as e:
        build_ir(parse_spec(spec(*equations)))
    assert e.value.equation is not None


@pytest.mark.parametrize("name", ["sum", "mean", "var", "rms", "layernorm", "rmsnorm", "sqrt"])
def test_reduction_names_are_reserved(name):
    with pytest.raises(SpecError, match="reserved"):
        parse_spec(spec(f"{name} = lin(x)", f"h' = tanh({name})"))


def test_layernorm_local_jacobian_is_diagonal_plus_two_rank_one_terms():
    ir = lv.load("layernorm_lstm").ir
    j = local_jacobian(ir, "h_", "c_")
    shapes = sorted(t.weights for t in j)
    assert shapes == [(), (ONES, REDUCE + "hidden"), (ONES, REDUCE + "hidden")]
    text = str(j)
    assert text.startswith("diag(") and text.count("]ᵀ") == 2 and "/n]ᵀ" in text


def test_show_prints_local_jacobians_and_summarises_long_blocks(capsys):
    assert main(["show", "layernorm_lstm"]) == 0
    out = capsys.readouterr().out
    assert "local Jacobians of the equations with reductions" in out
    assert "dh'/dc' = diag(" in out and "· [" in out
    assert "dc'/dc = diag(f)" in out
    assert "path terms" in out  # dh'/dh: summarised, cell.jacobian holds it
    assert main(["show", "lstm"]) == 0
    assert "local Jacobians" not in capsys.readouterr().out


# --------------------------------------------------------------------------- the flat regime

NORM_CELLS = ["layernorm_lstm", "rmsnorm_lstm"]
EPS = 1e-5  # both catalog cells' eps, inside the square root


@pytest.mark.parametrize("name", NORM_CELLS + ["lstm"])
@settings(max_examples=5)
@given(data=st.data())
def test_flat_regime_makes_every_vector_nearly_constant(name, data):
    """Weights scaled by 1e-6, biases and diagonals one value repeated, states one value per row
    within 1e-6 (and within the state's range)."""
    cell = lv.load(name)
    case = data.draw(lst.cases(cell, regime="flat", max_size=3), label="case")
    assert case.regime == "flat"
    for w in cell.ir.weights:  # normal's 3 sigma, 3/sqrt(fan_in), is the widest drawn bound
        assert np.abs(case.params[w.name]).max() <= 3 * lst.FLAT_WEIGHT_SCALE
    for p, _ in list(cell.ir.biases) + list(cell.ir.diagonals):
        assert np.all(case.params[p] == case.params[p][0]), p
    for s, v in case.state.items():
        spread = v.max(axis=1) - v.min(axis=1)
        assert np.all(spread <= 2 * lst.FLAT_STATE_SPREAD * 1.0001), (s, spread)


@pytest.mark.parametrize("name", ["layernorm_lstm"])
@settings(max_examples=10)
@given(data=st.data())
def test_flat_regime_puts_layernorm_variances_below_eps(name, data):
    """What the regime is for: every variance LN-LSTM normalises is below its eps, so eps
    governs the normalised values; and the generated code agrees with the mpmath reference
    there (forward, float64)."""
    cell = lv.load(name)
    ir = cell.ir
    case = data.draw(lst.cases(cell, regime="flat", dtype="float64", max_size=4), label="case")
    trace = []
    ref = reference_forward(ir, case.params, case.inputs, case.state, case.t0, dps=30, trace=trace)
    variances = [n.name for n in ir.nodes if isinstance(n, Reduce) and n.op == "var"]
    assert len(variances) == 3
    worst = max(float(np.max(np.abs(np.asarray(step[v], dtype=float)))) for step in trace for v in variances)
    assert worst < EPS, worst
    # here layer norm is ill-conditioned: the rounding of c' - mean(c') (1e-16 of |c'| <= 1) is
    # divided by sqrt(var + eps) >= sqrt(1e-5) and multiplied by the gain (|a_c| <= 3): up to
    # ~1e-13 per step, measured 1.2e-13 after 5 steps; 1e-11 leaves room for 6 steps and is
    # 1e9 times below the 1e-2 that eps outside the square root changes (test_norm_oracles)
    for backend in ("numpy", "torch"):
        run = getattr(cell, backend)().forward(case.params, case.inputs, case.state, t0=case.t0)
        out = np.asarray(run.outputs, dtype=float)
        np.testing.assert_allclose(out, np.asarray(ref[0], dtype=float), rtol=1e-12, atol=1e-11)
