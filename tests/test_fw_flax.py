"""Flax's recurrent cells (flax.linen and flax.nnx) checked as built-in subjects, with no adapter
code: each against the catalog cell it computes, through the public check (forward and
gradients, float64 with x64), and the ways they differ from what their names suggest."""

import numpy as np
import pytest

pytest.importorskip("jax", reason="the Flax engines need jax (pip install 'lstm-verify[flax]')")
pytest.importorskip("flax", reason="the Flax engines need flax (pip install 'lstm-verify[flax]')")

import lstm_verify as lv  # noqa: E402
from lstm_verify.conformance import check  # noqa: E402
from lstm_verify.errors import LstmVerifyError, ShapeError  # noqa: E402
from lstm_verify.frameworks import builtin, references  # noqa: E402
from lstm_verify.frameworks.base import JaxEngine  # noqa: E402
from lstm_verify.frameworks.flax_cells import ENGINES  # noqa: E402

EXAMPLES = 10

# (catalog cell, built-in subject, options): every Flax cell that computes a catalog cell
CONFORMING = [
    ("lstm", "flax.linen:LSTMCell", {}),
    ("lstm", "flax.linen:OptimizedLSTMCell", {}),
    ("lstm", "flax.nnx:LSTMCell", {}),
    ("lstm", "flax.nnx:OptimizedLSTMCell", {}),
    ("gru", "flax.linen:GRUCell", {}),
    ("mgu_flax", "flax.linen:MGUCell", {}),
    ("rnn_tanh", "flax.linen:SimpleCell", {}),
    ("rnn_relu", "flax.nnx:SimpleCell", {"activation_fn": "relu"}),
]


@pytest.mark.parametrize("cell, ref, options", CONFORMING, ids=[r for _, r, _ in CONFORMING])
def test_conforms(cell, ref, options):
    report = check(cell, ref, options=options, examples=EXAMPLES, seed=0, max_size=2)
    assert report.passed, report.table()
    assert report.precision == "float64"
    grads = [r for r in report.rows if r.name.startswith("gradients")]
    assert grads and all(r.examples > 0 and r.passed for r in grads), report.table()


def test_float32_cell_is_checked_at_float32():
    options = {"dtype": "float32", "param_dtype": "float32"}
    report = check("gru", "flax.linen:GRUCell", options=options, examples=EXAMPLES, seed=0, max_size=2)
    assert report.passed, report.table()
    assert report.precision == "float32"


def test_registry():
    flax_refs = [r for r in references() if r.startswith("flax.")]
    assert sorted(flax_refs) == sorted(ENGINES)
    assert builtin("flax.nnx:GRUCell") is ENGINES["flax.nnx:GRUCell"]
    with pytest.raises(LstmVerifyError, match="flax.nnx:MGUCell"):
        builtin("flax.nnx:MGUCell")  # nnx has no MGUCell
    for ref, eng in ENGINES.items():
        assert issubclass(eng, JaxEngine)
        assert eng.target == ref.replace(":", ".")


# ------------------------------------------------------------------ tensors, as Flax names them


def test_tensor_names():
    sizes = {"input": 3, "hidden": 2}
    names = {ref: set(eng(sizes, {}, "float64").tensors()) for ref, eng in ENGINES.items()}
    lstm = {f"{p}{g}/kernel" for p in "ih" for g in "ifgo"} | {f"h{g}/bias" for g in "ifgo"}
    assert names["flax.linen:LSTMCell"] == names["flax.linen:OptimizedLSTMCell"] == lstm
    assert names["flax.nnx:LSTMCell"] == {n.replace("if/", "if_/") for n in lstm}
    dense = {"dense_i/kernel", "dense_h/kernel"}
    assert names["flax.nnx:OptimizedLSTMCell"] == dense | {"dense_h/bias"}
    assert names["flax.linen:GRUCell"] == {f"{p}{g}/kernel" for p in "ih" for g in "rzn"} | {
        "ir/bias", "iz/bias", "in/bias", "hn/bias"}  # fmt: skip
    assert names["flax.linen:MGUCell"] == {"if/kernel", "if/bias", "hf/kernel", "in/kernel",
                                           "in/bias", "hn/kernel", "hn/bias"}  # fmt: skip
    assert names["flax.linen:SimpleCell"] == {"i/kernel", "i/bias", "h/kernel"}
    assert names["flax.nnx:SimpleCell"] == dense | {"dense_i/bias"}
    # nnx's GRUCell has no hidden bias of n (its docstring writes one): no b_n_h
    assert names["flax.nnx:GRUCell"] == dense | {"dense_i/bias"}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_built_at_the_requested_dtype(dtype):
    # nnx's SimpleCell computes in float32 unless told otherwise
    eng = ENGINES["flax.nnx:SimpleCell"]({"input": 2, "hidden": 3}, {}, dtype)
    assert {t.dtype for t in eng.tensors().values()} == {np.dtype(dtype)}
    (h,), = eng.run(np.ones((1, 2, 2)), (np.zeros((2, 3)),))
    assert h.dtype == np.dtype(dtype)


