"""The cell IR: an ordered DAG of affine and pointwise vector nodes, built from a CellSpec.

Every ``lin(...)`` becomes an :class:`Affine` node (one weight per argument, one optional bias);
every equation becomes a :class:`Pointwise` node whose SymPy expression is in per-unit scalars
of earlier nodes, previous states, inputs, diagonal parameters, buffers and the step counter.
A ``lin`` argument that is an expression (``lin(x, r*h)``) becomes a pointwise node of its own.
Every ``sum``, ``mean`` or ``var`` becomes a :class:`Reduce` node of size ``"1"`` (one number per
batch row), likewise with expression arguments as nodes of their own; a pointwise expression
that reads a size-1 value broadcasts it over its units.

Set inputs (``sets = ["a"]``) are (B, L, n), fixed over time. Every vector that reads one has
the set axis too (:attr:`CellIR.set_vectors`: its values are (B, L, n) per step), and a vector
without it that such a vector reads is broadcast over the L members. ``setsum`` (a
:class:`Reduce` with ``op="setsum"``) sums over the members and removes the axis; ``softmax(e)``
is ``exp(e - m)/setsum(exp(e - m))`` with ``m = setmax(e)``, whose derivative is taken as 0: the
softmax does not change when e is shifted, so the exact derivative through m is 0.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

import sympy

from .errors import SpecError
from .masks import Mask, parse_mask
from .spec import NEW, SCALAR, SET, SET_OPS, BufferSpec, CellSpec, display


@dataclass(frozen=True)
class Affine:
    name: str
    dim: str
    terms: tuple[tuple[str, str], ...]  # (weight name, argument vector name)
    bias: str | None
    equation: str


@dataclass(frozen=True)
class Pointwise:
    name: str
    dim: str
    expr: sympy.Expr
    equation: str


@dataclass(frozen=True)
class Reduce:
    """``op`` over the units of ``args`` together: ``sum``, ``mean``, or ``var`` (population
    variance, two-pass: the mean of (arg - center)**2, ``center`` the mean node of the same
    arguments). Its value has size ``"1"``. Or ``setsum`` / ``setmax`` over the set axis of its
    one argument: its value has the argument's size."""

    name: str
    dim: str
    op: str
    args: tuple[str, ...]
    center: str | None
    equation: str

    @property
    def over_set(self) -> bool:
        return self.op in SET_OPS


@dataclass(frozen=True)
class Weight:
    name: str
    out_dim: str
    in_dim: str
    mask: Mask | None = None


@dataclass(frozen=True)
class CellIR:
    spec: CellSpec
    inputs: tuple[tuple[str, str], ...]  # (name, size name)
    states: tuple[tuple[str, str], ...]
    output: str
    nodes: tuple[Affine | Pointwise | Reduce, ...]  # topological order
    weights: tuple[Weight, ...]
    biases: tuple[tuple[str, str], ...]
    diagonals: tuple[tuple[str, str], ...]
    buffers: tuple[tuple[str, str, BufferSpec], ...]
    step: str | None
    sets: tuple[tuple[str, str], ...] = ()  # set inputs (name, size name of a member)
    set_vectors: frozenset = frozenset()  # set inputs and every node with the set axis

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def reduces(self) -> bool:
        """Whether any node couples units (a reduction)."""
        return any(isinstance(n, Reduce) for n in self.nodes)

    @cached_property
    def node_map(self) -> dict:
        return {n.name: n for n in self.nodes}

    @cached_property
    def dims(self) -> dict[str, str]:
        """Size name of every vector, parameter and buffer."""
        d = dict(self.inputs) | dict(self.sets) | dict(self.states) | {n.name: n.dim for n in self.nodes}
        d |= dict(self.biases) | dict(self.diagonals) | {b: dim for b, dim, _ in self.buffers}
        return d

    @property
    def param_names(self) -> tuple[str, ...]:
        """Trainable parameters, in a fixed order: weights, biases, diagonals."""
        return tuple(
            [w.name for w in self.weights] + [b for b, _ in self.biases] + [p for p, _ in self.diagonals]
        )

    def param_shape(self, name: str, sizes: dict[str, int]) -> tuple[int, ...]:
        for w in self.weights:
            if w.name == name:
                return (sizes[w.out_dim], sizes[w.in_dim])
        return (sizes[self.dims[name]],)

    @property
    def size_names(self) -> tuple[str, ...]:
        names = {w.out_dim for w in self.weights} | {w.in_dim for w in self.weights}
        names |= set(self.dims.values()) | ({SET} if self.sets else set())
        return tuple(sorted(names - {SCALAR}))

    def input_shapes(self, sizes: dict[str, int], steps: int, batch: int) -> dict[str, tuple[int, ...]]:
        """The shape of every input: (steps, batch, n) per step, (batch, L, n) for a set."""
        out = {n: (steps, batch, sizes[d]) for n, d in self.inputs}
        return out | {n: (batch, sizes[SET], sizes[d]) for n, d in self.sets}

    def new(self, state: str) -> str:
        """Node name holding the new value of a state."""
        return state + NEW


