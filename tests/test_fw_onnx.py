"""The ONNX operators LSTM, GRU and RNN run by onnxruntime, and model files, as built-in subjects.

Model files are built here with onnx.helper (the weights as initializers), and exported from
torch.nn.LSTM / GRU / RNN with torch's TorchScript exporter (``dynamo=False``, which works offline)
when torch is installed.
"""

from __future__ import annotations

import sys
import warnings

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="the onnx extra (onnx, onnxruntime) is not installed")
ort = pytest.importorskip("onnxruntime", reason="the onnx extra (onnx, onnxruntime) is not installed")

from onnx import TensorProto, helper, numpy_helper

import lstm_verify as lv
from lstm_verify.conformance import check
from lstm_verify.errors import LstmVerifyError, MissingExtraError, ShapeError
from lstm_verify.frameworks import builtin, references
from lstm_verify.frameworks.onnx_ops import ModelError, OnnxRecurrent
from lstm_verify.identify import identify
from lstm_verify.layout import from_target, get_layout, stack

EXAMPLES = 12
# (catalog cell, built-in subject, options)
CONFORMING = [
    ("lstm", "onnx:LSTM", {}),
    ("lstm_peephole", "onnx:LSTM", {"peepholes": True}),
    ("gru", "onnx:GRU", {"linear_before_reset": 1}),
    ("gru_cho", "onnx:GRU", {}),
    ("rnn_tanh", "onnx:RNN", {}),
    ("rnn_relu", "onnx:RNN", {"activations": "Relu"}),
]


@pytest.fixture
def ort_runs(monkeypatch):
    """How many times onnxruntime's InferenceSession.run was called."""
    calls = {"n": 0}
    real = ort.InferenceSession.run

    def counting(self, *args, **kwargs):
        calls["n"] += 1
        return real(self, *args, **kwargs)

    monkeypatch.setattr(ort.InferenceSession, "run", counting)
    return calls


def _case(cell, I=3, H=4, T=6, B=5, seed=0):
    rng = np.random.default_rng(seed)
    params = cell.init_params(I, H, seed=seed, scale=1.5)
    xs = rng.normal(size=(T, B, I))
    state = {s: rng.normal(size=(B, H)) * 0.7 for s, _ in cell.ir.states}
    return params, xs, state


def _compare(cell, engine, params, xs, state, order):
    """Every step's h and the last c of the engine against the generated float64 reference."""
    run = cell.numpy().forward(params, xs, state)
    steps = engine.run(xs, tuple(state[s] for s in order))
    assert len(steps) == xs.shape[0]
    for t, st in enumerate(steps):
        h = st[order.index("h")]
        assert h.dtype == np.float32
        np.testing.assert_allclose(h, run.outputs[t], rtol=2e-5, atol=2e-6, err_msg=f"h at step {t}")
        if "c" in order:
            c = st[order.index("c")]
            if t < len(steps) - 1:
                assert c is None  # ONNX exposes the cell state only after the last step
            else:
                np.testing.assert_allclose(c, run.state["c"], rtol=2e-5, atol=2e-6, err_msg="last c")


# --------------------------------------------------------------------------- the operators


def test_registry():
    assert {"onnx:LSTM", "onnx:GRU", "onnx:RNN"} <= set(references())
    assert builtin("onnx:GRU").target == "onnx.GRU"
    assert builtin("onnx:GRU").sequence and builtin("onnx:GRU").gradients is None
    with pytest.raises(LstmVerifyError, match="onnx:LSTM"):
        builtin("onnx:GRUCell")


@pytest.mark.parametrize("name, ref, options", CONFORMING, ids=[c[0] for c in CONFORMING])
def test_operator_conforms(name, ref, options):
    report = check(name, ref, options=options, examples=EXAMPLES, seed=0)
    assert report.passed, report.table()
    assert report.precision == "float32", report.table()  # onnxruntime's kernels are float32 only
    assert any(r.examples > 0 for r in report.rows)


