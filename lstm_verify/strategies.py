"""Hypothesis strategies for any spec: sizes, dtypes, parameters, inputs, states, whole cases.

    from hypothesis import given
    from lstm_verify import strategies as lst

    @given(lst.cases("lstm", regime="saturated"))
    def test_mine(case):
        out = my_cell(case.params, case.inputs, case.state)

Regimes, chosen on purpose rather than left to chance:

* ``ordinary``: parameters under a named initialisation, inputs in [-2, 2], states in [-1, 1].
* ``saturated``: as ordinary, then every gate's bias is set so that each saturating application
  (sigmoid, hard_sigmoid, tanh of an affine map) has |pre-activation| >= ``saturation`` (default
  20) at every step: guaranteed by interval bounds (:mod:`lstm_verify.regimes`), not hoped for.
  A cell with nothing to saturate (rnn_relu) is drawn as ordinary.
* ``near_zero``: states within 1e-6 of zero (zeros and subnormals included).
* ``long``: 50 to 200 steps, small sizes, batch 1; ``long_saturated``: both (a saturated
  LSTM unit with i = f = 1 and g = 1 grows its cell by 1 per step).
* ``flat``: every vector nearly constant across its units, where a normalisation's epsilon
  governs: weights scaled by 1e-6 (so ``W x`` spreads by at most 1e-6 * |x|_1 * max |w|), every
  bias and diagonal parameter one value repeated over its units, and every state one value per
  row plus at most 1e-6 per unit. A variance over units then falls near or below 1e-5, the
  default eps of ``layernorm`` (inside the square root); the regime is asked for by name.
* ``peaked``: as ordinary, then the parameters a softmax's scores read (w_e in
  e = sum(w_e*tanh(p))) are scaled by a power of 2 until every softmax puts at least 1 - 1e-6
  on one member at every step (checked on a float64 walk of the IR; tied scores are rejected).
  A cell without a softmax is drawn as ordinary; asked for by name.

Building a saturated case never fails: the biases come from a construction that always
settles (:func:`lstm_verify.regimes.saturate`); the rare draw that no finite bias can saturate
(or whose biases exceed float32) is rejected, so Hypothesis draws another instead of reporting
the tool's own limit as a failure.

Arrays are drawn element by element, so failing examples shrink; float32 values are drawn with
``width=32`` and are exactly representable.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from hypothesis import reject, strategies as st
from hypothesis.errors import InvalidArgument
from hypothesis.extra import numpy as hnp

REGIMES = ("ordinary", "saturated", "near_zero", "long", "long_saturated", "flat", "peaked")
PEAK_WEIGHT = 1 - 1e-6  # the peaked regime: every softmax's largest weight at least this
FLAT_WEIGHT_SCALE = 1e-6  # the flat regime: weights times this
FLAT_STATE_SPREAD = 1e-6  # and states within this of one value per row
DTYPES = (np.dtype(np.float64), np.dtype(np.float32))
INITS = ("torch_default", "uniform", "normal")


@dataclass(frozen=True)
class Case:
    """One drawn problem: a cell, its sizes, parameters, an input sequence and initial state."""

    cell: str
    regime: str
    dtype: np.dtype
    sizes: dict
    params: dict = field(repr=False)
    inputs: dict = field(repr=False)
    state: dict = field(repr=False)
    t0: int = 0

    @property
    def steps(self) -> int:
        """Steps of the first input (a per-step input: set inputs come after them)."""
        return next(iter(self.inputs.values())).shape[0]

    @property
    def batch(self) -> int:
        return next(iter(self.inputs.values())).shape[1]

    def describe(self, limit: int = 6) -> str:
        """The drawn values, abbreviated: what a failure report shows."""
        opts = np.get_printoptions()
        np.set_printoptions(precision=17 if self.dtype == np.float64 else 9, threshold=limit,
                            edgeitems=2, linewidth=120)  # fmt: skip
        try:
            parts = [f"{self.cell} ({self.regime}, {self.dtype}, sizes {self.sizes}, "
                     f"{self.steps} steps, batch {self.batch}, t0 {self.t0})"]  # fmt: skip
            for kind, d in (("input", self.inputs), ("state", self.state), ("param", self.params)):
                for k, v in d.items():
                    parts.append(f"  {kind} {k} {tuple(np.shape(v))}: "
                                 + " ".join(np.array2string(np.asarray(v)).split()))  # fmt: skip
            return "\n".join(parts)
        finally:
            np.set_printoptions(**opts)

    def __repr__(self):
        return self.describe()

    def _repr_pretty_(self, p, cycle):  # what Hypothesis prints for a falsifying example
        p.text(self.describe())


def _cell(cell):
    from .cell import Cell, load

    if isinstance(cell, Cell):
        return cell
    if not isinstance(cell, str):
        raise InvalidArgument(f"cell must be a catalog name, a spec path or a Cell, got {cell!r}")
    return load(cell)


def _check_int(name, value, low=1):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise InvalidArgument(f"{name} must be an int >= {low}, got {value!r}")


def _dtype(dtype):
    try:
        d = np.dtype(dtype)
    except TypeError:
        d = None
    if d is None or d not in DTYPES:  # (np.dtype("float64") == None is True)
        raise InvalidArgument(f"dtype must be float64 or float32, got {dtype!r}")
    return d


def _floats(dtype, lo, hi):
    """Finite floats in [lo, hi] (the ends rounded to dtype), exactly representable in dtype."""
    width = 32 if np.dtype(dtype) == np.float32 else 64
    a, b = float(np.asarray(lo, dtype=dtype)), float(np.asarray(hi, dtype=dtype))
    return st.floats(a, b, width=width, allow_nan=False, allow_infinity=False)


def _array(dtype, shape, bound):
    return hnp.arrays(dtype, shape, elements=_floats(dtype, -bound, bound))


def dtypes() -> st.SearchStrategy:
    """float64 or float32 (shrinks towards float64)."""
    return st.sampled_from(DTYPES)


def sizes(cell, min_size: int = 1, max_size: int = 5, **fixed) -> st.SearchStrategy:
    """Every size the cell uses (``input``, ``hidden``, ``proj``...), each in
    [min_size, max_size] unless fixed by keyword (``hidden=4``). Clockwork cells get at least as
    many hidden units as modules, per-head cells as heads."""
    c = _cell(cell)
    _check_int("min_size", min_size)
    _check_int("max_size", max_size, min_size)
    unknown = set(fixed) - set(c.ir.size_names)
    if unknown:
        raise InvalidArgument(f"{c.name} has no sizes {sorted(unknown)}; it has {list(c.ir.size_names)}")
    from .params import min_units

    low = {k: min_size for k in c.ir.size_names}
    for _, dim, buf in c.ir.buffers:
        low[dim] = max(low[dim], min_units(buf))
    for k, v in fixed.items():
        _check_int(k, v)
        if v < low[k]:
            raise InvalidArgument(f"{c.name} needs {k} >= {low[k]} (one unit per clockwork module or head), got {v}")
    return st.fixed_dictionaries({
        k: st.just(fixed[k]) if k in fixed else st.integers(low[k], max(low[k], max_size))
        for k in c.ir.size_names
    })  # fmt: skip


def _init_bound(c, name, shape, sz, init):
    if init == "torch_default":
        return 1 / math.sqrt(sz.get("hidden", shape[0]))
    if init == "uniform":
        return 1.0
    fan_in = shape[1] if len(shape) == 2 else 1
    return 3 / math.sqrt(fan_in)  # normal, truncated at 3 sigma


def params(cell, sizes: dict, init: str = "torch_default", dtype=np.float64) -> st.SearchStrategy:
    """Trainable parameters drawn element by element within the named initialisation's range
    (torch_default: U(-1/sqrt(hidden), 1/sqrt(hidden)); uniform: U(-1, 1); normal: 3 sigma of
    N(0, 1/fan_in)); buffers (clockwork periods) as the spec's initialiser makes them."""
    c = _cell(cell)
    if init not in INITS:
        raise InvalidArgument(f"init must be one of {INITS}, got {init!r}")
    return _params(c, tuple(sorted(c.sizes(sizes=sizes).items())), init, _dtype(dtype))