# ------------------------------------------------------------------ not what the name says


def test_mgu_cell_is_mgu_flax_not_mgu():
    report = check("mgu", "flax.linen:MGUCell", examples=EXAMPLES, seed=0)
    assert not report.passed
    assert "no layout" in report.error
    names = [m.cell.name for m in report.identification.matches]
    assert names[:1] == ["mgu_flax"] and "mgu" not in names, report.table()


def _random_params(cell, sizes, rng):
    ir = lv.load(cell).ir
    return {p: rng.standard_normal(ir.param_shape(p, sizes)) * 0.7 for p in ir.param_names}


def test_mgu_cell_numbers():
    """Flax's MGUCell step by step against both references: mgu_flax to float64 rounding, and
    far from mgu with the same gate and candidate weights (b_n = b_n_x + b_n_h)."""
    rng = np.random.default_rng(1)
    sizes, T, B = {"input": 3, "hidden": 4}, 5, 2
    p = _random_params("mgu_flax", sizes, rng)
    eng = ENGINES["flax.linen:MGUCell"](sizes, {}, "float64")
    eng.set_tensors({"if/kernel": p["W_f_x"].T, "if/bias": p["b_f"], "hf/kernel": p["W_f_h"].T,
                     "in/kernel": p["W_n_x"].T, "in/bias": p["b_n_x"], "hn/kernel": p["W_n_h"].T,
                     "hn/bias": p["b_n_h"]})  # fmt: skip
    xs, h0 = rng.standard_normal((T, B, 3)), rng.standard_normal((B, 4))
    got = np.stack([h for (h,) in eng.run(xs, (h0,))])
    ref = lv.load("mgu_flax").numpy().forward(p, xs, {"h": h0}).outputs
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-14)
    mgu = {k: p[k] for k in ("W_f_x", "W_f_h", "W_n_x", "W_n_h", "b_f")}
    mgu["b_n"] = p["b_n_x"] + p["b_n_h"]
    other = lv.load("mgu").numpy().forward(mgu, xs, {"h": h0}).outputs
    assert np.abs(got - other).max() > 0.05


def test_lstm_state_order_is_c_h():
    assert lv.load("lstm").spec.layouts  # the flax layouts say state = ["c", "h"]
    report = check("lstm", "flax.linen:LSTMCell", state=("h", "c"), examples=EXAMPLES, seed=0,
                   shrink=False, identify=False)  # fmt: skip
    assert not report.passed
    assert any(not r.passed and r.first_failure for r in report.rows), report.table()


def test_nnx_gru_is_gru_with_its_hidden_n_bias_pinned_at_zero():
    """nnx's GRUCell is the reset-after GRU without b_n_h (its dense_h has no bias): its layout
    pins b_n_h at 0, and the check compares with gru at b_n_h = 0."""
    import lstm_verify as lv
    from lstm_verify.conformance import make_layout
    from lstm_verify.errors import ShapeError

    report = check("gru", "flax.nnx:GRUCell", examples=EXAMPLES, seed=0, max_size=2)
    assert report.passed, report.table()
    lay = next(lay for lay in lv.load("gru").spec.layouts if lay.name == "flax_nnx")
    assert lay.zero == ("b_n_h",)
    unpinned = {"tensors": {t: list(b) for t, b in lay.tensors}, "transpose": list(lay.transpose)}
    with pytest.raises(ShapeError, match=r"unmapped: \['b_n_h'\]"):
        make_layout(lv.load("gru").ir, unpinned)


