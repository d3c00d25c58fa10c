"""Engines for the recurrent cells of Equinox and Haiku (pure JAX: run and vjp come from
:class:`~lstm_verify.frameworks.base.JaxEngine`).

* Equinox (``equinox.nn:LSTMCell``, ``equinox.nn:GRUCell``): a cell is a module of arrays that
  steps one unbatched example (``cell(x, hidden)``); the engine vmaps it over the batch. Its
  tensors are the module's array attributes by name (``weight_ih``, ``weight_hh``, ``bias``,
  ``bias_n``); the options are the constructor's (``use_bias``).
* Haiku (``haiku:LSTM``, ``haiku:GRU``, ``haiku:VanillaRNN``): the core is built and called once
  per step inside ``hk.transform``; its tensors are the parameters ``init`` makes, named without
  the top module's name (``lstm/linear/w`` is ``linear/w``, ``vanilla_rnn/linear_1/b`` is
  ``linear_1/b``); the options are the core's constructor arguments (``double_bias``).

Both build at the requested dtype (JaxEngine turns on x64 for float64).
"""

from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from .base import JaxEngine


def _require(module: str, target: str, extra: str):
    from ..extras import require

    return require(module, f"checking {target}", extra=extra)


def _check_options(target: str, options: dict, allowed: dict) -> None:
    """Raise a one-line ShapeError for an option the cell's constructor does not take (or one
    of the wrong type); ``allowed`` maps each option to its type."""
    for key, value in options.items():
        if key not in allowed:
            known = ", ".join(sorted(allowed)) or "none"
            raise ShapeError(f"{target}: unknown option {key!r} (options: {known})")
        kind = allowed[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ShapeError(f"{target}: option {key!r} must be {kind.__name__}, got {value!r}")


def _sizes(target: str, sizes: dict) -> tuple[int, int]:
    try:
        n_in, n_hid = sizes["input"], sizes["hidden"]
    except KeyError as exc:
        raise ShapeError(f"{target}: sizes need 'input' and 'hidden', got {sorted(sizes)}") from None
    for name, n in (("input", n_in), ("hidden", n_hid)):
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ShapeError(f"{target}: size {name!r} must be a positive integer, got {n!r}")
    return int(n_in), int(n_hid)


def _check_run(target: str, xs, state: tuple, n_state: int, n_in: int, n_hid: int) -> None:
    if xs.ndim != 3 or xs.shape[-1] != n_in:
        raise ShapeError(f"{target}: xs must be (T, B, {n_in}), got shape {tuple(xs.shape)}")
    if len(state) != n_state:
        raise ShapeError(f"{target}: the state is a tuple of {n_state} arrays, got {len(state)}")
    for s in state:
        if tuple(s.shape) != (xs.shape[1], n_hid):
            raise ShapeError(f"{target}: each state array must be ({xs.shape[1]}, {n_hid}), "
                             f"got shape {tuple(s.shape)}")  # fmt: skip


# (target, sizes, options, dtype) -> what an engine of that key builds once: initial tensors
# (replaced, never changed in place) and the jitted step
_BUILT: dict = {}


# ---------------------------------------------------------------------------------- Equinox


class _EquinoxCell(JaxEngine):
    extra = "equinox"
    defaults = {"use_bias": True}
    _class = ""  # the class in equinox.nn
    _fields: tuple[str, ...] = ()  # its array attributes
    _n_state = 1

    def __init__(self, sizes, options, dtype):
        _check_options(self.target, options, {"use_bias": bool})
        self._n_in, self._n_hid = _sizes(self.target, sizes)
        super().__init__(sizes, options, dtype)
        key = (self.target, self._n_in, self._n_hid, self.options["use_bias"], str(self.dtype))
        if key not in _BUILT:
            _BUILT[key] = self._build()
        tensors, self._step = _BUILT[key]
        self._tensors = dict(tensors)

    def _build(self):
        """The initial tensors and the jitted step, shared by every engine of the same key (so
        that a new engine does not compile again)."""
        eqx = _require("equinox", self.target, "equinox")
        jax = _require("jax", self.target, "equinox")
        cls = getattr(eqx.nn, self._class)
        cell = cls(self._n_in, self._n_hid, use_bias=self.options["use_bias"], dtype=self.dtype,
                   key=jax.random.PRNGKey(0))  # fmt: skip
        names = [n for n in self._fields if getattr(cell, n) is not None]
        n_state = self._n_state

        def step(tensors, x, state):
            # the cell as a pure function of the tensors: the same module with them put in
            module = eqx.tree_at(lambda m: [getattr(m, n) for n in names], cell, [tensors[n] for n in names])
            hidden = state if n_state > 1 else state[0]
            new = jax.vmap(lambda xb, hb: module(xb, hb))(x, hidden)
            return tuple(new) if n_state > 1 else (new,)

        return {n: getattr(cell, n) for n in names}, jax.jit(step)

    def apply(self, tensors, xs, state):
        _check_run(self.target, xs, state, self._n_state, self._n_in, self._n_hid)
        out = []
        for t in range(xs.shape[0]):
            state = self._step(tensors, xs[t], tuple(state))
            out.append(state)
        return out


class EquinoxLSTMCell(_EquinoxCell):
    """``equinox.nn.LSTMCell``: hidden ``(h, c)``; ``weight_ih`` (4H, I), ``weight_hh`` (4H, H),
    ``bias`` (4H), gates i, f, g, o."""

    target = "equinox.nn.LSTMCell"
    _class = "LSTMCell"
    _fields = ("weight_ih", "weight_hh", "bias")
    _n_state = 2


class EquinoxGRUCell(_EquinoxCell):
    """``equinox.nn.GRUCell``: hidden ``h``; ``weight_ih`` (3H, I), ``weight_hh`` (3H, H),
    ``bias`` (3H, input side), ``bias_n`` (H, inside the reset product), gates r, z, n."""

    target = "equinox.nn.GRUCell"
    _class = "GRUCell"
    _fields = ("weight_ih", "weight_hh", "bias", "bias_n")


# ---------------------------------------------------------------------------------- Haiku


class _HaikuCore(JaxEngine):
    extra = "haiku"
    _allowed: dict = {}  # constructor options and their types
    _n_state = 1

    def _core(self, hk):
        raise NotImplementedError

    def _wrap(self, hk, state: tuple):  # the engine's state tuple -> the core's state
        return state[0]

    def _unwrap(self, state) -> tuple:
        return (state,)

    def __init__(self, sizes, options, dtype):
        _check_options(self.target, options, self._allowed)
        self._n_in, self._n_hid = _sizes(self.target, sizes)
        super().__init__(sizes, options, dtype)
        key = (self.target, self._n_in, self._n_hid, tuple(sorted(self.options.items())), str(self.dtype))
        if key not in _BUILT:
            _BUILT[key] = self._build()
        self._where, tensors, self._step = _BUILT[key]
        self._tensors = dict(tensors)

    def _build(self):
        """Where each tensor sits in Haiku's parameters, the initial tensors and the jitted
        step, shared by every engine of the same key."""
        hk = _require("haiku", self.target, "haiku")
        jax = _require("jax", self.target, "haiku")
        jnp = jax.numpy
        make, wrap, unwrap = self._core, self._wrap, self._unwrap

        def step(x, state):
            _, new = make(hk)(x, wrap(hk, state))
            return unwrap(new)

        fn = hk.without_apply_rng(hk.transform(step))
        # the parameters take the inputs' dtype (hk.get_parameter(..., inputs.dtype))
        zeros = lambda n: jnp.zeros((1, n), dtype=self.dtype)  # noqa: E731
        params = fn.init(jax.random.PRNGKey(0), zeros(self._n_in), tuple(zeros(self._n_hid) for _ in range(self._n_state)))
        where = {}  # normalised name -> (module path, parameter name)
        for module, table in params.items():
            inner = module.partition("/")[2]
            for pname in table:
                where[f"{inner}/{pname}" if inner else pname] = (module, pname)
        return where, {k: params[m][p] for k, (m, p) in where.items()}, jax.jit(fn.apply)

    def apply(self, tensors, xs, state):
        _check_run(self.target, xs, state, self._n_state, self._n_in, self._n_hid)
        params: dict = {}
        for k, (m, p) in self._where.items():
            params.setdefault(m, {})[p] = tensors[k]
        out = []
        for t in range(xs.shape[0]):
            state = self._step(params, xs[t], tuple(state))
            out.append(tuple(state))
        return out


class HaikuLSTM(_HaikuCore):
    """``haiku.LSTM``: state ``LSTMState(hidden, cell)``; one ``linear`` over [x, h]: ``w``
    (I + H, 4H), ``b`` (4H), gates i, g, f, o, and 1 added to the forget gate at run time."""

    target = "haiku.LSTM"
    _n_state = 2

    def _core(self, hk):
        return hk.LSTM(self._n_hid)

    def _wrap(self, hk, state):
        return hk.LSTMState(hidden=state[0], cell=state[1])

    def _unwrap(self, state):
        return (state.hidden, state.cell)


class HaikuGRU(_HaikuCore):
    """``haiku.GRU``: ``w_i`` (I, 3H), ``w_h`` (H, 3H), ``b`` (3H), gates z, r, a; the reset gate
    multiplies h before the matmul, and h' = (1 - z) h + z a."""

    target = "haiku.GRU"

    def _core(self, hk):
        return hk.GRU(self._n_hid)


class HaikuVanillaRNN(_HaikuCore):
    """``haiku.VanillaRNN``: h' = relu(linear(x) + linear_1(h)); ``linear_1`` has a bias only
    with ``double_bias=True`` (the default)."""

    target = "haiku.VanillaRNN"
    defaults = {"double_bias": True}
    _allowed = {"double_bias": bool}

    def _core(self, hk):
        return hk.VanillaRNN(self._n_hid, double_bias=self.options["double_bias"])


ENGINES = {
    "equinox.nn:LSTMCell": EquinoxLSTMCell,
    "equinox.nn:GRUCell": EquinoxGRUCell,
    "haiku:LSTM": HaikuLSTM,
    "haiku:GRU": HaikuGRU,
    "haiku:VanillaRNN": HaikuVanillaRNN,
}
