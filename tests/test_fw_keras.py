"""Keras 3's LSTMCell, GRUCell and SimpleRNNCell as built-in subjects (``keras.layers:GRUCell``),
on the backend this process imported Keras with (torch when it is installed) and, in a
subprocess, on the other one (JAX): forward and gradients through the public check against the
generated reference, at the precision each computes in."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import lstm_verify as lv
from lstm_verify.conformance import check
from lstm_verify.errors import MissingExtraError, ShapeError
from lstm_verify.frameworks import builtin
from lstm_verify.layout import get_layout, stack, stack_gradients

# (catalog cell, built-in subject, options)
CASES = [
    ("lstm", "keras.layers:LSTMCell", {}),
    ("gru", "keras.layers:GRUCell", {}),
    ("gru_cho", "keras.layers:GRUCell", {"reset_after": False}),
    ("rnn_tanh", "keras.layers:SimpleRNNCell", {}),
    ("rnn_relu", "keras.layers:SimpleRNNCell", {"activation": "relu"}),
]
IDS = [f"{c}-{r.partition(':')[2]}" for c, r, _ in CASES]
EXAMPLES = 12


@pytest.fixture(scope="module")
def backend():
    """The backend Keras runs on here (importing it as the engines do: torch if installed)."""
    from lstm_verify.frameworks import keras_cells

    try:
        name = keras_cells.backend_name()
    except MissingExtraError as exc:
        pytest.skip(f"the keras extra is not installed: {exc}")
    if name not in keras_cells.BACKENDS:
        pytest.skip(f"Keras runs on {name!r} in this process; the engines need torch or jax")
    return name


def _engine(ref, options=None, dtype="float64", hidden=3, inp=2):
    return builtin(ref)({"input": inp, "hidden": hidden}, dict(options or {}), dtype)


def _problem(cell, eng, seed, T=5, B=2):
    """Random spec parameters and inputs, the tensors the engine's layout makes of them, and
    the initial state in the spec's names."""
    from lstm_verify.conformance import engine_layout

    rng = np.random.default_rng(seed)
    layout = engine_layout(cell, eng)
    params = {k: rng.normal(scale=0.8, size=v.shape) for k, v in cell.init_params(sizes=eng.sizes).items()}
    xs = rng.normal(size=(T, B, eng.sizes["input"]))
    state = {s: rng.normal(scale=0.5, size=(B, eng.sizes[d])) for s, d in cell.ir.states}
    return layout, params, xs, state


# --------------------------------------------------------------------------- the engines


@pytest.mark.parametrize("name,ref,options", CASES, ids=IDS)
def test_conforms(backend, name, ref, options):
    """The public check passes, gradients included, at the precision the cell computes in."""
    report = check(name, ref, options=options, examples=EXAMPLES, seed=0)
    assert report.passed, report.table()
    eng = _engine(ref, options)
    assert report.precision == eng.computes.name
    grads = [row for row in report.rows if row.name.startswith("gradients")]
    assert grads and all(not row.skipped and row.examples > 0 for row in grads), report.table()


@pytest.mark.parametrize("name,ref,options", CASES, ids=IDS)
def test_precision_reported_is_computed(backend, name, ref, options):
    """A float64 layer holds float64 variables; the engine says float32 exactly when Keras's
    float64 results carry float32 rounding (its promotion maps 64-bit results to 32 bits), and
    returns its states in that dtype."""
    cell, eng = lv.load(name), _engine(ref, options)
    assert {v.dtype for v in eng.tensors().values()} == {np.dtype(np.float64)}
    layout, params, xs, state = _problem(cell, eng, seed=1)
    eng.set_tensors(stack(layout, params))
    steps = eng.run(xs, tuple(state[s] for s in layout.state))
    assert {s.dtype for step in steps for s in step} == {eng.computes}
    ref_ = cell.numpy().forward(params, xs, state)
    got = np.stack([step[layout.state.index(cell.ir.output)] for step in steps]).astype(np.float64)
    err = np.abs(got - ref_.outputs).max() / np.abs(ref_.outputs).max()
    assert err < 1e-5
    assert (err > 1e-10) == (eng.computes == np.float32), (err, eng.label)
    # a float32 layer computes in float32
    assert _engine(ref, options, dtype="float32").computes == np.float32


def test_lstm_keras_facts_float64_is_float32(backend):
    """The issue's claim, checked: Keras 3 on torch and JAX rounds a float64 LSTMCell to
    float32 (``keras.backend.result_type("float64", "float64")`` is float32)."""
    eng = _engine("keras.layers:LSTMCell")
    assert eng.keras.backend.result_type("float64", "float64") == "float32"
    assert eng.computes == np.float32
    assert f"{backend} backend" in eng.label and "computes in float32" in eng.label


