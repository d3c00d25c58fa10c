"""Keras 3 recurrent cells as built-in subjects: ``keras.layers:LSTMCell``, ``:GRUCell`` and
``:SimpleRNNCell``, on the torch or the JAX backend.

Keras picks its backend once, when it is first imported, from ``KERAS_BACKEND``. If Keras is not
imported yet and ``KERAS_BACKEND`` is unset, the engine sets it to ``torch`` when torch is
importable, else ``jax`` (Keras's own default, TensorFlow, is not an extra of lstm-verify); a
Keras already imported keeps the backend it has.

Facts the engines rely on (Keras 3.15, ``keras/src/layers/rnn``):

* ``LSTMCell``: ``kernel`` (I, 4H) and ``recurrent_kernel`` (H, 4H) hold the gates in the order
  i, f, c, o as columns (``z = x @ kernel + h @ recurrent_kernel + bias``, split in 4), one
  ``bias`` (4H,); the state is ``[h, c]``; ``unit_forget_bias`` only initialises the forget
  block of the bias to 1 (nothing is added at run time).
* ``GRUCell``: gates z, r, h as columns of ``kernel`` (I, 3H) and ``recurrent_kernel`` (H, 3H);
  ``h' = z*h + (1 - z)*hh``. ``reset_after=True`` (default): ``bias`` (2, 3H), row 0 added to the
  input projection, row 1 to the recurrent one (so ``r`` multiplies the hidden bias of ``hh``);
  ``reset_after=False``: ``bias`` (3H,) and ``hh = act(x W + (r*h) U + b)``.
* ``SimpleRNNCell``: ``h' = act(x @ kernel + bias + h @ recurrent_kernel)``.
* Every cell owns a seed generator whose integer state is a non-trainable variable
  (``seed_generator_N/seed_generator_state``): listed by :meth:`frozen`, never a tensor.

Precision: Keras 3 computes in float32 even in a float64 layer on these backends. Its type
promotion maps every 64-bit result to 32 bits on all backends but TensorFlow
(``keras/src/backend/common/dtypes.py``: ``BIT64_TO_BIT32_DTYPE``, "Force to be 32-bit dtype
when encountering 64-bit dtype. This is to be aligned with JAX's default behavior."), so
``keras.backend.result_type("float64", "float64")`` is ``"float32"``: the torch backend's
``matmul`` casts float64 operands to float32 and its result back to float64, the JAX backend's
``tanh`` returns float32. A float64 layer (its variables are float64; on JAX the engine turns on
``jax_enable_x64`` for them, as every JAX engine does) therefore returns float64 or float32
arrays holding float32-rounded values. The engine reports what it computes in
(:attr:`KerasCell.computes`): float32 if one of the operations the cell is made of (matmul,
add, multiply, its activations) rounds a float64 result to float32, else the requested dtype
(a JAX ``SimpleRNNCell(activation="relu")`` is float64 throughout); it returns its states and
gradients in that dtype, so that a check compares them at that precision.
"""

from __future__ import annotations

import importlib.util
import inspect
import os
import re
import sys

import numpy as np

from ..errors import ShapeError
from ..extras import require
from .base import Engine

BACKENDS = ("torch", "jax")
# constructor arguments that are not options: the size and the precision come from the check
_RESERVED = {"self", "units", "dtype", "kwargs"}
# compiled steps of Keras cells on JAX, shared by cells of one class, options, sizes and dtype
_JITTED: dict = {}
# keyword arguments Keras cells take through **kwargs
_EXTRA_KWARGS = {"LSTMCell": ("implementation", "name"), "GRUCell": ("implementation", "name"),
                 "SimpleRNNCell": ("name",)}  # fmt: skip


def _keras():
    """Keras, imported on the torch backend (else JAX) unless it is imported already or
    ``KERAS_BACKEND`` says otherwise."""
    if "keras" not in sys.modules and not os.environ.get("KERAS_BACKEND"):
        os.environ["KERAS_BACKEND"] = "torch" if importlib.util.find_spec("torch") else "jax"
    return require("keras", "checking a Keras cell", extra="keras")


def backend_name() -> str:
    """The backend Keras runs on in this process (importing Keras as :func:`_keras` does)."""
    return _keras().backend.backend()


def _strip_counter(name: str) -> str:
    return re.sub(r"_\d+$", "", name)


