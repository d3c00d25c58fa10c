"""Engines for the recurrent cells of Flax (pure JAX: JaxEngine's interface, with a jitted step).

* ``flax.linen`` (``LSTMCell``, ``OptimizedLSTMCell``, ``GRUCell``, ``MGUCell``, ``SimpleCell``):
  the module is built with ``features = sizes["hidden"]``; a step is
  ``module.apply({"params": tensors}, carry, x)``. Its tensors are the parameter tree joined
  with "/" without the ``params`` root (``ii/kernel``, ``hn/bias``).
* ``flax.nnx`` (``LSTMCell``, ``OptimizedLSTMCell``, ``GRUCell``, ``SimpleCell``; nnx has no
  MGUCell): the module is built with ``in_features``, ``hidden_features`` and split into its
  graph and parameters; a step merges the graph with the given tensors and calls it. Its tensors
  are the attribute paths of the parameters (``if_/kernel``, ``dense_h/bias``).

A Flax cell is called as ``cell(carry, x) -> (new_carry, y)``; an LSTM's carry is ``(c, h)``.
Kernels are stored (in, out). The parameter tree is traced, not initialised: the tensors are
zeros until ``set_tensors``. ``apply`` is a pure function of the tensors (a loop over the jitted
step); ``vjp`` chains each step's JAX pullback backwards, so that a new sequence length
compiles nothing and a new batch size compiles one step and one pullback.

The options are the constructor's keyword arguments: a function (``gate_fn``,
``activation_fn``) by name (``"sigmoid"``, ``"tanh"``, ``"hard_sigmoid"``, ``"relu"``...), an
initialiser (``bias_init``, ``forget_bias_init``...) by name (``"zeros"``, ``"ones"``,
``"orthogonal"``...: it changes where training starts, not what the cell computes),
``dtype``/``param_dtype`` by NumPy name (both default to the requested dtype; JaxEngine turns
on x64 for float64); ``residual`` (SimpleCell) and ``reset_gate`` (MGUCell) are booleans.
"""

from __future__ import annotations

import inspect

import numpy as np

from ..errors import ShapeError
from .base import JaxEngine

# function options by name: (module, attribute) looked up when a cell is built
FUNCTIONS = {
    "sigmoid": ("flax.linen", "sigmoid"),
    "tanh": ("flax.linen", "tanh"),
    "hard_sigmoid": ("flax.linen", "hard_sigmoid"),
    "hard_tanh": ("flax.linen", "hard_tanh"),
    "relu": ("flax.linen", "relu"),
    "relu6": ("flax.linen", "relu6"),
    "softsign": ("flax.linen", "soft_sign"),
    "softplus": ("flax.linen", "softplus"),
    "elu": ("flax.linen", "elu"),
    "gelu": ("flax.linen", "gelu"),
    "silu": ("flax.linen", "silu"),
    "swish": ("flax.linen", "swish"),
    "log_sigmoid": ("flax.linen", "log_sigmoid"),
    "identity": None,  # x -> x
}

# initialiser options by name: a function of flax.linen.initializers (factories are called)
INITIALIZERS = {
    "zeros": "zeros_init",
    "ones": "ones_init",
    "orthogonal": "orthogonal",
    "lecun_normal": "lecun_normal",
    "lecun_uniform": "lecun_uniform",
    "glorot_normal": "glorot_normal",
    "glorot_uniform": "glorot_uniform",
    "he_normal": "he_normal",
    "he_uniform": "he_uniform",
    "normal": "normal",
    "uniform": "uniform",
}

DTYPES = ("float64", "float32", "float16", "bfloat16")
BOOLEANS = ("residual", "reset_gate")
# constructor arguments the engine sets itself, or that a check cannot take from a value
_OWN = {"features", "in_features", "hidden_features", "rngs", "parent", "name"}


def _require(module: str, target: str):
    from ..extras import require

    return require(module, f"checking {target}", extra="flax")


def _identity(x):
    return x


def _function(target: str, key: str, value):
    """The callable for a function option given by name (or as a callable)."""
    if callable(value):
        return value
    if not isinstance(value, str) or value not in FUNCTIONS:
        raise ShapeError(f"{target}: option {key!r} must name a function ({', '.join(FUNCTIONS)}), "
                         f"got {value!r}")  # fmt: skip
    where = FUNCTIONS[value]
    if where is None:
        return _identity
    return getattr(_require(where[0], target), where[1])


def _function_name(target: str, value):
    """A function option's name when it is one of :data:`FUNCTIONS` (so that layouts, which
    name functions, match it), else the callable itself."""
    if isinstance(value, str):
        return value
    if value is _identity:
        return "identity"
    for name, where in FUNCTIONS.items():
        if where is not None and getattr(_require(where[0], target), where[1]) is value:
            return name
    return value


