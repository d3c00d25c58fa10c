"""ONNX recurrent operators run by onnxruntime as built-in subjects: ``onnx:LSTM``, ``onnx:GRU``,
``onnx:RNN``, and the recurrent node of a model file (``--impl model.onnx``).

An operator engine builds a one-node model (onnx.helper) whose inputs ``X``, ``W``, ``R``, ``B``,
``initial_h`` (``initial_c``, and ``P`` for peepholes, for LSTM) are all graph inputs, so the
tensors are fed at run time; one ``InferenceSession.run`` computes a whole sequence. The
options are the operator's attributes: ``direction`` (only ``forward``), ``activations`` (a
comma-separated string or a list: 3 for LSTM, 2 for GRU, 1 for RNN), ``activation_alpha``,
``activation_beta``, ``clip``, ``layout`` (only 0), ``input_forget`` (LSTM), ``linear_before_reset``
(GRU), and ``peepholes`` (LSTM; not an attribute: whether the optional input ``P`` is given).

Tensors (forward only, so ``num_directions`` = 1): ``W`` (1, G*H, I), ``R`` (1, G*H, H), ``B``
(1, 2*G*H) = [Wb, Rb], ``P`` (1, 3H); G = 4 for LSTM (gate order i, o, f, c), 3 for GRU (z, r, h),
1 for RNN. The state is (h, c) for LSTM, (h,) otherwise. ``run`` returns ``h`` after every step
(output ``Y``) and ``c`` only after the last one (``Y_c``), ``None`` elsewhere.

Facts the engines rely on (onnxruntime, ``onnxruntime/core/providers/cpu/rnn``):

* The CPU kernels compute in float32 only: ``DeepCpuLstmOp::Compute`` and ``DeepCpuGruOp::Compute``
  raise "LSTM/GRU operator does not support double yet" for double inputs, and RNN has no double
  kernel at all ("Could not find an implementation for RNN"). The engines hold and compute in
  float32 whatever dtype is asked for.
* LSTM (``uni_directional_lstm.cc``): ``LoadBias`` sums Wb and Rb per gate in the order i, o, f, c;
  ``LoadPeepholeWeights`` reads P in the order i, o, f; the input and forget gates' peepholes read
  the previous cell, the output gate's the new one (``merge_lstm_gates_to_memory`` updates the
  cell in place before the output gate reads it); ``input_forget`` sets ``f = 1 - i`` and never
  reads the forget rows of W, R, B nor the forget peephole.
* GRU (``deep_cpu_gru.cc``, the operator's documentation): ``Ht = (1 - zt) * ht + zt * Ht-1``;
  ``linear_before_reset = 0`` (default) computes ``ht = g(Xt Wh^T + (rt * Ht-1) Rh^T + Rbh + Wbh)``,
  ``1`` computes ``ht = g(Xt Wh^T + rt * (Ht-1 Rh^T + Rbh) + Wbh)``.
* ``layout = 1`` (batch-first) is refused by every kernel ("Batchwise recurrent operations
  (layout == 1) are not supported").

Errors of onnxruntime itself (``onnxruntime.capi.onnxruntime_pybind11_state.InvalidArgument``
and the like) come out of :meth:`OnnxRecurrent.run` unchanged.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..errors import LstmVerifyError, ShapeError
from ..extras import require
from .base import Engine

OPS = ("LSTM", "GRU", "RNN")
# ONNX activation names, by their lower-case spelling
ACTIVATIONS = {a.lower(): a for a in ("Relu", "Tanh", "Sigmoid", "Affine", "LeakyRelu", "ThresholdedRelu",
                                      "ScaledTanh", "HardSigmoid", "Elu", "Softsign", "Softplus")}  # fmt: skip
OPSET = 14  # the default-domain opset of the operator models (LSTM-14, GRU-14, RNN-14)
IR_VERSION = 8
FLOAT = 1  # onnx.TensorProto.FLOAT


def _onnx():
    return require("onnx", "checking an ONNX operator", extra="onnx")


def _ort():
    return require("onnxruntime", "checking an ONNX operator", extra="onnx")


class OnnxRecurrent(Engine):
    """One ONNX recurrent operator (``op``) with ``hidden_size = sizes["hidden"]`` in a one-node
    model run by onnxruntime's CPU kernel."""

    extra = "onnx"
    sequence = True
    gradients = None
    op = ""
    gates = 1  # G: the number of gate blocks in W and R
    states = ("h",)
    defaults: dict = {}
    fixed_sizes: dict | None = None  # the sizes a model file fixes (None: any)
    computes = "float32"

    def __init__(self, sizes, options, dtype):
        super().__init__(sizes, options, dtype)
        for k in ("input", "hidden"):
            n = self.sizes.get(k)
            if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
                raise ShapeError(f"{self.target}: needs the positive integer sizes 'input' and 'hidden', "
                                 f"got {self.sizes}")  # fmt: skip
        self.options = {**self.defaults, **normalise_options(self.op, options, self.target)}
        self.input_size = int(self.sizes["input"])
        self.hidden_size = int(self.sizes["hidden"])
        G, H, Ix = self.gates, self.hidden_size, self.input_size
        self.shapes = {"W": (1, G * H, Ix), "R": (1, G * H, H), "B": (1, 2 * G * H)}
        if self.options.get("peepholes"):
            self.shapes["P"] = (1, 3 * H)
        rng = np.random.default_rng(0)
        bound = 1.0 / math.sqrt(H)
        self._tensors = {k: rng.uniform(-bound, bound, s).astype(np.float32) for k, s in self.shapes.items()}
        self.version = _ort().__version__
        self.label = f"{self.target} (onnxruntime {self.version}, float32)"
        self._session = self._make_session()

    def __repr__(self):
        return f"<{getattr(self, 'label', self.target)}>"

    # ------------------------------------------------------------------ the one-node model

    def attributes(self) -> dict:
        """The node's attributes from the effective options."""
        o = self.options
        attrs = {"hidden_size": self.hidden_size, "direction": o["direction"],
                 "activations": o["activations"].split(",")}  # fmt: skip
        for k in ("activation_alpha", "activation_beta"):
            if k in o:
                attrs[k] = list(o[k])
        if "clip" in o:
            attrs["clip"] = float(o["clip"])
        for k in ("input_forget", "linear_before_reset"):
            if k in o:
                attrs[k] = int(o[k])
        return attrs

    def opset(self) -> tuple[int, int]:
        """(default-domain opset, IR version) of the model the node runs in."""
        return OPSET, IR_VERSION

    def _model(self):
        helper = _onnx().helper
        H = self.hidden_size
        ins = [helper.make_tensor_value_info("X", FLOAT, ["T", "N", self.input_size])]
        ins += [helper.make_tensor_value_info(k, FLOAT, list(s)) for k, s in self.shapes.items() if k != "P"]
        ins += [helper.make_tensor_value_info(f"initial_{s}", FLOAT, [1, "N", H]) for s in self.states]
        node_in = ["X", "W", "R", "B", "", "initial_h"]
        if self.op == "LSTM":
            node_in.append("initial_c")
            if "P" in self.shapes:
                ins.append(helper.make_tensor_value_info("P", FLOAT, list(self.shapes["P"])))
                node_in.append("P")
        outs = ["Y", "Y_h"] + (["Y_c"] if self.op == "LSTM" else [])
        node = helper.make_node(self.op, node_in, outs, name=self.op.lower(), **self.attributes())
        graph = helper.make_graph([node], f"lstm_verify_{self.op.lower()}", ins,
                                  [helper.make_tensor_value_info(k, FLOAT, None) for k in outs])  # fmt: skip
        opset, ir = self.opset()
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        model.ir_version = ir
        return model

    def _make_session(self):
        ort = _ort()
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        so.log_severity_level = 4  # onnxruntime's errors reach the caller as exceptions
        return ort.InferenceSession(self._model().SerializeToString(), so, providers=["CPUExecutionProvider"])

    # ------------------------------------------------------------------ the Engine interface

    def tensors(self):
        return {k: v.copy() for k, v in self._tensors.items()}

    def set_tensors(self, values):
        missing = sorted(set(self._tensors) - set(values))
        extra = sorted(set(values) - set(self._tensors))
        if missing or extra:
            raise ShapeError(f"{self.target}: set_tensors needs exactly {sorted(self._tensors)}; "
                             f"missing {missing}, unknown {extra}")  # fmt: skip
        new = {}
        for k, s in self.shapes.items():
            a = np.asarray(values[k])
            if a.shape != s:
                raise ShapeError(f"{self.target}: tensor {k!r} must have shape {s}, got {a.shape}")
            new[k] = a.astype(np.float32)
        self._tensors = new

    def run(self, xs, state):
        xs = np.asarray(xs)
        if len(state) != len(self.states):
            raise ShapeError(f"{self.target}: the state is {self.states}, got {len(state)} arrays")
        if xs.ndim == 3 and xs.shape[0] == 0:
            return []
        feed = {"X": xs.astype(np.float32), **self._tensors}
        for name, s in zip(self.states, state):
            feed[f"initial_{name}"] = np.asarray(s, dtype=np.float32)[None]
        out = self._session.run(None, feed)
        Y = out[0]  # (T, 1, N, H)
        T = Y.shape[0]
        if self.op != "LSTM":
            return [(Y[t, 0],) for t in range(T)]
        return [(Y[t, 0], out[2][0] if t == T - 1 else None) for t in range(T)]


