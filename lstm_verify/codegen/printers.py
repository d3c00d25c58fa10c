"""The SymPy printers of generated NumPy and torch code, and how names are spelled in it."""

from __future__ import annotations

import sympy
from sympy.core.function import _coeff_isneg
from sympy.printing.precedence import PRECEDENCE
from sympy.printing.pycode import PythonCodePrinter

from ..functions import FUNCTIONS
from ..hygiene import ident
from ..ir import CellIR
from ..spec import _constant_value
from .plan import _batched

BACKENDS = ("numpy", "torch")


def fold_constants(expr: sympy.Expr) -> sympy.Expr:
    """Constant parts that are not rational numbers (``E`` from ``exp(1)``, ``exp(2)``,
    ``tanh(1/2)``) as float literals: the printers have no spelling for them that keeps the
    caller's dtype (``numpy.exp(2)`` is a float64 scalar, ``math.e`` needs an import)."""
    if expr.is_Atom:
        return sympy.Float(float(_constant_value(expr))) if expr.is_NumberSymbol else expr
    if not expr.free_symbols:
        return sympy.Float(float(_constant_value(expr)))
    return expr.func(*(fold_constants(a) for a in expr.args))


def _v(name: str) -> str:
    """A name in generated code: the generator's own start with ``_``; every other one comes
    from the spec and lives in the ``v_`` namespace (see :mod:`lstm_verify.hygiene`)."""
    return name if name.startswith("_") else ident(name)


# ----------------------------------------------------------------------------- printers


class _Printer(PythonCodePrinter):
    backend = "numpy"

    def _half_power(self, base, exp) -> str | None:
        """base**(k/2), k odd, with the backend's square root s: s, s*base, 1/s, 1/(s*base)."""
        if not (exp.is_Rational and exp.q == 2):
            return None
        s = getattr(FUNCTIONS["sqrt"], self.backend).format(self._print(base))
        k = abs(int(exp.p))
        prod = s if k == 1 else f"({s}*{self.parenthesize(base ** ((k - 1) // 2), PRECEDENCE['Mul'])})"
        return prod if exp > 0 else f"1/{prod}"

    def _print_Pow(self, expr):
        base, exp = expr.as_base_exp()
        half = self._half_power(base, exp)
        if half is not None:
            return half
        if exp.is_Integer and exp < 0:
            return f"1/{self.parenthesize(base ** -exp, 100)}" if exp != -1 else (
                f"1/{self.parenthesize(base, 100)}"
            )
        return super()._print_Pow(expr)

    def _print_Symbol(self, expr):
        return _v(expr.name)

    def _print_OverSet(self, expr):
        return f"{self._print(expr.args[0])}[:, None]"


class OverSet(sympy.Function):
    """A value without the set axis, (B, n), read by a vector with it, (B, L, n): printed
    ``x[:, None]`` so that it broadcasts over the L members."""


def _in_set(ir: CellIR, name: str, expr: sympy.Expr) -> sympy.Expr:
    """``expr`` of node ``name`` with every vector without the set axis wrapped in OverSet when
    the node has the set axis."""
    if name not in ir.set_vectors:
        return expr
    batched = _batched(ir)
    return expr.xreplace({x: OverSet(x) for x in expr.free_symbols
                          if x.name in batched and x.name not in ir.set_vectors})  # fmt: skip


def _function_printer(func):
    def method(self, expr):
        fmt = getattr(func, self.backend)
        return fmt.format(*(self._print(a) for a in expr.args))

    return method


class NumpyPrinter(_Printer):
    backend = "numpy"