@pytest.mark.parametrize("name,ref,options", CASES[:3], ids=IDS[:3])
def test_vjp_matches_generated_backward(backend, name, ref, options):
    """vjp (torch autograd / jax.vjp of the Keras cell) against the generated backward, every
    state weighted at the end and the output at every step; an empty sequence gives the final
    weights back as the initial state's gradient."""
    cell, eng = lv.load(name), _engine(ref, options)
    assert eng.gradients == backend
    layout, params, xs, state = _problem(cell, eng, seed=2)
    eng.set_tensors(stack(layout, params))
    order = list(layout.state)
    out = order.index(cell.ir.output)
    rng = np.random.default_rng(3)
    run = cell.numpy().forward(params, xs, state, save=True)
    w_out = rng.normal(size=run.outputs.shape)
    w_state = [rng.normal(size=state[s].shape) for s in order]
    g = cell.numpy().backward(params, run.cache, w_out, dict(zip(order, w_state)))
    d_t, d_x, d_s = eng.vjp(xs, tuple(state[s] for s in order), w_out, w_state, out)
    want = stack_gradients(layout, g.params)
    assert set(d_t) == set(want)

    def close(a, b):
        assert np.asarray(a).dtype == eng.computes
        assert np.abs(np.asarray(a, np.float64) - b).max() <= 1e-4 * (1 + np.abs(b).max())

    for k in want:
        close(d_t[k], want[k])
    close(d_x, g.inputs["x"])
    for s, d in zip(order, d_s):
        close(d, g.state[s])
    d_t, d_x, d_s = eng.vjp(xs[:0], tuple(state[s] for s in order), w_out[:0], w_state, out)
    assert d_x.shape == xs[:0].shape and all(not np.any(v) for v in d_t.values())
    for w, d in zip(w_state, d_s):
        close(d, w)


def test_tensor_names_and_frozen_seed_state(backend):
    """Names carry no instance counter (the third GRUCell built is still ``kernel``); the
    integer seed-generator state is frozen, not a tensor."""
    engines = [_engine("keras.layers:GRUCell") for _ in range(3)]
    for eng in engines:
        assert sorted(eng.tensors()) == ["bias", "kernel", "recurrent_kernel"]
        assert eng.frozen() == {"seed_generator/seed_generator_state"}
        assert eng.backend == backend
    assert engines[-1].layer.name != engines[0].layer.name  # Keras numbered them
    eng = engines[0]
    assert eng.tensors()["bias"].shape == (2, 9) and eng.tensors()["kernel"].shape == (2, 9)
    assert eng.options == {"activation": "tanh", "recurrent_activation": "sigmoid", "use_bias": True,
                           "reset_after": True}  # fmt: skip
    assert _engine("keras.layers:GRUCell", {"reset_after": False}).tensors()["bias"].shape == (9,)


def test_unit_forget_bias_only_initialises(backend):
    """unit_forget_bias sets the forget block of the bias (i, f, c, o) to 1 at build time;
    nothing is added at run time (the lstm check passes with any bias, above)."""
    H = 3
    bias = _engine("keras.layers:LSTMCell", hidden=H).tensors()["bias"]
    assert np.array_equal(bias, np.r_[np.zeros(H), np.ones(H), np.zeros(2 * H)])
    assert not np.any(_engine("keras.layers:LSTMCell", {"unit_forget_bias": False}).tensors()["bias"])


def test_reset_after_false_is_gru_cho_not_gru(backend):
    """GRUCell(reset_after=False) has no gru layout: the check names gru_cho instead; the
    default GRUCell claimed as gru_cho is identified as gru."""
    report = check("gru", "keras.layers:GRUCell", options={"reset_after": False}, examples=EXAMPLES, seed=0)
    assert not report.passed
    assert "no layout" in report.error and "reset_after=False" in report.error
    assert [c.cell.name for c in report.identification.matches] == ["gru_cho"]
    report = check("gru_cho", "keras.layers:GRUCell", examples=EXAMPLES, seed=0)
    assert not report.passed
    assert [c.cell.name for c in report.identification.matches] == ["gru"]


HARD_LSTM = """\
name = "lstm_hard_sigmoid"
title = "LSTM with hard-sigmoid gates"
cite = ["Keras 3 LSTMCell(recurrent_activation='hard_sigmoid')"]
input = "x"
state = ["h", "c"]
equations = [
  "i = hard_sigmoid(lin(x, h))",
  "f = hard_sigmoid(lin(x, h))",
  "g = tanh(lin(x, h))",
  "o = hard_sigmoid(lin(x, h))",
  "c' = f*c + i*g",
  "h' = o*tanh(c')",
]

[layouts.keras]
target = "keras.layers.LSTMCell"
options = { recurrent_activation = "hard_sigmoid" }
state = ["h", "c"]
transpose = ["kernel", "recurrent_kernel"]

[layouts.keras.tensors]
kernel = ["W_i_x", "W_f_x", "W_g_x", "W_o_x"]
recurrent_kernel = ["W_i_h", "W_f_h", "W_g_h", "W_o_h"]
bias = ["b_i", "b_f", "b_g", "b_o"]
"""