class OnnxLSTM(OnnxRecurrent):
    target = "onnx.LSTM"
    op = "LSTM"
    gates = 4
    states = ("h", "c")
    defaults = {"direction": "forward", "activations": "Sigmoid,Tanh,Tanh", "layout": 0, "input_forget": 0,
                "peepholes": False}  # fmt: skip


class OnnxGRU(OnnxRecurrent):
    target = "onnx.GRU"
    op = "GRU"
    gates = 3
    defaults = {"direction": "forward", "activations": "Sigmoid,Tanh", "layout": 0, "linear_before_reset": 0}


class OnnxRNN(OnnxRecurrent):
    target = "onnx.RNN"
    op = "RNN"
    gates = 1
    defaults = {"direction": "forward", "activations": "Tanh", "layout": 0}


ENGINES = {"onnx:LSTM": OnnxLSTM, "onnx:GRU": OnnxGRU, "onnx:RNN": OnnxRNN}
_BY_OP = {cls.op: cls for cls in ENGINES.values()}


# --------------------------------------------------------------------------- options


def known_options(op: str) -> list[str]:
    common = ["activation_alpha", "activation_beta", "activations", "clip", "direction", "layout"]
    return sorted(common + {"LSTM": ["input_forget", "peepholes"], "GRU": ["linear_before_reset"], "RNN": []}[op])