def build_ir(spec: CellSpec) -> CellIR:
    """Turn a parsed spec into the IR; raises SpecError on cycles, clashes or bad layouts."""
    nodes: list = []
    weights: list[Weight] = []
    biases: list[tuple[str, str]] = []
    fail = lambda msg, eq=None, col=None: (_ for _ in ()).throw(  # noqa: E731
        SpecError(msg, path=spec.path, equation=eq, column=col)
    )
    reduced: dict[tuple, str] = {}  # (op, args, center) -> Reduce node
    for eq in spec.equations:
        base = eq.lhs[:-1] if eq.lhs.endswith(NEW) else eq.lhs
        replace = {}
        for lin in eq.lins:
            keys = "_".join(a.key for a in lin.args)
            suffix = "" if len(eq.lins) == 1 else "_" + keys
            terms = []
            for arg in lin.args:
                if isinstance(arg.expr, sympy.Symbol):
                    arg_name = arg.expr.name
                else:
                    arg_name = f"{base}_{arg.key}{suffix}_in"
                    nodes.append(Pointwise(arg_name, arg.dim, arg.expr, eq.text))
                wname = f"W_{base}_{arg.key}"
                terms.append((wname, arg_name))
                weights.append(Weight(wname, eq.dim, arg.dim))
            bias = f"b_{base}{suffix}" if lin.bias else None
            if bias:
                biases.append((bias, eq.dim))
            aname = f"lin_{base}{suffix}"
            nodes.append(Affine(aname, eq.dim, tuple(terms), bias, eq.text))
            replace[lin.symbol] = sympy.Symbol(aname, real=True)
        ops = [r.op for r in eq.reductions]
        for k, red in enumerate(eq.reductions):
            rname = f"{red.op}_{base}" if ops.count(red.op) == 1 else f"{red.op}{k}_{base}"
            args = []
            for j, arg in enumerate(red.args):
                expr = arg.expr.xreplace(replace)
                if isinstance(expr, sympy.Symbol):
                    args.append(expr.name)
                else:
                    args.append(f"{rname}_in{j}")
                    nodes.append(Pointwise(args[-1], arg.dim, expr, eq.text))
                    if red.op == "setsum":  # softmax's exp(e - m) is read from its node, not recomputed
                        replace[arg.expr] = sympy.Symbol(args[-1], real=True)
            center = replace[red.center].name if red.center is not None else None
            key = (red.op, tuple(args), center)
            if key in reduced:  # the same reduction in an earlier equation: computed once
                rname = reduced[key]
            else:
                reduced[key] = rname
                dim = red.args[0].dim if red.op in SET_OPS else SCALAR
                nodes.append(Reduce(rname, dim, red.op, tuple(args), center, eq.text))
            replace[red.symbol] = sympy.Symbol(rname, real=True)
        nodes.append(Pointwise(eq.lhs, eq.dim, eq.expr.xreplace(replace), eq.text))

    masks = dict(spec.masks)
    buffer_names = {b for b, _ in spec.buffers}
    weights = [
        Weight(w.name, w.out_dim, w.in_dim,
               parse_mask(masks[w.name], buffer_names, spec.path, w.name) if w.name in masks else None)
        for w in weights
    ]  # fmt: skip
    unknown_masks = set(masks) - {w.name for w in weights}
    if unknown_masks:
        fail(f"'masks' names unknown weights {sorted(unknown_masks)}")

    # every name must be unique across vectors, parameters and buffers
    seen: dict[str, str] = {}
    named = [(n, "input") for n in spec.inputs] + [(n, "set input") for n in spec.sets]
    named += [(n, "state") for n in spec.states]
    named += [(n.name, "node") for n in nodes] + [(w.name, "weight") for w in weights]
    named += [(b, "bias") for b, _ in biases] + [(p, "diagonal parameter") for p in spec.diagonal]
    named += [(b, "buffer") for b, _ in spec.buffers] + ([(spec.step, "step")] if spec.step else [])
    for name, kind in named:
        if name in seen:
            fail(f"the name {display(name)!r} is used twice (as {seen[name]} and as {kind}); "
                 "rename one")
        seen[name] = kind

    dims = dict(spec.dims)
    nodes = _toposort(nodes, spec)
    ir = CellIR(
        spec=spec,
        inputs=tuple((n, dims[n]) for n in spec.inputs),
        states=tuple((n, dims[n]) for n in spec.states),
        output=spec.output,
        nodes=tuple(nodes),
        weights=tuple(weights),
        biases=tuple(biases),
        diagonals=tuple((p, dims[p]) for p in spec.diagonal),
        buffers=tuple((b, dims[b], bs) for b, bs in spec.buffers),
        step=spec.step,
        sets=tuple((n, dims[n]) for n in spec.sets),
        set_vectors=_set_vectors(spec, nodes),
    )
    for w in ir.weights:
        if w.mask is not None:
            for o in (w.mask.left, w.mask.right):
                if o.buffer is not None and dims[o.buffer] != (w.in_dim if o.side == "in" else w.out_dim):
                    fail(f"mask of {w.name}: buffer {o.buffer!r} has size {dims[o.buffer]!r}, "
                         f"which does not match the weight's {o.side} size")
    _check_layouts(ir)
    return ir


