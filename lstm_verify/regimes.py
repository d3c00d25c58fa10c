"""Saturation by construction: biases that put every gate's pre-activation beyond a level.

A *saturating application* is ``sigmoid``, ``hard_sigmoid`` or ``tanh`` applied to an argument
that contains an affine map with a bias (``sigmoid(lin(x, h) + p*c)``). Its *driver* is the
first such biased map in the argument. :func:`saturate` sets each driver's bias to
``±(level + B)``, where ``B`` bounds everything else in the argument at every step, so that
``|argument| >= level`` holds exactly, not just usually. Bounds are propagated through the IR
step by step with interval arithmetic (each function's ``interval`` in the function table).

The biases change the bounds they are computed from (a larger forget-gate bias keeps a cell
growing for longer), so :func:`saturate` first iterates to a fixed point, which gives the
tightest biases. The iteration can need more rounds than any fixed number (a peephole LSTM
whose cell grows by one a step needs about T/17 rounds at level 20), so when it has not settled
it falls back to bounds that hold for *every* value of the driver biases: each driver is left
unbounded, so each saturating application ranges over its function's whole image (sigmoid in
[0, 1], tanh in [-1, 1]). Those bounds do not depend on the biases, so one pass gives biases
that saturate by construction. Only a cell where an unbounded driver reaches a bound without
limit (exp or relu of a gate feeding back) has no such biases: :class:`SaturationError`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import sympy

from .errors import SaturationError
from .functions import BY_SYMPY
from .ir import Affine, CellIR, Pointwise, Reduce, dependencies
from .spec import SCALAR, SET

SATURATING = ("sigmoid", "hard_sigmoid", "tanh")


@dataclass(frozen=True)
class Application:
    node: str  # the pointwise node that applies the function
    function: str
    argument: sympy.Expr
    driver: str  # affine node whose bias is set, or the bias itself (a diagonal parameter)
    bias: str
    rest: sympy.Expr  # argument minus the driver


def applications(ir: CellIR) -> list[Application]:
    """The saturating applications of a cell, each with a distinct driver bias."""
    affine = {n.name: n for n in ir.nodes if isinstance(n, Affine)}
    # a node that only names an affine map (xLSTM's "ot = lin(x, h)") stands for it
    alias = {n.name: n.expr.name for n in ir.nodes
             if isinstance(n, Pointwise) and isinstance(n.expr, sympy.Symbol) and n.expr.name in affine}
    diagonals = {p for p, _ in ir.diagonals}
    out, used = [], set()
    for node in ir.nodes:
        if not isinstance(node, Pointwise):
            continue
        for app in sympy.preorder_traversal(node.expr):
            if not isinstance(app, sympy.Function) or BY_SYMPY.get(type(app)) is None:
                continue
            name = BY_SYMPY[type(app)].name
            if name not in SATURATING:
                continue
            (arg,) = app.args
            for term in sympy.Add.make_args(arg):
                if isinstance(term, sympy.Symbol) and term.name in diagonals and term.name not in used:
                    # a normalised gate's own bias (sigmoid(a*(u - m)/s + b)): it drives alone
                    used.add(term.name)
                    out.append(Application(node.name, name, arg, term.name, term.name, arg - term))
                    break
                if isinstance(term, sympy.Symbol) and (term.name in affine or term.name in alias):
                    driver = alias.get(term.name, term.name)
                    bias = affine[driver].bias
                    if bias and bias not in used:
                        used.add(bias)
                        out.append(Application(node.name, name, arg, driver, bias, arg - term))
                        break
    return out


def _interval(expr, B):
    """(lo, hi) of expr per unit, given intervals B of its symbols (interval arithmetic). A bound
    beyond float64's range is infinite: it holds, and says the expression is unbounded; so is
    an undefined one (inf - inf, 0 * inf)."""
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        return _interval_of(expr, B)


def _interval_of(expr, B):
    if expr.is_Number:
        v = float(expr)
        return v, v
    if isinstance(expr, sympy.Symbol):
        return B[expr.name]
    if expr.is_Add:
        lo = hi = 0.0
        for a in expr.args:
            al, ah = _interval_of(a, B)
            lo, hi = lo + al, hi + ah
        return np.where(np.isnan(lo), -np.inf, lo), np.where(np.isnan(hi), np.inf, hi)
    if expr.is_Mul:
        lo = hi = 1.0
        for a in expr.args:
            al, ah = _interval_of(a, B)
            c = [lo * al, lo * ah, hi * al, hi * ah]
            c = [np.where(np.isnan(x), np.inf, x) for x in c]
            lo, hi = np.minimum.reduce(c), np.maximum.reduce(c)
        return lo, hi
    if expr.is_Pow and expr.exp.is_Integer and expr.exp > 0:
        lo, hi = _interval_of(expr.base, B)
        e = int(expr.exp)
        a, b = lo**e, hi**e
        if e % 2:
            return a, b
        low = np.where((lo <= 0) & (hi >= 0), 0.0, np.minimum(a, b))
        return low, np.maximum(a, b)
    if expr.is_Pow and expr.exp.is_Integer and expr.exp < 0:  # a division: c'/n'
        lo, hi = _interval_of(expr.base if expr.exp == -1 else expr.base ** -expr.exp, B)
        away = (lo > 0) | (hi < 0)  # an interval without zero: its reciprocal is [1/hi, 1/lo]
        return (np.where(away, 1 / np.where(away, hi, 1.0), -np.inf),
                np.where(away, 1 / np.where(away, lo, 1.0), np.inf))
    if expr.is_Pow and expr.exp.is_Rational:  # a root: defined where the base is >= 0
        lo, hi = _interval_of(expr.base, B)
        e = float(expr.exp)
        lo, hi = np.maximum(lo, 0.0), np.maximum(hi, 0.0)
        with np.errstate(divide="ignore"):
            a, b = lo**e, hi**e
        return (a, b) if e > 0 else (b, a)
    func = BY_SYMPY.get(type(expr))
    if func is not None:
        return func.interval(*[_interval_of(a, B) for a in expr.args])
    return -np.inf, np.inf


def _reduce_interval(node, B, members=None):
    """Bounds of a reduction's value: a mean lies within its units' bounds; a sum adds them; a
    population variance of values in [lo, hi] is at most (hi - lo)**2 / 4. Over a set of
    ``members``, per unit: a sum adds the members' bounds, a maximum lies within them."""
    if node.over_set:
        lo, hi = B[node.args[0]]
        with np.errstate(invalid="ignore", over="ignore"):
            out = (lo * members, hi * members) if node.op == "setsum" else (lo, hi)
        return tuple(np.where(np.isnan(v), np.inf if k else -np.inf, v) for k, v in enumerate(out))
    lo = np.concatenate([np.broadcast_to(B[a][0], np.shape(B[a][1])) for a in node.args])
    hi = np.concatenate([np.broadcast_to(B[a][1], np.shape(B[a][0])) for a in node.args])
    with np.errstate(invalid="ignore", over="ignore"):
        if node.op == "sum":
            out = lo.sum(), hi.sum()
        elif node.op == "mean":
            out = lo.min(), hi.max()
        else:
            out = 0.0, (hi.max() - lo.min()) ** 2 / 4
    return tuple(np.array([np.inf if np.isnan(v) else v]) for v in out)