@pytest.mark.parametrize("name, ref, options", CONFORMING, ids=[c[0] for c in CONFORMING])
def test_one_call_runs_the_sequence(name, ref, options, ort_runs):
    """Every h of a 6-step sequence and the last c, from one InferenceSession.run, against the
    reference; the engine holds float32 whatever dtype it is asked for."""
    cell = lv.load(name)
    layout = get_layout(cell.ir, "onnx")
    engine = builtin(ref)({"input": 3, "hidden": 4}, options, "float64")
    assert all(engine.options[k] == v for k, v in layout.options)
    assert all(v.dtype == np.float32 for v in engine.tensors().values())
    params, xs, state = _case(cell)
    engine.set_tensors(stack(layout, params, split=np.random.default_rng(1)))
    ort_runs["n"] = 0
    _compare(cell, engine, params, xs, state, list(layout.state))
    assert ort_runs["n"] == 1


def test_check_calls_onnxruntime_once_per_sequence(ort_runs, monkeypatch):
    runs = {"n": 0}
    real = OnnxRecurrent.run

    def counting(self, xs, state):
        runs["n"] += 1 if xs.shape[0] else 0
        return real(self, xs, state)

    monkeypatch.setattr(OnnxRecurrent, "run", counting)
    report = check("lstm", "onnx:LSTM", examples=EXAMPLES, seed=0)
    assert report.passed, report.table()
    assert runs["n"] > 0 and ort_runs["n"] == runs["n"]


def test_gru_linear_before_reset_0_is_gru_cho_not_gru():
    """ONNX's default GRU (linear_before_reset = 0) resets before the hidden matmul: gru_cho."""
    assert check("gru_cho", "onnx:GRU", examples=EXAMPLES, seed=0).passed
    report = check("gru", "onnx:GRU", examples=EXAMPLES, seed=0, identify=False, shrink=False)
    assert not report.passed and "linear_before_reset" in report.error
    # forced through gru's own tensor mapping, the reset-before kernel computes other numbers
    forced = check("gru", "onnx:GRU", layout="onnx", examples=EXAMPLES, seed=0, identify=False, shrink=False)
    assert not forced.passed, forced.table()
    assert identify("onnx:GRU", claimed="gru", precision="float32").matches[0].cell.name == "gru_cho"
    # and the reset-after kernel is not gru_cho
    other = check("gru_cho", "onnx:GRU", layout="onnx", options={"linear_before_reset": 1}, examples=EXAMPLES,
                  seed=0, identify=False, shrink=False)  # fmt: skip
    assert not other.passed, other.table()


def _lstm_tensors(p, H, f_rows, peep=False):
    """ONNX LSTM tensors (gate order i, o, f, c) with the given forget rows."""
    Wf, Rf, bf, pf = f_rows
    t = {"W": np.concatenate([p["W_i_x"], p["W_o_x"], Wf, p["W_g_x"]])[None],
         "R": np.concatenate([p["W_i_h"], p["W_o_h"], Rf, p["W_g_h"]])[None],
         "B": np.concatenate([p["b_i"], p["b_o"], bf, p["b_g"], np.zeros(4 * H)])[None]}  # fmt: skip
    if peep:
        t["P"] = np.concatenate([p["p_i"], p["p_o"], pf])[None]
    return t


@pytest.mark.parametrize("name, peep", [("lstm_cifg", False), ("greff_cifg", True)])
def test_input_forget_is_cifg(name, peep):
    """input_forget = 1 computes f = 1 - i and never reads the forget rows of W, R, B (nor the
    forget peephole): the CIFG cells, whatever those rows hold."""
    cell = lv.load(name)
    I, H = 3, 4
    params, xs, state = _case(cell, I, H, seed=2)
    rng = np.random.default_rng(3)
    engine = builtin("onnx:LSTM")({"input": I, "hidden": H}, {"input_forget": 1, "peepholes": peep}, "float32")
    outs = []
    for _ in range(2):
        junk = (rng.normal(size=(H, I)) * 5, rng.normal(size=(H, H)) * 5, rng.normal(size=H) * 5, rng.normal(size=H) * 5)
        engine.set_tensors(_lstm_tensors(params, H, junk, peep))
        _compare(cell, engine, params, xs, state, ["h", "c"])
        outs.append(engine.run(xs, (state["h"], state["c"]))[-1])
    np.testing.assert_array_equal(outs[0][0], outs[1][0])


