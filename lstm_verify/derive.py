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
from .ir import Affine, CellIR, Pointwise, Reduce, dependencies
from .spec import NEW, SCALAR, display

ONES = "𝟙"  # in a Term's weights: the column of ones that broadcasts a size-1 value
REDUCE = "𝟙ᵀ:"  # + a size name: the row of ones that sums that size's units into one value


def count(node: str) -> sympy.Symbol:
    """The number of units a reduction node sums over (its arguments' sizes together)."""
    return sympy.Symbol(f"_n_{node}", integer=True, positive=True)


def reduce_partials(node: Reduce) -> dict[str, sympy.Expr]:
    """d node / d arg per unit of each argument: 1 (sum), 1/n (mean), 2*(arg - center)/n (var;
    the derivative through the center is exactly 0, since the deviations sum to 0); over the
    set, 1 per member (setsum) and 0 (setmax: the shift of a softmax, which does not change it)."""
    out: dict[str, sympy.Expr] = {}
    n = count(node.name)
    for a in node.args:
        if node.op == "setmax":
            d = sympy.Integer(0)
        elif node.op in ("sum", "setsum"):
            d = sympy.Integer(1)
        elif node.op == "mean":
            d = 1 / n
        else:
            d = 2 * (sympy.Symbol(a, real=True) - sympy.Symbol(node.center, real=True)) / n
        out[a] = out.get(a, 0) + d
    return out


def forward_values(ir: CellIR) -> dict:
    """Map each non-trivial pointwise expression to the symbol of the node that computes it."""
    return {
        n.expr: sympy.Symbol(n.name, real=True)
        for n in ir.nodes
        if isinstance(n, Pointwise) and not n.expr.is_Atom
    }


def vector_names(ir: CellIR) -> set[str]:
    return {n for n, _ in ir.inputs} | {n for n, _ in ir.sets} | {n for n, _ in ir.states} | {n.name for n in ir.nodes}


@lru_cache(maxsize=256)
def partials(ir: CellIR) -> dict[str, dict[str, sympy.Expr]]:
    """For each pointwise node, d(node)/d(symbol) for every vector or diagonal symbol in it."""
    values = forward_values(ir)
    wanted = vector_names(ir) | {p for p, _ in ir.diagonals}
    # a reduction's value read under the name of the node that only names it (mx = mean(...))
    alias = {n.expr: sympy.Symbol(n.name, real=True) for n in ir.nodes if isinstance(n, Pointwise)
             and isinstance(n.expr, sympy.Symbol) and isinstance(ir.node_map.get(n.expr.name), Reduce)}
    # square roots that are nodes (s = sqrt(v + eps)) also stand for their powers: 1/(2*s)
    roots = {e: v for e, v in values.items() if e.is_Pow and e.exp == sympy.Rational(1, 2)}
    out = {}
    for n in ir.nodes:
        if isinstance(n, Reduce):
            out[n.name] = {a: d.xreplace(alias) for a, d in reduce_partials(n).items()}
        if not isinstance(n, Pointwise):
            continue
        own = {k: v for k, v in values.items() if v.name != n.name}
        out[n.name] = {}
        for s in sorted(n.expr.free_symbols, key=lambda s: s.name):
            if s.name in wanted:
                d = sympy.diff(n.expr, s)
                d = d.xreplace({n.expr: sympy.Symbol(n.name, real=True)}).xreplace(own)
                for e, v in roots.items():
                    if d.has(e.base):
                        d = d.subs(e, v)
                out[n.name][s.name] = d.xreplace(alias) if n.expr not in alias else d
    return out


# --------------------------------------------------------------------- structured Jacobians


