"""Exact derivatives of one step: pointwise partials and structured per-step Jacobians.

Partials of a pointwise node come from ``sympy.diff`` and are rewritten in terms of forward
values (``sigmoid(lin_i)`` becomes ``i``), so a backward pass needs only saved node values.
A Jacobian block d(new state)/d(previous state or input) is a sum over DAG paths of
``diag(d0) W1 diag(d1) W2 ... diag(dk)``; :class:`Term` holds one such product.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import sympy

from .errors import LstmVerifyError
from .ir import Affine, CellIR, Pointwise
from .spec import NEW, display


def forward_values(ir: CellIR) -> dict:
    """Map each non-trivial pointwise expression to the symbol of the node that computes it."""
    return {
        n.expr: sympy.Symbol(n.name, real=True)
        for n in ir.nodes
        if isinstance(n, Pointwise) and not n.expr.is_Atom
    }


def vector_names(ir: CellIR) -> set[str]:
    return {n for n, _ in ir.inputs} | {n for n, _ in ir.states} | {n.name for n in ir.nodes}


@lru_cache(maxsize=256)
def partials(ir: CellIR) -> dict[str, dict[str, sympy.Expr]]:
    """For each pointwise node, d(node)/d(symbol) for every vector or diagonal symbol in it."""
    values = forward_values(ir)
    wanted = vector_names(ir) | {p for p, _ in ir.diagonals}
    out = {}
    for n in ir.nodes:
        if not isinstance(n, Pointwise):
            continue
        own = {k: v for k, v in values.items() if v.name != n.name}
        out[n.name] = {}
        for s in sorted(n.expr.free_symbols, key=lambda s: s.name):
            if s.name in wanted:
                d = sympy.diff(n.expr, s)
                out[n.name][s.name] = d.xreplace({n.expr: sympy.Symbol(n.name, real=True)}).xreplace(own)
    return out


# --------------------------------------------------------------------- structured Jacobians


@dataclass(frozen=True)
class Term:
    """diag(diags[0]) · weights[0] · diag(diags[1]) · ... · diag(diags[-1])."""

    diags: tuple[sympy.Expr, ...]
    weights: tuple[str, ...]
    path: tuple[str, ...]  # node names from the target back to the source

    def text(self) -> str:
        parts = []
        for k, d in enumerate(self.diags):
            if d != 1:
                parts.append(f"diag({_plain(d)})")
            if k < len(self.weights):
                parts.append(self.weights[k])
        return " · ".join(parts) if parts else "I"

    def latex(self) -> str:
        parts = []
        for k, d in enumerate(self.diags):
            if d != 1:
                parts.append(r"\operatorname{diag}\left(" + _latex(d) + r"\right)")
            if k < len(self.weights):
                parts.append(_latex_weight(self.weights[k]))
        return r" ".join(parts) if parts else "I"


class _diag(sympy.Function):  # printed as the math is written
    """diag(v) as a factor of a matrix product: does not commute with the weights."""

    is_commutative = False

    def _sympystr(self, printer):
        return f"diag({printer.doprint(self.args[0])})"


@dataclass(frozen=True)
class Jacobian:
    """The exact one-step block d(of)/d(wrt) in closed form: a sum of path products ``terms``.

    ``str()`` is the plain form (``diag(f)``), :meth:`latex` the LaTeX one, :meth:`sympy` a
    SymPy expression in which weights are non-commuting symbols and ``diag`` does not commute;
    iterating and indexing give the terms."""

    of: str
    wrt: str
    terms: tuple[Term, ...]

    def __str__(self) -> str:
        return block_text(self.terms)

    def __repr__(self) -> str:
        return f"<Jacobian d{self.of}/d{self.wrt} = {self}>"

    def __iter__(self):
        return iter(self.terms)

    def __len__(self) -> int:
        return len(self.terms)

    def __getitem__(self, k):
        return self.terms[k]

    @property
    def is_zero(self) -> bool:
        return not self.terms

    def latex(self) -> str:
        return block_latex(self.terms)

    def sympy(self) -> sympy.Expr:
        total = sympy.Integer(0)
        for t in self.terms:
            factors = []
            for k, d in enumerate(t.diags):
                if d != 1:
                    factors.append(_diag(_rename(d)))
                if k < len(t.weights):
                    factors.append(sympy.Symbol(t.weights[k], commutative=False))
            total += sympy.Mul(*factors) if factors else sympy.Symbol("I", commutative=False)
        return total


def closed_form(ir: CellIR, of: str, wrt: str) -> Jacobian:
    """:func:`jacobian` as a :class:`Jacobian` that prints as its closed form."""
    terms = jacobian(ir, of, wrt)
    return Jacobian(display(of[:-1] + NEW if of.endswith("'") else of), wrt, terms)


def jacobian(ir: CellIR, of: str, wrt: str) -> tuple[Term, ...]:
    """Closed form of d(of)/d(wrt) within one step, as a sum of path products.

    ``of`` is a node (``"c'"`` or ``"c_"`` for a new state); ``wrt`` a previous state or an input.
    An empty tuple means the block is zero.
    """
    of = of[:-1] + NEW if of.endswith("'") else of
    if of not in ir.node_map:
        raise LstmVerifyError(f"{of!r} is not a node of {ir.name}")
    if wrt not in {n for n, _ in ir.states} | {n for n, _ in ir.inputs}:
        raise LstmVerifyError(f"{wrt!r} is not a previous state or input of {ir.name}")
    pd = partials(ir)
    memo: dict[str, list[Term]] = {}

    def terms_of(name: str) -> list[Term]:
        if name == wrt:
            return [Term((sympy.Integer(1),), (), (name,))]
        node = ir.node_map.get(name)
        if node is None:
            return []
        if name in memo:
            return memo[name]
        result: list[Term] = []
        if isinstance(node, Affine):
            for w, arg in node.terms:
                for t in terms_of(arg):
                    result.append(Term((sympy.Integer(1),) + t.diags, (w,) + t.weights, (name,) + t.path))
        else:
            for s, d in pd[name].items():
                for t in terms_of(s):
                    result.append(Term((d * t.diags[0],) + t.diags[1:], t.weights, (name,) + t.path))
        memo[name] = _merge(result)
        return memo[name]

    return tuple(t for t in terms_of(of) if t.diags[0] != 0)


def _merge(terms: list[Term]) -> list[Term]:
    """Add terms that differ only in their leading diagonal."""
    merged: dict = {}
    for t in terms:
        key = (t.weights, t.diags[1:])
        if key in merged:
            m = merged[key]
            merged[key] = Term((m.diags[0] + t.diags[0],) + t.diags[1:], t.weights, m.path)
        else:
            merged[key] = t
    return list(merged.values())


def jacobian_blocks(ir: CellIR) -> dict[tuple[str, str], tuple[Term, ...]]:
    """Every block d(new state)/d(previous state) and d(new state)/d(input)."""
    sources = [n for n, _ in ir.states] + [n for n, _ in ir.inputs]
    return {
        (s + NEW, src): jacobian(ir, s + NEW, src) for s, _ in ir.states for src in sources
    }


def block_text(terms: tuple[Term, ...]) -> str:
    return " + ".join(t.text() for t in terms) if terms else "0"


def block_latex(terms: tuple[Term, ...]) -> str:
    return " + ".join(t.latex() for t in terms) if terms else "0"


def _rename(expr):
    return expr.xreplace({s: sympy.Symbol(display(s.name)) for s in expr.free_symbols})


def _plain(expr) -> str:
    return sympy.sstr(_rename(expr))


def _latex(expr) -> str:
    return sympy.latex(_rename(expr))


def _latex_weight(name: str) -> str:
    head, _, rest = name.partition("_")
    return f"{head}_{{{rest.replace('_', ',')}}}" if rest else head


# ------------------------------------------------------- explicit expansion for tiny sizes


def explicit_step(ir: CellIR, sizes: dict[str, int], buffers=None, step_value=0):
    """The whole step as explicit SymPy matrices with symbolic entries.

    Returns ``(values, symbols)``: ``values`` maps each vector name to a column Matrix of
    expressions in the entries of inputs, previous states and parameters; ``symbols`` maps
    source and parameter names to their entry symbols (weights already masked). Buffers and
    the step counter take the given numbers. Only for tiny sizes.
    """
    if sum(sizes.values()) > 64:
        raise LstmVerifyError("explicit expansion is only for tiny sizes")
    sym: dict = {}

    def vec(name, n):
        return sympy.Matrix([sympy.Symbol(f"{name}[{k}]", real=True) for k in range(n)])

    for name, dim in list(ir.inputs) + list(ir.states) + list(ir.biases) + list(ir.diagonals):
        sym[name] = vec(name, sizes[dim])
    for b, dim, _ in ir.buffers:
        sym[b] = sympy.Matrix([sympy.Integer(int(v)) for v in buffers[b]])
    for w in ir.weights:
        m = sympy.Matrix(
            sizes[w.out_dim], sizes[w.in_dim],
            lambda r, c: sympy.Symbol(f"{w.name}[{r},{c}]", real=True),
        )  # fmt: skip
        if w.mask is not None:
            import numpy as np

            keep = w.mask.evaluate({b: np.asarray(v) for b, v in buffers.items()})
            m = m.multiply_elementwise(sympy.Matrix(keep.astype(int).tolist()))
        sym[w.name] = m
    if ir.step:
        sym[ir.step] = sympy.Integer(step_value)
    values = {n: sym[n] for n, _ in list(ir.inputs) + list(ir.states)}
    for node in ir.nodes:
        if isinstance(node, Affine):
            acc = sympy.zeros(sizes[node.dim], 1)
            for w, arg in node.terms:
                acc += sym[w] * values[arg]
            if node.bias:
                acc += sym[node.bias]
            values[node.name] = acc
        else:
            values[node.name] = sympy.Matrix(
                [_unit(ir, node.expr, values, sym, k) for k in range(sizes[node.dim])]
            )
    return values, sym


def _unit(ir, expr, values, sym, k):
    """A per-unit expression evaluated at unit k of the explicit vectors."""
    subs = {}
    for s in expr.free_symbols:
        if s.name in values:
            subs[s] = values[s.name][k]
        elif s.name == ir.step:
            subs[s] = sym[s.name]
        else:
            subs[s] = sym[s.name][k]
    return expr.xreplace(subs)


def structured_matrix(ir: CellIR, terms, values, sym, sizes, out_dim, in_dim):
    """Expand a structured block into an explicit Matrix using explicit node values."""
    weights = {w.name: w for w in ir.weights}
    total = sympy.zeros(sizes[out_dim], sizes[in_dim])
    for t in terms:
        dims = [out_dim] + [weights[w].in_dim for w in t.weights]
        prod = None
        for k, d in enumerate(t.diags):
            diag = sympy.diag(*[_unit(ir, d, values, sym, u) for u in range(sizes[dims[k]])])
            prod = diag if prod is None else prod * diag
            if k < len(t.weights):
                prod = prod * sym[t.weights[k]]
        total += prod
    return total