def _initializer(target: str, key: str, value):
    if callable(value):
        return value
    if not isinstance(value, str) or value not in INITIALIZERS:
        raise ShapeError(f"{target}: option {key!r} must name an initialiser "
                         f"({', '.join(INITIALIZERS)}), got {value!r}")  # fmt: skip
    init = getattr(_require("flax.linen", target).initializers, INITIALIZERS[value])
    return init()


def _dtype(target: str, key: str, value):
    if value not in DTYPES:
        raise ShapeError(f"{target}: option {key!r} must be one of {', '.join(DTYPES)}, "
                         f"got {value!r}")  # fmt: skip
    return getattr(_require("jax.numpy", target), value)


def _sizes(target: str, sizes: dict) -> tuple[int, int]:
    try:
        n_in, n_hid = sizes["input"], sizes["hidden"]
    except KeyError:
        msg = f"{target}: sizes need 'input' and 'hidden', got {sorted(sizes)}"
        raise ShapeError(msg) from None
    for name, n in (("input", n_in), ("hidden", n_hid)):
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ShapeError(f"{target}: size {name!r} must be a positive integer, got {n!r}")
    return int(n_in), int(n_hid)


class _FlaxCell(JaxEngine):
    """One Flax cell; subclasses name the class (``_api``, ``_class``) and its state count."""

    extra = "flax"
    _api = "linen"  # "linen" or "nnx"
    _class = ""
    _n_state = 1
    defaults = {"gate_fn": "sigmoid", "activation_fn": "tanh"}
    _unsupported: tuple[str, ...] = ()  # constructor arguments a check does not take

    def __init__(self, sizes, options, dtype):
        target = self.target
        self._n_in, self._n_hid = _sizes(target, sizes)
        if not isinstance(options, dict):
            raise ShapeError(f"{target}: options must be a dict, got {type(options).__name__}")
        super().__init__(sizes, options, dtype)
        module = _require(f"flax.{self._api}", target)
        cls = getattr(module, self._class)
        kwargs = self._kwargs(cls, options)
        named = {k: (_function_name(target, v) if k.endswith("_fn") else v)
                 for k, v in options.items()}  # fmt: skip
        self.options = {**self.defaults, **named}
        self._jit_cache: dict = {}
        jnp = _require("jax.numpy", target)
        kwargs.setdefault("param_dtype", getattr(jnp, self.dtype.name))
        kwargs.setdefault("dtype", getattr(jnp, self.dtype.name))
        if self._api == "linen":
            self._build_linen(cls, kwargs)
        else:
            self._build_nnx(cls, kwargs)
        self.version = _require("flax", target).__version__
        jax_version = _require("jax", target).__version__
        held, computes = np.dtype(kwargs["param_dtype"]).name, np.dtype(kwargs["dtype"]).name
        self.label = (f"{target} (Flax {self.version}, JAX {jax_version}, {held} parameters, "
                      f"computes in {computes})")  # fmt: skip

    def __repr__(self):
        return f"<{self.label}>"

    # ------------------------------------------------------------------ options

    def _kwargs(self, cls, options: dict) -> dict:
        """Constructor keyword arguments from the user's options, each checked."""
        target = self.target
        if self._api == "linen":
            accepted = [f for f in cls.__dataclass_fields__ if f not in _OWN]
        else:
            params = inspect.signature(cls.__init__).parameters
            accepted = [p for p in params if p != "self" and p not in _OWN]
        accepted = [a for a in accepted if a not in self._unsupported]
        out = {}
        for key, value in options.items():
            if key not in accepted:
                known = ", ".join(sorted(accepted))
                raise ShapeError(f"{target}: unknown option {key!r} (options: {known})")
            if key.endswith("_fn"):
                out[key] = _function(target, key, value)
            elif key.endswith("_init"):
                out[key] = _initializer(target, key, value)
            elif key in ("dtype", "param_dtype"):
                out[key] = _dtype(target, key, value)
            elif key in BOOLEANS:
                if not isinstance(value, bool):
                    raise ShapeError(f"{target}: option {key!r} must be true or false, "
                                     f"got {value!r}")  # fmt: skip
                out[key] = value
            else:
                settable = ", ".join(sorted(a for a in accepted if _settable(a)))
                raise ShapeError(f"{target}: option {key!r} cannot be given to a check "
                                 f"(options: {settable})")  # fmt: skip
        return out

    # ------------------------------------------------------------------ building
    # The parameter tree is traced, not initialised (no initialiser runs, nothing compiles):
    # the tensors start at zero until set_tensors.

    def _build_linen(self, cls, kwargs):
        jax = _require("jax", self.target)
        traverse = _require("flax.traverse_util", self.target)
        self._module = cls(features=self._n_hid, **kwargs)
        x = jax.ShapeDtypeStruct((1, self._n_in), self.dtype)
        h = jax.ShapeDtypeStruct((1, self._n_hid), self.dtype)
        carry = (h, h) if self._n_state == 2 else h
        shapes = jax.eval_shape(lambda c, x: self._module.init(jax.random.key(0), c, x), carry, x)
        flat = traverse.flatten_dict(shapes["params"])
        self._tensors = {"/".join(k): _zeros(v) for k, v in flat.items()}
        self._unflatten = traverse.unflatten_dict

    def _build_nnx(self, cls, kwargs):
        nnx = _require("flax.nnx", self.target)
        module = nnx.eval_shape(lambda: cls(self._n_in, self._n_hid, rngs=nnx.Rngs(0), **kwargs))
        self._graph, self._template, self._rest = nnx.split(module, nnx.Param, ...)
        self._tensors = {"/".join(str(p) for p in path): _zeros(var.get_value())
                         for path, var in nnx.to_flat_state(self._template)}  # fmt: skip

    # ------------------------------------------------------------------ stepping

    def _step(self, tensors, carry, x):
        """One call of the cell with the tensors in place: the new carry."""
        if self._api == "linen":
            params = self._unflatten({tuple(k.split("/")): v for k, v in tensors.items()})
            return self._module.apply({"params": params}, carry, x)[0]
        jax = _require("jax", self.target)
        nnx = _require("flax.nnx", self.target)
        params = jax.tree.map(lambda a: a, self._template)  # a fresh copy of the template
        nested: dict = {}
        for name, value in tensors.items():
            *head, last = name.split("/")
            d = nested
            for part in head:
                d = d.setdefault(part, {})
            d[last] = value
        nnx.replace_by_pure_dict(params, nested)
        return nnx.merge(self._graph, params, self._rest)(carry, x)[0]

    # Tensors, inputs and states stay NumPy arrays until a jitted function takes them: in this
    # JAX every eager jnp.asarray of a new shape or dtype compiles a conversion.

    def set_tensors(self, values):
        missing = sorted(set(self._tensors) - set(values))
        if missing:
            raise ShapeError(f"{self.target}: set_tensors needs every tensor; missing {missing}")
        new = {}
        for k, old in self._tensors.items():
            v = np.asarray(values[k], dtype=old.dtype)
            if v.shape != old.shape:
                raise ShapeError(f"{self.target}: tensor {k!r} must have shape {old.shape}, "
                                 f"got {v.shape}")  # fmt: skip
            new[k] = v
        self._tensors = new

    def _in(self, a):
        return np.asarray(a, dtype=self.dtype)

    def _jitted(self, name):
        """The step, or its pullback, jitted once per engine: compiled once per batch size and
        dtype, whatever the sequence length."""
        cache = self._jit_cache
        if name not in cache:
            jax = _require("jax", self.target)
            if name == "step":
                cache[name] = jax.jit(self._step)
            else:

                def pullback(tensors, carry, x, cotangent):
                    return jax.vjp(self._step, tensors, carry, x)[1](cotangent)

                cache[name] = jax.jit(pullback)
        return cache[name]

    def _carry(self, state):
        return tuple(state) if self._n_state == 2 else state[0]

    def _tuple(self, carry) -> tuple:
        return tuple(carry) if self._n_state == 2 else (carry,)

    def apply(self, tensors, xs, state):
        step = self._jitted("step")
        carry, out = self._carry(state), []
        for t in range(xs.shape[0]):
            carry = step(tensors, carry, xs[t])
            out.append(self._tuple(carry))
        return out

    def run(self, xs, state):
        self._check_run(xs, state)
        out = self.apply(self._tensors, self._in(xs), tuple(self._in(s) for s in state))
        return [tuple(np.asarray(s) for s in step) for step in out]

    def vjp(self, xs, state, w_out, w_state, output):
        """The gradients by reverse accumulation over the steps, each step's pullback from JAX
        (one jitted step and one jitted pullback, whatever the sequence length)."""
        self._check_run(xs, state)
        if isinstance(output, bool) or output not in range(self._n_state):
            raise ShapeError(f"{self.target}: output must index the state tuple, got {output!r}")
        xs = self._in(xs)
        steps = [tuple(self._in(s) for s in state)]
        for new in self.apply(self._tensors, xs, steps[0]):
            steps.append(tuple(np.asarray(s) for s in new))
        pullback = self._jitted("pullback")
        # cotangent of the state after the last step, then of each earlier one
        ct = [np.asarray(w, dtype=s.dtype) for w, s in zip(w_state, steps[-1])]
        d_tensors = {k: np.zeros_like(v) for k, v in self._tensors.items()}  # in the tensors' dtype
        d_xs = np.zeros_like(xs)
        for t in range(xs.shape[0] - 1, -1, -1):
            ct[output] = ct[output] + np.asarray(w_out[t], dtype=steps[t + 1][output].dtype)
            d_t, d_carry, d_x = pullback(self._tensors, self._carry(steps[t]), xs[t],
                                         self._carry(ct))  # fmt: skip
            for k, g in d_t.items():
                d_tensors[k] += np.asarray(g)
            d_xs[t] = np.asarray(d_x)
            ct = [np.asarray(g) for g in self._tuple(d_carry)]
        return d_tensors, d_xs, tuple(ct)

    def _check_run(self, xs, state):
        xs = np.asarray(xs)
        if xs.ndim != 3 or xs.shape[-1] != self._n_in:
            raise ShapeError(f"{self.target}: xs must be (T, B, {self._n_in}), "
                             f"got shape {xs.shape}")  # fmt: skip
        if not isinstance(state, (tuple, list)) or len(state) != self._n_state:
            names = "(c, h)" if self._n_state == 2 else "(h,)"
            raise ShapeError(f"{self.target}: the state is a tuple {names}, got {_describe(state)}")
        for s in state:
            if np.shape(s) != (xs.shape[1], self._n_hid):
                want = (xs.shape[1], self._n_hid)
                raise ShapeError(f"{self.target}: each state array must be {want}, "
                                 f"got shape {np.shape(s)}")  # fmt: skip


