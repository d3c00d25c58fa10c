"""Gradient-flow analysis against autograd and against the bounds the closed forms imply."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import lstm_verify as lv
from lstm_verify import gradflow as gf
from lstm_verify import strategies as lst
from lstm_verify.inits import NAMED, apply, gate_roles


def _problem(name, T=30, batch=3, hidden=5, init="torch_default", seed=0):
    cell = lv.load(name)
    sizes = {k: {"input": 3, "hidden": hidden, "proj": 3}[k] for k in cell.ir.size_names}
    p, x, s, _ = gf._problem(cell, sizes, T, batch, seed, init)
    return cell, p, x, s


@pytest.mark.parametrize("name", ["rnn_tanh", "lstm", "gru", "lstm_peephole", "lstm_proj", "clockwork_rnn"])
def test_flow_equals_autograd_at_every_lag(name):
    """||dL/ds_{T-k}|| from the generated backward's trace equals autograd through the
    generated torch forward run step by step (float64). The state entering each step gets a
    zero-valued leaf added to it, so autograd's gradient is with respect to that step's input
    state with the others held fixed (for an LSTM, c_t's tensor also made h_t)."""
    cell, p, x, s = _problem(name, T=25)
    f = gf.flow(cell, p, x, s)
    impl = cell.torch()
    tp = {k: torch.tensor(v) for k, v in p.items()}
    cur = {k: torch.tensor(v) for k, v in s.items()}
    leaves = []
    T = next(iter(x.values())).shape[0]
    for t in range(T):
        delta = {k: torch.zeros_like(v, requires_grad=True) for k, v in cur.items()}
        leaves.append(delta)
        _, cur = impl.step(tp, {k: torch.tensor(v[t]) for k, v in x.items()},
                           {k: v + delta[k] for k, v in cur.items()}, t=t)  # fmt: skip
    rng = np.random.default_rng(7)
    w = rng.standard_normal(tuple(cur[cell.ir.output].shape))
    w /= np.linalg.norm(w, axis=1, keepdims=True)
    (cur[cell.ir.output] * torch.tensor(w)).sum().backward()
    for k in range(1, T + 1):
        for sname in f.state_norms:
            expected = float(leaves[T - k][sname].grad.norm(dim=1).mean())
            assert f.state_norms[sname][k] == pytest.approx(expected, rel=1e-9, abs=1e-300), (k, sname)


@pytest.mark.parametrize("name", ["rnn_tanh", "lstm", "gru", "lstm_proj", "clockwork_rnn", "lstm_depth_gated"])
def test_step_jacobians_equal_autograd(name):
    cell, p, x, s = _problem(name, T=4, batch=2)
    J = gf.step_jacobians(cell, p, x, s)
    impl = cell.torch()
    tp = {k: torch.tensor(v) for k, v in p.items()}
    names = [n for n, _ in cell.ir.states]
    cur = {k: torch.tensor(v[:1]) for k, v in s.items()}
    widths = [cur[k].shape[1] for k in names]
    for t in range(4):
        xt = {k: torch.tensor(v[t, :1]) for k, v in x.items()}

        def f(flat):
            parts = dict(zip(names, torch.split(flat, widths)))
            _, new = impl.step(tp, xt, {k: v[None] for k, v in parts.items()}, t=t)
            return torch.cat([new[k][0] for k in names])

        flat = torch.cat([cur[k][0] for k in names])
        expected = torch.autograd.functional.jacobian(f, flat).numpy()
        np.testing.assert_allclose(J[t], expected, rtol=1e-12, atol=1e-14)
        _, cur = impl.step(tp, xt, cur, t=t)


@settings(max_examples=25)
@given(case=lst.cases("rnn_tanh", regime="ordinary", dtype="float64", steps=40, batch=2),
       scale=st.floats(0.2, 6.0))  # fmt: skip
def test_rnn_tanh_decay_within_the_bound(case, scale):
    """||dL/dh_{T-k}|| <= ||w|| (gamma sigma_max(U))^k with gamma = max tanh' = 1 (Pascanu et al.)."""
    cell = lv.load("rnn_tanh")
    p = dict(case.params) | {"W_h_h": case.params["W_h_h"] * scale}
    sigma = np.linalg.svd(p["W_h_h"], compute_uv=False)[0]
    f = gf.flow(cell, p, case.inputs, case.state)
    norms = f.state_norms["h"]  # lag 0 is ||w|| = 1 per row
    for k, n in enumerate(norms):
        assert n <= sigma**k * (1 + 1e-10) + 1e-300, (k, n, sigma**k)
    if sigma < 1:  # vanishing guaranteed
        assert f.decay <= sigma * (1 + 1e-9) or norms[-1] == 0


def test_greff_nfg_cell_gradient_is_exactly_constant_without_its_peephole():
    cell, p, x, s = _problem("greff_nfg", T=60, batch=1)
    p = dict(p) | {"p_i": np.zeros_like(p["p_i"])}
    J = gf.step_jacobians(cell, p, x, s)
    H = p["p_i"].shape[0]
    blocks = J[:, H:, H:]
    assert (blocks == np.eye(H)).all()  # exactly, every step
    # with its input-gate peephole the block is diag(1 + g i (1 - i) p_i): not the identity
    cell, p2, x, s = _problem("greff_nfg", T=10, batch=1)
    vals = gf.node_values(cell, p2, x, s)
    J2 = gf.step_jacobians(cell, p2, x, s)
    expect = 1 + vals["g"][:, 0] * vals["i"][:, 0] * (1 - vals["i"][:, 0]) * p2["p_i"]
    np.testing.assert_allclose(np.diagonal(J2[:, H:, H:], axis1=1, axis2=2), expect, rtol=1e-12)


def test_lstm_cell_block_is_the_forget_gate_and_its_product():
    cell, p, x, s = _problem("lstm", T=40, batch=1)
    J = gf.step_jacobians(cell, p, x, s)
    f = gf.node_values(cell, p, x, s)["f"][:, 0]
    H = f.shape[1]
    for t in range(len(J)):
        np.testing.assert_allclose(J[t, H:, H:], np.diag(f[t]), rtol=1e-14, atol=1e-16)
    P = np.eye(H)
    for j in J[::-1]:
        P = P @ j[H:, H:]
    np.testing.assert_allclose(np.diag(P), np.prod(f, axis=0), rtol=1e-12)


def test_forget_bias_to_large_approaches_the_carousel():
    cell, p, x, s = _problem("lstm", T=101, batch=2)
    factors = []
    for b in (0.0, 2.0, 5.0, 10.0, 30.0):
        q = dict(p) | {"b_f": p["b_f"] + b}
        f = gf.node_values(cell, q, x, s)["f"]
        factors.append(float(np.exp(np.log(f).mean())))
    assert all(a < b for a, b in zip(factors, factors[1:]))
    assert factors[-1] > 1 - 1e-12
    # and the measured cell gradient stops decaying: at b = 30, c's gradient at lag 100 is
    # within 1e-9 of its value through the direct path alone
    q = dict(p) | {"b_f": p["b_f"] + 30.0}
    flow = gf.flow(cell, q, x, s)
    assert flow.state_norms["c"][100] > 0.1 * flow.state_norms["c"][1]


def test_fit_decay_and_horizon():
    curve = 0.8 ** np.arange(100)
    assert gf.fit_decay(curve) == pytest.approx(0.8)
    assert gf.horizon(curve, 1e-3) == int(np.ceil(np.log(1e-3) / np.log(0.8)))
    assert gf.horizon(np.ones(10), 1e-3) is None


def test_named_initialisations():
    roles = {r.gate: r for r in gate_roles(lv.load("lstm").ir)}
    assert roles["f"].role == "keep" and roles["f"].sign == 1 and roles["i"].role == "write"
    mgu = gate_roles(lv.load("mgu").ir)
    assert [(r.gate, r.sign, r.role) for r in mgu] == [("f", -1.0, "keep")]  # (1 - f) keeps
    cifg = {r.gate: r for r in gate_roles(lv.load("lstm_cifg").ir)}
    assert cifg["i"].role == "keep" and cifg["i"].sign == -1  # f = 1 - i keeps
    cell = lv.load("lstm")
    base = cell.init_params(input_size=3, hidden_size=6, seed=4)
    fb = cell.init_params(input_size=3, hidden_size=6, seed=4, init="forget_bias_1")
    np.testing.assert_allclose(fb["b_f"], base["b_f"] + 1)
    np.testing.assert_array_equal(fb["b_i"], base["b_i"])
    ch = cell.init_params(input_size=3, hidden_size=6, seed=4, init="chrono", t_max=50)
    assert (ch["b_f"] >= 0).all() and (ch["b_f"] <= np.log(49)).all()
    np.testing.assert_array_equal(ch["b_i"], -ch["b_f"])
    orth = cell.init_params(input_size=3, hidden_size=6, seed=4, init="orthogonal")
    for w in ("W_i_h", "W_f_h", "W_g_h", "W_o_h"):
        np.testing.assert_allclose(orth[w] @ orth[w].T, np.eye(6), atol=1e-12)
    np.testing.assert_array_equal(orth["W_i_x"], base["W_i_x"])
    mg = lv.load("mgu").init_params(input_size=3, hidden_size=4, seed=1, init="forget_bias_1")
    np.testing.assert_allclose(mg["b_f"], lv.load("mgu").init_params(input_size=3, hidden_size=4, seed=1)["b_f"] - 1)
    with pytest.raises(ValueError, match="unknown initialisation"):
        cell.init_params(input_size=3, hidden_size=6, init="bogus")
    assert set(NAMED) >= {"torch_default", "forget_bias_1", "chrono", "orthogonal"}
    with pytest.raises(ValueError):
        apply(cell.ir, base, "bogus", np.random.default_rng(0))


def test_indrnn_initialisation_bounds_only_the_diagonal_recurrent_weight():
    """Li et al. 2018: u uniform in (2**(-1/T), 2**(1/T)); nothing else moves, and a peephole
    (a diagonal parameter inside a gate, not multiplying the state in its own update) is no u."""
    cell = lv.load("indrnn")
    base = cell.init_params(input_size=3, hidden_size=200, seed=2)
    got = cell.init_params(input_size=3, hidden_size=200, seed=2, init="indrnn", t_max=50)
    assert (got["u"] > 2 ** (-1 / 50)).all() and (got["u"] < 2 ** (1 / 50)).all()
    assert got["u"].min() < 0.99 < 1.01 < got["u"].max()  # spread over the interval, not one value
    for k in ("W_h_x", "b_h"):
        np.testing.assert_array_equal(got[k], base[k])
    peephole = lv.load("lstm_peephole")
    base = peephole.init_params(input_size=3, hidden_size=4, seed=2)
    got = peephole.init_params(input_size=3, hidden_size=4, seed=2, init="indrnn")
    assert all(np.array_equal(got[k], base[k]) for k in base)