class TorchPrinter(_Printer):
    """Numbers become 0-dim tensors made once per call (``_k0 = _const(1.0, like)``): an
    operation with a Python number first wraps it in a tensor, which doubles the cost of
    ``1 - s`` on a (32, 256) tensor. Squares print as products, cheaper than ``pow``."""

    backend = "torch"

    def __init__(self, settings=None):
        super().__init__(settings)
        self.constants: dict[str, str] = {}  # printed value -> name

    def _constant(self, expr):
        text = str(int(expr)) if expr.is_Integer else repr(float(expr))
        if text not in self.constants:
            self.constants[text] = f"_k{len(self.constants)}"
        return self.constants[text]

    def _print_Integer(self, expr):
        return self._constant(expr)

    def _print_Rational(self, expr):
        return self._constant(expr)

    def _print_Float(self, expr):
        return self._constant(expr)

    def _pair(self, term):
        """The two printed factors of a product of exactly two tensors, or None."""
        if not isinstance(term, sympy.Mul):
            return None
        factors = term.as_ordered_factors()
        if len(factors) != 2 or any(f.is_Number or (f.is_Pow and f.exp.is_negative) for f in factors):
            return None
        mul = PRECEDENCE["Mul"]
        return tuple(self.parenthesize(f, mul) for f in factors)

    def _addcmul(self, expr, out=""):
        """``rest + a*b`` as ``torch.addcmul(rest, a, b)``: one operation instead of two."""
        terms = self._as_ordered_terms(expr)
        for k in range(len(terms) - 1, -1, -1):
            pair = self._pair(terms[k])
            if pair:
                rest = sympy.Add(*(terms[:k] + terms[k + 1 :]), evaluate=False)
                return f"torch.addcmul({self._print(rest)}, {pair[0]}, {pair[1]}{out})"
        return None

    def _print_Add(self, expr, order=None):
        return self._addcmul(expr) or super()._print_Add(expr, order)

    def into(self, expr, target: str) -> str | None:
        """The expression computed straight into ``target`` (``out=``), or None where its last
        operation has no such form here."""
        if isinstance(expr, sympy.Function):
            f = _BY_SYMPY.get(expr.func)
            if f is None or f.torch not in _TAKES_OUT:
                return None
            return f.torch.replace("{0}", f"{self._print(expr.args[0])}, out={target}")
        if isinstance(expr, sympy.Add):
            fused = self._addcmul(expr, f", out={target}")
            if fused:
                return fused
            terms = self._as_ordered_terms(expr)
            if any(_coeff_isneg(t) for t in terms):
                return None
            rest = " + ".join(self._print(t) for t in terms[:-1])
            return f"torch.add({rest}, {self._print(terms[-1])}, out={target})"
        if isinstance(expr, sympy.Mul):
            factors = expr.as_ordered_factors()
            if _coeff_isneg(expr) or any(
                f.is_Pow and f.exp.is_negative for f in factors
            ):
                return None
            mul = PRECEDENCE["Mul"]
            rest = "*".join(self.parenthesize(f, mul) for f in factors[:-1])
            return f"torch.mul({rest}, {self._print(factors[-1])}, out={target})"
        return None

    def _print_Pow(self, expr):
        base, exp = expr.as_base_exp()
        half = self._half_power(base, exp)
        if half is not None:
            return half
        if exp == 2 and base.is_Symbol:  # parenthesised: a divisor too (c/(n*n), not c/n*n)
            b = self.parenthesize(base, PRECEDENCE["Mul"])
            return f"({b}*{b})"
        if exp.is_Integer and exp > 0:
            return f"{self.parenthesize(base, 100)}**{int(exp)}"
        return super()._print_Pow(expr)


for _f in FUNCTIONS.values():
    for _cls in (NumpyPrinter, TorchPrinter):
        setattr(_cls, f"_print_{_f.sympy.__name__}", _function_printer(_f))

class PlainTorchPrinter(TorchPrinter):
    """Sums as written (``c*f + g*i``, not ``torch.addcmul``): for the readable step."""

    def _print_Add(self, expr, order=None):
        return _Printer._print_Add(self, expr, order)


PRINTERS = {"numpy": NumpyPrinter, "torch": TorchPrinter}
_BY_SYMPY = {f.sympy: f for f in FUNCTIONS.values()}
_TAKES_OUT = {"torch.sigmoid({0})", "torch.tanh({0})", "torch.exp({0})"}  # printed forms with out=