def _floats(target, key, value) -> tuple[float, ...]:
    items = value.split(",") if isinstance(value, str) else value if isinstance(value, (list, tuple)) else [value]
    out = []
    for v in items:
        try:
            f = math.nan if isinstance(v, bool) else float(v.strip()) if isinstance(v, str) else float(v)
        except (TypeError, ValueError):
            f = math.nan
        if not math.isfinite(f):
            raise ShapeError(f"{target}: option {key!r} must be finite numbers (a list or a comma-separated string), "
                             f"got {value!r}")  # fmt: skip
        out.append(f)
    return tuple(out)


def _flag(target, key, value) -> int:
    if value in (0, 1) and not isinstance(value, float):  # also False / True
        return int(value)
    raise ShapeError(f"{target}: option {key!r} must be 0 or 1 (or false / true), got {value!r}")


def normalise_options(op: str, options: dict, target: str) -> dict:
    """The user's options (ONNX attributes, and ``peepholes`` for LSTM) checked and put in one
    form: ``activations`` a comma-separated string in ONNX's spelling, flags as 0 / 1 (peepholes a
    bool), alpha / beta tuples of floats, ``clip`` a float."""
    count = {"LSTM": 3, "GRU": 2, "RNN": 1}[op]
    known = known_options(op)
    out = {}
    for key, value in options.items():
        if key == "hidden_size":
            raise ShapeError(f"{target}: option 'hidden_size' is set by the check (the hidden size); do not pass it")
        if key not in known:
            raise ShapeError(f"{target}: unknown option {key!r}; the ONNX {op} operator takes {known}")
        if key == "direction":
            if value in ("reverse", "bidirectional"):
                raise ShapeError(f"{target}: attribute direction = {value!r} is not supported: lstm-verify checks "
                                 f"one cell, so only direction = 'forward'")  # fmt: skip
            if value != "forward":
                raise ShapeError(f"{target}: attribute 'direction' must be 'forward', 'reverse' or 'bidirectional', "
                                 f"got {value!r}")  # fmt: skip
            out[key] = value
        elif key == "activations":
            names = value.split(",") if isinstance(value, str) else value if isinstance(value, (list, tuple)) else None
            if names is None or not all(isinstance(n, str) for n in names):
                raise ShapeError(f"{target}: option 'activations' must be names (a list or a comma-separated string), "
                                 f"got {value!r}")  # fmt: skip
            names = [n.strip() for n in names]
            bad = [n for n in names if n.lower() not in ACTIVATIONS]
            if bad:
                raise ShapeError(f"{target}: unknown activations {bad}; ONNX has {sorted(ACTIVATIONS.values())}")
            if len(names) != count:
                raise ShapeError(f"{target}: attribute 'activations' needs {count} names for a forward {op} "
                                 f"({DEFAULT_ACTIVATIONS[op]}), got {len(names)}: {value!r}")  # fmt: skip
            out[key] = ",".join(ACTIVATIONS[n.lower()] for n in names)
        elif key in ("activation_alpha", "activation_beta"):
            out[key] = _floats(target, key, value)
        elif key == "clip":
            c = _floats(target, key, value)
            if len(c) != 1 or c[0] <= 0:
                raise ShapeError(f"{target}: attribute 'clip' must be one positive number, got {value!r}")
            out[key] = c[0]
        elif key == "layout":
            if _flag(target, key, value) != 0:
                raise ShapeError(f"{target}: attribute layout = 1 (batch-first) is not supported by onnxruntime's "
                                 f"{op} kernel; use layout = 0")  # fmt: skip
            out[key] = 0
        elif key == "peepholes":
            out[key] = bool(_flag(target, key, value))
        else:  # input_forget, linear_before_reset
            out[key] = _flag(target, key, value)
    return out


