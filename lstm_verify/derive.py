"""Exact derivatives of one step: pointwise partials and structured per-step Jacobians.

Partials of a pointwise node come from ``sympy.diff`` and are rewritten in terms of forward
values (``sigmoid(lin_i)`` becomes ``i``), so a backward pass needs only saved node values.
A Jacobian block d(new state)/d(previous state or input) is a sum over DAG paths of
``diag(d0) W1 diag(d1) W2 ... diag(dk)``; :class:`Term` holds one such product. Reductions add
columns and rows of ones; on a cell with set inputs a path enters the set axis where a vector
without it is broadcast over the members and leaves it at a setsum, and is printed as a sum over
the members between the two; a softmax is differentiated whole: diag(alpha) - alpha alphaᵀ.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import sympy

from .errors import LstmVerifyError
from .ir import Affine, CellIR, Pointwise, Reduce, dependencies
from .spec import NEW, SCALAR, SET, display

ONES = "𝟙"  # in a Term's weights: the column of ones that broadcasts a size-1 value
REDUCE = "𝟙ᵀ:"  # + a size name: the row of ones that sums that size's units into one value
# over the members of the set inputs: a value without the set axis read by a node with it enters
# the axis (the column of ones over the members, kron(1_L, I_n)); a setsum leaves it (the row of
# ones, kron(1_L^T, I_n)). Between them a path runs member by member: printed as a sum over m.
SET_IN = "𝟙ₛ"
SET_OUT = "𝟙ₛᵀ"
SET_TOKENS = (SET_IN, SET_OUT)
_SUB = {"i": "ᵢ", "k": "ₖ", "m": "ₘ"}  # a member index, printed as a subscript


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
    """diag(diags[0]) · weights[0] · diag(diags[1]) · ... · diag(diags[-1]).

    A weight is a weight matrix's name, :data:`ONES`, :data:`REDUCE` + a size name,
    :data:`SET_IN` or :data:`SET_OUT`. On a vector with the set axis every factor but the last
    two acts on each member alike (a weight W is kron(I_L, W)); :func:`spaces` says which
    diagonals have the axis. ``text`` and ``latex`` take the cell's IR to print the set axis."""

    diags: tuple[sympy.Expr, ...]
    weights: tuple[str, ...]
    path: tuple[str, ...]  # node names from the target back to the source

    def text(self, ir: CellIR | None = None) -> str:
        parts = self._render(ir, _PLAIN)
        return _PLAIN.join(parts) if parts else "I"

    def latex(self, ir: CellIR | None = None) -> str:
        parts = self._render(ir, _LATEX)
        return _LATEX.join(parts) if parts else "I"

    def _render(self, ir, f) -> list[str]:
        """The printed factors. On a cell with sets the path is cut where it enters or leaves
        the set axis; a piece on the members between a setsum and a broadcast is a sum over the
        members (Σₘ, its set vectors' values those of member m), the piece at a target with the
        axis is member i's block row, the piece at a source with it member k's block column,
        and one piece that is both (no set factor between them) is δᵢₖ times member i's block."""
        if ir is None or not ir.sets:
            return _factor_parts(self.diags, self.weights, lambda d: f.show(d, None, None), f, None)
        sp = spaces(ir, self)
        cuts = [k for k, w in enumerate(self.weights) if w in SET_TOKENS]
        pieces = list(zip([0] + [c + 1 for c in cuts], cuts + [len(self.weights)]))  # diagonals a..b
        parts = []
        for j, (a, b) in enumerate(pieces):
            on_set = sp[a][1]
            idx = None if not on_set else "i" if j == 0 else "k" if j == len(pieces) - 1 else "m"
            show = lambda d, idx=idx: f.show(d, idx, ir)  # noqa: E731
            sub = _factor_parts(self.diags[a:b + 1], self.weights[a:b], show, f,
                                [sp[x][0] == SCALAR for x in range(a, b + 1)])  # fmt: skip
            if idx == "m":
                parts.append(f.sum(f.join(sub) if sub else "1"))
                continue
            if on_set and len(pieces) == 1:
                parts.append(f.delta)
            parts.extend(sub)
        return parts


