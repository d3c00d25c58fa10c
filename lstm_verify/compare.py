"""Error measures against a reference, per-dtype tolerances, and one labelled assertion."""

from __future__ import annotations

from dataclasses import dataclass

import mpmath
import numpy as np

from .errors import VerificationError

# |actual - expected| <= atol + rtol * |expected|, elementwise
TOLERANCE = {
    np.dtype(np.float64): {"rtol": 1e-10, "atol": 1e-12},
    np.dtype(np.float32): {"rtol": 2e-5, "atol": 2e-6},
}


@dataclass(frozen=True)
class Errors:
    max_abs: float
    max_rel: float  # |diff| / max(|ref|, floor)
    max_ulp: float  # |diff| in ULPs of max(|ref|, floor) rounded to the dtype
    normwise: float = 0.0  # max |diff| / max |ref|: insensitive to cancellation in one element
    exact_max: float = 0.0  # largest |exact value| of any node in the run (0 when not known)

    def beyond(self, dtype) -> bool:
        """Whether an exact intermediate value of the run lies beyond dtype's finite range: the
        equations as written cannot be evaluated in that dtype (exp(100) in float32)."""
        return self.exact_max > float(np.finfo(dtype).max)

    def __str__(self):
        return (f"abs {self.max_abs:.1e}, rel {self.max_rel:.1e}, {self.max_ulp:.1f} ulp, "
                f"normwise {self.normwise:.1e}")


def to_numpy(a) -> np.ndarray:
    if hasattr(a, "detach"):
        return a.detach().cpu().numpy()
    return np.asarray(a)


def errors(actual, reference, dtype, floor=1e-6) -> Errors:
    """Compare float values with a reference (floats or mpf objects, same shape).

    Relative and ULP errors are taken against max(|ref|, floor): both explode for reference
    values near zero, where only the absolute error means something.
    """
    dtype = np.dtype(dtype)
    a = to_numpy(actual).astype(np.float64).ravel()
    ref = np.asarray(reference).ravel()
    if ref.dtype == object:
        diff = np.array([abs(float(mpmath.mpf(x) - r)) for x, r in zip(a, ref)])
        rf = np.array([float(r) for r in ref])
    else:
        rf = ref.astype(np.float64)
        diff = np.abs(a - rf)
    if diff.size == 0:
        return Errors(0.0, 0.0, 0.0)
    mag = np.maximum(np.abs(rf), floor)
    rel = diff / mag
    ulp = diff / np.spacing(mag.astype(dtype)).astype(np.float64)
    norm = float(diff.max() / max(np.abs(rf).max(), np.finfo(dtype).tiny))
    return Errors(float(diff.max()), float(rel.max()), float(ulp.max()), norm)


def assert_close(actual, expected, *, cell: str, quantity: str, dtype=None, rtol=None, atol=None,
                 context: str = "") -> None:  # fmt: skip
    """Raise VerificationError naming the cell, the quantity, the worst index and both values."""
    a = to_numpy(actual)
    e = to_numpy(expected)
    if e.dtype == object:
        e = e.astype(np.float64)
    dtype = np.dtype(dtype or a.dtype)
    tol = TOLERANCE.get(dtype, TOLERANCE[np.dtype(np.float64)])
    rtol = tol["rtol"] if rtol is None else rtol
    atol = tol["atol"] if atol is None else atol
    if a.shape != e.shape:
        raise VerificationError(f"{cell}: {quantity} has shape {a.shape}, expected {e.shape}")
    a64, e64 = a.astype(np.float64), e.astype(np.float64)
    bad = ~(np.abs(a64 - e64) <= atol + rtol * np.abs(e64))
    if bad.any():
        excess = np.where(bad, np.abs(a64 - e64) - rtol * np.abs(e64), -np.inf)
        idx = np.unravel_index(int(np.argmax(excess)), a.shape)
        where = f" at index {tuple(int(i) for i in idx)}" if a.ndim else ""
        raise VerificationError(
            f"{cell}: {quantity} differs{where}: got {a64[idx]!r}, expected {e64[idx]!r} "
            f"(|diff| {abs(a64[idx] - e64[idx]):.3e} > atol {atol:g} + rtol {rtol:g} * |expected|; "
            f"{int(bad.sum())} of {bad.size} elements out of tolerance){context}"
        )


# Conformance tolerances: |got - ref| <= atol + rtol*|ref| + CONDITION_FACTOR * eps * S, where S
# estimates how much ref moves when every operand is perturbed by one relative unit (see
# `sensitivity`). Well-conditioned values get the tight base tolerance; values that cancel or
# amplify (a long relu recurrence, c' = f*c + g with f*c ~ -g) get exactly the room their
# conditioning demands, and nothing is loosened globally.
CONFORMANCE_TOLERANCE = {
    np.dtype(np.float64): {"rtol": 1e-12, "atol": 1e-14},
    np.dtype(np.float32): {"rtol": 1e-5, "atol": 1e-6},
}
CONDITION_FACTOR = 64.0


def sensitivity(fn, operands: dict, samples: int = 3, rel: float = 1e-6, seed: int = 0) -> np.ndarray:
    """Statistical componentwise condition estimate of ``fn`` (dict of float64 arrays -> flat
    float64 array): max over random sign patterns u of |fn(a * (1 + rel*u)) - fn(a)| / rel.
    It approximates sum_j |d fn_i/d a_j| |a_j| from below (Kenney & Laub's small-sample method),
    so the tolerance multiplies it by CONDITION_FACTOR."""
    rng = np.random.default_rng(seed)
    base = fn(operands)
    worst = np.zeros_like(base)
    for _ in range(samples):
        shifted = {k: v * (1 + rel * rng.choice([-1.0, 1.0], size=np.shape(v))) for k, v in operands.items()}
        worst = np.maximum(worst, np.abs(fn(shifted) - base) / rel)
    return worst


def tolerance(dtype, reference, sens=None) -> np.ndarray:
    """Elementwise tolerance for values of ``dtype`` against a float64 reference."""
    dtype = np.dtype(dtype)
    tol = CONFORMANCE_TOLERANCE.get(dtype, CONFORMANCE_TOLERANCE[np.dtype(np.float64)])
    out = tol["atol"] + tol["rtol"] * np.abs(reference)
    if sens is not None:
        out = out + CONDITION_FACTOR * np.finfo(dtype).eps * sens
    return out
