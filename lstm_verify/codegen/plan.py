"""Scheduling a cell's step: the order of its nodes, the GEMM groups, what the forward saves."""

from __future__ import annotations

from dataclasses import dataclass

from ..derive import partials
from ..ir import Affine, CellIR, Pointwise, Reduce, dependencies




@dataclass(frozen=True)
class Group:
    """Affine terms sharing one argument: one stacked GEMM."""

    arg: str
    terms: tuple[tuple[str, str], ...]  # (affine node, weight)
    hoisted: bool  # the argument is an input: one GEMM for the whole sequence
    const: bool = False  # the argument is a set input: one GEMM for every step

    @property
    def var(self) -> str:
        return f"_W_{self.arg}"


def schedule(ir: CellIR) -> list:
    """Topological order in stages: every ready affine map, then every ready pointwise node."""
    ready = {n for n, _ in ir.inputs} | {n for n, _ in ir.states}
    remaining = list(ir.nodes)
    order = []
    while remaining:
        for kind in (Affine, (Pointwise, Reduce)):
            progress = True
            while progress:
                progress = False
                for n in list(remaining):
                    if isinstance(n, kind) and all(
                        d in ready or d not in ir.node_map for d in dependencies(n)
                    ):
                        order.append(n)
                        ready.add(n.name)
                        remaining.remove(n)
                        progress = kind is not Affine
    return order


def groups(ir: CellIR) -> dict[str, Group]:
    inputs = {n for n, _ in ir.inputs}
    sets = {n for n, _ in ir.sets}
    terms: dict[str, list] = {}
    for n in schedule(ir):
        if isinstance(n, Affine):
            for w, arg in n.terms:
                terms.setdefault(arg, []).append((n.name, w))
    return {a: Group(a, tuple(t), a in inputs, a in sets) for a, t in terms.items()}


@dataclass(frozen=True)
class Plan:
    order: tuple
    groups: dict
    partials: dict  # node -> {symbol: expr}
    saved: tuple[str, ...]  # vector names whose per-step values the backward reads


def plan(ir: CellIR) -> Plan:
    order = tuple(schedule(ir))
    gr = groups(ir)
    pd = partials(ir)
    inputs = {n for n, _ in ir.inputs}
    vectors = inputs | {n for n, _ in ir.states} | set(ir.node_map)
    needed = set()
    for d in pd.values():
        for expr in d.values():
            needed |= {s.name for s in expr.free_symbols}
    needed |= {g.arg for g in gr.values()}
    saved = tuple(sorted(n for n in needed if n in vectors and n not in inputs))
    return Plan(order, gr, pd, saved)

def _batched(ir: CellIR) -> set[str]:
    """Vectors with a batch axis: inputs, states and whatever depends on them."""
    out = {n for n, _ in ir.inputs} | {s for s, _ in ir.states}
    for n in ir.nodes:
        if isinstance(n, Affine) or any(d in out for d in dependencies(n)):
            out.add(n.name)
    return out