def _bound(expr, B):
    """Upper bound of |expr| per unit."""
    lo, hi = _interval(expr, B)
    return np.maximum(np.abs(lo), np.abs(hi))


def _step_bounds(ir: CellIR, params, sizes, x_bounds, s_bounds, t, free=frozenset(), given=None):
    """Intervals of every vector at one step, from those of the inputs and the previous state.
    Affine nodes named in ``free`` are unbounded (their bias may be anything); nodes in
    ``given`` have the interval it gives. A parameter, and the step ``t``, may be given as an
    interval (lo, hi) instead of a value."""
    given = given or {}
    B = {k: tuple(np.asarray(x, dtype=float) for x in v) if isinstance(v, tuple) else
         (np.asarray(v, dtype=float), np.asarray(v, dtype=float)) for k, v in params.items()}  # fmt: skip
    B |= {k: (-v, v) for k, v in x_bounds.items()} | dict(s_bounds)
    if ir.step:
        B[ir.step] = tuple(float(x) for x in t) if isinstance(t, tuple) else (float(t), float(t))
    for node in ir.nodes:
        if node.name in given:
            B[node.name] = given[node.name]
        elif node.name in free:
            n = (1 if node.dim == SCALAR else sizes[node.dim],)
            B[node.name] = (np.full(n, -np.inf), np.full(n, np.inf))
        elif isinstance(node, Reduce):
            B[node.name] = _reduce_interval(node, B, sizes.get(SET))
        elif isinstance(node, Affine):
            with np.errstate(invalid="ignore", over="ignore"):  # 0 * inf, overflow: unbounded
                acc = sum(np.abs(B[w][0]) @ np.maximum(np.abs(B[a][0]), np.abs(B[a][1])) for w, a in node.terms)
            acc = np.where(np.isnan(acc), np.inf, acc)
            b = B[node.bias][0] if node.bias else 0.0
            B[node.name] = (b - acc, b + acc)
        else:
            lo, hi = _interval(node.expr, B)
            n = (1 if node.dim == SCALAR else sizes[node.dim],)
            B[node.name] = (np.broadcast_to(lo, n), np.broadcast_to(hi, n))
    return B


