"""The per-step Jacobian bound (lstm_verify.bounds) against the measured Jacobian, on drawn
cases of every cell, and against Pascanu et al.'s bound for the tanh RNN."""

from __future__ import annotations

import numpy as np
import pytest
import sympy
from hypothesis import given, settings, strategies as st

import lstm_verify as lv
from lstm_verify import gradflow as gf
from lstm_verify import strategies as lst
from lstm_verify.bounds import (
    carousel_lower_bounds, closed_forms, evaluate, lag_bounds, reachable_ranges, self_paths, step_bound, theorem,
)

CELLS = lv.catalog()
CELL = {name: lv.load(name) for name in CELLS}


def ranges_of(case):
    """|x| <= X per input and every state within its drawn values' range per unit."""
    X = {k: float(np.abs(v).max(initial=0.0)) for k, v in case.inputs.items()}
    S = {k: (v.astype(float).min(axis=0), v.astype(float).max(axis=0)) for k, v in case.state.items()}
    return X, S


def measured(cell, case):
    """max over batch rows of ||d s'/d s||_2 at the first step, from the generated backward."""
    p = {k: np.asarray(v, dtype=float) for k, v in case.params.items()}
    x = {k: np.asarray(v, dtype=float) for k, v in case.inputs.items()}
    s = {k: np.asarray(v, dtype=float) for k, v in case.state.items()}
    worst = 0.0
    for row in range(case.batch):
        J = gf.step_jacobians(cell, p, x, s, row=row)
        worst = max(worst, float(np.linalg.norm(J[0], 2)))
    return worst


@pytest.mark.parametrize("name", CELLS)
@settings(max_examples=10)
@given(data=st.data())
def test_the_bound_holds_on_drawn_cases(name, data):
    cell = CELL[name]
    regime = data.draw(st.sampled_from(["ordinary", "saturated", "near_zero"]), label="regime")
    case = data.draw(lst.cases(cell, regime=regime, dtype="float64", max_size=3, steps=1), label="case")
    X, S = ranges_of(case)
    b = step_bound(cell, case.params, X, S, sizes=case.sizes, t=case.t0)
    assert b.bound >= 0
    assert measured(cell, case) <= b.bound * (1 + 1e-9) + 1e-300


def test_rnn_tanh_reduces_to_pascanus_bound():
    """One path, diag(1 - h'^2) · W_h_h: the bound is sup(1 - h'^2) * sigma_max(W_h_h), which is
    sigma_max itself when the pre-activation can reach 0, and below it when the bias keeps it away."""
    cell = CELL["rnn_tanh"]
    p = cell.init_params(sizes={"input": 3, "hidden": 5}, seed=1)
    sigma = np.linalg.norm(p["W_h_h"], 2)
    b = step_bound(cell, p, 1.0, {"h": (-np.ones(5), np.ones(5))})
    assert len(b.terms[("h", "h")]) == 1
    assert b.bound == pytest.approx(sigma, rel=1e-12)
    far = dict(p) | {"b_h": np.full(5, 30.0)}  # tanh'(z) <= tanh'(30 - |W x| - |U h|) everywhere
    lo = 30.0 - np.abs(p["W_h_x"]).sum(1) - np.abs(p["W_h_h"]).sum(1)
    b_far = step_bound(cell, far, 1.0, {"h": (-np.ones(5), np.ones(5))})
    assert b_far.bound == pytest.approx(float(np.max(1 - np.tanh(lo) ** 2)) * sigma, rel=1e-9)
    assert b_far.bound < 1e-10 * sigma


def test_lstm_cell_block_is_the_forget_gates_range():
    """d c'/d c = diag(f): its bound is the largest f the ranges allow, and the block bound
    grows with the forget bias as the gate opens."""
    cell = CELL["lstm"]
    p = cell.init_params(sizes={"input": 3, "hidden": 4}, seed=0)
    ranges = {"h": (-np.ones(4), np.ones(4)), "c": (-np.ones(4), np.ones(4))}
    hi = []
    for bf in (0.0, 3.0, 10.0):
        q = dict(p) | {"b_f": np.full(4, bf)}
        acc = np.abs(q["W_f_x"]).sum(1) + np.abs(q["W_f_h"]).sum(1)
        b = step_bound(cell, q, 1.0, ranges)
        assert b.blocks[("c", "c")] == pytest.approx(1 / (1 + np.exp(-(bf + acc).max())), rel=1e-12)
        hi.append(b.blocks[("c", "c")])
    assert hi == sorted(hi) and hi[-1] > 0.9999


def test_a_set_cell_needs_its_number_of_members():
    cell = CELL["attention_decoder"]
    p = cell.init_params(sizes={"input": 2, "hidden": 3, "item": 2, "attn": 2, "set": 4})
    with pytest.raises(ValueError, match="number of its members"):
        step_bound(cell, p, 1.0, {"h": (-1.0, 1.0), "c": (-1.0, 1.0)})