@pytest.mark.parametrize("cell, ref, options, need", [
    ("rnn_tanh", "flax.linen:SimpleCell", {"residual": True}, "residual=False"),
    ("rnn_tanh", "flax.nnx:SimpleCell", {"activation_fn": "relu"}, "activation_fn='tanh'"),
    ("lstm", "flax.linen:LSTMCell", {"gate_fn": "hard_sigmoid"}, "gate_fn='sigmoid'"),
    ("mgu_flax", "flax.linen:MGUCell", {"reset_gate": False}, "reset_gate=True"),
])  # fmt: skip
def test_options_that_change_the_function_have_no_layout(cell, ref, options, need):
    report = check(cell, ref, options=options, examples=EXAMPLES, seed=0, identify=False)
    assert not report.passed and "no layout" in report.error and need in report.error


# ------------------------------------------------------------------ options and errors


def test_options_are_effective_and_named():
    sizes = {"input": 2, "hidden": 2}
    eng = ENGINES["flax.linen:MGUCell"](sizes, {"forget_bias_init": "zeros"}, "float64")
    assert eng.options == {"gate_fn": "sigmoid", "activation_fn": "tanh", "reset_gate": True,
                           "forget_bias_init": "zeros"}  # fmt: skip
    import flax.linen as nn

    eng = ENGINES["flax.linen:GRUCell"](sizes, {"gate_fn": nn.hard_sigmoid}, "float64")
    assert eng.options["gate_fn"] == "hard_sigmoid"  # a callable is named when it is a known one


@pytest.mark.parametrize("ref, options, message", [
    ("flax.linen:LSTMCell", {"forget_bias": 1.0}, "unknown option 'forget_bias'"),
    ("flax.linen:SimpleCell", {"gate_fn": "sigmoid"}, "unknown option 'gate_fn'"),
    ("flax.nnx:GRUCell", {"gate_fn": "softmax"}, "option 'gate_fn' must name a function"),
    ("flax.linen:GRUCell", {"bias_init": "twos"}, "option 'bias_init' must name an initialiser"),
    ("flax.linen:MGUCell", {"reset_gate": 1}, "option 'reset_gate' must be true or false"),
    ("flax.nnx:LSTMCell", {"dtype": "int8"}, "option 'dtype' must be one of"),
    ("flax.nnx:LSTMCell", {"promote_dtype": "x"}, "option 'promote_dtype' cannot be given"),
    ("flax.nnx:LSTMCell", {"keep_rngs": True}, "unknown option 'keep_rngs'"),
    ("flax.linen:LSTMCell", {"features": 3}, "unknown option 'features'"),
])  # fmt: skip
def test_bad_options(ref, options, message):
    with pytest.raises(ShapeError, match=message):
        ENGINES[ref]({"input": 2, "hidden": 2}, options, "float64")


def test_bad_sizes_and_runs():
    with pytest.raises(ShapeError, match="'hidden'"):
        ENGINES["flax.linen:GRUCell"]({"input": 2}, {}, "float64")
    eng = ENGINES["flax.linen:LSTMCell"]({"input": 2, "hidden": 3}, {}, "float64")
    with pytest.raises(ShapeError, match=r"xs must be \(T, B, 2\)"):
        eng.run(np.zeros((1, 1, 3)), (np.zeros((1, 3)),) * 2)
    with pytest.raises(ShapeError, match=r"tuple \(c, h\)"):
        eng.run(np.zeros((1, 1, 2)), (np.zeros((1, 3)),))
    with pytest.raises(ShapeError, match="missing"):
        eng.set_tensors({})


def test_vjp_is_jax_grad_of_apply():
    """The step-by-step reverse accumulation equals jax.grad of the pure apply (JaxEngine.vjp),
    here with the output c, which is not the last of the state (c, h)."""
    rng = np.random.default_rng(2)
    eng = ENGINES["flax.nnx:OptimizedLSTMCell"]({"input": 3, "hidden": 2}, {}, "float64")
    eng.set_tensors({k: rng.standard_normal(v.shape) for k, v in eng.tensors().items()})
    xs, w_out = rng.standard_normal((3, 2, 3)), rng.standard_normal((3, 2, 2))
    state, w_state = tuple(rng.standard_normal((2, 2, 2))), tuple(rng.standard_normal((2, 2, 2)))
    ours = eng.vjp(xs, state, w_out, w_state, 0)
    theirs = JaxEngine.vjp(eng, xs, state, w_out, w_state, 0)
    assert set(ours[0]) == set(theirs[0]) == set(eng.tensors())
    for k in theirs[0]:
        np.testing.assert_allclose(ours[0][k], theirs[0][k], rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(ours[1], theirs[1], rtol=1e-12, atol=1e-13)
    for a, b in zip(ours[2], theirs[2]):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)