DEFAULT_ACTIVATIONS = {op: cls.defaults["activations"] for op, cls in _BY_OP.items()}


# --------------------------------------------------------------------------- model files


class ModelError(LstmVerifyError, ValueError):
    """A model file that is missing, unreadable, not ONNX, or without exactly one recurrent node
    whose weights the file stores."""


def _constant_values(onnx, graph) -> dict:
    """name -> array of every initializer and every Constant node's output (a tensor value)."""
    values = {t.name: t for t in graph.initializer}
    for n in graph.node:
        if n.op_type == "Constant" and n.domain in ("", "ai.onnx") and len(n.output) == 1:
            for a in n.attribute:
                if a.name == "value" and a.type == onnx.AttributeProto.TENSOR:
                    values[n.output[0]] = a.t
    return values


def _node_options(onnx, node) -> dict:
    """The node's attributes as options (hidden_size and unknown attributes left out)."""
    out = {}
    for a in node.attribute:
        v = onnx.helper.get_attribute_value(a)
        if isinstance(v, bytes):
            v = v.decode()
        elif isinstance(v, list):
            v = [x.decode() if isinstance(x, bytes) else x for x in v]
        out[a.name] = v
    return out


def load_model(path) -> dict:
    """What an engine needs from a model file: the recurrent node's op type, attributes (as
    options), weights (W, R, B, P by role), opset and IR version. Raises :class:`ModelError`."""
    onnx = _onnx()
    p = Path(path)
    if not p.exists():
        raise ModelError(f"{path}: no such model file")
    if not p.is_file():
        raise ModelError(f"{path}: not a file")
    try:
        model = onnx.load(str(p))
    except Exception as exc:  # noqa: BLE001 - protobuf's DecodeError, an OSError, ...
        raise ModelError(f"{path}: not an ONNX model ({type(exc).__name__}: {str(exc).strip()[:200]})") from None
    graph = model.graph
    if not graph.node:
        raise ModelError(f"{path}: not an ONNX model with a graph (no nodes found)")
    rec = [n for n in graph.node if n.op_type in OPS and n.domain in ("", "ai.onnx")]
    if len(rec) != 1:
        kinds: dict[str, int] = {}
        for n in graph.node:
            kinds[n.op_type] = kinds.get(n.op_type, 0) + 1
        has = ", ".join(f"{k} x{v}" if v > 1 else k for k, v in kinds.items())
        raise ModelError(f"{path}: lstm-verify checks a model with exactly one LSTM, GRU or RNN node; "
                         f"it has {len(rec)} ({has})")  # fmt: skip
    node = rec[0]
    values = _constant_values(onnx, graph)
    weights = {}
    roles = ["X", "W", "R", "B", "sequence_lens", "initial_h"] + (["initial_c", "P"] if node.op_type == "LSTM" else [])
    for role, name in zip(roles, node.input):
        if role not in ("W", "R", "B", "P") or not name:
            continue
        if name not in values:
            src = [n.op_type for n in graph.node if name in n.output]
            how = f"computed by a {src[0]} node" if src else "a graph input"
            raise ModelError(f"{path}: the {node.op_type} node's {role} ({name!r}) is {how}, not stored in the file; "
                             f"lstm-verify reads the weights from initializers or Constant nodes")  # fmt: skip
        weights[role] = onnx.numpy_helper.to_array(values[name])
    for role in ("W", "R"):
        if role not in weights:
            raise ModelError(f"{path}: the {node.op_type} node has no {role} input")
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), OPSET)
    return {"path": str(path), "op": node.op_type, "name": node.name, "options": _node_options(onnx, node),
            "weights": weights, "opset": opset, "ir_version": model.ir_version}  # fmt: skip