@pytest.mark.parametrize("name, activations", [("greff_niaf", "Sigmoid,Affine,Tanh"), ("greff_noaf", "Sigmoid,Tanh,Affine")])
def test_affine_activation_gives_greff_variants(name, activations):
    """Affine(x) = alpha*x + beta with alpha = 1, beta = 0 (onnxruntime's defaults for Affine are
    0 and 0, so they must be given): the linear block input (NIAF), the linear output (NOAF)."""
    cell = lv.load(name)
    I, H = 3, 4
    params, xs, state = _case(cell, I, H, seed=4)
    p = params
    opts = {"peepholes": True, "activations": activations, "activation_alpha": 1.0, "activation_beta": 0.0}
    engine = builtin("onnx:LSTM")({"input": I, "hidden": H}, opts, "float64")
    engine.set_tensors(_lstm_tensors(p, H, (p["W_f_x"], p["W_f_h"], p["b_f"], p["p_f"]), peep=True))
    _compare(cell, engine, params, xs, state, ["h", "c"])


@pytest.mark.parametrize(
    "ref, options, words",
    [
        ("onnx:LSTM", {"forget_bias": 1.0}, ["unknown option 'forget_bias'", "input_forget"]),
        ("onnx:GRU", {"direction": "reverse"}, ["direction", "reverse", "forward"]),
        ("onnx:RNN", {"direction": "bidirectional"}, ["direction", "bidirectional"]),
        ("onnx:LSTM", {"direction": "sideways"}, ["direction", "sideways"]),
        ("onnx:GRU", {"activations": "Sigmoid"}, ["activations", "needs 2"]),
        ("onnx:RNN", {"activations": "Swish"}, ["Swish", "Relu"]),
        ("onnx:LSTM", {"input_forget": 2}, ["input_forget", "0 or 1"]),
        ("onnx:GRU", {"linear_before_reset": "yes"}, ["linear_before_reset"]),
        ("onnx:RNN", {"clip": -1.0}, ["clip", "positive"]),
        ("onnx:LSTM", {"activation_alpha": "one"}, ["activation_alpha"]),
        ("onnx:LSTM", {"layout": 1}, ["layout", "batch-first"]),
        ("onnx:GRU", {"hidden_size": 4}, ["hidden_size"]),
        ("onnx:RNN", {"peepholes": True}, ["unknown option 'peepholes'"]),
    ],
)
def test_bad_option_is_a_clear_error(ref, options, words):
    with pytest.raises(ShapeError) as err:
        builtin(ref)({"input": 3, "hidden": 4}, options, "float64")
    for w in words:
        assert w in str(err.value), str(err.value)
    assert "\n" not in str(err.value)
    cell = {"onnx:LSTM": "lstm", "onnx:GRU": "gru", "onnx:RNN": "rnn_tanh"}[ref]
    with pytest.raises(ShapeError, match=words[0]):  # the check stops at once, naming the option
        check(cell, ref, options=options, examples=2, seed=0)


def test_onnxruntime_errors_come_out_unchanged():
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    engine = builtin("onnx:RNN")({"input": 3, "hidden": 4}, {}, "float64")
    with pytest.raises(state.InvalidArgument) as err:  # X of input size 5 for W of 3
        engine.run(np.zeros((2, 1, 5)), (np.zeros((1, 4)),))
    assert not isinstance(err.value, LstmVerifyError)


def test_missing_onnxruntime_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'lstm-verify\[onnx\]'"):
        builtin("onnx:GRU")({"input": 2, "hidden": 3}, {}, "float64")


def test_empty_sequence_needs_no_call(ort_runs):
    engine = builtin("onnx:LSTM")({"input": 3, "hidden": 4}, {}, "float64")
    assert engine.run(np.zeros((0, 2, 3)), (np.zeros((2, 4)), np.zeros((2, 4)))) == []
    assert ort_runs["n"] == 0


# --------------------------------------------------------------------------- model files


def _save_model(path, op, weights, attrs=None, extra_nodes=(), n_rec=1, W_from_node=False, opset=17):
    """A model whose recurrent node reads W, R, B (P) from initializers."""
    f = TensorProto.FLOAT
    H = weights["R"].shape[-1]
    inits = [numpy_helper.from_array(np.asarray(v, np.float32), name=k) for k, v in weights.items()]
    inputs = ["X", "W_raw" if W_from_node else "W", "R", weights.get("B") is not None and "B" or ""]
    nodes = list(extra_nodes)
    if W_from_node:
        nodes.append(helper.make_node("Identity", ["W_in"], ["W_raw"]))
    if "P" in weights:
        inputs += ["", "", "", "P"]
    outs = []
    for k in range(n_rec):
        outs.append(f"Y{k}")
        nodes.append(helper.make_node(op, inputs, [f"Y{k}"], hidden_size=H, name=f"rec{k}", **(attrs or {})))
    graph_inputs = [helper.make_tensor_value_info("X", f, ["T", "N", weights["W"].shape[-1]])]
    if W_from_node:
        graph_inputs.append(helper.make_tensor_value_info("W_in", f, list(weights["W"].shape)))
        inits = [t for t in inits if t.name != "W"]
    graph = helper.make_graph(nodes, "g", graph_inputs, [helper.make_tensor_value_info(o, f, None) for o in outs],
                              initializer=inits)  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return str(path)