@lru_cache(maxsize=1024)
def _params(c, sizes: tuple, init: str, dtype) -> st.SearchStrategy:
    sz = dict(sizes)
    fixed = {k: v for k, v in c.init_params(sizes=sz, dtype=dtype).items() if k not in c.ir.param_names}
    drawn = {
        name: _array(dtype, c.ir.param_shape(name, sz), _init_bound(c, name, c.ir.param_shape(name, sz), sz, init))
        for name in c.ir.param_names
    }  # fmt: skip
    return st.fixed_dictionaries(drawn).map(lambda p: p | {k: v.copy() for k, v in fixed.items()})


def inputs(cell, sizes: dict, steps: int, batch: int, dtype=np.float64, bound: float = 2.0):
    """Input sequences, (steps, batch, size) per input, and set inputs, (batch, L, size) with L
    the size "set", in [-bound, bound]."""
    c = _cell(cell)
    _check_int("steps", steps)
    _check_int("batch", batch)
    b = float(bound)
    shapes = c.ir.input_shapes(sizes, steps, batch)
    drawn = _arrays(tuple((n, shape, -b, b) for n, shape in shapes.items()), _dtype(dtype))
    # per-step inputs first, whatever order the dictionary strategy gives: Case.steps reads the first
    return drawn.map(lambda d: {n: d[n] for n in shapes}) if c.ir.sets else drawn