def model_engine(path) -> type[OnnxRecurrent]:
    """The engine class of a model file's recurrent node: the operator engine of its op type,
    with the node's attributes fixed (options that disagree are an error), its weights as the
    initial tensors, and its sizes in ``fixed_sizes``."""
    info = load_model(path)
    op, where = info["op"], f"{path} ({info['op']} node {info['name']!r})"
    base = _BY_OP[op]
    attrs = dict(info["options"])
    hidden_attr = attrs.pop("hidden_size", None)
    unknown = sorted(set(attrs) - set(known_options(op)))
    if unknown:
        raise ModelError(f"{where}: attributes {unknown} are not ONNX {op} attributes lstm-verify knows")
    w = info["weights"]
    W, R = w["W"], w["R"]
    if W.ndim != 3 or R.ndim != 3 or R.shape[0] != W.shape[0] or W.shape[1] != R.shape[1] or W.shape[1] % base.gates:
        raise ModelError(f"{where}: W {W.shape} and R {R.shape} are not [num_directions, {base.gates}*H, I] "
                         f"and [num_directions, {base.gates}*H, H]")  # fmt: skip
    H, Ix, nd = R.shape[2], W.shape[2], W.shape[0]
    if W.shape[1] != base.gates * H:
        raise ModelError(f"{where}: W has {W.shape[1]} rows, {base.gates} gates of hidden size {H} need {base.gates * H}")
    if hidden_attr is not None and hidden_attr != H:
        raise ModelError(f"{where}: attribute hidden_size = {hidden_attr} but R {R.shape} has hidden size {H}")
    try:
        fixed = {**base.defaults, **normalise_options(op, attrs, where)}
    except ShapeError as exc:
        raise ModelError(str(exc)) from None
    if nd != 1:
        raise ModelError(f"{where}: W has num_directions = {nd}; lstm-verify checks direction = 'forward' only")
    expect = {"B": (1, 2 * base.gates * H), "P": (1, 3 * H)}
    for role, shape in expect.items():
        if role in w and w[role].shape != shape:
            raise ModelError(f"{where}: {role} has shape {w[role].shape}, expected {shape}")
    if op == "LSTM":
        fixed["peepholes"] = "P" in w
    initial = {"W": W, "R": R, "B": w.get("B", np.zeros(expect["B"])), **({"P": w["P"]} if "P" in w else {})}

    class ModelEngine(base):
        """The recurrent node of a model file, alone, fed the check's tensors and state."""

        model_path = info["path"]
        fixed_sizes = {"input": int(Ix), "hidden": int(H)}
        model_options = fixed
        defaults = fixed

        def __init__(self, sizes, options, dtype):
            got = {k: sizes.get(k) for k in self.fixed_sizes}
            if got != self.fixed_sizes:
                raise ShapeError(f"{where}: the model's sizes are {self.fixed_sizes} (from W {W.shape} and R "
                                 f"{R.shape}); the check asked for {dict(sizes)}")  # fmt: skip
            mine = normalise_options(op, options, where)
            clash = {k: (v, fixed.get(k)) for k, v in mine.items() if fixed.get(k) != v}
            if clash:
                text = "; ".join(f"{k} = {v!r} but the model has {m!r}" for k, (v, m) in clash.items())
                raise ShapeError(f"{where}: options disagree with the model: {text}")
            super().__init__(sizes, fixed, dtype)
            self._tensors = {k: np.asarray(v, dtype=np.float32).copy() for k, v in initial.items()}
            self.label = f"{where} (onnxruntime {self.version}, float32)"

        def opset(self):
            return max(info["opset"], 7), max(info["ir_version"], 3)

    ModelEngine.__name__ = ModelEngine.__qualname__ = f"Onnx{op}Model"
    return ModelEngine