@dataclass(frozen=True)
class Term:
    """diag(diags[0]) · weights[0] · diag(diags[1]) · ... · diag(diags[-1])."""

    diags: tuple[sympy.Expr, ...]
    weights: tuple[str, ...]
    path: tuple[str, ...]  # node names from the target back to the source

    def _parts(self, show, diag, column, row, scalar, weight, ones) -> list[str]:
        """The factors as printed: diag(d) · 1 is the column [d], 1ᵀ · diag(d) the row [d]ᵀ,
        and a size-1 factor between them a scalar (d), so a reduction's rank-one terms read as
        outer products."""
        parts = []
        w = self.weights
        for k, d in enumerate(self.diags):
            before = w[k - 1] if k else None
            after = w[k] if k < len(w) else None
            if before is not None and before.startswith(REDUCE) and after == ONES:
                parts[-1] = scalar("sum(" + show(d) + ")")  # 1ᵀ diag(d) 1: a number
            elif before is not None and before.startswith(REDUCE):
                parts[-1] = row(show(d))  # the row replaces its 1ᵀ
            elif after == ONES:
                parts.append(column(show(d)))
            elif before == ONES or (after is not None and after.startswith(REDUCE)):
                if d != 1:
                    parts.append(scalar(show(d)))
            elif d != 1:
                parts.append(diag(show(d)))
            if after is not None and after != ONES:
                parts.append(ones if after.startswith(REDUCE) else weight(after))
        return parts

    def text(self) -> str:
        parts = self._parts(_plain, lambda d: f"diag({d})", lambda d: f"[{d}]", lambda d: f"[{d}]ᵀ",
                            lambda d: f"({d})", lambda w: w, "1ᵀ")  # fmt: skip
        return " · ".join(parts) if parts else "I"

    def latex(self) -> str:
        parts = self._parts(_latex, lambda d: r"\operatorname{diag}\left(" + d + r"\right)",
                            lambda d: r"\left[" + d + r"\right]", lambda d: r"\left[" + d + r"\right]^{\top}",
                            lambda d: r"\left(" + d + r"\right)", _latex_weight, r"\mathbf{1}^{\top}")  # fmt: skip
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
            result = _through(ir, node, pd[name], terms_of)
        memo[name] = _merge(result)
        return memo[name]

    return tuple(t for t in terms_of(of) if t.diags[0] != 0)


def local_jacobian(ir: CellIR, of: str, wrt: str) -> Jacobian:
    """d(of)/d(wrt) with every other vector held fixed: only paths through reductions' values
    (size 1) and pointwise nodes of size 1 are followed. For a normalised vector it is the
    normalisation's own structured Jacobian: diagonal plus rank-one terms."""
    pd = partials(ir)
    memo: dict[str, list[Term]] = {}

    def terms_of(name: str) -> list[Term]:
        if name == wrt:
            return [Term((sympy.Integer(1),), (), (name,))]
        node = ir.node_map.get(name)
        if node is None or isinstance(node, Affine) or (name != of and not _inner(ir, name)):
            return []
        if name not in memo:
            memo[name] = _merge(_through(ir, node, pd[name], terms_of))
        return memo[name]

    terms = tuple(t for t in terms_of(of) if t.diags[0] != 0)
    return Jacobian(display(of), display(wrt), terms)


def _inner(ir: CellIR, name: str) -> bool:
    """A node local Jacobians look through: a reduction, a value of size 1, or a pointwise
    argument of a reduction that the spec does not name (``c'**2`` in ``mean(c'**2)``)."""
    node = ir.node_map.get(name)
    if node is None or isinstance(node, Affine):
        return False
    named = {eq.lhs for eq in ir.spec.equations}
    return ir.dims[name] == SCALAR or (isinstance(node, Pointwise) and name not in named)


def local_blocks(ir: CellIR) -> dict[tuple[str, str], Jacobian]:
    """For every node that reads a reduction's value: its local Jacobian with respect to each
    vector the reduction reads (and to the vectors it reads itself)."""
    scalar_deps: dict[str, set[str]] = {}  # inner node -> the vectors its reductions read
    for n in ir.nodes:
        if not _inner(ir, n.name):
            continue
        deps = set()
        for d in dependencies(n):
            deps |= scalar_deps.get(d, set()) if _inner(ir, d) else {d}
        scalar_deps[n.name] = deps
    out = {}
    for n in ir.nodes:
        if not isinstance(n, Pointwise) or n.dim == SCALAR:
            continue
        if _inner(ir, n.name):
            continue
        read = [d for d in dependencies(n) if ir.dims.get(d) == SCALAR and d in scalar_deps]
        if not read:
            continue
        wrt = set().union(*(scalar_deps[d] for d in read)) | {
            d for d in dependencies(n) if d in ir.dims and ir.dims[d] != SCALAR and d not in dict(ir.diagonals)}
        for w in sorted(wrt, key=lambda v: list(ir.dims).index(v)):
            j = local_jacobian(ir, n.name, w)
            if not j.is_zero:
                out[(n.name, w)] = j
    return out