def _zeros(shape):
    """Zeros of an abstract array's shape and dtype."""
    return np.zeros(shape.shape, shape.dtype)


def _settable(key: str) -> bool:
    return key.endswith(("_fn", "_init")) or key in ("dtype", "param_dtype") or key in BOOLEANS


def _describe(state) -> str:
    if isinstance(state, (tuple, list)):
        return f"{len(state)} arrays"
    return type(state).__name__


# nnx: carry_init in the constructor is deprecated (it warns), and so is keep_rngs
_NNX_UNSUPPORTED = ("carry_init", "keep_rngs")


class LinenLSTMCell(_FlaxCell):
    target, _class, _n_state = "flax.linen.LSTMCell", "LSTMCell", 2


class LinenOptimizedLSTMCell(_FlaxCell):
    target, _class, _n_state = "flax.linen.OptimizedLSTMCell", "OptimizedLSTMCell", 2


class LinenGRUCell(_FlaxCell):
    target, _class = "flax.linen.GRUCell", "GRUCell"


class LinenMGUCell(_FlaxCell):
    target, _class = "flax.linen.MGUCell", "MGUCell"
    defaults = {**_FlaxCell.defaults, "reset_gate": True}


class LinenSimpleCell(_FlaxCell):
    target, _class = "flax.linen.SimpleCell", "SimpleCell"
    defaults = {"activation_fn": "tanh", "residual": False}  # no gate


