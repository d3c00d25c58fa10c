"""The pointwise vocabulary of the spec language, one table row per function.

Each row holds the SymPy function, how the NumPy and torch backends spell it, and an mpmath
callable for the arbitrary-precision reference. Derivatives live on the SymPy classes
(``fdiff``), next to their definitions. Conventions where mathematics and frameworks differ:

* ``sigmoid``: derivative in output form ``s*(1-s)``. torch prints ``torch.sigmoid``; NumPy prints
  ``1/(1+exp(-x))`` with overflow to inf allowed (the exact limit 0 for very negative x, within
  2 eps elsewhere); the formula is never differentiated, so autograd's NaN at x = -89 in
  float32 cannot occur.
* ``relu``: derivative ``step(x)`` with step(0) = 0, as torch has it (SymPy's Heaviside says 1/2).
* ``hard_sigmoid``: torch's ``hardsigmoid``, clamp(x/6 + 1/2, 0, 1); derivative 1/6 strictly
  inside (-3, 3), 0 elsewhere, as torch has it.
* ``tick(t, T)``: 1 where the step counter t is a multiple of the per-unit period T, else 0.
  Piecewise constant: its derivative is 0 everywhere.
* ``log``: SymPy's ``log`` (derivative 1/x). The parser writes ``log(sigmoid(u))`` as
  ``-softplus(-u)`` (finite for every u, where the composition gives log(0) = -inf for u below
  about -745 in float64 and -104 in float32), and SymPy writes ``log(exp(u))`` as ``u``.
* ``softplus``: log(1 + exp(x)), derivative ``sigmoid(x)``. NumPy prints ``logaddexp(0, x)``,
  torch ``softplus(x, threshold=40)`` (x itself beyond 40, where the rest, exp(-40) = 4e-18, is
  below float64's resolution of 40), C ``max(x, 0) + log1p(exp(-|x|))``: none overflows.
* ``sqrt``: SymPy's ``sqrt``, a power with exponent 1/2; the printers spell half-integer
  powers with the backend's square root (``x**(-3/2)`` is ``1/(sqrt(x)*sqrt(x)*sqrt(x))``).
* ``max(a, b)``, ``min(a, b)``: piecewise; at a tie (a == b) each argument gets half the
  derivative, as torch.maximum/minimum have it, so the exact derivative and autograd agree
  everywhere, and max(a, b) and max(b, a) have the same derivative. ``max_grad(a, b)`` is
  d max(a, b)/da: 1 where a > b, 1/2 where a == b, 0 where a < b; d min(a, b)/da is
  ``max_grad(b, a)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import mpmath
import numpy
import sympy


class sigmoid(sympy.Function):  # noqa: N801 - named as the math is written
    """Logistic sigmoid 1/(1+exp(-x))."""

    def fdiff(self, argindex=1):
        return self * (1 - self)


class step(sympy.Function):  # noqa: N801
    """Heaviside step with step(0) = 0 (torch's relu derivative)."""

    def fdiff(self, argindex=1):
        return sympy.Integer(0)


class relu(sympy.Function):  # noqa: N801
    """max(x, 0)."""

    def fdiff(self, argindex=1):
        return step(self.args[0])


class hard_sigmoid_grad(sympy.Function):  # noqa: N801
    """Derivative of hard_sigmoid: 1/6 on the open interval (-3, 3), else 0."""

    def fdiff(self, argindex=1):
        return sympy.Integer(0)


class hard_sigmoid(sympy.Function):  # noqa: N801
    """torch.nn.functional.hardsigmoid: clamp(x/6 + 1/2, 0, 1)."""

    def fdiff(self, argindex=1):
        return hard_sigmoid_grad(self.args[0])


class tick(sympy.Function):  # noqa: N801
    """1 where step counter t is a multiple of period T, else 0 (0-based t)."""

    nargs = 2

    def fdiff(self, argindex=1):
        return sympy.Integer(0)


class softplus(sympy.Function):  # noqa: N801
    """log(1 + exp(x))."""

    def fdiff(self, argindex=1):
        return sigmoid(self.args[0])


class max_grad(sympy.Function):  # noqa: N801
    """d max(a, b)/da: 1 where a > b, 1/2 at a tie, 0 where a < b (torch's convention)."""

    nargs = 2

    def fdiff(self, argindex=1):
        return sympy.Integer(0)


class maximum(sympy.Function):  # noqa: N801
    """max(a, b), elementwise."""

    nargs = 2

    def _sympystr(self, printer):
        return f"max({printer._print(self.args[0])}, {printer._print(self.args[1])})"

    def fdiff(self, argindex=1):
        a, b = self.args
        return max_grad(a, b) if argindex == 1 else max_grad(b, a)


class minimum(sympy.Function):  # noqa: N801
    """min(a, b), elementwise."""

    nargs = 2

    def _sympystr(self, printer):
        return f"min({printer._print(self.args[0])}, {printer._print(self.args[1])})"

    def fdiff(self, argindex=1):
        a, b = self.args
        return max_grad(b, a) if argindex == 1 else max_grad(a, b)


@dataclass(frozen=True)
class Func:
    """How one pointwise function is spelled by every backend."""

    name: str
    sympy: type | Callable
    arity: int
    numpy: str  # format string over the printed arguments {0}, {1}
    torch: str
    mpmath: Callable
    interval: Callable  # (lo, hi) per argument -> (lo, hi) of f, elementwise NumPy arrays
    public: bool = True  # may appear in spec text


def _mp_sigmoid(x):
    return 1 / (1 + mpmath.exp(-x))


def _mp_hard_sigmoid(x):
    return min(max(x / 6 + mpmath.mpf(1) / 2, mpmath.mpf(0)), mpmath.mpf(1))


def _monotone(fn):
    """Interval extension of an increasing function."""
    return lambda arg: (fn(arg[0]), fn(arg[1]))


def _unit(*intervals):
    lo = numpy.asarray(intervals[-1][0], dtype=float)
    return numpy.zeros_like(lo, dtype=float), numpy.ones_like(lo, dtype=float)


def _np_sigmoid(x):
    with numpy.errstate(over="ignore"):
        return 1 / (1 + numpy.exp(-numpy.asarray(x, dtype=float)))


def _mp_softplus(x):
    return mpmath.log1p(mpmath.exp(x)) if x < 0 else x + mpmath.log1p(mpmath.exp(-x))


def _mp_max_grad(a, b):
    return mpmath.mpf(1) if a > b else (mpmath.mpf(1) / 2 if a == b else mpmath.mpf(0))


def _np_log(u):
    """log, with -inf for the part of an interval at or below zero."""
    u = numpy.asarray(u, dtype=float)
    with numpy.errstate(divide="ignore", invalid="ignore"):
        return numpy.where(u > 0, numpy.log(numpy.where(u > 0, u, 1.0)), -numpy.inf)


def _pairwise(fn):
    """Interval extension of a function increasing in both arguments."""
    return lambda a, b: (fn(a[0], b[0]), fn(a[1], b[1]))


def _mp_tick(t, period):
    return mpmath.mpf(1) if int(t) % int(period) == 0 else mpmath.mpf(0)


FUNCTIONS: dict[str, Func] = {
    f.name: f
    for f in [
        Func("sigmoid", sigmoid, 1, "_sigmoid({0})", "torch.sigmoid({0})", _mp_sigmoid,
             _monotone(_np_sigmoid)),  # fmt: skip
        Func("tanh", sympy.tanh, 1, "numpy.tanh({0})", "torch.tanh({0})", mpmath.tanh,
             _monotone(numpy.tanh)),  # fmt: skip
        Func("exp", sympy.exp, 1, "numpy.exp({0})", "torch.exp({0})", mpmath.exp,
             _monotone(lambda u: numpy.exp(numpy.minimum(u, 709.0)) * numpy.where(u > 709, numpy.inf, 1))),  # fmt: skip
        Func("relu", relu, 1, "numpy.maximum({0}, 0)", "torch.relu({0})", lambda x: max(x, 0),
             _monotone(lambda u: numpy.maximum(u, 0))),  # fmt: skip
        Func(
            "hard_sigmoid",
            hard_sigmoid,
            1,
            "numpy.clip({0} / 6 + 0.5, 0, 1)",
            "torch.nn.functional.hardsigmoid({0})",
            _mp_hard_sigmoid,
            _monotone(lambda u: numpy.clip(u / 6 + 0.5, 0, 1)),
        ),
        Func("log", sympy.log, 1, "numpy.log({0})", "torch.log({0})", mpmath.log,
             _monotone(_np_log)),  # fmt: skip
        Func("softplus", softplus, 1, "numpy.logaddexp(0, {0})",
             "torch.nn.functional.softplus({0}, threshold=40)", _mp_softplus,
             _monotone(lambda u: numpy.logaddexp(0, numpy.asarray(u, dtype=float)))),  # fmt: skip
        Func("max", maximum, 2, "numpy.maximum({0}, {1})", "torch.maximum({0}, {1})", max,
             _pairwise(numpy.maximum)),  # fmt: skip
        Func("min", minimum, 2, "numpy.minimum({0}, {1})", "torch.minimum({0}, {1})", min,
             _pairwise(numpy.minimum)),  # fmt: skip
        Func("sqrt", sympy.sqrt, 1, "numpy.sqrt({0})", "torch.sqrt({0})", mpmath.sqrt,
             _monotone(lambda u: numpy.sqrt(numpy.maximum(numpy.asarray(u, dtype=float), 0)))),  # fmt: skip
        Func("tick", tick, 2, "_tick({0}, {1})", "_tick({0}, {1})", _mp_tick, _unit),
        Func(
            "step",
            step,
            1,
            "_step({0})",
            "_step({0})",
            lambda x: mpmath.mpf(1) if x > 0 else mpmath.mpf(0),
            _unit,
            public=False,
        ),
        Func(
            "hard_sigmoid_grad",
            hard_sigmoid_grad,
            1,
            "_hard_sigmoid_grad({0})",
            "_hard_sigmoid_grad({0})",
            lambda x: mpmath.mpf(1) / 6 if -3 < x < 3 else mpmath.mpf(0),
            lambda arg: (numpy.zeros_like(arg[0], dtype=float), numpy.full_like(arg[0], 1 / 6, dtype=float)),
            public=False,
        ),
        Func(
            "max_grad",
            max_grad,
            2,
            "_max_grad({0}, {1})",
            "_max_grad({0}, {1})",
            _mp_max_grad,
            _unit,
            public=False,
        ),
    ]
}

SPEC_FUNCTIONS = {name: f for name, f in FUNCTIONS.items() if f.public}
BY_SYMPY = {f.sympy: f for f in FUNCTIONS.values() if isinstance(f.sympy, type)}


def _check_table() -> None:
    """Every derivative a function can produce must itself be in the table."""
    x, t = sympy.symbols("x t", real=True)
    for f in FUNCTIONS.values():
        args = (t, x) if f.arity == 2 else (x,)
        expr = f.sympy(*args)
        for d in (sympy.diff(expr, a) for a in args):
            for sub in d.atoms(sympy.Function):
                if type(sub) not in BY_SYMPY:
                    raise AssertionError(f"derivative of {f.name} uses {sub.func}, not in FUNCTIONS")


_check_table()