def saturate(ir: CellIR, params: dict, inputs: dict, state: dict, level: float, signs=None,
             extra=None, t0: int = 0, max_rounds: int = 8) -> dict:  # fmt: skip
    """Parameters whose driver biases make |argument| >= level for every saturating application
    at every step of this input sequence. ``signs`` (±1) and ``extra`` (>= 0), per bias, choose
    the side and the margin beyond the minimum. Iterates to the tightest biases for up to
    ``max_rounds`` rounds, then falls back to biases from bounds that hold whatever the biases
    are (module docstring). Raises :class:`SaturationError` (a ValueError) if no finite bias
    works (exp or relu feeding back into a gate without bound)."""
    from .cell import infer_sizes

    apps = applications(ir)
    sizes = infer_sizes(ir, params)
    params = {k: np.array(v, dtype=float, copy=True) for k, v in params.items()}
    signs = signs or {}
    extra = extra or {}
    sets = {n for n, _ in ir.sets}
    T = inputs[ir.inputs[0][0]].shape[0]
    # a bound per unit over the batch rows (and a set's members: one bound holds for every member)
    x_bounds = [{n: np.abs(np.asarray(v, dtype=float) if n in sets else np.asarray(v, dtype=float)[t])
                 .reshape(-1, np.shape(v)[-1]).max(axis=0, initial=0.0) for n, v in inputs.items()}
                for t in range(T)]  # fmt: skip
    if sets:
        sizes[SET] = np.shape(inputs[next(iter(sets))])[1]
    s0 = {s: (np.asarray(v, dtype=float).min(axis=0), np.asarray(v, dtype=float).max(axis=0))
          for s, v in state.items()}  # fmt: skip
    if not apps:
        return params

    def needs(free):
        need = {a.bias: 0.0 for a in apps}
        s_bounds = s0
        for t in range(T):
            B = _step_bounds(ir, params, sizes, x_bounds[t], s_bounds, t0 + t, free)
            for a in apps:
                node = ir.node_map.get(a.driver)  # None: the driver is the bias itself
                with np.errstate(invalid="ignore", over="ignore"):  # 0 * inf, overflow: made inf below
                    others = sum(np.abs(params[w]) @ np.maximum(np.abs(B[arg][0]), np.abs(B[arg][1]))
                                 for w, arg in (node.terms if node else ()))  # fmt: skip
                    n = level + others + _bound(a.rest, B)
                need[a.bias] = np.maximum(need[a.bias], np.where(np.isnan(n), np.inf, n))
            s_bounds = {s: B[ir.new(s)] for s, _ in ir.states}
        return need

    def apply(need):
        """Set every bias short of its need; whether any was."""
        short = False
        for a in apps:
            n = need[a.bias]
            if np.any(np.abs(params[a.bias]) < n):
                short = True
                sign = np.asarray(signs.get(a.bias, np.sign(params[a.bias]) + (params[a.bias] == 0)))
                # a relative margin of 1e-12 absorbs the rounding of the bound's own sums
                params[a.bias] = sign * (n * (1 + 1e-12) + np.asarray(extra.get(a.bias, 0.0)))
        return short

    for _ in range(max_rounds):
        need = needs(frozenset())
        if not all(np.all(np.isfinite(n)) for n in need.values()):
            break
        if not apply(need):
            return params
    # bounds that hold for any driver bias: one pass, and the biases it sets keep them valid
    need = needs(frozenset(a.driver for a in apps if a.driver in ir.node_map))
    for a in apps:
        if not np.all(np.isfinite(need[a.bias])):
            raise SaturationError(f"{ir.name}: no finite bias saturates {a.function} in {a.node!r}")
    apply(need)
    return params