def _factor_parts(diags, weights, show, f, scalar_space) -> list[str]:
    """The factors as printed: diag(d) · 1 is the column [d], 1ᵀ · diag(d) the row [d]ᵀ, and a
    size-1 factor between them a scalar (d), so a reduction's rank-one terms read as outer
    products. ``scalar_space`` (cells with sets) marks diagonals on size-1 values: printed (d)."""
    parts = []
    w = weights
    for k, d in enumerate(diags):
        before = w[k - 1] if k else None
        after = w[k] if k < len(w) else None
        if before is not None and before.startswith(REDUCE) and after == ONES:
            parts[-1] = f.scalar("sum(" + show(d) + ")")  # 1ᵀ diag(d) 1: a number
        elif before is not None and before.startswith(REDUCE):
            parts[-1] = f.row(show(d))  # the row replaces its 1ᵀ
        elif after == ONES:
            parts.append(f.column(show(d)))
        elif before == ONES or (after is not None and after.startswith(REDUCE)):
            if d != 1:
                parts.append(f.scalar(show(d)))
        elif d != 1:
            parts.append(f.scalar(show(d)) if scalar_space and scalar_space[k] else f.diag(show(d)))
        if after is not None and after != ONES:
            parts.append(f.ones if after.startswith(REDUCE) else f.weight(after))
    return parts


class _Format:
    """How :meth:`Term.text` and :meth:`Term.latex` write each kind of factor."""

    def __init__(self, show, diag, column, row, scalar, weight, ones, sep, total, delta):
        self.show, self.diag, self.column, self.row, self.scalar = show, diag, column, row, scalar
        self.weight, self.ones, self.sep, self.sum, self.delta = weight, ones, sep, total, delta

    def join(self, parts) -> str:
        return self.sep.join(parts)


_PLAIN = _Format(
    show=lambda d, idx, ir: _plain(d, idx, ir), diag=lambda d: f"diag({d})", column=lambda d: f"[{d}]",
    row=lambda d: f"[{d}]ᵀ", scalar=lambda d: f"({d})", weight=lambda w: w, ones="1ᵀ", sep=" · ",
    total=lambda s: f"Σₘ({s})", delta="δᵢₖ",
)
_LATEX = _Format(
    show=lambda d, idx, ir: _latex(d, idx, ir), diag=lambda d: r"\operatorname{diag}\left(" + d + r"\right)",
    column=lambda d: r"\left[" + d + r"\right]", row=lambda d: r"\left[" + d + r"\right]^{\top}",
    scalar=lambda d: r"\left(" + d + r"\right)", weight=lambda w: _latex_weight(w), ones=r"\mathbf{1}^{\top}",
    sep=" ", total=lambda s: r"\sum_{m} \left(" + s + r"\right)", delta=r"\delta_{ik}",
)


def spaces(ir: CellIR, term: Term) -> tuple[tuple[str, bool], ...]:
    """(size name, has the set axis) of the vector each of the term's diagonals acts on. Sizes
    from the target's on: a weight maps from its input size, a column of ones from size 1, a row
    of ones from its size, the set factors keep it. The axis from the source's on: entered at
    each :data:`SET_IN`, left at each :data:`SET_OUT`."""
    weights = {w.name: w for w in ir.weights}
    dims = [ir.dims[term.path[0]]]
    for w in term.weights:
        if w == ONES:
            dims.append(SCALAR)
        elif w.startswith(REDUCE):
            dims.append(w[len(REDUCE):])
        elif w in SET_TOKENS:
            dims.append(dims[-1])
        else:
            dims.append(weights[w].in_dim)
    on = [False] * len(term.diags)
    on[-1] = term.path[-1] in ir.set_vectors
    for k in range(len(term.weights) - 1, -1, -1):
        w = term.weights[k]
        on[k] = True if w == SET_IN else False if w == SET_OUT else on[k + 1]
    return tuple(zip(dims, on))