def test_model_file_built_with_onnx_helper(tmp_path, ort_runs):
    """A GRU (linear_before_reset = 1) and a peephole LSTM stored in model files: the sizes come
    from the weights, the attributes are the options, the initializers the first tensors."""
    gru_cell, lstm_cell = lv.load("gru"), lv.load("lstm_peephole")
    I, H = 2, 3
    gp = gru_cell.init_params(I, H, seed=5)
    gw = stack(get_layout(gru_cell.ir, "onnx"), gp)
    gru_path = _save_model(tmp_path / "gru.onnx", "GRU", gw, {"linear_before_reset": 1})
    engine_cls = builtin(gru_path)
    assert engine_cls.fixed_sizes == {"input": I, "hidden": H}
    report = check("gru", gru_path, examples=EXAMPLES, seed=0)
    assert report.passed, report.table()
    assert "gru.onnx" in report.table()

    engine = engine_cls({"input": I, "hidden": H}, {"linear_before_reset": 1}, "float64")
    got = from_target(gru_cell.ir, "onnx", engine.tensors(), {"input": I, "hidden": H})
    for k, v in gp.items():  # the initializers, read back through the layout
        np.testing.assert_allclose(got[k], v, rtol=1e-6, atol=1e-7)
    ort_runs["n"] = 0
    _compare(gru_cell, engine, gp, *(_case(gru_cell, I, H, T=4)[1:]), ["h"])
    assert ort_runs["n"] == 1

    lp = lstm_cell.init_params(I, H, seed=6)
    lstm_path = _save_model(tmp_path / "peep.onnx", "LSTM", stack(get_layout(lstm_cell.ir, "onnx"), lp))
    assert builtin(lstm_path)({"input": I, "hidden": H}, {}, "float64").options["peepholes"] is True
    assert check("lstm_peephole", lstm_path, examples=EXAMPLES, seed=0).passed
    report = check("lstm", lstm_path, examples=2, seed=0, identify=False)
    assert not report.passed and "peepholes" in report.error


def test_model_file_without_bias_has_zero_B(tmp_path):
    cell = lv.load("rnn_tanh")
    p = cell.init_params(2, 3, seed=7)
    w = stack(get_layout(cell.ir, "onnx"), p)
    path = _save_model(tmp_path / "nobias.onnx", "RNN", {"W": w["W"], "R": w["R"], "B": None})
    engine = builtin(path)({"input": 2, "hidden": 3}, {}, "float64")
    np.testing.assert_array_equal(engine.tensors()["B"], np.zeros((1, 6), np.float32))
    assert check("rnn_tanh", path, examples=EXAMPLES, seed=0).passed


def test_model_options_and_sizes_are_fixed(tmp_path):
    cell = lv.load("gru_cho")
    w = stack(get_layout(cell.ir, "onnx"), cell.init_params(2, 3, seed=8))
    path = _save_model(tmp_path / "cho.onnx", "GRU", w, {"activations": ["Sigmoid", "Tanh"]})
    engine_cls = builtin(path)
    engine_cls({"input": 2, "hidden": 3}, {"linear_before_reset": 0, "activations": "sigmoid,tanh"}, "float64")
    with pytest.raises(ShapeError, match=r"linear_before_reset = 1 but the model has 0"):
        engine_cls({"input": 2, "hidden": 3}, {"linear_before_reset": 1}, "float64")
    with pytest.raises(ShapeError, match=r"model's sizes are \{'input': 2, 'hidden': 3\}.*'hidden': 5"):
        engine_cls({"input": 2, "hidden": 5}, {}, "float64")
    with pytest.raises(ShapeError, match="disagree with the model"):
        check("gru_cho", path, options={"linear_before_reset": 1}, examples=2, seed=0)


