"""Named initialisations for gradient flow: forget-gate bias, chrono, orthogonal recurrence.

They act on the roles gates play in a cell's state updates, found from the equations, not from
gate names: in each update ``s' = ...``, a sigmoid gate multiplying the previous ``s`` is the
*keep* gate (``f*c`` in the LSTM; ``z*h`` in torch's GRU; ``(1 - f)*h`` in the MGU, where it is
the complement that keeps), and a gate multiplying anything else is the *write* gate (``i*g``).

* ``torch_default``: U(-1/sqrt(H), 1/sqrt(H)) for everything (torch.nn's cells).
* ``forget_bias_1``: torch default, then the keep gate's bias moved by +1 towards keeping
  (Gers et al. 2000; Jozefowicz et al. 2015).
* ``chrono``: torch default, then keep bias log(U(1, T_max - 1)) towards keeping and the write
  gate's bias its negative (Tallec & Ollivier 2018).
* ``orthogonal``: torch default, then every square recurrent weight orthogonal (Saxe et al.).
* ``indrnn``: torch default, then every diagonal recurrent weight (a per-unit ``u`` multiplying
  the previous value of the state it updates, IndRNN's ``u*h``) uniform in (2**(-1/T_max),
  2**(1/T_max)): Li et al. 2018's initialisation of the last layer, where a T-step memory is
  needed, inside their constraint |u| <= 2**(1/T) (with relu, gradient growth at most 2 over T
  steps). Cells without such a weight are left at torch default.
Every one of them but ``torch_default`` (uniform for everything, gains too) starts the gains of
normalised vectors (layernorm's, rmsnorm's) at 1, as torch.nn.LayerNorm and Ba et al. do; a normalised gate's bias is a diagonal parameter added to
the normalised pre-activation, and the keep gate's is moved as above.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import sympy

from .functions import BY_SYMPY
from .ir import Affine, CellIR, Pointwise
from .spec import SCALAR

NAMED = ("torch_default", "forget_bias_1", "chrono", "orthogonal", "indrnn")


@dataclass(frozen=True)
class GateRole:
    state: str
    gate: str  # gate node name
    bias: str  # its driver bias
    sign: float  # +1: the gate itself keeps/writes; -1: its complement does
    role: str  # "keep" or "write"


def _sigmoid_gates(ir: CellIR) -> dict[str, str]:
    """Gate node -> bias of the affine map inside its sigmoid."""
    affine = {n.name: n for n in ir.nodes if isinstance(n, Affine)}
    diagonals = {p for p, _ in ir.diagonals}
    out = {}
    for node in ir.nodes:
        if not isinstance(node, Pointwise):
            continue
        e = node.expr
        if isinstance(e, sympy.Function) and BY_SYMPY.get(type(e)) and BY_SYMPY[type(e)].name in (
            "sigmoid", "hard_sigmoid"):  # fmt: skip
            for term in sympy.Add.make_args(e.args[0]):
                if isinstance(term, sympy.Symbol) and term.name in affine and affine[term.name].bias:
                    out[node.name] = affine[term.name].bias
                    break
                if isinstance(term, sympy.Symbol) and term.name in diagonals:  # a normalised gate's bias
                    out[node.name] = term.name
                    break
    return out


def norm_gains(ir: CellIR) -> list[str]:
    """Diagonal parameters that scale a normalised vector: a factor of a product that also reads
    a reduction's value (``a_ix*(ix - mx)/sx``, layernorm's gain)."""
    diagonals = {sympy.Symbol(p, real=True) for p, _ in ir.diagonals}
    scalars = {sympy.Symbol(n.name, real=True) for n in ir.nodes if n.dim == SCALAR}
    out: list[str] = []
    for node in ir.nodes:
        if not isinstance(node, Pointwise):
            continue
        for e in sympy.preorder_traversal(node.expr):
            if e.is_Mul and e.free_symbols & scalars:
                out += sorted(p.name for p in diagonals & set(e.args) if p.name not in out)
    return out


def gate_roles(ir: CellIR) -> list[GateRole]:
    gates = _sigmoid_gates(ir)
    gate_syms = {sympy.Symbol(g, real=True) for g in gates}
    # nodes that are plain arithmetic of gates (CIFG's f = 1 - i) are written through
    derived = {sympy.Symbol(n.name, real=True): n.expr for n in ir.nodes
               if isinstance(n, Pointwise) and n.name not in gates and n.expr.free_symbols <= gate_syms
               and not n.expr.atoms(sympy.Function)}  # fmt: skip
    nodes = {n.name for n in ir.nodes if not isinstance(n, Affine)}
    out = []
    for s, _ in ir.states:
        old = sympy.Symbol(s, real=True)
        update = sympy.expand(ir.node_map[ir.new(s)].expr.xreplace(derived))
        for term in sympy.Add.make_args(update):
            keeps = old in term.free_symbols
            writes = any(x.name in nodes and x not in gate_syms for x in term.free_symbols)
            if not (keeps or writes):
                continue
            for g, bias in gates.items():
                gs = sympy.Symbol(g, real=True)
                if gs not in term.free_symbols:
                    continue
                # expanded (1 - g)*s gives -g*s: the complement keeps
                sign = -1.0 if term.could_extract_minus_sign() else 1.0
                role = "keep" if keeps else "write"
                if not any(x.gate == g and x.state == s and x.role == role for x in out):
                    out.append(GateRole(s, g, bias, sign, role))
    # one gate that both keeps and writes (GRU's z, MGU's f) is its keep role
    keep = {(r.state, r.gate) for r in out if r.role == "keep"}
    return [r for r in out if r.role == "keep" or (r.state, r.gate) not in keep]


def diagonal_recurrences(ir: CellIR) -> list[str]:
    """Diagonal parameters that multiply the previous value of the state whose update reads
    them (IndRNN's ``u*h``; not a peephole, which sits inside a gate)."""
    diagonals = {sympy.Symbol(p, real=True) for p, _ in ir.diagonals}
    out: list[str] = []
    for s, _ in ir.states:
        old = sympy.Symbol(s, real=True)
        for e in sympy.preorder_traversal(ir.node_map[ir.new(s)].expr):
            if e.is_Mul and old in e.args:
                out += sorted(p.name for p in diagonals & set(e.args) if p.name not in out)
    return out


def apply(ir: CellIR, params: dict, name: str, rng: np.random.Generator, t_max: float = 100.0) -> dict:
    """Parameters (from torch_default) changed as the named initialisation says."""
    if name not in NAMED:
        raise ValueError(f"unknown initialisation {name!r}; choose from {NAMED}")
    params = {k: np.array(v, copy=True) for k, v in params.items()}
    for g in norm_gains(ir):  # as torch.nn.LayerNorm and Ba et al. start them
        params[g] = np.ones_like(params[g])
    roles = gate_roles(ir)
    if name == "forget_bias_1":
        for r in roles:
            if r.role == "keep":
                params[r.bias] = params[r.bias] + r.sign * 1.0
    elif name == "chrono":
        for r in roles:
            if r.role == "keep":
                b = np.log(rng.uniform(1.0, max(t_max - 1.0, 1.0 + 1e-9), params[r.bias].shape))
                params[r.bias] = r.sign * b
                for w in roles:
                    if w.role == "write" and w.state == r.state and w.gate != r.gate:
                        params[w.bias] = -w.sign * b
    elif name == "indrnn":
        bound = 2.0 ** (1.0 / max(t_max, 1.0))
        for p in diagonal_recurrences(ir):
            params[p] = rng.uniform(1.0 / bound, bound, params[p].shape)
    elif name == "orthogonal":
        states = {s for s, _ in ir.states}
        for node in ir.nodes:
            if not isinstance(node, Affine):
                continue
            for w, arg in node.terms:
                if arg in states and params[w].shape[0] == params[w].shape[1]:
                    q, r = np.linalg.qr(rng.standard_normal(params[w].shape))
                    params[w] = (q * np.sign(np.diag(r))).astype(params[w].dtype)
    return params
