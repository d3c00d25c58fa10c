"""The Equinox and Haiku engines: each cell checked against its catalog cell through its spec
layout, deliberate mismatches that must fail, and the engines' own contract."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import lstm_verify
from lstm_verify.conformance import check
from lstm_verify.errors import ShapeError
from lstm_verify.frameworks import JaxEngine, builtin
from lstm_verify.layout import get_layout

pytest.importorskip("jax", reason="the jax extra is not installed")
pytest.importorskip("equinox", reason="the equinox extra is not installed")
pytest.importorskip("haiku", reason="the haiku extra is not installed")

SIZES = {"input": 3, "hidden": 4}
# a small budget at sizes 1-2: each new shape is a new XLA compilation (about 0.1-0.3 s)
EXAMPLES = 10


def _check(cell, ref, **kw):
    kw = {"examples": EXAMPLES, "seed": 0, "identify": False, "max_size": 2, **kw}
    return check(cell, ref, **kw)


# ------------------------------------------------------------------------- the public check


@pytest.mark.parametrize(
    ("cell", "ref", "options"),
    [
        ("lstm", "equinox.nn:LSTMCell", {}),
        ("gru", "equinox.nn:GRUCell", {}),
        ("lstm", "haiku:LSTM", {}),
        ("gru_cho", "haiku:GRU", {}),
        ("rnn_relu", "haiku:VanillaRNN", {}),
        ("rnn_relu", "haiku:VanillaRNN", {"double_bias": False}),
    ],
)
def test_conforms(cell, ref, options):
    report = _check(cell, ref, options=options)
    assert report.passed, report.table()
    assert report.precision == "float64"
    ran = {r.name: r.examples for r in report.rows if not r.skipped}
    assert any("gradients" in name and n > 0 for name, n in ran.items()), report.table()
    assert all(n > 0 for n in ran.values()), report.table()


# ------------------------------------------------------------------------- deliberate mismatches


def _without(cell, name, **changes):
    return dataclasses.replace(get_layout(cell.ir, name), **changes)


def test_haiku_lstm_without_the_forget_shift_fails():
    lstm = lstm_verify.load("lstm")
    report = _check(lstm, "haiku:LSTM", layout=_without(lstm, "haiku", shift=()), shrink=False)
    assert not report.passed
    assert "h' at step" in report.table() or "c' at step" in report.table()


def test_haiku_gru_without_the_update_flip_fails():
    cho = lstm_verify.load("gru_cho")
    report = _check(cho, "haiku:GRU", layout=_without(cho, "haiku", scale=()), shrink=False)
    assert not report.passed


def test_equinox_lstm_in_haikus_gate_order_fails():
    lstm = lstm_verify.load("lstm")
    layout = get_layout(lstm.ir, "equinox")
    swapped = tuple((t, (bs[0], bs[2], bs[1], bs[3])) for t, bs in layout.tensors)  # i, g, f, o
    report = _check(lstm, "equinox.nn:LSTMCell", layout=dataclasses.replace(layout, tensors=swapped), shrink=False)
    assert not report.passed


@pytest.mark.parametrize(
    ("claimed", "ref", "actual"),
    [
        ("gru", "haiku:GRU", "gru_cho"),  # Haiku's reset gate multiplies h before the matmul
        ("gru_cho", "equinox.nn:GRUCell", "gru"),  # Equinox's after, with its own bias_n
        ("rnn_tanh", "haiku:VanillaRNN", "rnn_relu"),  # VanillaRNN is a ReLU RNN
    ],
)
def test_claimed_as_the_wrong_cell(claimed, ref, actual):
    report = _check(claimed, ref, identify=True)
    assert not report.passed
    assert f"{claimed} has no layout for {builtin(ref).target}" in report.error
    assert [c.cell.name for c in report.identification.matches] == [actual]


def test_equinox_without_bias_has_no_layout():
    report = _check("lstm", "equinox.nn:LSTMCell", options={"use_bias": False})
    assert not report.passed
    assert "use_bias=False" in report.error and "use_bias=True" in report.error


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
    steps = eng.run(np.zeros((3, 2, 3)), tuple(np.zeros((2, 4)) for _ in range(n_state)))
    assert len(steps) == 3
    assert all(len(st) == n_state and st[0].shape == (2, 4) and st[0].dtype == np.dtype(dtype) for st in steps)


@pytest.mark.parametrize("ref", ["haiku:LSTM"])
def test_compiled_vjp_is_the_base_vjp_of_apply(ref):
    """The engines' one-program vjp equals JaxEngine.vjp, which differentiates ``apply``."""
    eng = builtin(ref)(SIZES, {}, "float64")
    rng = np.random.default_rng(0)
    eng.set_tensors({k: rng.normal(size=v.shape) for k, v in eng.tensors().items()})
    n_state = 2 if "LSTM" in ref else 1
    xs, state = rng.normal(size=(3, 2, 3)), tuple(rng.normal(size=(2, 4)) for _ in range(n_state))
    w_out, w_state = rng.normal(size=(3, 2, 4)), [rng.normal(size=(2, 4)) for _ in range(n_state)]
    mine, base = eng.vjp(xs, state, w_out, w_state, 0), JaxEngine.vjp(eng, xs, state, w_out, w_state, 0)
    assert set(mine[0]) == set(base[0]) == set(eng.tensors())
    for k in base[0]:
        np.testing.assert_allclose(mine[0][k], base[0][k], rtol=1e-12, atol=1e-14, err_msg=k)
    np.testing.assert_allclose(mine[1], base[1], rtol=1e-12, atol=1e-14)
    for a, b in zip(mine[2], base[2]):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    # and run is apply
    ran = eng.run(xs, state)
    applied = eng.apply(eng._tensors, eng._in(xs), tuple(eng._in(s) for s in state))
    for a, b in zip(ran, applied):
        for u, v in zip(a, b):
            np.testing.assert_array_equal(u, np.asarray(v))