def _through(ir: CellIR, node, partials_of: dict, terms_of) -> list[Term]:
    """The terms of a pointwise or reduction node: each partial times the terms of what it
    reads. A reduction contributes 1ᵀ diag(d) (a row), a vector reading a size-1 value
    diag(d) 1 (a column), anything else diag(d)."""
    result = []
    for s, d in partials_of.items():
        spread = ir.dims.get(s) == SCALAR and node.dim != SCALAR
        for t in terms_of(s):
            if isinstance(node, Reduce):
                result.append(Term((sympy.Integer(1), d * t.diags[0]) + t.diags[1:],
                                   (REDUCE + ir.dims[s],) + t.weights, (node.name,) + t.path))  # fmt: skip
            elif spread:
                result.append(Term((d,) + t.diags, (ONES,) + t.weights, (node.name,) + t.path))
            else:
                result.append(Term((d * t.diags[0],) + t.diags[1:], t.weights, (node.name,) + t.path))
    return result


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


LONG_BLOCK = 800  # characters: a longer one-step block is summarised where it is shown


def shown_blocks(ir: CellIR) -> list[tuple[bool, str, str, str, str]]:
    """(local, of, wrt, plain, latex) for display: for a cell with reductions first the local
    blocks of its normalised equations (other vectors held fixed), then every one-step block. A
    one-step block longer than LONG_BLOCK characters is named by its number of path terms: it
    is the local blocks chained through the equations, and :func:`jacobian` holds it in full."""
    rows = []
    if ir.reduces:
        for (of, wrt), j in local_blocks(ir).items():
            rows.append((True, display(of), display(wrt), str(j), j.latex()))
    for (of, wrt), terms in jacobian_blocks(ir).items():
        text, latex = block_text(terms), block_latex(terms)
        if len(text) > LONG_BLOCK:
            text = latex = (f"{len(terms)} path terms, {len(text)} characters: the local blocks "
                            f"chained through the equations; cell.jacobian({display(of)!r}, {wrt!r}) "
                            "holds it in full")  # fmt: skip
        rows.append((False, display(of), wrt, text, latex))
    return rows


def block_text(terms: tuple[Term, ...]) -> str:
    return " + ".join(t.text() for t in terms) if terms else "0"


def block_latex(terms: tuple[Term, ...]) -> str:
    return " + ".join(t.latex() for t in terms) if terms else "0"


def _rename(expr):
    """Symbols as written in specs (``h'``); a reduction's unit count ``_n_<node>`` as ``n``."""
    return expr.xreplace({s: sympy.Symbol("n" if s.name.startswith("_n_") else display(s.name))
                          for s in expr.free_symbols})


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
        if isinstance(node, Reduce):
            units = [e for a in node.args for e in values[a]]
            n = sympy.Integer(len(units))
            sym[count(node.name).name] = n
            if node.op == "var":
                c = values[node.center][0]
                units = [(e - c) ** 2 for e in units]
            total = sympy.Add(*units)
            values[node.name] = sympy.Matrix([total if node.op == "sum" else total / n])
        elif isinstance(node, Affine):
            acc = sympy.zeros(sizes[node.dim], 1)
            for w, arg in node.terms:
                acc += sym[w] * values[arg]
            if node.bias:
                acc += sym[node.bias]
            values[node.name] = acc
        else:
            values[node.name] = sympy.Matrix(
                [_unit(ir, node.expr, values, sym, k) for k in range(_size(sizes, node.dim))]
            )
    return values, sym


def _size(sizes, dim) -> int:
    return 1 if dim == SCALAR else sizes[dim]


def _unit(ir, expr, values, sym, k):
    """A per-unit expression evaluated at unit k of the explicit vectors (size-1 values
    broadcast)."""
    subs = {}
    for s in expr.free_symbols:
        if s.name in values:
            subs[s] = values[s.name][0 if ir.dims.get(s.name) == SCALAR else k]
        elif s.name.startswith("_n_") or s.name == ir.step:
            subs[s] = sym[s.name]
        else:
            subs[s] = sym[s.name][k]
    return expr.xreplace(subs)


def structured_matrix(ir: CellIR, terms, values, sym, sizes, out_dim, in_dim):
    """Expand a structured block into an explicit Matrix using explicit node values."""
    weights = {w.name: w for w in ir.weights}

    def source_dim(w):
        return SCALAR if w == ONES else w[len(REDUCE):] if w.startswith(REDUCE) else weights[w].in_dim

    total = sympy.zeros(sizes[out_dim], sizes[in_dim])
    for t in terms:
        dims = [out_dim] + [source_dim(w) for w in t.weights]
        prod = None
        for k, d in enumerate(t.diags):
            diag = sympy.diag(*[_unit(ir, d, values, sym, u) for u in range(_size(sizes, dims[k]))])
            prod = diag if prod is None else prod * diag
            if k < len(t.weights):
                w = t.weights[k]
                prod = prod * (sym[w] if w in weights else sympy.ones(_size(sizes, dims[k]), _size(sizes, dims[k + 1])))
        total += prod
    return total
