"""The elementwise functions of the fused kernels (C and Triton) against mpmath: the cases, the
bounds and the checks both kernel tests share. ``unary(expr)`` maps a dtype to a function
computing ``expr`` of x elementwise on a NumPy array."""

import mpmath
import numpy as np
import sympy

from lstm_verify.functions import sigmoid, softplus

X = sympy.Symbol("x")

# name: (expression, float64 reference, mpmath, range, ulp bound). Measured over 3 to 3.5
# million points of these ranges (C kernels): exp 0.998 ulp, sigmoid 2.61 (e * 1/(1 + e) below
# 0), tanh 1.32, log 0.79 (log-uniform over the range, subnormals included), softplus 2.57.
FUNCTIONS = {
    "exp": (sympy.exp(X), np.exp, mpmath.exp, (-104.0, 88.7), 1),
    "sigmoid": (sigmoid(X), lambda x: 1 / (1 + np.exp(-x)), lambda x: 1 / (1 + mpmath.exp(-x)), (-104.0, 40.0), 3),
    "tanh": (sympy.tanh(X), np.tanh, mpmath.tanh, (-12.0, 12.0), 2),
    "log": (sympy.log(X), np.log, mpmath.log, (1e-44, 3e38), 1),
    "softplus": (softplus(X), lambda x: np.logaddexp(0, x), lambda x: mpmath.log1p(mpmath.exp(x)), (-100.0, 60.0), 3),
}


def ulps(y, ref):
    """|y - ref| in units of the float32 spacing at ref, where ref is a normal float32."""
    ref32 = ref.astype(np.float32)
    normal = np.abs(ref32) >= np.finfo(np.float32).tiny
    return (np.abs(y.astype(np.float64) - ref) / np.spacing(np.abs(ref32)).astype(np.float64))[normal], normal


def check_float32(name, run, scale=1.0):
    """``run`` (float32 in, float32 out) within the stated ulps of ``name`` over its range
    (``scale``: the fraction of the random points drawn), and within one subnormal step below the
    normal range."""
    expr, ref64, mp, (lo, hi), bound = FUNCTIONS[name]
    rng = np.random.default_rng(0)

    def n(k):
        return max(int(k * scale), 1000)

    if lo > 0:  # log: log-uniform, and around 1
        x = np.concatenate([np.exp(rng.uniform(np.log(lo), np.log(hi), n(300_000))), rng.uniform(0.5, 2, n(50_000))])
    else:
        x = np.concatenate([
            rng.uniform(lo, hi, n(200_000)), rng.uniform(-1, 1, n(50_000)), rng.uniform(-1e-3, 1e-3, n(10_000)),
            np.linspace(lo, hi, n(50_001)), [0.0, 0.625, -0.625, 0.6249999, 1e-30, -1e-30],
        ])  # fmt: skip
    x = x.astype(np.float32)
    y = run(x)
    ref = ref64(x.astype(np.float64))
    # the float64 reference itself against mpmath (50 digits), on a sample: far below 1e-3 ulp
    mpmath.mp.dps = 50
    sample = rng.choice(x.size, 500, replace=False)
    exact = np.array([float(mp(mpmath.mpf(float(v)))) for v in x[sample]])
    assert np.all(np.abs(ref[sample] - exact) <= 4 * np.spacing(np.abs(exact)))
    err, normal = ulps(y, ref)
    assert err.max() <= bound, f"{name}: {err.max():.2f} ulp at x = {x[normal][err.argmax()]!r}"
    # below the smallest normal float32 the result is within one subnormal step
    assert np.all(np.abs(y[~normal].astype(np.float64) - ref[~normal]) <= 2.0**-149)
    return err.max()


def check_float64(name, run, spacings=4):
    """``run`` (float64) within ``spacings`` float64 spacings of the NumPy reference."""
    expr, ref64, _, (lo, hi), _ = FUNCTIONS[name]
    x = np.geomspace(lo, hi, 100_001) if lo > 0 else np.linspace(lo, hi, 100_001)
    y = run(x)  # sigmoid: e * 1/(1 + e) below 0, as in float32
    assert np.all(np.abs(y - ref64(x)) <= spacings * np.spacing(np.abs(ref64(x))))


def check_special_values(unary, dtype):
    """NaN and the infinities propagate, limits are exact, tanh(-0) = -0, and float32 overflows
    and underflows where float32 ends."""
    x = np.array([np.nan, np.inf, -np.inf, 1000.0, -1000.0, 0.0, -0.0], dtype)
    exp = unary(sympy.exp(X))[dtype](x)
    sig = unary(sigmoid(X))[dtype](x)
    th = unary(sympy.tanh(X))[dtype](x)
    assert np.isnan(exp[0]) and np.isnan(sig[0]) and np.isnan(th[0])
    assert list(exp[1:]) == [np.inf, 0, np.inf, 0, 1, 1]
    assert list(sig[1:]) == [1, 0, 1, 0, 0.5, 0.5]
    assert list(th[1:]) == [1, -1, 1, -1, 0, 0] and np.signbit(th[6]) and not np.signbit(th[5])
    lg = unary(sympy.log(X))[dtype](np.array([0.0, -1.0, np.inf, np.nan, 1.0], dtype))
    assert lg[0] == -np.inf and np.isnan(lg[1]) and lg[2] == np.inf and np.isnan(lg[3]) and lg[4] == 0
    sp = unary(softplus(X))[dtype](np.array([np.inf, -np.inf, np.nan, 0.0], dtype))
    assert sp[0] == np.inf and sp[1] == 0 and np.isnan(sp[2]) and sp[3] == np.log(dtype(2))
    if dtype == np.float32:  # overflow and underflow where float32 ends
        big = unary(sympy.exp(X))[dtype](np.array([88.72283, 88.7229, -103.0, -104.5], dtype))
        assert np.isfinite(big[0]) and big[1] == np.inf and 0 < big[2] < 1e-44 and big[3] == 0