def states(cell, sizes: dict, batch: int, dtype=np.float64, bound: float = 1.0):
    """Initial states, (batch, size) each, in [-bound, bound], or in the spec's ``ranges``
    scaled by bound (xLSTM's normaliser n in [0, bound])."""
    c = _cell(cell)
    _check_int("batch", batch)
    ranges = {s: c.ir.spec.state_range(s) for s, _ in c.ir.states}
    b = float(bound)
    return _arrays(tuple((s, (batch, sizes[d]), ranges[s][0] * b, ranges[s][1] * b) for s, d in c.ir.states),
                   _dtype(dtype))  # fmt: skip


@lru_cache(maxsize=4096)
def _arrays(shapes: tuple, dtype) -> st.SearchStrategy:
    """Arrays by name from (name, shape, low, high) entries."""
    return st.fixed_dictionaries({n: hnp.arrays(dtype, shape, elements=_floats(dtype, lo, hi))
                                  for n, shape, lo, hi in shapes})  # fmt: skip


@st.composite
def _cases(draw, c, regime, dtype, init, max_size, saturation, steps, batch, fixed=None):
    regime = draw(st.sampled_from(REGIMES[:3])) if regime is None else regime
    dt = draw(dtypes()) if dtype is None else dtype
    ini = draw(st.sampled_from(INITS)) if init is None else init
    if fixed is not None:
        sz = dict(fixed)
        T = draw(st.integers(50, 200) if regime.startswith("long") else st.integers(1, 6)) if steps is None else steps
        B = (1 if regime.startswith("long") else draw(st.integers(1, 3))) if batch is None else batch
    elif regime.startswith("long"):
        sz = draw(sizes(c, max_size=min(max_size, 3)))
        T = draw(st.integers(50, 200)) if steps is None else steps
        B = 1 if batch is None else batch
    else:
        sz = draw(sizes(c, max_size=max_size))
        T = draw(st.integers(1, 6)) if steps is None else steps
        B = draw(st.integers(1, 3)) if batch is None else batch
    p = draw(params(c, sz, ini, dt))
    x = draw(inputs(c, sz, T, B, dt))
    s = draw(states(c, sz, B, dt, bound=1e-6 if regime == "near_zero" else 1.0))
    t0 = draw(st.integers(0, 16)) if c.ir.step else 0
    if regime == "flat":
        p, s = draw(_flattened(c, p, s, dt))
    if regime == "peaked":
        from .errors import SaturationError
        from .regimes import peak_softmax

        try:
            p64 = peak_softmax(c, p, x, s, PEAK_WEIGHT, t0)
        except SaturationError:  # tied scores: another case, never a failure
            reject()
        p = {k: v.astype(dt) for k, v in p64.items()}  # scaled by powers of 2: exact in the dtype
    if regime in ("saturated", "long_saturated"):
        from .errors import SaturationError
        from .regimes import applications, saturate

        apps = applications(c.ir)
        signs, extra = {}, {}
        for a in apps:
            n = sz[c.ir.dims[a.bias]]
            # whole gates open or shut as often as mixed ones: an LSTM unit with i and f both
            # open and g saturated grows its cell by 1 per step, a case worth reaching
            pattern = draw(st.sampled_from(("open", "shut", "mixed")))
            signs[a.bias] = np.full(n, 1.0 if pattern == "open" else -1.0) if pattern != "mixed" else \
                np.where(draw(hnp.arrays(bool, n)), 1.0, -1.0)  # fmt: skip
            extra[a.bias] = draw(hnp.arrays(np.float64, n, elements=st.floats(0, saturation)))
        try:
            p64 = saturate(c.ir, p, x, s, saturation, signs, extra, t0)
        except SaturationError:  # no finite bias for these draws: another case, never a failure
            reject()
        with np.errstate(over="ignore"):
            p = {k: v.astype(dt) for k, v in p64.items()}
        for a in apps:  # rounding to the dtype must not bring a bias below its bound
            short = np.abs(p[a.bias]) < np.abs(p64[a.bias])
            p[a.bias] = np.where(short, np.nextafter(p[a.bias], np.sign(p[a.bias]) * np.inf), p[a.bias]).astype(dt)
        if not all(np.all(np.isfinite(v)) for v in p.values()):  # a bias beyond the dtype's range
            reject()
    return Case(c.name, regime, dt, sz, p, x, s, t0)