@pytest.mark.parametrize("name", ["rnn_tanh", "lstm", "gru", "mgu", "layernorm_lstm", "attention_decoder", "slstm"])
@settings(max_examples=6)
@given(data=st.data())
def test_lag_bounds_hold_over_several_steps(name, data):
    """||d s_T / d s_0|| (the product of the measured step Jacobians) against the product of the
    per-step bounds over the ranges the states can reach from the drawn ones."""
    cell = CELL[name]
    T = data.draw(st.integers(1, 6), label="steps")
    case = data.draw(lst.cases(cell, regime="ordinary", dtype="float64", max_size=3, steps=T), label="case")
    X, S = ranges_of(case)
    bounds = lag_bounds(cell, case.params, X, S, T, sizes=case.sizes, t0=case.t0)
    assert len(bounds) == T + 1 and bounds[0] == 1.0
    p = {k: np.asarray(v, dtype=float) for k, v in case.params.items()}
    for row in range(case.batch):
        J = gf.step_jacobians(cell, p, case.inputs, case.state, row=row)
        P = np.eye(J.shape[1])
        for k in range(T):
            P = J[k] @ P
            assert np.linalg.norm(P, 2) <= bounds[k + 1] * (1 + 1e-9) + 1e-300, (row, k)


def test_lstm_cell_range_grows_by_at_most_one_a_step():
    cell = CELL["lstm"]
    p = cell.init_params(sizes={"input": 2, "hidden": 3}, seed=0)
    ranges = reachable_ranges(cell, p, 1.0, {"h": (-1.0, 1.0), "c": (-0.5, 0.5)}, 6)
    for t, r in enumerate(ranges):
        assert np.all(r["c"][1] <= 0.5 + t + 1e-12) and np.all(r["c"][0] >= -0.5 - t - 1e-12)
        assert t == 0 or (np.all(r["h"][1] <= 1) and np.all(r["h"][0] >= -1))