def test_hard_sigmoid_is_torch_convention(backend, tmp_path):
    """Keras 3's hard_sigmoid is torch's, clamp(x/6 + 1/2, 0, 1) (not Keras 2's 0.2x + 0.5):
    an LSTMCell with it conforms to an lstm whose gates use the catalog's hard_sigmoid, and
    has no layout in the sigmoid lstm."""
    path = tmp_path / "lstm_hard_sigmoid.toml"
    path.write_text(HARD_LSTM)
    opts = {"recurrent_activation": "hard_sigmoid"}
    report = check(lv.load(path), "keras.layers:LSTMCell", options=opts, examples=EXAMPLES, seed=0, identify=False)
    assert report.passed, report.table()
    report = check("lstm", "keras.layers:LSTMCell", options=opts, examples=EXAMPLES, seed=0, identify=False)
    assert not report.passed and "recurrent_activation='hard_sigmoid'" in report.error
    eng = _engine("keras.layers:LSTMCell", opts)
    x = np.linspace(-4, 4, 17)
    y = eng._np(eng.layer.recurrent_activation(eng.keras.ops.convert_to_tensor(x)))
    assert np.allclose(y, np.clip(x / 6 + 0.5, 0, 1), atol=1e-7)


@pytest.mark.parametrize("options,words", [
    ({"bogus": 1}, ["unknown option 'bogus'", "recurrent_activation"]),
    ({"reset_after": True}, ["unknown option 'reset_after'"]),
    ({"units": 5}, ["'units'", "hidden size"]),
    ({"dtype": "float32"}, ["'dtype'"]),
    ({"activation": "nope"}, ["Keras refused", "nope"]),
])  # fmt: skip
def test_bad_option_is_one_clear_error(backend, options, words):
    with pytest.raises(ShapeError) as info:
        check("lstm", "keras.layers:LSTMCell", options=options, examples=1, seed=0)
    text = str(info.value)
    assert "\n" not in text and all(w in text for w in words), text


# --------------------------------------------------------------------------- the other backend

OTHER_SCRIPT = """
import json, os
from lstm_verify.conformance import check
from lstm_verify.frameworks import builtin

def fixed(ref):  # one size, so that JAX compiles each step once: the sizes vary in the main run
    return type("Fixed", (builtin(ref),), {"fixed_sizes": {"input": 2, "hidden": 3}})

for name, ref, options in json.loads(os.environ["CASES"]):
    eng = fixed(ref)({"input": 2, "hidden": 3}, options, "float64")
    r = check(name, fixed(ref), options=options, examples=int(os.environ["EXAMPLES"]), seed=0)
    grads = [row for row in r.rows if row.name.startswith("gradients")]
    print(json.dumps({"name": name, "passed": r.passed, "precision": r.precision, "computes": eng.computes.name,
                      "backend": eng.backend, "gradients": eng.gradients, "label": eng.label,
                      "grad_examples": sum(row.examples for row in grads), "table": r.table()}))
"""


def test_other_backend_in_a_subprocess(backend):
    """The same checks on the backend this process did not import Keras with (Keras picks
    its backend once per process, from KERAS_BACKEND)."""
    other = {"torch": "jax", "jax": "torch"}[backend]
    if importlib.util.find_spec(other) is None:
        pytest.skip(f"{other} is not installed: Keras cannot run on it here")
    env = dict(os.environ, KERAS_BACKEND=other, CASES=json.dumps(CASES), EXAMPLES="6")
    proc = subprocess.run([sys.executable, "-W", "error", "-c", textwrap.dedent(OTHER_SCRIPT)], env=env,
                          capture_output=True, text=True, timeout=540)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert [r["name"] for r in results] == [c for c, _, _ in CASES]
    for r in results:
        assert r["passed"], r["table"]
        assert r["backend"] == other and r["gradients"] == other and f"{other} backend" in r["label"]
        assert r["precision"] == r["computes"] and r["grad_examples"] > 0, r
    assert results[0]["computes"] == "float32"  # the LSTMCell, as on every backend but TensorFlow


def test_cli_check_with_impl_options(backend, capsys):
    """``lstm-verify check gru_cho --impl keras.layers:GRUCell --impl-option reset_after=false``
    conforms; a misspelt option is one error line naming it, exit status 2."""
    from lstm_verify.cli import main

    args = ["check", "gru_cho", "--impl", "keras.layers:GRUCell", "--examples", "10", "--seed", "0"]
    assert main(args + ["--impl-option", "reset_after=false"]) == 0
    out = capsys.readouterr().out
    assert "keras.layers:GRUCell (Keras " in out and ") against gru_cho" in out and "conforms" in out and "gradients (float32)" in out
    assert main(args + ["--impl-option", "reset_aftr=false"]) == 2
    err = capsys.readouterr().err.strip()
    assert "unknown option 'reset_aftr'" in err and len(err.splitlines()) == 1, err