def preactivations(ir: CellIR, params: dict, trace, t0: int = 0) -> dict[str, np.ndarray]:
    """Arguments of every saturating application at every step, from a reference trace
    (``reference_forward(..., trace=[])``): {"sigmoid:f": array (T, B, n)} as floats."""
    from .reference import _compiled

    out: dict[str, np.ndarray] = {}
    for a in applications(ir):
        names, fn = _compiled(a.argument)
        steps = []
        for t, values in enumerate(trace):
            if a.node in ir.set_vectors:  # (B, L, n): member by member
                L = values[a.node].shape[1]
                views = [{k: v[:, m] if k in ir.set_vectors else v for k, v in values.items()} for m in range(L)]
                steps.append(np.stack([_arguments(ir, a, names, fn, view, params, t0 + t) for view in views], axis=1))
            else:
                steps.append(_arguments(ir, a, names, fn, values, params, t0 + t))
        out[f"{a.function}:{a.node}"] = np.array(steps)
    return out


def _arguments(ir, a, names, fn, values, params, t):
    """The argument of application ``a`` from one step's values, (B, n) floats."""
    B, n = values[a.node].shape

    def arg(name, b, j):
        if name == ir.step:
            return t
        v = values[name] if name in values else params[name]
        return v[b, j if np.shape(v)[1] > 1 else 0] if np.ndim(v) == 2 else v[j]  # size 1: broadcast

    return np.array([[float(fn(*[arg(m, b, j) for m in names])) for j in range(n)] for b in range(B)])


# ----------------------------------------------------------------------------- peaked softmax


def softmaxes(ir: CellIR) -> list[tuple[str, str, tuple[str, ...]]]:
    """(setmax node, setsum node, score parameters) of every softmax: its weights are
    exp(e - m)/s with m = setmax(e) and s = setsum(exp(e - m)), so the largest weight is 1/s.
    The score parameters are the diagonal parameters the scores e read through nodes with the
    set axis (w_e in e = sum(w_e*tanh(p))): scaling them scales the scores' differences."""
    diagonals = {p for p, _ in ir.diagonals}
    out = []
    for m in ir.nodes:
        if not (isinstance(m, Reduce) and m.op == "setmax"):
            continue
        shifted = sympy.exp(sympy.Symbol(m.args[0], real=True) - sympy.Symbol(m.name, real=True))
        for s in ir.nodes:
            arg = ir.node_map.get(s.args[0]) if isinstance(s, Reduce) and s.op == "setsum" else None
            if isinstance(arg, Pointwise) and arg.expr == shifted:
                params, todo, seen = set(), [m.args[0]], set()
                while todo:
                    name = todo.pop()
                    node = ir.node_map.get(name)
                    if name in seen or node is None or isinstance(node, Affine) or name not in ir.set_vectors:
                        continue
                    seen.add(name)
                    for d in dependencies(node) if isinstance(node, Reduce) else [x.name for x in node.expr.free_symbols]:
                        if d in diagonals:
                            params.add(d)
                        else:
                            todo.append(d)
                out.append((m.name, s.name, tuple(sorted(params))))
    return out


def peak_softmax(cell, params: dict, inputs: dict, state: dict, weight: float = 1 - 1e-6, t0: int = 0,
                 max_doublings: int = 40) -> dict:  # fmt: skip
    """Parameters whose score parameters are scaled by a power of 2 so that every softmax puts
    at least ``weight`` on one member, at every step and batch row (checked on a float64 walk
    of the IR, :func:`lstm_verify.gradflow.node_values`). Raises SaturationError when no scale
    does it: tied scores, scores without parameters to scale, or values that stop being finite."""
    from .gradflow import node_values

    ir = cell.ir
    found = softmaxes(ir)
    if not found:
        return params
    if any(not names for _, _, names in found):
        raise SaturationError(f"{ir.name}: a softmax's scores read no diagonal parameter to scale")
    scaled = {n for _, _, names in found for n in names}
    params = {k: np.array(v, dtype=float, copy=True) for k, v in params.items()}
    inputs = {k: np.asarray(v, dtype=float) for k, v in inputs.items()}
    state = {k: np.asarray(v, dtype=float) for k, v in state.items()}
    base = {k: params[k].copy() for k in scaled}
    for j in range(max_doublings + 1):
        p = params | {k: base[k] * 2.0**j for k in scaled}
        with np.errstate(all="ignore"):
            values = node_values(cell, p, inputs, state)
        peaks = [1 / values[s] for _, s, _ in found]
        if not all(np.all(np.isfinite(v)) for v in values.values()):
            break
        if all(np.min(v) >= weight for v in peaks):
            return p
    raise SaturationError(f"{ir.name}: no scale of {sorted(scaled)} puts weight {weight} on one member "
                          "(tied scores, or values beyond float64)")  # fmt: skip