def indexed(ir: CellIR | None, name: str, idx: str) -> str:
    """A vector's name as a block is headed: with the member index when it has the set axis."""
    return name + _SUB[idx] if ir is not None and name in ir.set_vectors else name


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
    iterating and indexing give the terms. ``ir``, the cell's, prints the set axis (member
    indices and sums over the members)."""

    of: str
    wrt: str
    terms: tuple[Term, ...]
    ir: CellIR | None = field(default=None, compare=False, repr=False)

    def __str__(self) -> str:
        return block_text(self.terms, self.ir)

    def __repr__(self) -> str:
        return f"<Jacobian d{indexed(self.ir, self.of, 'i')}/d{indexed(self.ir, self.wrt, 'k')} = {self}>"

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
        return block_latex(self.terms, self.ir)

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
    return Jacobian(display(of[:-1] + NEW if of.endswith("'") else of), wrt, terms, ir)


def jacobian(ir: CellIR, of: str, wrt: str) -> tuple[Term, ...]:
    """Closed form of d(of)/d(wrt) within one step, as a sum of path products.

    ``of`` is a node (``"c'"`` or ``"c_"`` for a new state); ``wrt`` a previous state, an input
    or a set input. An empty tuple means the block is zero.
    """
    of = of[:-1] + NEW if of.endswith("'") else of
    if of not in ir.node_map:
        raise LstmVerifyError(f"{of!r} is not a node of {ir.name}")
    if wrt not in {n for n, _ in ir.states} | {n for n, _ in ir.inputs} | {n for n, _ in ir.sets}:
        kinds = "previous state or input" + (" (or set input)" if ir.sets else "")
        raise LstmVerifyError(f"{wrt!r} is not a {kinds} of {ir.name}")
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
            enters = name in ir.set_vectors  # W x for every member: x broadcast unless it has the axis
            for w, arg in node.terms:
                for t in terms_of(arg):
                    if enters and arg not in ir.set_vectors:  # 1_L ⊗ (W x)
                        one = sympy.Integer(1)
                        result.append(Term((one, one) + t.diags, (SET_IN, w) + t.weights, (name,) + t.path))
                    else:
                        result.append(Term((sympy.Integer(1),) + t.diags, (w,) + t.weights, (name,) + t.path))
        else:
            result = _through(ir, node, pd[name], terms_of, wrt)
        memo[name] = _merge(result)
        return memo[name]

    return tuple(t for t in terms_of(of) if t.diags[0] != 0)


def local_jacobian(ir: CellIR, of: str, wrt: str) -> Jacobian:
    """d(of)/d(wrt) with every other vector held fixed: only paths through reductions' values
    (size 1) and pointwise nodes of size 1 are followed. For a normalised vector it is the
    normalisation's own structured Jacobian: diagonal plus rank-one terms. On a cell with sets,
    reductions over the members are followed too, and vectors with the set axis that the spec
    names (``e``, ``alpha``) are not looked through: dalpha/de is the softmax's Jacobian."""
    pd = partials(ir)
    memo: dict[str, list[Term]] = {}

    def terms_of(name: str) -> list[Term]:
        if name == wrt:
            return [Term((sympy.Integer(1),), (), (name,))]
        node = ir.node_map.get(name)
        if node is None or isinstance(node, Affine) or (name != of and not _inner(ir, name)):
            return []
        if name not in memo:
            memo[name] = _merge(_through(ir, node, pd[name], terms_of, wrt))
        return memo[name]

    terms = tuple(t for t in terms_of(of) if t.diags[0] != 0)
    return Jacobian(display(of), display(wrt), terms, ir)


def _inner(ir: CellIR, name: str) -> bool:
    """A node local Jacobians look through: a reduction, a value of size 1, or a pointwise
    argument of a reduction that the spec does not name (``c'**2`` in ``mean(c'**2)``); but
    not a named vector with the set axis (one value per member)."""
    node = ir.node_map.get(name)
    if node is None or isinstance(node, Affine):
        return False
    named = {eq.lhs for eq in ir.spec.equations}
    if name in named and name in ir.set_vectors:
        return False
    unnamed = isinstance(node, Pointwise) and name not in named
    return ir.dims[name] == SCALAR or isinstance(node, Reduce) or unnamed