class NnxLSTMCell(_FlaxCell):
    target, _api, _class, _n_state = "flax.nnx.LSTMCell", "nnx", "LSTMCell", 2
    _unsupported = _NNX_UNSUPPORTED


class NnxOptimizedLSTMCell(_FlaxCell):
    target, _api, _class, _n_state = "flax.nnx.OptimizedLSTMCell", "nnx", "OptimizedLSTMCell", 2
    _unsupported = _NNX_UNSUPPORTED


class NnxGRUCell(_FlaxCell):
    target, _api, _class = "flax.nnx.GRUCell", "nnx", "GRUCell"
    _unsupported = _NNX_UNSUPPORTED


class NnxSimpleCell(_FlaxCell):
    target, _api, _class = "flax.nnx.SimpleCell", "nnx", "SimpleCell"
    defaults = {"activation_fn": "tanh", "residual": False}
    _unsupported = _NNX_UNSUPPORTED


ENGINES = {
    "flax.linen:LSTMCell": LinenLSTMCell,
    "flax.linen:OptimizedLSTMCell": LinenOptimizedLSTMCell,
    "flax.linen:GRUCell": LinenGRUCell,
    "flax.linen:MGUCell": LinenMGUCell,
    "flax.linen:SimpleCell": LinenSimpleCell,
    "flax.nnx:LSTMCell": NnxLSTMCell,
    "flax.nnx:OptimizedLSTMCell": NnxOptimizedLSTMCell,
    "flax.nnx:GRUCell": NnxGRUCell,
    "flax.nnx:SimpleCell": NnxSimpleCell,
}
