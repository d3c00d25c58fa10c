"""The Equinox and Haiku engines: each cell against its catalog cell, through its spec layout."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import lstm_verify
from lstm_verify.errors import ShapeError
from lstm_verify.frameworks import builtin
from lstm_verify.layout import get_layout, stack, stack_gradients

pytest.importorskip("jax", reason="the jax extra is not installed")

equinox = pytest.importorskip("equinox", reason="the equinox extra is not installed")
haiku = pytest.importorskip("haiku", reason="the haiku extra is not installed")

SIZES = {"input": 3, "hidden": 4}

# (catalog cell, built-in subject, layout, options)
SUBJECTS = [
    ("lstm", "equinox.nn:LSTMCell", "equinox", {}),
    ("gru", "equinox.nn:GRUCell", "equinox", {}),
    ("lstm", "haiku:LSTM", "haiku", {}),
    ("gru_cho", "haiku:GRU", "haiku", {}),
    ("rnn_relu", "haiku:VanillaRNN", "haiku", {}),
    ("rnn_relu", "haiku:VanillaRNN", "haiku_single_bias", {"double_bias": False}),
]
IDS = [f"{ref}-{lay}" for _, ref, lay, _ in SUBJECTS]


def _case(cell, layout, seed=0, steps=5, batch=2):
    rng = np.random.default_rng(seed)
    params = cell.init_params(SIZES["input"], SIZES["hidden"], seed=seed + 1)
    xs = rng.normal(size=(steps, batch, SIZES["input"]))
    state = {s: rng.normal(size=(batch, SIZES["hidden"])) for s in layout.state}
    return params, xs, state


def _engine(ref, options, layout, params, dtype="float64"):
    eng = builtin(ref)(SIZES, options, dtype)
    eng.set_tensors(stack(layout, params))
    return eng


def _forward_gap(cell, layout, eng, params, xs, state):
    """Largest difference over every step's output and the final state."""
    ref = cell.numpy().forward(params, xs, dict(state))
    steps = eng.run(xs, tuple(state[s] for s in layout.state))
    out = np.stack([st[layout.state.index(cell.ir.output)] for st in steps])
    gap = np.abs(out - ref.outputs).max()
    return max(gap, *(np.abs(steps[-1][k] - ref.state[s]).max() for k, s in enumerate(layout.state)))


# ------------------------------------------------------------------------- direct comparisons


@pytest.mark.parametrize(("name", "ref", "lay", "options"), SUBJECTS, ids=IDS)
def test_forward_matches_reference(name, ref, lay, options):
    cell = lstm_verify.load(name)
    layout = get_layout(cell.ir, lay)
    params, xs, state = _case(cell, layout)
    eng = _engine(ref, options, layout, params)
    assert _forward_gap(cell, layout, eng, params, xs, state) < 1e-12


@pytest.mark.parametrize(("name", "ref", "lay", "options"), SUBJECTS[:5], ids=IDS[:5])
def test_gradients_match_reference(name, ref, lay, options):
    cell = lstm_verify.load(name)
    layout = get_layout(cell.ir, lay)
    params, xs, state = _case(cell, layout, seed=3)
    eng = _engine(ref, options, layout, params)
    rng = np.random.default_rng(7)
    w_out = rng.normal(size=(xs.shape[0], xs.shape[1], SIZES["hidden"]))
    w_state = [rng.normal(size=(xs.shape[1], SIZES["hidden"])) for _ in layout.state]
    run = cell.numpy().forward(params, xs, dict(state), save=True)
    want = cell.numpy().backward(params, run.cache, w_out, dict(zip(layout.state, w_state)))
    d_t, d_x, d_s = eng.vjp(xs, tuple(state[s] for s in layout.state), w_out, w_state,
                            layout.state.index(cell.ir.output))  # fmt: skip
    want_t = stack_gradients(layout, want.params)
    assert set(d_t) == set(want_t)
    for k in want_t:
        np.testing.assert_allclose(d_t[k], want_t[k], rtol=1e-10, atol=1e-12, err_msg=k)
    np.testing.assert_allclose(d_x, want.inputs["x"], rtol=1e-10, atol=1e-12)
    for k, s in enumerate(layout.state):
        np.testing.assert_allclose(d_s[k], want.state[s], rtol=1e-10, atol=1e-12, err_msg=s)


# ------------------------------------------------------------------------- deliberate mismatches


def test_haiku_lstm_without_forget_shift_differs():
    cell = lstm_verify.load("lstm")
    layout = get_layout(cell.ir, "haiku")
    params, xs, state = _case(cell, layout)
    wrong = dataclasses.replace(layout, shift=())  # forgets Haiku's run-time forget bias of 1
    eng = _engine("haiku:LSTM", {}, wrong, params)
    assert _forward_gap(cell, layout, eng, params, xs, state) > 1e-3