def test_empty_sequence_and_batch():
    eng = builtin("haiku:LSTM")(SIZES, {}, "float64")
    state = (np.ones((2, 4)), np.ones((2, 4)))
    assert eng.run(np.zeros((0, 2, 3)), state) == []
    d_t, d_x, d_s = eng.vjp(np.zeros((0, 2, 3)), state, np.zeros((0, 2, 4)), [np.ones((2, 4))] * 2, 0)
    assert all(not v.any() for v in d_t.values()) and d_x.shape == (0, 2, 3)
    assert all((s == 1).all() for s in d_s)  # the final state is the initial one
    assert [st[0].shape for st in eng.run(np.zeros((2, 0, 3)), (np.zeros((0, 4)),) * 2)] == [(0, 4)] * 2


def test_effective_options():
    assert builtin("equinox.nn:GRUCell")(SIZES, {}, "float64").options == {"use_bias": True}
    assert builtin("haiku:VanillaRNN")(SIZES, {}, "float64").options == {"double_bias": True}
    assert builtin("haiku:LSTM")(SIZES, {}, "float64").options == {}


@pytest.mark.parametrize(
    ("ref", "options", "message"),
    [
        ("equinox.nn:LSTMCell", {"bias": True}, "unknown option 'bias' (options: use_bias)"),
        ("equinox.nn:GRUCell", {"use_bias": 1}, "option 'use_bias' must be bool, got 1"),
        ("haiku:LSTM", {"double_bias": False}, "unknown option 'double_bias' (options: none)"),
        ("haiku:VanillaRNN", {"double_bias": "no"}, "option 'double_bias' must be bool, got 'no'"),
    ],
)
def test_bad_options(ref, options, message):
    with pytest.raises(ShapeError) as info:
        builtin(ref)(SIZES, options, "float64")
    assert str(info.value) == f"{builtin(ref).target}: {message}"


def test_bad_shapes():
    eng = builtin("haiku:LSTM")(SIZES, {}, "float64")
    with pytest.raises(ShapeError, match=r"xs must be \(T, B, 3\)"):
        eng.run(np.zeros((2, 1, 5)), (np.zeros((1, 4)), np.zeros((1, 4))))
    with pytest.raises(ShapeError, match="tuple of 2 arrays"):
        eng.run(np.zeros((2, 1, 3)), (np.zeros((1, 4)),))
    eng = builtin("equinox.nn:GRUCell")(SIZES, {}, "float64")
    with pytest.raises(ShapeError, match=r"must be \(1, 4\)"):
        eng.vjp(np.zeros((2, 1, 3)), (np.zeros((1, 5)),), np.zeros((2, 1, 4)), [np.zeros((1, 4))], 0)
    with pytest.raises(ShapeError, match="sizes need 'input' and 'hidden'"):
        builtin("equinox.nn:GRUCell")({"hidden": 4}, {}, "float64")
    with pytest.raises(ShapeError, match="size 'hidden' must be a positive integer"):
        builtin("haiku:GRU")({"input": 3, "hidden": 0}, {}, "float64")