def local_blocks(ir: CellIR) -> dict[tuple[str, str], Jacobian]:
    """For every node that reads a reduction's value: its local Jacobian with respect to each
    vector the reduction reads (and to the vectors it reads itself). On a cell with sets see
    :func:`_set_local_blocks`."""
    if ir.sets:
        return _set_local_blocks(ir)
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


def _set_reach(ir: CellIR) -> dict[str, tuple[set, set]]:
    """For each node: the vectors it reads through the nodes local Jacobians look through, and
    which kinds of reduction lie on the way ("units", "set")."""
    params = {p for p, _ in ir.diagonals} | {b for b, _ in ir.biases} | {b for b, _, _ in ir.buffers}
    reach: dict[str, tuple[set, set]] = {}
    for n in ir.nodes:
        vectors: set = set()
        kinds = {"set" if n.over_set else "units"} if isinstance(n, Reduce) else set()
        for d in dependencies(n):
            if _inner(ir, d):
                vectors |= reach[d][0]
                kinds |= reach[d][1]
            elif d in ir.dims and d not in params:
                vectors.add(d)
        reach[n.name] = (vectors, kinds)
    return reach


def _set_local_blocks(ir: CellIR) -> dict[tuple[str, str], Jacobian]:
    """On a cell with sets: every equation with a reduction (over units or over the members,
    softmax included), its local Jacobian with respect to each vector it reads through its own
    reductions and unnamed parts (``de/dp``, ``dalpha/de``, ``dz/dalpha``). Equations without
    one (the gates, ``p = lin(a, h)``) are left to the one-step blocks."""
    reach = _set_reach(ir)
    order = list(ir.dims)
    out = {}
    for n in ir.nodes:
        if not isinstance(n, Pointwise) or _inner(ir, n.name) or not reach[n.name][1]:
            continue
        for w in sorted(reach[n.name][0], key=order.index):
            j = local_jacobian(ir, n.name, w)
            if not j.is_zero:
                out[(n.name, w)] = j
    return out


def attention_blocks(ir: CellIR) -> dict[tuple[str, str], tuple[Term, ...]]:
    """On a cell with sets: the one-step blocks of each named vector that reduces over the
    members (a softmax's weights, a context ``z = setsum(alpha*a)``) with respect to each
    previous state and input it depends on: how the attention moves within one step."""
    reach = _set_reach(ir)
    states = {s + NEW for s, _ in ir.states}
    sources = [n for n, _ in ir.states] + [n for n, _ in ir.inputs]
    out = {}
    for n in ir.nodes:
        if not isinstance(n, Pointwise) or _inner(ir, n.name) or n.name in states:
            continue
        if "set" in reach[n.name][1]:
            for src in sources:
                terms = jacobian(ir, n.name, src)
                if terms:
                    out[(n.name, src)] = terms
    return out


@lru_cache(maxsize=256)
def softmax_parts(ir: CellIR, name: str) -> tuple[str, str, str, str] | None:
    """(e, in0, s, m) when node ``name`` is ``softmax(e)`` as the IR writes it: in0 = exp(e - m),
    m = setmax(e), s = setsum(in0), name = in0/s; else None."""
    node = ir.node_map.get(name)
    if not isinstance(node, Pointwise):
        return None
    num, den = sympy.fraction(node.expr)
    if not (num.is_Symbol and den.is_Symbol):
        return None
    total, in0 = ir.node_map.get(den.name), ir.node_map.get(num.name)
    if not (isinstance(total, Reduce) and total.op == "setsum" and total.args == (num.name,)):
        return None
    if not (isinstance(in0, Pointwise) and in0.expr.func == sympy.exp):
        return None
    shift = {s.name: s for s in in0.expr.args[0].free_symbols}
    for m in ir.nodes:
        if isinstance(m, Reduce) and m.op == "setmax" and m.name in shift and len(shift) == 2:
            (e,) = m.args
            if e in shift and sympy.expand(in0.expr.args[0] - (shift[e] - shift[m.name])) == 0:
                return e, in0.name, total.name, m.name
    return None


