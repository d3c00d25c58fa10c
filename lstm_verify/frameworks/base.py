"""What a framework's cell must provide to be checked with no adapter code: an *engine*.

An engine builds one framework cell (a Keras layer, a Flax module, an ONNX operator...) for given
sizes, options and a requested dtype, and exposes it in framework terms only:

* ``tensors()``: its trainable floating-point tensors by *normalised* name (no instance
  counters: Keras's ``lstm_cell_1/kernel`` is ``kernel``, Haiku's ``lstm/linear/w`` is
  ``linear/w``), as NumPy arrays; ``frozen()`` the names of the others (Keras's int32 seed
  state), which a check ignores;
* ``set_tensors(values)``: new values for every tensor ``tensors()`` lists (float64 NumPy;
  the engine casts to what it holds);
* ``run(xs, state)``: ``xs`` (T, B, I) float64, ``state`` a tuple in the framework's own
  order; the new state after every step as T tuples in that order, arrays as the framework
  returned them (their dtype is what it computed in), ``None`` where a sequence kernel does
  not expose a state at a step (ONNX gives every ``h`` but only the last ``c``);
* ``vjp(xs, state, w_out, w_state, output)``: gradients of
  ``L = sum_t <w_out[t], states_t[output]> + sum_k <w_state[k], states_T[k]>`` with respect
  to the tensors, ``xs`` and the initial state, by the framework's own differentiation
  (``gradients`` names it: "jax", "torch"); engines with ``gradients = None`` do not define it.

The spec's layouts (``target`` = :attr:`Engine.target`, ``options`` compared with
:attr:`Engine.options`) say which spec parameters the tensors hold.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class Engine:
    target: str = ""  # the layout target, e.g. "keras.layers.GRUCell"
    extra: str = ""  # the pip extra that brings the framework
    sequence: bool = False  # runs whole sequences in one call
    gradients: str | None = None  # "jax", "torch" or None (forward only)
    defaults: dict = {}  # the framework's defaults of the options a layout may name

    def __init__(self, sizes: dict, options: dict, dtype):
        self.sizes = dict(sizes)
        self.options = {**self.defaults, **options}  # effective options, for layout matching
        self.dtype = np.dtype(dtype)

    def tensors(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def frozen(self) -> set[str]:
        return set()

    def set_tensors(self, values: dict[str, np.ndarray]) -> None:
        raise NotImplementedError

    def run(self, xs: np.ndarray, state: tuple) -> list[tuple]:
        raise NotImplementedError

    def vjp(self, xs, state, w_out, w_state, output: int):
        raise NotImplementedError(f"{self.target}: no gradients")


class JaxEngine(Engine):
    """An engine whose cell is a pure JAX function ``apply(tensors, xs, state) -> [tuple per step]``
    of a dict of tensors: run and vjp come from it (``jax.vjp``). Subclasses set
    ``self._tensors`` (a dict of jax arrays by normalised name) and define :meth:`apply`."""

    gradients = "jax"

    def __init__(self, sizes, options, dtype):
        super().__init__(sizes, options, dtype)
        jax = _jax()
        if self.dtype == np.float64:
            jax.config.update("jax_enable_x64", True)  # else JAX computes in float32
        self._tensors: dict[str, Any] = {}

    def apply(self, tensors: dict, xs, state: tuple) -> list[tuple]:
        raise NotImplementedError

    def tensors(self):
        return {k: np.asarray(v) for k, v in self._tensors.items()}

    def set_tensors(self, values):
        jnp = _jax().numpy
        self._tensors = {k: jnp.asarray(np.asarray(values[k]), dtype=self._tensors[k].dtype)
                         for k in self._tensors}  # fmt: skip

    def _in(self, a):
        return _jax().numpy.asarray(np.asarray(a, dtype=self.dtype))

    def run(self, xs, state):
        out = self.apply(self._tensors, self._in(xs), tuple(self._in(s) for s in state))
        return [tuple(None if s is None else np.asarray(s) for s in step) for step in out]

    def vjp(self, xs, state, w_out, w_state, output):
        jax = _jax()
        jnp = jax.numpy

        def loss(tensors, xs, state):
            steps = self.apply(tensors, xs, state)
            total = sum(jnp.sum(st[output] * jnp.asarray(w, dtype=st[output].dtype))
                        for st, w in zip(steps, w_out))  # fmt: skip
            return total + sum(jnp.sum(s * jnp.asarray(w, dtype=s.dtype)) for s, w in zip(steps[-1], w_state))

        g = jax.grad(loss, argnums=(0, 1, 2))(self._tensors, self._in(xs), tuple(self._in(s) for s in state))
        return ({k: np.asarray(v) for k, v in g[0].items()}, np.asarray(g[1]), tuple(np.asarray(s) for s in g[2]))


def _jax():
    from ..extras import require

    return require("jax", "checking a JAX cell", extra="jax")