class KerasCell(Engine):
    """One Keras recurrent cell, built with ``units = sizes["hidden"]`` and built on an input
    of shape (B, ``sizes["input"]``), at the requested dtype."""

    extra = "keras"
    gradients = "torch"  # on the JAX backend: "jax" (set per instance)
    layer_class = ""  # the class name in keras.layers
    defaults = {"activation": "tanh", "use_bias": True}

    def __init__(self, sizes, options, dtype):
        super().__init__(sizes, options, dtype)
        keras = _keras()
        self.backend = keras.backend.backend()
        if self.backend not in BACKENDS:
            raise ShapeError(f"{self.target}: Keras runs on the {self.backend!r} backend here; lstm-verify "
                             f"checks Keras cells on {' or '.join(BACKENDS)} (set KERAS_BACKEND before "
                             f"Keras is imported)")  # fmt: skip
        self.gradients = self.backend
        for k in ("input", "hidden"):
            if k not in self.sizes:
                raise ShapeError(f"{self.target}: needs the sizes 'input' and 'hidden', got {sorted(self.sizes)}")
        self.keras = keras
        self.version = keras.__version__
        self._jit = None
        cls = getattr(keras.layers, self.layer_class)
        allowed = sorted((set(inspect.signature(cls.__init__).parameters) - _RESERVED)
                         | set(_EXTRA_KWARGS[self.layer_class]))  # fmt: skip
        given = self._given = dict(options)
        for k in given:
            if k in ("units", "dtype"):
                raise ShapeError(f"{self.target}: option {k!r} is set by the check (units = the hidden size, "
                                 f"dtype = --dtype); do not pass it")  # fmt: skip
            if k not in allowed:
                raise ShapeError(f"{self.target}: unknown option {k!r}; {self.layer_class} takes {allowed}")
        if self.dtype == np.float64 and self.backend == "jax":
            require("jax", "checking a Keras cell on JAX", extra="keras").config.update("jax_enable_x64", True)
        try:
            self.layer = cls(int(self.sizes["hidden"]), dtype=self.dtype.name, **given)
            self.layer.build((1, int(self.sizes["input"])))
        except (ValueError, TypeError) as exc:
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ShapeError(f"{self.target} with options {given}: Keras refused it: {msg}") from None
        for k in ("activation", "recurrent_activation"):  # by name, as layouts give them
            if k in self.options:
                try:
                    name = keras.activations.serialize(getattr(self.layer, k))
                except Exception:  # a function Keras cannot name (a lambda): kept as given
                    continue
                if isinstance(name, str):
                    self.options[k] = name
        self._names = {self._normalise(v.path): v for v in self.layer.variables}
        self._float = {k: v for k, v in self._names.items() if v.trainable and "float" in str(v.dtype)}
        held = {np.dtype(self._np(v.value).dtype) for v in self._float.values()}
        self.computes = min(held | {self._precision()}, key=lambda d: d.itemsize)
        self.label = (f"{self.target} (Keras {self.version}, {self.backend} backend, "
                      f"{self.dtype.name} layer, computes in {self.computes.name})")  # fmt: skip

    def __repr__(self):
        return f"<{self.label}>"

    def _precision(self) -> np.dtype:
        """float32 if one of the operations the cell is made of (matmul, add, multiply, 1 - x,
        its activations) rounds a result of the requested wider dtype to float32 (its dtype is
        narrower, or every value is a float32 number), else the requested dtype."""
        if self.dtype.itemsize <= 4:
            return self.dtype
        ops = self.keras.ops
        rng = np.random.default_rng(0)
        a, b = (ops.convert_to_tensor(rng.normal(size=(4, 4)).astype(self.dtype)) for _ in range(2))
        acts = [getattr(self.layer, k, None) for k in ("activation", "recurrent_activation")]
        probes = [lambda: ops.matmul(a, b), lambda: ops.add(a, b), lambda: ops.multiply(a, b), lambda: 1 - a]
        probes += [lambda f=f: f(a) for f in acts if callable(f)]
        for probe in probes:
            y = self._np(probe())
            if y.dtype.itemsize < self.dtype.itemsize or np.array_equal(y.astype(np.float32).astype(y.dtype), y):
                return np.dtype(np.float32)
        return self.dtype

    # ------------------------------------------------------------------ tensors

    def _normalise(self, path: str) -> str:
        """``lstm_cell_1/kernel`` -> ``kernel``; ``seed_generator_3/seed_generator_state`` ->
        ``seed_generator/seed_generator_state``."""
        own = self.layer.name + "/"
        if path.startswith(own):
            return path[len(own):]
        head, sep, rest = path.partition("/")
        return _strip_counter(head) + sep + rest

    def _np(self, a) -> np.ndarray:
        if self.backend == "torch":
            return a.detach().cpu().numpy()
        return np.asarray(a)

    def _out(self, a) -> np.ndarray:
        """A state or gradient as NumPy, in the dtype the cell computes in."""
        return self._np(a).astype(self.computes, copy=False)

    def tensors(self):
        return {k: self._np(v.value).copy() for k, v in self._float.items()}

    def frozen(self):
        return set(self._names) - set(self._float)

    def set_tensors(self, values):
        missing = sorted(set(self._float) - set(values))
        if missing:
            raise ShapeError(f"{self.target}: set_tensors needs every tensor; missing {missing}")
        for k, v in self._float.items():
            a = np.asarray(values[k])
            if tuple(a.shape) != tuple(v.shape):
                raise ShapeError(f"{self.target}: tensor {k!r} has shape {tuple(v.shape)}, got {tuple(a.shape)}")
            v.assign(a.astype(self._np(v.value).dtype))

    # ------------------------------------------------------------------ running

    def _tensor(self, a, grad=False):
        a = np.asarray(a, dtype=self.dtype)
        if self.backend == "torch":
            import torch

            return torch.tensor(a, requires_grad=grad)
        return self.keras.ops.convert_to_tensor(a)

    def _steps(self, call, xs, state):
        """States after each step, calling ``call(x_t, [states]) -> (output, [states])``."""
        out, s = [], list(state)
        for t in range(xs.shape[0]):
            _, new = call(xs[t], s)
            s = list(new) if isinstance(new, (list, tuple)) else [new]
            out.append(tuple(s))
        return out

    def _jax_step(self):
        """``(step, step_vjp)``: ``layer.stateless_call`` of one step, ``step(trainable,
        non_trainable, x, [states]) -> [new states]``, and its ``jax.vjp``, ``step_vjp(trainable,
        non_trainable, x, [states], [cotangents of the new states]) -> (d trainable, d x,
        [d states])``, both compiled by ``jax.jit``. Cells of one class, options, sizes and dtype
        compute the same function of their variables, so they share one compiled pair."""
        if self._jit is None:
            key = (self.layer_class, repr(sorted(self._given.items())), tuple(self.sizes.items()), self.dtype.name)
            if key not in _JITTED:
                jax = require("jax", "checking a Keras cell on JAX", extra="keras")
                layer = self.layer

                def step(trainable, non_trainable, x, states):
                    (_, new), _ = layer.stateless_call(trainable, non_trainable, x, states)
                    return list(new) if isinstance(new, (list, tuple)) else [new]

                def step_vjp(trainable, non_trainable, x, states, cotangents):
                    _, pull = jax.vjp(lambda tv, x, s: step(tv, non_trainable, x, s), trainable, x, states)
                    return pull(cotangents)

                if len(_JITTED) >= 64:
                    _JITTED.clear()
                _JITTED[key] = (jax.jit(step), jax.jit(step_vjp))
            self._jit = _JITTED[key]
        return self._jit

    def _variables(self):
        return ([v.value for v in self.layer.trainable_variables],
                [v.value for v in self.layer.non_trainable_variables])  # fmt: skip

    def run(self, xs, state):
        xs = np.asarray(xs)
        s0 = [self._tensor(s) for s in state]
        if self.backend == "torch":
            import torch

            with torch.no_grad():
                steps = self._steps(self.layer, self._tensor(xs), s0)
        else:
            (step, _), (tv, ntv) = self._jax_step(), self._variables()
            steps = self._steps(lambda x, s: (None, step(tv, ntv, x, s)), self._tensor(xs), s0)
        return [tuple(self._out(s) for s in step) for step in steps]

    def vjp(self, xs, state, w_out, w_state, output):
        """Gradients of ``sum_t <w_out[t], states_t[output]> + sum_k <w_state[k], states_T[k]>``
        by torch autograd through the Keras variables (torch backend) or ``jax.grad`` of
        ``layer.stateless_call`` (JAX backend): (tensor gradients by name, d xs, d state)."""
        xs = np.asarray(xs)
        if self.backend == "torch":
            return self._vjp_torch(xs, state, w_out, w_state, output)
        return self._vjp_jax(xs, state, w_out, w_state, output)

    @staticmethod
    def _loss(steps, s0, w_out, w_state, output, weight):
        """``sum_t <w_out[t], states_t[output]> + sum_k <w_state[k], states_T[k]>`` (the final
        state of an empty sequence is the initial one)."""
        total = 0.0
        for st, w in zip(steps, w_out):
            total = total + (st[output] * weight(w, st[output])).sum()
        for s, w in zip(steps[-1] if steps else s0, w_state):
            if w is not None:
                total = total + (s * weight(w, s)).sum()
        return total

    def _vjp_torch(self, xs, state, w_out, w_state, output):
        import torch

        names = list(self._float)
        params = [self._float[k].value for k in names]
        x = self._tensor(xs, grad=True)
        s0 = [self._tensor(s, grad=True) for s in state]
        with torch.enable_grad():
            steps = self._steps(self.layer, x, s0)
            loss = self._loss(steps, s0, w_out, w_state, output,
                              lambda w, like: torch.as_tensor(np.asarray(w), dtype=like.dtype))  # fmt: skip
            wrt = params + [x] + s0
            grads = torch.autograd.grad(loss, wrt, allow_unused=True) if torch.is_tensor(loss) else [None] * len(wrt)
        g = [self._out(torch.zeros_like(a) if d is None else d) for a, d in zip(wrt, grads)]
        return dict(zip(names, g[: len(names)])), g[len(names)], tuple(g[len(names) + 1 :])

    def _vjp_jax(self, xs, state, w_out, w_state, output):
        """Back-propagation through time, one ``jax.vjp`` of the cell per step."""
        jnp = require("jax", "checking a Keras cell on JAX", extra="keras").numpy
        (step, step_vjp), (tv, ntv) = self._jax_step(), self._variables()
        x = self._tensor(xs)
        states = [[self._tensor(s) for s in state]]
        for t in range(xs.shape[0]):
            states.append(step(tv, ntv, x[t], states[-1]))
        ct = [jnp.zeros_like(s) if w is None else jnp.asarray(np.asarray(w), dtype=s.dtype)
              for s, w in zip(states[-1], w_state)]  # fmt: skip
        d_tv = [jnp.zeros_like(v) for v in tv]
        d_x = [None] * xs.shape[0]
        for t in reversed(range(xs.shape[0])):
            ct[output] = ct[output] + jnp.asarray(np.asarray(w_out[t]), dtype=ct[output].dtype)
            ct = [c.astype(s.dtype) for c, s in zip(ct, states[t + 1])]
            g_tv, d_x[t], ct = step_vjp(tv, ntv, x[t], states[t], ct)
            d_tv = [a + b for a, b in zip(d_tv, g_tv)]
        position = {id(v): i for i, v in enumerate(self.layer.trainable_variables)}
        grads = {k: self._out(d_tv[position[id(v)]]) for k, v in self._float.items()}
        g_x = np.stack([self._out(d) for d in d_x]) if d_x else np.zeros(xs.shape, self.computes)
        return grads, g_x.astype(self.computes, copy=False), tuple(self._out(c) for c in ct)


class KerasLSTMCell(KerasCell):
    target = "keras.layers.LSTMCell"
    layer_class = "LSTMCell"
    defaults = {"activation": "tanh", "recurrent_activation": "sigmoid", "use_bias": True, "unit_forget_bias": True}


class KerasGRUCell(KerasCell):
    target = "keras.layers.GRUCell"
    layer_class = "GRUCell"
    defaults = {"activation": "tanh", "recurrent_activation": "sigmoid", "use_bias": True, "reset_after": True}


class KerasSimpleRNNCell(KerasCell):
    target = "keras.layers.SimpleRNNCell"
    layer_class = "SimpleRNNCell"
    defaults = {"activation": "tanh", "use_bias": True}


ENGINES = {
    "keras.layers:LSTMCell": KerasLSTMCell,
    "keras.layers:GRUCell": KerasGRUCell,
    "keras.layers:SimpleRNNCell": KerasSimpleRNNCell,
}