def _through(ir: CellIR, node, partials_of: dict, terms_of, wrt: str) -> list[Term]:
    """The terms of a pointwise or reduction node: each partial times the terms of what it
    reads. A reduction contributes 1ᵀ diag(d) (a row), a vector reading a size-1 value
    diag(d) 1 (a column), anything else diag(d). A setsum contributes :data:`SET_OUT`, a node
    with the set axis reading a vector without it :data:`SET_IN`; setmax's partial 0 nothing.

    A softmax ``alpha`` is taken whole unless ``wrt`` is one of its parts: dalpha/de =
    diag(alpha) - alpha alphaᵀ over the members, which is exactly the sum of its paths (through
    exp(e - m): (1/s) in0 = alpha; through the setsum: (-in0/s²) 1 1ᵀ in0 = -alpha alphaᵀ;
    through m: 0), written in alpha."""
    sm = softmax_parts(ir, node.name)
    if sm is not None and wrt not in sm[1:]:
        e, in0, total, _ = sm
        alpha = sympy.Symbol(node.name, real=True)
        result = []
        for t in terms_of(e):
            lead = alpha * t.diags[0]
            result.append(Term((lead,) + t.diags[1:], t.weights, (node.name, in0) + t.path))
            result.append(Term((-alpha, sympy.Integer(1), lead) + t.diags[1:], (SET_IN, SET_OUT) + t.weights,
                               (node.name, total, in0) + t.path))  # fmt: skip
        return result
    result = []
    on_set = node.name in ir.set_vectors and not isinstance(node, Reduce)
    for s, d in partials_of.items():
        if d == 0:
            continue
        spread = ir.dims.get(s) == SCALAR and node.dim != SCALAR
        enters = on_set and s not in ir.set_vectors
        for t in terms_of(s):
            if isinstance(node, Reduce):
                token = SET_OUT if node.over_set else REDUCE + ir.dims[s]
                result.append(Term((sympy.Integer(1), d * t.diags[0]) + t.diags[1:],
                                   (token,) + t.weights, (node.name,) + t.path))  # fmt: skip
            elif spread and enters:
                result.append(Term((d, sympy.Integer(1)) + t.diags, (ONES, SET_IN) + t.weights,
                                   (node.name,) + t.path))  # fmt: skip
            elif spread:
                result.append(Term((d,) + t.diags, (ONES,) + t.weights, (node.name,) + t.path))
            elif enters:
                result.append(Term((d,) + t.diags, (SET_IN,) + t.weights, (node.name,) + t.path))
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
    blocks of its normalised equations (other vectors held fixed), then (a cell with sets) the
    one-step blocks of its attention (:func:`attention_blocks`), then every one-step block. A
    one-step block longer than LONG_BLOCK characters is named by its number of path terms: it
    is the local blocks chained through the equations, and :func:`jacobian` holds it in full.
    A vector with the set axis is named with its member index: ``alphaᵢ`` (the vector
    differentiated), ``eₖ`` (the one differentiated by)."""
    rows = []
    if ir.reduces:
        for (of, wrt), j in local_blocks(ir).items():
            of_, wrt_ = indexed(ir, display(of), "i"), indexed(ir, display(wrt), "k")
            rows.append((True, of_, wrt_, str(j), j.latex()))
    blocks = list(attention_blocks(ir).items()) if ir.sets else []
    for (of, wrt), terms in blocks + list(jacobian_blocks(ir).items()):
        text, latex = block_text(terms, ir), block_latex(terms, ir)
        if len(text) > LONG_BLOCK:
            text = latex = (f"{len(terms)} path terms, {len(text)} characters: the local blocks "
                            f"chained through the equations; cell.jacobian({display(of)!r}, {wrt!r}) "
                            "holds it in full")  # fmt: skip
        rows.append((False, indexed(ir, display(of), "i"), wrt, text, latex))
    return rows


def block_text(terms: tuple[Term, ...], ir: CellIR | None = None) -> str:
    """The plain form of a block; ``ir`` (the cell's) to print the set axis."""
    return " + ".join(t.text(ir) for t in terms) if terms else "0"


def block_latex(terms: tuple[Term, ...], ir: CellIR | None = None) -> str:
    return " + ".join(t.latex(ir) for t in terms) if terms else "0"


def _rename(expr, idx=None, ir=None, latex=False):
    """Symbols as written in specs (``h'``); a reduction's unit count ``_n_<node>`` as ``n``;
    given a member index, vectors with the set axis as that member's (``alphaₘ``)."""

    def name(s):
        if s.name.startswith("_n_"):
            return "n"
        if idx is not None and s.name in ir.set_vectors:
            return f"{display(s.name)}_{idx}" if latex else display(s.name) + _SUB[idx]
        return display(s.name)

    return expr.xreplace({s: sympy.Symbol(name(s)) for s in expr.free_symbols})


def _plain(expr, idx=None, ir=None) -> str:
    return sympy.sstr(_rename(expr, idx, ir))


def _latex(expr, idx=None, ir=None) -> str:
    return sympy.latex(_rename(expr, idx, ir, latex=True))


def _latex_weight(name: str) -> str:
    head, _, rest = name.partition("_")
    return f"{head}_{{{rest.replace('_', ',')}}}" if rest else head


# ------------------------------------------------------- explicit expansion for tiny sizes


def explicit_step(ir: CellIR, sizes: dict[str, int], buffers=None, step_value=0):
    """The whole step as explicit SymPy matrices with symbolic entries.

    Returns ``(values, symbols)``: ``values`` maps each vector name to a column Matrix of
    expressions in the entries of inputs, previous states and parameters; ``symbols`` maps
    source and parameter names to their entry symbols (weights already masked). Buffers and
    the step counter take the given numbers. A vector with the set axis is the column of its
    members one after the other (member m's unit u at m*n + u, L = ``sizes["set"]``); setmax
    is taken as 0 (a softmax does not change when its argument is shifted). Only for tiny sizes.
    """
    if sum(sizes.values()) > 64:
        raise LstmVerifyError("explicit expansion is only for tiny sizes")
    L = sizes.get(SET, 1)
    sym: dict = {}

    def vec(name, n):
        return sympy.Matrix([sympy.Symbol(f"{name}[{k}]", real=True) for k in range(n)])

    for name, dim in list(ir.inputs) + list(ir.states) + list(ir.biases) + list(ir.diagonals):
        sym[name] = vec(name, sizes[dim])
    for name, dim in ir.sets:
        entries = [sympy.Symbol(f"{name}[{m},{k}]", real=True) for m in range(L) for k in range(sizes[dim])]
        sym[name] = sympy.Matrix(entries)
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
    values = {n: sym[n] for n, _ in list(ir.inputs) + list(ir.states) + list(ir.sets)}

    def member(name, m):  # member m of a vector with the set axis; a vector without it as it is
        v = values[name]
        if name not in ir.set_vectors:
            return v
        n = len(v) // L
        return v[m * n:(m + 1) * n, :]

    for node in ir.nodes:
        on_set = node.name in ir.set_vectors
        if isinstance(node, Reduce) and node.over_set:
            (arg,) = node.args
            n = len(values[arg]) // L
            if node.op == "setmax":  # any shift gives the same softmax; 0 keeps Max out of the expansion
                values[node.name] = sympy.zeros(n, 1)
            else:
                values[node.name] = sympy.Matrix([sympy.Add(*[values[arg][m * n + j] for m in range(L)])
                                                  for j in range(n)])  # fmt: skip
        elif isinstance(node, Reduce):
            out = []
            for m in range(L) if on_set else [0]:
                units = [e for a in node.args for e in member(a, m)]
                n = sympy.Integer(len(units))
                sym[count(node.name).name] = n
                if node.op == "var":
                    c = member(node.center, m)[0]
                    units = [(e - c) ** 2 for e in units]
                total = sympy.Add(*units)
                out.append(total if node.op == "sum" else total / n)
            values[node.name] = sympy.Matrix(out)
        elif isinstance(node, Affine):
            blocks = []
            for m in range(L) if on_set else [0]:
                acc = sympy.zeros(sizes[node.dim], 1)
                for w, arg in node.terms:
                    acc += sym[w] * member(arg, m)
                if node.bias:
                    acc += sym[node.bias]
                blocks.append(acc)
            values[node.name] = sympy.Matrix.vstack(*blocks)
        else:
            values[node.name] = sympy.Matrix(
                [_unit(ir, node.expr, values, sym, k, m if on_set else None, L)
                 for m in (range(L) if on_set else [0]) for k in range(_size(sizes, node.dim))]
            )  # fmt: skip
    return values, sym


def _size(sizes, dim) -> int:
    return 1 if dim == SCALAR else sizes[dim]


def _unit(ir, expr, values, sym, k, member=None, L=1):
    """A per-unit expression evaluated at unit k (of member ``member`` on the set axis) of the
    explicit vectors (size-1 values broadcast, and vectors without the set axis over members)."""
    subs = {}
    for s in expr.free_symbols:
        if s.name in values:
            v = values[s.name]
            u = 0 if ir.dims.get(s.name) == SCALAR else k
            if member is not None and s.name in ir.set_vectors:
                u += member * (len(v) // L)
            subs[s] = v[u]
        elif s.name.startswith("_n_") or s.name == ir.step:
            subs[s] = sym[s.name]
        else:
            subs[s] = sym[s.name][k]
    return expr.xreplace(subs)


def structured_matrix(ir: CellIR, terms, values, sym, sizes, out_dim, in_dim):
    """Expand a structured block into an explicit Matrix using explicit node values. On the set
    axis a space is the members' units one after the other: a factor W there is kron(I_L, W),
    :data:`SET_IN` kron(1_L, I_n) and :data:`SET_OUT` kron(1_Lᵀ, I_n)."""
    L = sizes.get(SET, 1)

    def factor(w, left, right):
        n_left, n_right = _size(sizes, left[0]), _size(sizes, right[0])
        if w == SET_IN:
            return sympy.Matrix.vstack(*[sympy.eye(n_right)] * L)
        if w == SET_OUT:
            return sympy.Matrix.hstack(*[sympy.eye(n_right)] * L)
        block = sympy.ones(n_left, n_right) if w == ONES or w.startswith(REDUCE) else sym[w]
        return sympy.diag(*[block] * L) if left[1] else block

    def width(space):
        return _size(sizes, space[0]) * (L if space[1] else 1)

    if terms:
        first = spaces(ir, terms[0])
        total = sympy.zeros(width(first[0]), width(first[-1]))
    else:
        total = sympy.zeros(_size(sizes, out_dim), _size(sizes, in_dim))
    for t in terms:
        sp = spaces(ir, t)
        prod = None
        for k, d in enumerate(t.diags):
            n = _size(sizes, sp[k][0])
            diag = sympy.diag(*[_unit(ir, d, values, sym, u, m, L)
                                for m in (range(L) if sp[k][1] else [None]) for u in range(n)])  # fmt: skip
            prod = diag if prod is None else prod * diag
            if k < len(t.weights):
                prod = prod * factor(t.weights[k], sp[k], sp[k + 1])
        total += prod
    return total


def notation(ir: CellIR, texts) -> list[str]:
    """Definitions of the names in ``texts`` that the spec did not write but its equations
    imply: an affine map ``lin(...)``'s value (``lin_h = W_h_x·x + W_h_h·h + b_h``), an
    argument of one that is not a plain vector (``z_h_in = tanh(h)``), a reduction's value
    (``mean_i = mean(ix)``); and of the names those definitions use, in the IR's order."""
    import re

    written = {eq.lhs for eq in ir.spec.equations}
    defs = {}
    for n in ir.nodes:
        if isinstance(n, Affine):
            terms = [f"{w}·{display(a)}" for w, a in n.terms] + ([n.bias] if n.bias else [])
            defs[n.name] = " + ".join(terms)
        elif isinstance(n, Reduce):
            defs[n.name] = f"{n.op}({', '.join(display(a) for a in n.args)})"
        elif n.name not in written:
            defs[n.name] = _plain(n.expr)
    words = lambda text: set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", text))  # noqa: E731
    wanted = set().union(*(words(t) for t in texts)) & set(defs)
    while True:
        more = set().union(*(words(defs[k]) for k in wanted)) & set(defs)
        if more <= wanted:
            break
        wanted |= more
    return [f"{display(k)} = {defs[k]}" for k in defs if k in wanted]