def test_cli_prints_the_bound_and_its_tightness(capsys):
    import json

    from lstm_verify.cli import main

    assert main(["bounds", "rnn_tanh", "--json", "--steps", "3"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["measured_step_norm"] <= s["step_bound"] and s["measured_lag_norm"] <= s["lag_bounds"][-1]
    assert len(s["lag_bounds"]) == 4 and 0 < s["step_tightness"] <= 1
    assert set(s["extremes"]) == {"large weights", "saturated"}
    assert all(0 < e["measured_step_norm"] <= e["step_bound"] for e in s["extremes"].values())
    assert main(["bounds", "lstm"]) == 0
    out = capsys.readouterr().out
    assert "dc'/dc <= sup|f| = " in out and "tightness" in out
    assert "sup|o*(1 - o)*tanh(c')| * ||W_o_h||" in out  # the output gate's path in dh'/dh
    assert main(["bounds", "lstm", "--init", "bogus"]) == 2
    assert "unknown initialisation" in capsys.readouterr().err
    assert main(["bounds", "lstm", "--input-bound", "nan"]) == 2


@pytest.mark.parametrize("name, state, factor", [("lstm", "c", "f"), ("lstm_peephole", "c", None), ("min_gru", "h", None)])
@settings(max_examples=6)
@given(data=st.data())
def test_the_carousel_keeps_at_least_its_lower_bound(name, state, factor, data):
    """Along d s'/d s = diag(d) alone the gradient over T steps is prod_t d_t, unit by unit: at
    least the product of the per-step lower bounds over the reachable ranges."""
    cell = CELL[name]
    T = data.draw(st.integers(1, 6), label="steps")
    case = data.draw(lst.cases(cell, regime="ordinary", dtype="float64", max_size=3, steps=T), label="case")
    X, S = ranges_of(case)
    p = {k: np.asarray(v, dtype=float) for k, v in case.params.items()}
    low = 1.0
    for t, r in enumerate(reachable_ranges(cell, p, X, S, T, sizes=case.sizes)):
        low *= carousel_lower_bounds(cell, p, X, r, case.sizes, t)[state]
    J = gf.step_jacobians(cell, p, case.inputs, case.state, row=0)
    width = case.state[state].shape[1]
    at = [s for s, _ in cell.ir.states].index(state)
    off = sum(case.state[s].shape[1] for s, _ in cell.ir.states[:at])
    diag = np.ones(width)
    for k in range(T):  # the carousel's own factor at each step: the diagonal of its block
        block = J[k][off : off + width, off : off + width]
        assert np.allclose(block, np.diag(np.diag(block)), atol=0), "the block is diagonal"
        diag = diag * np.diag(block)
    if factor:  # and for the LSTM that diagonal is f itself
        f = gf.node_values(cell, p, case.inputs, case.state)[factor][:, 0]
        np.testing.assert_allclose(diag, np.prod(f, axis=0), rtol=1e-12)
    assert np.all(np.abs(diag) >= low * (1 - 1e-9))


# --------------------------------------------------------------------------- for all weights


def test_theorems_of_the_classic_cells():
    """The statements the tool makes, as the note quotes them."""
    rnn = "\n".join(theorem(CELL["rnn_tanh"].ir).statements())
    assert "||dh'/dh||_2 <= ||W_h_h||" in rnn and "vanishing is guaranteed when ||W_h_h|| < 1" in rnn  # Pascanu, gamma = 1
    lstm = "\n".join(theorem(CELL["lstm"].ir).statements())
    assert "||dc'/dc||_2 <= 1" in lstm and "h in [-1, 1] (kept by the step" in lstm and "not kept: the new c in [-2, 2]" in lstm
    assert "diag(f) on a path without weights, and it reaches 1; with lin_f <= 0" in lstm and "sup|f| <= 0.5" in lstm
    gru = "\n".join(theorem(CELL["gru"].ir).statements())
    assert "diag(z) on a path without weights" in gru and "with lin_z <= 0" in gru and "sup|z| <= 0.5" in gru
    mgu = "\n".join(theorem(CELL["mgu"].ir).statements())
    assert "diag(1 - f) on a path without weights" in mgu and "with lin_f >= 0" in mgu and "sup|1 - f| <= 0.5" in mgu
    assert "vanishing is guaranteed" not in lstm + gru + mgu  # none holds for every bias
    # in closed form: the carousel's floor, and the bias bounds that cap the open self paths
    assert ("inf f >= sigmoid(lo(lin_f)) at every step, lo(lin_f) = min b_f - (||W_f_x||_inf*X + ||W_f_h||_inf*1): "
            "the gradient along it cannot vanish faster than that") in lstm  # fmt: skip
    assert "sup|z| <= 0.5, which holds when max b_z <= -(||W_z_x||_inf*X + ||W_z_h||_inf*1)" in gru
    assert "h in [-1, 1] (kept by the step" in gru  # h' = z*h + (1 - z)*n: exact in z, which it reads twice
    assert "sup|1 - f| <= 0.5, which holds when min b_f >= (||W_f_x||_inf*X + ||W_f_h||_inf*1)" in mgu


@pytest.mark.parametrize("name", ["rnn_tanh", "lstm", "gru_cho", "mgu", "min_gru", "lstm_cifg", "mut1", "clockwork_rnn"])
@settings(max_examples=8)
@given(data=st.data())
def test_the_theorem_holds_for_drawn_weights(name, data):
    """Each block of the measured step Jacobian against the theorem's bound evaluated with the
    drawn weights' norms, at states within the theorem's ranges ([-1, 1])."""
    cell = CELL[name]
    regime = data.draw(st.sampled_from(["ordinary", "saturated"]), label="regime")
    init = data.draw(st.sampled_from(["uniform", "normal"]), label="init")
    case = data.draw(lst.cases(cell, regime=regime, init=init, dtype="float64", max_size=3, steps=1), label="case")
    th = theorem(cell.ir)
    bound = evaluate(cell.ir, th, case.params, case.sizes)
    assert all(np.isfinite(v) for v in bound.values())  # these cells' theorems bound every block
    p = {k: np.asarray(v, dtype=float) for k, v in case.params.items()}
    states = [s for s, _ in cell.ir.states]
    widths = [case.state[s].shape[1] for s in states]
    off = np.cumsum([0] + widths)
    for row in range(case.batch):
        J = gf.step_jacobians(cell, p, case.inputs, case.state, row=row)[0]
        for i, s in enumerate(states):
            for j, r in enumerate(states):
                block = J[off[i] : off[i + 1], off[j] : off[j + 1]]
                assert np.linalg.norm(block, 2) <= bound[(s, r)] * (1 + 1e-9) + 1e-300, (s, r)


# --------------------------------------------------------------------------- in closed form

CLOSED = {name: cf for name in CELLS if (cf := closed_forms(CELL[name].ir))}


def test_closed_forms_are_found_where_the_self_path_is_a_monotone_gate():
    assert {"lstm", "gru", "mgu", "min_gru", "min_lstm", "lstm_cifg", "mut1", "attention_decoder"} <= set(CLOSED)
    assert not {"lstm_peephole", "layernorm_lstm", "slstm", "rnn_tanh"} & set(CLOSED)  # they read c, a norm, m
    lstm = CLOSED["lstm"]["c"]
    assert (lstm.d, lstm.low, lstm.high) == ("f", "sigmoid(lo(lin_f))", "sigmoid(hi(lin_f))")
    assert lstm.end("lin_f", "lo") == "min b_f - (||W_f_x||_inf*X + ||W_f_h||_inf*1)"
    mgu = CLOSED["mgu"]["h"]
    assert (mgu.low, mgu.high) == ("1 - sigmoid(hi(lin_f))", "1 - sigmoid(lo(lin_f))")


@pytest.mark.parametrize("name", sorted(CLOSED))
@settings(max_examples=6)
@given(data=st.data())
def test_the_closed_forms_hold_on_drawn_cases(name, data):
    """The self-path diagonal d within the closed form's [low, high] at every step of drawn
    sequences (d from a float64 walk of the IR), with |x| <= the inputs' largest magnitude and
    the states in the spec's ranges; at the steps after the first only where the theorem says
    the step keeps the states the bound reads. For a carousel, the diagonal of its measured
    Jacobian block (generated backward) too. Up to rounding: the two evaluate sigmoid differently."""
    cell = CELL[name]
    ir = cell.ir
    regime = data.draw(st.sampled_from(["ordinary", "saturated"]), label="regime")
    T = data.draw(st.integers(1, 4), label="steps")
    case = data.draw(lst.cases(cell, regime=regime, dtype="float64", max_size=3, steps=T), label="case")
    ranges = {s: cell.spec.state_range(s) for s, _ in ir.states}
    state = {s: np.clip(np.asarray(v, dtype=float), *ranges[s]) for s, v in case.state.items()}
    p = {k: np.asarray(v, dtype=float) for k, v in case.params.items()}
    X = {k: float(np.abs(v).max(initial=0.0)) for k, v in case.inputs.items()}
    values = gf.node_values(cell, p, case.inputs, state)
    th = theorem(ir)
    J = gf.step_jacobians(cell, p, case.inputs, state, row=0)
    names = [s for s, _ in ir.states]
    tol = lambda v: 1e-12 * abs(v) + 1e-15  # noqa: E731 - the float64 rounding of a gate's value near 0 or 1
    for s, cf in CLOSED[name].items():
        low, high = cf.values(ir, p, X, ranges, case.sizes)
        assert low <= high
        d = self_paths(ir)[s]
        syms = sorted(d.free_symbols, key=lambda x: x.name)
        at = sympy.lambdify(syms, d, "numpy")
        read = {v for a in cf.rising for _, v in ir.node_map[a].terms} & set(ranges)
        steps = T if all(th.keeps(v) for v in read) else 1
        for t in range(steps):
            got = np.broadcast_to(at(*[values[x.name][t] for x in syms]), values[s + "_"][t].shape)
            assert np.all(got >= low - tol(low)) and np.all(got <= high + tol(high)), (t, got, low, high)
            if s in th.carousels:
                off = sum(state[r].shape[1] for r in names[: names.index(s)])
                width = state[s].shape[1]
                diag = np.diag(J[t][off : off + width, off : off + width])
                assert np.all(diag >= low - tol(low)) and np.all(diag <= high + tol(high))


@pytest.mark.parametrize("name, state", [("lstm", "c"), ("gru", "h"), ("mgu", "h"), ("mut1", "h"), ("min_lstm", "h")])
@settings(max_examples=6)
@given(data=st.data())
def test_the_bias_bound_the_theorem_gives_caps_the_self_path(name, state, data):
    """With each bias the theorem names set at its stated bound (the weights drawn, |x| <= X,
    states in [-1, 1]), the self path's diagonal stays at or below the stated cap."""
    cell = CELL[name]
    ir = cell.ir
    th = theorem(ir)
    sign, cap = th.capped[state]
    case = data.draw(lst.cases(cell, regime="ordinary", dtype="float64", max_size=3, steps=2), label="case")
    p = {k: np.asarray(v, dtype=float).copy() for k, v in case.params.items()}
    X = float(max(np.abs(v).max(initial=0.0) for v in case.inputs.values()))
    state0 = {s: np.clip(np.asarray(v, dtype=float), -1, 1) for s, v in case.state.items()}
    norms = {w.name: float(np.linalg.norm(np.asarray(p[w.name]), np.inf)) for w in ir.weights}
    for a in th.open_carousels[state][1]:
        node = ir.node_map[a]
        r = sum(norms[w] * (X if v in dict(ir.inputs) else 1.0) for w, v in node.terms)
        p[node.bias] = np.full_like(p[node.bias], -r if sign < 0 else r)  # max b = -r, or min b = r
    d = self_paths(ir)[state]
    syms = sorted(d.free_symbols, key=lambda x: x.name)
    values = gf.node_values(cell, p, case.inputs, state0)
    got = sympy.lambdify(syms, d, "numpy")(*[values[x.name] for x in syms])
    assert np.max(got) <= cap + 1e-12
