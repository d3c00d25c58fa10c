"""Engines for the recurrent cells of Equinox and Haiku.

Each engine is a :class:`~lstm_verify.frameworks.base.JaxEngine` whose ``apply`` is a pure
function of its tensors; ``run`` and ``vjp`` compute what JaxEngine's would, as one compiled
program each (a ``lax.scan`` of the framework's step), shared by every engine of the same target,
sizes, options and dtype.

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


# (target, sizes, options, dtype) -> what every engine of that key shares: the initial tensors
# (replaced by set_tensors, never changed in place) and the compiled programs (see _programs)
_BUILT: dict = {}


def _zeros(jax, shaped):
    """Zeros of an abstract array's shape and dtype, put on the device without compiling."""
    return jax.device_put(np.zeros(shaped.shape, shaped.dtype))


def _padded(steps: int) -> int:
    """The length ``run`` runs a sequence of ``steps`` at: a power of two, at least 8, so that one
    compiled program serves many lengths (the steps after the last, on zero inputs, are
    discarded: no step depends on a later one)."""
    return max(8, 1 << max(steps - 1, 0).bit_length())


def _pad(a, length: int):
    """``a`` (NumPy) with zeros appended along the first axis up to ``length``."""
    return np.concatenate([a, np.zeros((length - a.shape[0],) + a.shape[1:], a.dtype)])


def _programs(jax, step):
    """Compiled programs of a pure ``step(tensors, x, state) -> state``: ``scan(tensors, xs,
    state)`` gives each state after every step, (T, B, n); ``grad(tensors, xs, state, w_out,
    w_state, output)`` the gradients of JaxEngine.vjp's loss with respect to the tensors, ``xs``
    and the initial state."""
    jnp = jax.numpy

    def scan(tensors, xs, state):
        def body(s, x):
            new = step(tensors, x, s)
            return new, new

        return jax.lax.scan(body, state, xs)[1]

    def loss(tensors, xs, state, w_out, w_state, output):
        ys = scan(tensors, xs, state)
        final = tuple(y[-1] for y in ys) if xs.shape[0] else state
        total = jnp.sum(ys[output] * w_out.astype(ys[output].dtype))
        return total + sum(jnp.sum(f * w.astype(f.dtype)) for f, w in zip(final, w_state))

    return jax.jit(scan), jax.jit(jax.grad(loss, argnums=(0, 1, 2)), static_argnums=5)


class _JaxCell(JaxEngine):
    """A cell given as a pure step function, run over a sequence by one compiled scan."""

    _allowed: dict = {}  # the constructor options an engine takes, and their types
    _n_state = 1

    def __init__(self, sizes, options, dtype):
        _check_options(self.target, options, self._allowed)
        self._n_in, self._n_hid = _sizes(self.target, sizes)
        super().__init__(sizes, options, dtype)
        key = (self.target, self._n_in, self._n_hid, tuple(sorted(self.options.items())), str(self.dtype))
        if key not in _BUILT:
            jax = _require("jax", self.target, self.extra)
            tensors, step = self._build()
            _BUILT[key] = (tensors, *_programs(jax, step))
        tensors, self._scan, self._grad = _BUILT[key]
        self._tensors = dict(tensors)

    def _build(self):
        """(initial tensors by normalised name, the pure step ``(tensors, x, state) -> state``)."""
        raise NotImplementedError

    def _check(self, xs, state):
        _check_run(self.target, xs, state, self._n_state, self._n_in, self._n_hid)

    def apply(self, tensors, xs, state):
        self._check(xs, state)
        jnp = _require("jax.numpy", self.target, self.extra)
        steps = xs.shape[0]
        xs = jnp.concatenate([xs, jnp.zeros((_padded(steps) - steps,) + xs.shape[1:], xs.dtype)])
        ys = self._scan(tensors, xs, tuple(state))
        return [tuple(y[t] for y in ys) for t in range(steps)]

    def run(self, xs, state):
        xs, state = np.asarray(xs, self.dtype), tuple(np.asarray(s, self.dtype) for s in state)
        self._check(xs, state)
        steps = xs.shape[0]
        ys = [np.asarray(y)[:steps] for y in self._scan(self._tensors, _pad(xs, _padded(steps)), state)]
        return [tuple(y[t] for y in ys) for t in range(steps)]

    def vjp(self, xs, state, w_out, w_state, output):
        """JaxEngine.vjp's gradients, by one compiled program (at the sequence's own length:
        padding steps would multiply zero cotangents by their Jacobians, 0 * inf = nan)."""
        xs, state = np.asarray(xs, self.dtype), tuple(np.asarray(s, self.dtype) for s in state)
        self._check(xs, state)
        w_out, want = np.asarray(w_out, self.dtype), xs.shape[:2] + (self._n_hid,)
        if w_out.shape != want:
            if w_out.size:
                raise ShapeError(f"{self.target}: w_out must be {want}, got shape {w_out.shape}")
            w_out = np.zeros(want, self.dtype)  # an empty sequence or batch
        w_state = tuple(np.asarray(w, self.dtype) for w in w_state)
        d_t, d_x, d_s = self._grad(self._tensors, xs, state, w_out, w_state, int(output))
        return {k: np.asarray(v) for k, v in d_t.items()}, np.asarray(d_x), tuple(np.asarray(s) for s in d_s)