def test_haiku_gru_without_update_flip_differs():
    cell = lstm_verify.load("gru_cho")
    layout = get_layout(cell.ir, "haiku")
    params, xs, state = _case(cell, layout)
    wrong = dataclasses.replace(layout, scale=())  # takes Haiku's z for the spec's z
    eng = _engine("haiku:GRU", {}, wrong, params)
    assert _forward_gap(cell, layout, eng, params, xs, state) > 1e-3


def test_equinox_lstm_in_haiku_gate_order_differs():
    cell = lstm_verify.load("lstm")
    layout = get_layout(cell.ir, "equinox")
    params, xs, state = _case(cell, layout)
    wrong = dataclasses.replace(layout, tensors=tuple(
        (t, (bs[0], bs[2], bs[1], bs[3])) for t, bs in layout.tensors))  # i, g, f, o
    eng = _engine("equinox.nn:LSTMCell", {}, wrong, params)
    assert _forward_gap(cell, layout, eng, params, xs, state) > 1e-3


def test_equinox_gru_is_not_reset_before():
    """Equinox's GRU put in through the gru_cho torch-style layout does not compute gru_cho."""
    cho = lstm_verify.load("gru_cho")
    layout = get_layout(lstm_verify.load("gru").ir, "equinox")
    params, xs, state = _case(cho, layout)
    as_gru = {**params, "b_n_x": params["b_n"], "b_n_h": np.zeros_like(params["b_n"])}
    eng = builtin("equinox.nn:GRUCell")(SIZES, {}, "float64")
    eng.set_tensors(stack(layout, as_gru))
    assert _forward_gap(cho, layout, eng, params, xs, state) > 1e-3


# ------------------------------------------------------------------------- the engines themselves


@pytest.mark.parametrize(
    ("ref", "options", "names"),
    [
        ("equinox.nn:LSTMCell", {}, {"weight_ih", "weight_hh", "bias"}),
        ("equinox.nn:LSTMCell", {"use_bias": False}, {"weight_ih", "weight_hh"}),
        ("equinox.nn:GRUCell", {}, {"weight_ih", "weight_hh", "bias", "bias_n"}),
        ("haiku:LSTM", {}, {"linear/w", "linear/b"}),
        ("haiku:GRU", {}, {"w_i", "w_h", "b"}),
        ("haiku:VanillaRNN", {}, {"linear/w", "linear/b", "linear_1/w", "linear_1/b"}),
        ("haiku:VanillaRNN", {"double_bias": False}, {"linear/w", "linear/b", "linear_1/w"}),
    ],
)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_tensor_names_and_dtype(ref, options, names, dtype):
    for _ in range(2):  # a second build has the same names (no instance counters)
        eng = builtin(ref)(SIZES, options, dtype)
        tensors = eng.tensors()
        assert set(tensors) == names
        assert {str(v.dtype) for v in tensors.values()} == {dtype}
    n_state = 2 if "LSTM" in ref else 1
    steps = eng.run(np.zeros((2, 1, 3)), tuple(np.zeros((1, 4)) for _ in range(n_state)))
    assert len(steps) == 2 and all(len(st) == n_state and st[0].dtype == np.dtype(dtype) for st in steps)


def test_effective_options():
    assert builtin("equinox.nn:GRUCell")(SIZES, {}, "float64").options == {"use_bias": True}
    assert builtin("haiku:VanillaRNN")(SIZES, {}, "float64").options == {"double_bias": True}


@pytest.mark.parametrize(
    ("ref", "options", "message"),
    [
        ("equinox.nn:LSTMCell", {"bias": True}, "unknown option 'bias'"),
        ("equinox.nn:GRUCell", {"use_bias": 1}, "option 'use_bias' must be bool"),
        ("haiku:LSTM", {"double_bias": False}, "unknown option 'double_bias' (options: none)"),
        ("haiku:VanillaRNN", {"double_bias": "no"}, "option 'double_bias' must be bool"),
    ],
)
def test_bad_options(ref, options, message):
    with pytest.raises(ShapeError, match=f"^{builtin(ref).target}: " + message.replace("(", r"\(").replace(")", r"\)")):
        builtin(ref)(SIZES, options, "float64")


def test_bad_shapes():
    eng = builtin("haiku:LSTM")(SIZES, {}, "float64")
    with pytest.raises(ShapeError, match=r"xs must be \(T, B, 3\)"):
        eng.run(np.zeros((2, 1, 5)), (np.zeros((1, 4)), np.zeros((1, 4))))
    with pytest.raises(ShapeError, match="tuple of 2 arrays"):
        eng.run(np.zeros((2, 1, 3)), (np.zeros((1, 4)),))
    eng = builtin("equinox.nn:GRUCell")(SIZES, {}, "float64")
    with pytest.raises(ShapeError, match=r"must be \(1, 4\)"):
        eng.run(np.zeros((2, 1, 3)), (np.zeros((1, 5)),))
    with pytest.raises(ShapeError, match="sizes need 'input' and 'hidden'"):
        builtin("equinox.nn:GRUCell")({"hidden": 4}, {}, "float64")
