"""Sizes, named parameter initialisations and buffer initialisers."""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from .errors import ShapeError, SpecError
from .ir import CellIR


def resolve_sizes(ir: CellIR, input_size=None, hidden_size=None, sizes=None) -> dict[str, int]:
    """Map every size name the cell uses to a positive int."""
    out = dict(sizes or {})
    if input_size is not None:
        out["input"] = input_size
    if hidden_size is not None:
        out["hidden"] = hidden_size
    needed = set(ir.size_names)
    missing = needed - set(out)
    if missing:
        raise ShapeError(
            f"cell {ir.name!r} needs sizes {sorted(needed)}; missing {sorted(missing)} "
            "(pass input_size=, hidden_size= or sizes={...})"
        )
    for k in needed:
        v = out[k]
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ShapeError(f"size {k!r} must be a positive int, got {v!r}")
    return {k: int(out[k]) for k in needed}


def _torch_default(ir, name, shape, sizes, rng, scale):
    k = 1 / math.sqrt(sizes.get("hidden", shape[0]))
    return rng.uniform(-k, k, shape) * scale


def _uniform(ir, name, shape, sizes, rng, scale):
    return rng.uniform(-1.0, 1.0, shape) * scale


def _normal(ir, name, shape, sizes, rng, scale):
    fan_in = shape[1] if len(shape) == 2 else 1
    return rng.standard_normal(shape) * scale / math.sqrt(fan_in)


INITIALISERS: dict[str, Callable] = {
    "torch_default": _torch_default,
    "uniform": _uniform,
    "normal": _normal,
}


def _clockwork_periods(n, options):
    modules = int(options.get("modules", 4))
    base = int(options.get("base", 2))
    if not 1 <= modules <= n:
        raise ShapeError(f"clockwork needs 1 <= modules ({modules}) <= units ({n})")
    return np.array([base ** (k * modules // n) for k in range(n)], dtype=float)


def _heads(n, options):
    """The head (0, 1, ...) of each unit: ``heads`` equal contiguous blocks (the first ones one
    unit larger when ``heads`` does not divide n), as xLSTM splits its hidden vector."""
    heads = int(options.get("heads", 4))
    if not 1 <= heads <= n:
        raise ShapeError(f"{heads} heads need at least {heads} units, got {n}")
    return np.array([k * heads // n for k in range(n)], dtype=float)


BUFFER_INITS: dict[str, Callable] = {"clockwork_periods": _clockwork_periods, "heads": _heads}


def min_units(spec) -> int:
    """The fewest units a buffer initialiser accepts (one per clockwork module or head)."""
    from .spec import BUFFER_MIN_UNITS

    option, default = BUFFER_MIN_UNITS.get(spec.init, (None, 1))
    return int(dict(spec.options).get(option, default)) if option else 1


def init_params(ir: CellIR, sizes: dict[str, int], init="torch_default", seed=0, scale=1.0,
                dtype=np.float64) -> dict[str, np.ndarray]:  # fmt: skip
    """Parameters (and buffers) under a named initialisation, as NumPy arrays."""
    if init not in INITIALISERS:
        from .inits import NAMED

        known = sorted(set(INITIALISERS) | set(NAMED))
        raise ValueError(f"unknown initialisation {init!r}; choose from {known}")
    rng = np.random.default_rng(seed)
    out = {}
    for name in ir.param_names:
        shape = ir.param_shape(name, sizes)
        out[name] = np.asarray(INITIALISERS[init](ir, name, shape, sizes, rng, scale), dtype=dtype)
    out.update(buffers(ir, sizes, dtype))
    return out


def buffers(ir: CellIR, sizes, dtype=np.float64) -> dict[str, np.ndarray]:
    out = {}
    for b, dim, spec in ir.buffers:
        if spec.init not in BUFFER_INITS:
            raise SpecError(f"buffer {b!r}: unknown initialiser {spec.init!r}; known: "
                            f"{sorted(BUFFER_INITS)}", path=ir.spec.path)  # fmt: skip
        out[b] = BUFFER_INITS[spec.init](sizes[dim], dict(spec.options)).astype(dtype)
    return out
