"""Arbitrary-precision reference: the IR evaluated with mpmath, unit by unit.

Independent of the generated code: it walks the IR nodes, does affine maps with ``mpmath.fsum``
and evaluates pointwise expressions through SymPy's own mpmath printer (``lambdify``) with the
function table's mpmath callables. Inputs and parameters are taken exactly (every float is an
exact rational), so results are correct to about ``dps`` digits. A node with the set axis is
evaluated member by member, each member seeing its own slice of the set vectors.
"""

from __future__ import annotations

from functools import lru_cache

import mpmath
import numpy as np
import sympy

from .functions import FUNCTIONS
from .hygiene import lambdify
from .ir import Affine, CellIR, Reduce

DPS = 60


@lru_cache(maxsize=512)
def _compiled(expr: sympy.Expr):
    table = {f.sympy.__name__: f.mpmath for f in FUNCTIONS.values()}
    return lambdify(expr, [table, "mpmath"])


def _mp(a):
    return np.vectorize(lambda v: mpmath.mpf(float(v)), otypes=[object])(np.asarray(a, dtype=float))


def reference_forward(ir: CellIR, params, inputs, state, t0=0, dps=DPS, trace=None):
    """Run a sequence exactly. Arrays may be float or torch (converted); returns object arrays
    of mpf: outputs (T, B, n) and the final state dict. A list passed as ``trace`` receives
    every step's node values."""
    with mpmath.workdps(dps):
        P = {k: _mp(_numpy(v)) for k, v in params.items()}
        X = {k: _mp(_numpy(v)) for k, v in inputs.items()}
        S = {k: _mp(_numpy(v)) for k, v in state.items()}
        weights = {w.name: w for w in ir.weights}
        W = {}
        for name, w in weights.items():
            m = P[name]
            if w.mask is not None:
                keep = w.mask.evaluate({b: np.array([float(v) for v in P[b]]) for b, _, _ in ir.buffers})
                m = np.where(keep, m, mpmath.mpf(0))
            W[name] = m
        sets = {k for k, _ in ir.sets}
        T = next(v for k, v in X.items() if k not in sets).shape[0]
        outputs = []
        for t in range(T):
            values = dict(S)
            values.update({k: v if k in sets else v[t] for k, v in X.items()})
            step_values(ir, values, W, P, t0 + t)
            S = {s: values[ir.new(s)] for s, _ in ir.states}
            if trace is not None:
                trace.append(values)
            outputs.append(S[ir.output])
        return np.stack(outputs), S


def step_values(ir: CellIR, values: dict, W: dict, P: dict, t) -> None:
    """Add every node's value of one step to ``values`` (states and this step's inputs), in
    mpmath: a node with the set axis member by member, each member seeing its own slice of the
    set vectors."""
    for node in ir.nodes:
        if node.name in ir.set_vectors:
            L = next(values[k] for k, _ in ir.sets).shape[1]
            members = []
            for m in range(L):
                view = {k: v[:, m] if k in ir.set_vectors else v for k, v in values.items()}
                members.append(_node(ir, node, view, W, P, t))
            values[node.name] = np.stack(members, axis=1)
        else:
            values[node.name] = _node(ir, node, values, W, P, t)


def _node(ir, node, values, W, P, t):
    if isinstance(node, Affine):
        return _affine(node, values, W, P)
    if isinstance(node, Reduce):
        return _reduce(node, values)
    return _pointwise(ir, node, values, P, t)


def _affine(node, values, W, P):
    B = next(iter(values.values())).shape[0]
    n = W[node.terms[0][0]].shape[0]
    out = np.empty((B, n), dtype=object)
    for b in range(B):
        for j in range(n):
            acc = [W[w][j, k] * values[arg][b, k] for w, arg in node.terms for k in range(W[w].shape[1])]
            if node.bias:
                acc.append(P[node.bias][j])
            out[b, j] = mpmath.fsum(acc)
    return out


def _reduce(node, values):
    """sum, mean or two-pass variance over the units of all arguments, per batch row; or sum
    or maximum over the set's members."""
    if node.over_set:
        (arg,) = node.args
        v = values[arg]  # (B, L, n)
        out = np.empty((v.shape[0], v.shape[2]), dtype=object)
        for b in range(v.shape[0]):
            for j in range(v.shape[2]):
                out[b, j] = mpmath.fsum(v[b, :, j]) if node.op == "setsum" else max(v[b, :, j])
        return out
    units = np.concatenate([values[a] for a in node.args], axis=1)
    out = np.empty((units.shape[0], 1), dtype=object)
    for b in range(units.shape[0]):
        row = list(units[b])
        if node.op == "var":
            c = values[node.center][b, 0]
            row = [(u - c) ** 2 for u in row]
        total = mpmath.fsum(row)
        out[b, 0] = total if node.op == "sum" else total / len(row)
    return out


def _pointwise(ir, node, values, P, t):
    names, fn = _compiled(node.expr)
    B = next(v for v in values.values() if getattr(v, "ndim", 0) == 2).shape[0]
    out = np.empty((B, _width(names, values, P)), dtype=object)
    for b in range(B):
        for j in range(out.shape[1]):
            args = []
            for n in names:
                if n == ir.step:
                    args.append(mpmath.mpf(t))
                elif n in values:
                    args.append(values[n][b, j if values[n].shape[1] > 1 else 0])
                else:
                    args.append(P[n][j])
            out[b, j] = mpmath.mpf(fn(*args))
    return out


def _width(names, values, P):
    """Units of a pointwise node: its widest operand (a reduction's value, width 1, broadcasts)."""
    widths = [values[n].shape[1] for n in names if n in values]
    widths += [P[n].shape[0] for n in names if n not in values and n in P]
    if not widths:
        raise AssertionError("pointwise node without vector operands")
    return max(widths)


def _numpy(a):
    if hasattr(a, "detach"):
        return a.detach().cpu().double().numpy()
    return np.asarray(a, dtype=float)