def _set_vectors(spec: CellSpec, nodes) -> frozenset:
    """Set inputs and every node that reads one (through anything but setsum or setmax). A
    set reduction must read the set axis, and no state's new value may carry it."""
    out = set(spec.sets)
    for n in nodes:
        reads = any(d in out for d in dependencies(n))
        if isinstance(n, Reduce) and n.over_set:
            if not reads:
                col = next((r.column for eq in spec.equations if eq.text == n.equation for r in eq.reductions
                            if r.op in SET_OPS), None)  # fmt: skip
                raise SpecError(f"{'softmax' if n.op == 'setmax' else n.op}() reduces over the set axis, but its "
                                "argument reads no set input", path=spec.path, equation=n.equation, column=col)
        elif reads:
            out.add(n.name)
        if isinstance(n, Affine) and any(arg in out and arg not in spec.sets for _, arg in n.terms):
            raise SpecError("lin() reads a vector with the set axis; lin() takes set inputs themselves "
                            "(lin(a, h)), not expressions or nodes computed from them", path=spec.path,
                            equation=n.equation)  # fmt: skip
    for s in spec.states:
        if s + NEW in out:
            eq = next(e.text for e in spec.equations if e.lhs == s + NEW)
            raise SpecError(f"the new value of {s!r} has the set axis (one value per member of the set); "
                            "reduce it over the set with setsum(...) or softmax(...)", path=spec.path,
                            equation=eq)  # fmt: skip
    return frozenset(out)


def dependencies(node) -> list[str]:
    if isinstance(node, Affine):
        return [arg for _, arg in node.terms]
    if isinstance(node, Reduce):
        return list(node.args) + ([node.center] if node.center else [])
    return sorted(s.name for s in node.expr.free_symbols)


def _toposort(nodes, spec):
    by_name = {n.name: n for n in nodes}
    order, state = [], {}

    def visit(n, path):
        mark = state.get(n.name)
        if mark == "done":
            return
        if mark == "active":
            cycle = path[path.index(n.name):] + [n.name]
            eqs = [by_name[c].equation for c in cycle[:-1]]
            raise SpecError(
                "cycle between equations: " + " -> ".join(display(c) for c in cycle)
                + "; a state's previous value is written without a prime, its new value with one",
                path=spec.path,
                equation=eqs[0],
                column=_cycle_column(spec, eqs[0], cycle),
            )
        state[n.name] = "active"
        for dep in dependencies(n):
            if dep in by_name:
                visit(by_name[dep], path + [n.name])
        state[n.name] = "done"
        order.append(n)

    for n in nodes:
        visit(n, [])
    return order


def _cycle_column(spec, text, cycle):
    """Column (1-based) in ``text`` of the name through which the cycle leaves that equation.

    Nodes made from ``lin(...)`` belong to their equation, so the first equation left-hand side
    after the cycle's start is a name written on ``text``'s right-hand side.
    """
    lhs = {eq.lhs for eq in spec.equations}
    offset = next((eq.rhs_offset for eq in spec.equations if eq.text == text), 0)
    name = next((c for c in cycle[1:] if c in lhs), None)
    if name is None:
        return None
    m = re.compile(r"(?<![A-Za-z0-9_'])" + re.escape(display(name)) + r"(?![A-Za-z0-9_'])")
    found = m.search(text, offset)
    return found.start() + 1 if found else None


def _check_layouts(ir: CellIR) -> None:
    params = set(ir.param_names)
    for layout in ir.spec.layouts:
        for tensor, blocks in layout.tensors:
            for b in blocks:
                if b not in params:
                    raise SpecError(
                        f"layout {layout.name!r}, tensor {tensor!r}: {b!r} is not a parameter of "
                        f"this cell; parameters: {sorted(params)}",
                        path=ir.spec.path,
                    )
        for key, table in (("scale", layout.scale), ("shift", layout.shift), ("zero", [(z, 0) for z in layout.zero])):
            unknown = sorted(set(dict(table)) - params)
            if unknown:
                raise SpecError(f"layout {layout.name!r}, {key}: {unknown} are not parameters of this cell; "
                                f"parameters: {sorted(params)}", path=ir.spec.path)  # fmt: skip
        covered = {b for _, blocks in layout.tensors for b in blocks} | set(layout.zero)
        missing = params - covered
        if missing:
            raise SpecError(
                f"layout {layout.name!r} leaves parameters unmapped: {sorted(missing)}",
                path=ir.spec.path,
            )