def _torch_export(module, path):
    torch = pytest.importorskip("torch", reason="the torch extra is not installed")
    try:
        with warnings.catch_warnings():  # the TorchScript exporter's deprecation and tracer warnings
            warnings.simplefilter("ignore")
            torch.onnx.export(module, (torch.zeros(3, 2, module.input_size),), str(path), dynamo=False)
    except Exception as exc:  # noqa: BLE001 - an exporter that is gone or needs what is not here
        pytest.skip(f"torch.onnx.export(dynamo=False) is not available here: {type(exc).__name__}: {exc}")
    return str(path)


@pytest.mark.parametrize("name, kind, kwargs", [("lstm", "LSTM", {}), ("gru", "GRU", {}),
                                                 ("rnn_relu", "RNN", {"nonlinearity": "relu"})])  # fmt: skip
def test_model_exported_from_torch(tmp_path, name, kind, kwargs):
    """torch.nn.LSTM / GRU / RNN exported to ONNX: the model's node is the catalog cell, and its
    weights read through the onnx layout are the module's read through the torch layout."""
    torch = pytest.importorskip("torch", reason="the torch extra is not installed")
    torch.manual_seed(0)
    module = getattr(torch.nn, kind)(3, 4, **kwargs)
    path = _torch_export(module, tmp_path / f"{name}.onnx")
    report = check(name, path, examples=EXAMPLES, seed=0)
    assert report.passed, report.table()
    cell = lv.load(name)
    sizes = {"input": 3, "hidden": 4}
    engine = builtin(path)(sizes, {}, "float64")
    mine = from_target(cell.ir, "onnx", engine.tensors(), sizes)
    tensors = {k.removesuffix("_l0"): v.detach().numpy() for k, v in module.named_parameters()}
    theirs = from_target(cell.ir, "torch", tensors, sizes)
    for k in theirs:
        np.testing.assert_allclose(mine[k], theirs[k], rtol=1e-6, atol=1e-7, err_msg=k)


def test_bad_model_files(tmp_path):
    cell = lv.load("lstm")
    w = stack(get_layout(cell.ir, "onnx"), cell.init_params(2, 3, seed=9))
    (tmp_path / "text.onnx").write_text("not a model\n")
    (tmp_path / "empty.onnx").write_bytes(b"")
    relu = helper.make_node("Relu", ["X"], ["Y"])
    cases = {
        str(tmp_path / "missing.onnx"): "no such model file",
        str(tmp_path / "text.onnx"): "not an ONNX model",
        str(tmp_path / "empty.onnx"): "no nodes",
        _save_model(tmp_path / "two.onnx", "LSTM", w, n_rec=2): "exactly one LSTM, GRU or RNN node; it has 2 (LSTM x2)",
        _save_model(tmp_path / "computed.onnx", "LSTM", w, W_from_node=True): "W ('W_raw') is computed by a Identity",
    }
    both = {k: np.concatenate([v, v]) for k, v in w.items()}
    bi = _save_model(tmp_path / "bi.onnx", "LSTM", both, {"direction": "bidirectional"})
    cases[bi] = "direction = 'bidirectional' is not supported"
    graph = helper.make_graph([relu], "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1])])  # fmt: skip
    onnx.save(helper.make_model(graph), str(tmp_path / "relu.onnx"))
    cases[str(tmp_path / "relu.onnx")] = "it has 0 (Relu)"
    for path, words in cases.items():
        with pytest.raises(LstmVerifyError) as err:
            builtin(path)
        assert words in str(err.value), str(err.value)
        assert path in str(err.value) and "\n" not in str(err.value)
        with pytest.raises(LstmVerifyError, match="onnx"):
            check("lstm", path, examples=2, seed=0)
    assert issubclass(ModelError, ValueError)


def test_cli_model_file(tmp_path, capsys):
    from lstm_verify.cli import main

    cell = lv.load("gru_cho")
    path = _save_model(tmp_path / "cli.onnx", "GRU", stack(get_layout(cell.ir, "onnx"), cell.init_params(2, 3, seed=10)))
    assert main(["check", "gru_cho", "--impl", path, "--examples", "5", "--seed", "0"]) == 0
    out = capsys.readouterr().out
    assert "float32" in out