# ---------------------------------------------------------------------------------- Equinox


class _EquinoxCell(_JaxCell):
    extra = "equinox"
    defaults = {"use_bias": True}
    _allowed = {"use_bias": bool}
    _class = ""  # the class in equinox.nn
    _fields: tuple[str, ...] = ()  # its array attributes

    def _build(self):
        eqx = _require("equinox", self.target, "equinox")
        jax = _require("jax", self.target, "equinox")
        cls = getattr(eqx.nn, self._class)
        # the module's structure, its arrays as zeros: built abstractly, since the framework's
        # random initialisation would compile for every shape and set_tensors replaces it
        shaped = jax.eval_shape(lambda: cls(self._n_in, self._n_hid, use_bias=self.options["use_bias"],
                                            dtype=self.dtype, key=jax.random.PRNGKey(0)))  # fmt: skip
        names = [n for n in self._fields if getattr(shaped, n) is not None]
        cell = eqx.tree_at(lambda m: [getattr(m, n) for n in names], shaped,
                           [_zeros(jax, getattr(shaped, n)) for n in names])  # fmt: skip
        n_state = self._n_state

        def step(tensors, x, state):
            # the cell as a pure function of the tensors: the same module with them put in
            module = eqx.tree_at(lambda m: [getattr(m, n) for n in names], cell, [tensors[n] for n in names])
            hidden = state if n_state > 1 else state[0]
            new = jax.vmap(lambda xb, hb: module(xb, hb))(x, hidden)  # the cell is unbatched
            return tuple(new) if n_state > 1 else (new,)

        return {n: getattr(cell, n) for n in names}, step


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


class _HaikuCore(_JaxCell):
    extra = "haiku"

    def _core(self, hk):
        raise NotImplementedError

    def _wrap(self, hk, state: tuple):  # the engine's state tuple -> the core's state
        return state[0]

    def _unwrap(self, state) -> tuple:
        return (state,)

    def _build(self):
        hk = _require("haiku", self.target, "haiku")
        jax = _require("jax", self.target, "haiku")
        make, wrap, unwrap = self._core, self._wrap, self._unwrap

        def core_step(x, state):
            _, new = make(hk)(x, wrap(hk, state))
            return unwrap(new)

        fn = hk.without_apply_rng(hk.transform(core_step))
        # the parameters take the inputs' dtype (hk.get_parameter(..., inputs.dtype)); built
        # abstractly, as zeros (see the Equinox engine)
        zeros = lambda n: jax.ShapeDtypeStruct((1, n), self.dtype)  # noqa: E731
        shaped = jax.eval_shape(fn.init, jax.random.PRNGKey(0), zeros(self._n_in),
                                tuple(zeros(self._n_hid) for _ in range(self._n_state)))  # fmt: skip
        where = {}  # normalised name (no top module) -> (module path, parameter name)
        for module, table in shaped.items():
            inner = module.partition("/")[2]
            for pname in table:
                where[f"{inner}/{pname}" if inner else pname] = (module, pname)

        def step(tensors, x, state):
            params: dict = {}
            for k, (m, p) in where.items():
                params.setdefault(m, {})[p] = tensors[k]
            return fn.apply(params, x, state)

        return {k: _zeros(jax, shaped[m][p]) for k, (m, p) in where.items()}, step


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