@st.composite
def _flattened(draw, c, params, state, dtype):
    """The flat regime's parameters and states from drawn ones (see the module docstring)."""
    ir = c.ir
    p = dict(params)
    for w in ir.weights:
        p[w.name] = (params[w.name] * FLAT_WEIGHT_SCALE).astype(dtype)
    for name, _ in list(ir.biases) + list(ir.diagonals):
        p[name] = np.full_like(params[name], params[name][0])
    s = {}
    for name, v in state.items():
        lo, hi = ir.spec.state_range(name)
        level = draw(hnp.arrays(dtype, (v.shape[0], 1), elements=_floats(dtype, lo, hi)))
        spread = draw(hnp.arrays(dtype, v.shape, elements=_floats(dtype, -FLAT_STATE_SPREAD, FLAT_STATE_SPREAD)))
        s[name] = np.clip(level + spread, lo, hi).astype(dtype)
    return p, s


def cases(cell, regime: str | None = None, dtype=None, init: str | None = None, max_size: int = 5,
          saturation: float = 20.0, steps: int | None = None, batch: int | None = None,
          sizes: dict | None = None):  # fmt: skip
    """Whole problems for a cell. ``None`` for dtype or init draws it too; ``None`` for regime
    draws ordinary, saturated or near_zero (the long, flat and peaked regimes are asked for by name); ``sizes``
    fixes the sizes (a model file's) instead of drawing them."""
    c = _cell(cell)
    if regime is not None and regime not in REGIMES:
        raise InvalidArgument(f"regime must be one of {REGIMES} or None, got {regime!r}")
    if dtype is not None:
        dtype = _dtype(dtype)
    if init is not None and init not in INITS:
        raise InvalidArgument(f"init must be one of {INITS} or None, got {init!r}")
    _check_int("max_size", max_size)
    if isinstance(saturation, bool) or not isinstance(saturation, numbers.Real) or not 0 < saturation < 1e4:
        raise InvalidArgument(f"saturation must be a number in (0, 1e4), got {saturation!r}")
    if steps is not None:
        _check_int("steps", steps)
    if batch is not None:
        _check_int("batch", batch)
    if sizes is not None:
        if not isinstance(sizes, dict) or set(sizes) != set(c.ir.size_names) or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in sizes.values()
        ):
            raise InvalidArgument(f"sizes must give every size of {c.name} ({sorted(c.ir.size_names)}) "
                                  f"as a positive int, got {sizes!r}")  # fmt: skip
        sizes = tuple(sorted(sizes.items()))
    return _cases(c, regime, dtype, init, max_size, float(saturation), steps, batch, sizes)
