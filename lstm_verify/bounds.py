"""Upper bounds on the per-step state Jacobian, from the cell's closed-form blocks.

Every block d(s_i')/d(s_j) of one step is a sum of path terms
``diag(d0) · W1 · diag(d1) · ... · diag(dk)`` (:func:`lstm_verify.derive.jacobian`), so

    ||block||_2 <= sum over terms of  prod_k sup|d_k| * prod_k ||W_k||_2

(the triangle inequality, then submultiplicativity), where each sup is taken over the values the
nodes a diagonal reads can reach: interval arithmetic over the IR from the ranges of the inputs
and of the previous state (:func:`lstm_verify.regimes._step_bounds`, the same propagation the
saturated regimes rest on). The tokens of reductions and sets are matrices of ones with known
norms: a column or row of n ones has norm sqrt(n), the broadcast over the L members of a set
and the sum over them sqrt(L). The whole state Jacobian, blocks stacked, is bounded by the
spectral norm of the matrix of block bounds (the norm of a block matrix is at most the norm of
the matrix of its blocks' norms).

The bound holds for every parameter, input and state within the ranges it is given; it is a
number, computed for the parameters at hand. For the tanh RNN it is Pascanu et al.'s
sup|1 - h'^2| * sigma_max(W_h_h) <= sigma_max(W_h_h).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import sympy

from .derive import ONES, REDUCE, SET_TOKENS, _plain, count, jacobian, spaces
from .ir import Affine, CellIR, Pointwise, Reduce, dependencies
from .regimes import _interval, _step_bounds
from .spec import NEW, SCALAR, SET, display


@dataclass
class StepBound:
    """An upper bound on ||d s'/d s||_2 for one step (all states stacked in spec order)."""

    cell: str
    bound: float
    blocks: dict = field(default_factory=dict)  # (new state, previous state) -> bound on its norm
    terms: dict = field(default_factory=dict)  # (new state, previous state) -> [bound of each term]
    matrix: np.ndarray | None = None  # the block bounds, states in spec order


def weight_norms(ir: CellIR, params: dict, order=2) -> dict[str, float]:
    """sigma_max of every weight as the generated code uses it (masked where the spec masks it);
    with ``order="inf"``, the largest row sum of its magnitudes instead."""
    out = {}
    for w in ir.weights:
        m = np.asarray(params[w.name], dtype=float)
        if w.mask is not None:
            m = np.where(w.mask.evaluate({b: np.asarray(params[b]) for b, _, _ in ir.buffers}), m, 0.0)
        out[w.name] = float(np.linalg.norm(m, 2 if order == 2 else np.inf)) if m.size else 0.0
    return out


def node_ranges(ir: CellIR, params: dict, sizes: dict, input_bound, state_ranges: dict, t: int = 0) -> dict:
    """Intervals (lo, hi) per unit of every vector at one step: inputs within ``input_bound``
    (a number, or a dict by input) in magnitude, each previous state within ``state_ranges``
    (state -> (lo, hi), numbers or arrays per unit); reduction counts as exact numbers."""
    if not isinstance(input_bound, dict):
        input_bound = {n: input_bound for n, _ in list(ir.inputs) + list(ir.sets)}
    x = {n: np.broadcast_to(np.asarray(input_bound[n], dtype=float), (sizes[d],))
         for n, d in list(ir.inputs) + list(ir.sets)}  # fmt: skip
    s = {k: tuple(np.broadcast_to(np.asarray(v, dtype=float), (sizes[ir.dims[k]],)) for v in state_ranges[k])
         for k, _ in ir.states}  # fmt: skip
    B = _refine_states(ir, _step_bounds(ir, params, sizes, x, s, t))
    for n in ir.nodes:
        if isinstance(n, Reduce) and not n.over_set:
            c = float(sum(sizes[ir.dims[a]] if ir.dims[a] != SCALAR else 1 for a in n.args))
            B[count(n.name).name] = (np.array([c]), np.array([c]))
    return B


def step_bound(cell, params: dict, input_bound, state_ranges: dict, sizes: dict | None = None, t: int = 0) -> StepBound:
    """The bound for these parameters, inputs with |x| <= input_bound and previous states in
    ``state_ranges``. ``sizes`` is needed only for the number of members of a set (size "set")."""
    from .cell import infer_sizes

    ir = cell.ir
    sz = infer_sizes(ir, params) | dict(sizes or {})
    if ir.sets and SET not in sz:
        raise ValueError(f"{ir.name} reads a set: give sizes={{'set': L}}, the number of its members")
    B = node_ranges(ir, params, sz, input_bound, state_ranges, t)
    norms = weight_norms(ir, params)
    sups: dict = {}  # diagonal expression -> its bound: many paths share a factor
    states = [s for s, _ in ir.states]
    blocks, terms = {}, {}
    M = np.zeros((len(states), len(states)))
    for i, s in enumerate(states):
        for j, r in enumerate(states):
            per = [_term_bound(ir, term, B, norms, sz, sups) for term in jacobian(ir, s + NEW, r)]
            terms[(s, r)] = per
            blocks[(s, r)] = M[i, j] = math.fsum(per) if per else 0.0
    with np.errstate(invalid="ignore", over="ignore"):
        bound = float(np.linalg.norm(M, 2)) if np.all(np.isfinite(M)) else math.inf
    return StepBound(ir.name, bound, blocks, terms, M)


def _term_bound(ir: CellIR, term, B: dict, norms: dict, sizes: dict, sups: dict) -> float:
    """prod sup|d_k| * prod ||factor_k|| for one path term."""
    total = 1.0
    for d in term.diags:
        if d != 1:
            if d not in sups:
                sups[d] = sup_abs(d, B)
            if sups[d] == 0.0:
                return 0.0
            total *= sups[d]
    values = _factor_values(norms, sizes)
    return total * math.prod(values[f] for f in _factor_names(ir, term))


def _factor_values(norms: dict, sizes: dict) -> dict[str, float]:
    """The numbers the factors of :func:`_factor_names` stand for."""
    out = {f"||{w}||": v for w, v in norms.items()} | {f"sqrt({k})": math.sqrt(v) for k, v in sizes.items()}
    return out | {f"sqrt({SCALAR})": 1.0}


def carousels(ir: CellIR) -> dict[str, sympy.Expr]:
    """States whose own block d s'/d s is one diagonal, diag(d), with no weight on the path (the
    LSTM's c: diag(f)): state -> d. Along that path alone the gradient over k steps is the
    product of the k diagonals."""
    out = {}
    for s, _ in ir.states:
        terms = jacobian(ir, s + NEW, s)
        if len(terms) == 1 and not terms[0].weights:
            out[s] = terms[0].diags[0]
    return out


def self_paths(ir: CellIR) -> dict[str, sympy.Expr]:
    """For each state, the sum of the terms of d s'/d s that cross no weight (diag(z) in the
    GRU's h' = (1 - z)*n + z*h, diag(f) in the LSTM's c' = f*c + i*g), where there are any."""
    out = {}
    for s, _ in ir.states:
        free = [t.diags[0] for t in jacobian(ir, s + NEW, s) if not t.weights]
        if free:
            out[s] = sympy.Add(*free)
    return out


def carousel_lower_bounds(cell, params: dict, input_bound, state_ranges: dict, sizes: dict | None = None,
                          t: int = 0) -> dict[str, float]:  # fmt: skip
    """For each carousel state, a lower bound on |d| over the ranges (min over units of the
    interval's distance from 0): along the carousel alone the gradient over k steps is at least
    this to the power k, unit by unit, whatever the other paths add."""
    from .cell import infer_sizes

    ir = cell.ir
    sz = infer_sizes(ir, params) | dict(sizes or {})
    B = node_ranges(ir, params, sz, input_bound, state_ranges, t)
    out = {}
    for s, d in carousels(ir).items():
        lo, hi = _interval(d, B)
        low = np.where((np.asarray(lo) > 0) | (np.asarray(hi) < 0), np.minimum(np.abs(lo), np.abs(hi)), 0.0)
        out[s] = float(np.min(low))
    return out


def block_expression(ir: CellIR, of: str, wrt: str) -> str:
    """The bound on ||d of'/d wrt||_2 as it is computed, in words: a sum over the path terms of
    sup|d| of each diagonal over the ranges, times ||W||_2 of each weight (sqrt(n) for a
    column or row of n ones, sqrt(L) for a set's broadcast or sum)."""
    parts = []
    for term in jacobian(ir, of + NEW, wrt):
        factors = [f"sup|{_plain(d)}|" for d in term.diags if d != 1] + _factor_names(ir, term)
        parts.append(" * ".join(factors) or "1")
    return " + ".join(parts) or "0"


SPLITS = {1: 32, 2: 6, 3: 3}  # pieces per symbol's range, by how many symbols are split


def sup_abs(expr: sympy.Expr, B: dict) -> float:
    """An upper bound on |expr| over the ranges B, tighter than one interval evaluation: the
    ranges of up to three of the symbols it reads more than once (finite, of positive width)
    are cut into pieces and the largest bound over the pieces is taken. Interval arithmetic
    forgets that f*(1 - f) reads one f twice and gives 1 on [0, 1]; over 32 pieces it gives
    0.28. A symbol read once loses nothing."""
    names = sorted(s.name for s in expr.free_symbols if s.name in B and expr.count(s) > 1)
    split = []
    for n in names:
        lo, hi = (np.asarray(v, dtype=float) for v in B[n])
        if lo.shape == hi.shape and np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)) and np.any(hi > lo):
            split.append(n)
    split = [n for n in split if not _affine_in(expr, n)][:3]
    if not split:
        return float(np.max(_abs(_range(expr, B))))
    k = SPLITS[len(split)]
    worst = 0.0
    for idx in np.ndindex(*([k] * len(split))):
        piece = dict(B)
        for n, j in zip(split, idx):
            lo, hi = (np.asarray(v, dtype=float) for v in B[n])
            step = (hi - lo) / k
            piece[n] = (lo + j * step, hi if j == k - 1 else lo + (j + 1) * step)
        worst = max(worst, float(np.max(_abs(_range(expr, piece)))))
        if not np.isfinite(worst):
            break
    return worst


def _affine_in(expr: sympy.Expr, name: str) -> bool:
    """Whether ``expr`` is affine in the symbol ``name`` (its derivative does not read it)."""
    s = next(x for x in expr.free_symbols if x.name == name)  # with the assumptions it was made with
    try:
        return s not in sympy.diff(expr, s).free_symbols
    except (TypeError, ValueError, NotImplementedError, AttributeError):
        return False


def _abs(r) -> np.ndarray:
    return np.maximum(np.abs(r[0]), np.abs(r[1]))


def _range(expr: sympy.Expr, B: dict, _depth: int = 0):
    """(lo, hi) of ``expr`` per unit over the ranges B, exact in every symbol it reads more than
    once but is affine in: such a symbol is set to each end of its range in turn and the hull
    taken (for fixed values of the rest, an affine function lies between its values at the
    ends). The GRU's h' = z*h + (1 - z)*n with h, n in [-1, 1] stays in [-1, 1], where interval
    arithmetic alone, reading z twice, gives [-2, 2]. The rest by interval arithmetic."""
    if _depth < 4:
        for n in sorted(s.name for s in expr.free_symbols if s.name in B and expr.count(s) > 1):
            lo, hi = (np.asarray(v, dtype=float) for v in B[n])
            if np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)) and np.any(hi > lo) and _affine_in(expr, n):
                a = _range(expr, B | {n: (lo, lo)}, _depth + 1)
                b = _range(expr, B | {n: (hi, hi)}, _depth + 1)
                return np.minimum(a[0], b[0]), np.maximum(a[1], b[1])
    return _interval(expr, B)


def _refine_states(ir: CellIR, B: dict) -> dict:
    """B with each new state's interval intersected with :func:`_range` of its equation."""
    for s, _ in ir.states:
        node = ir.node_map.get(ir.new(s))
        if isinstance(node, Pointwise):
            lo, hi = _range(node.expr, B)
            B[node.name] = (np.maximum(B[node.name][0], lo), np.minimum(B[node.name][1], hi))
    return B


def reachable_ranges(cell, params: dict, input_bound, state_ranges: dict, steps: int, sizes: dict | None = None,
                     t0: int = 0) -> list[dict]:  # fmt: skip
    """The state ranges entering steps 0..steps-1: ``state_ranges`` first, then each step's
    interval image of the one before (|c_t| <= |c_0| + t for an LSTM with |i*g| <= 1; [-1, 1]
    at once for a state written as o*tanh(...))."""
    from .cell import infer_sizes

    ir = cell.ir
    sz = infer_sizes(ir, params) | dict(sizes or {})
    out = [dict(state_ranges)]
    for t in range(steps - 1):
        B = node_ranges(ir, params, sz, input_bound, out[-1], t0 + t)
        out.append({s: B[ir.new(s)] for s, _ in ir.states})
    return out


def lag_bounds(cell, params: dict, input_bound, state_ranges: dict, steps: int, sizes: dict | None = None,
               t0: int = 0) -> list[float]:  # fmt: skip
    """Upper bounds on ||d s_k / d s_0||_2 for k = 0..steps (the state after k steps against the
    state entering step 0), over the reachable ranges: the norm of the product of the per-step
    matrices of block bounds. (The block norms of a product are at most the products of the
    block-norm matrices, entry by entry, and a larger nonnegative matrix has a larger norm; the
    states' cross terms are kept, where a product of the per-step norms would not.)"""
    out, total = [1.0], None
    for t, ranges in enumerate(reachable_ranges(cell, params, input_bound, state_ranges, steps, sizes, t0)):
        M = step_bound(cell, params, input_bound, ranges, sizes, t0 + t).matrix
        with np.errstate(invalid="ignore", over="ignore"):
            total = M if total is None else M @ total
            finite = bool(np.all(np.isfinite(total)))
        out.append(float(np.linalg.norm(total, 2)) if finite else math.inf)
    return out


def summary(cell, init: str = "torch_default", input_bound: float = 1.0, steps: int = 10, batch: int = 8,
            seed: int = 0, sizes: dict | None = None) -> dict:  # fmt: skip
    """The bounds at one initialisation and how tight they are there: the per-step bound over
    the spec's state ranges with |x| <= input_bound, its blocks, the lag bounds over ``steps``
    steps, and the measured largest per-step Jacobian norm and lag-``steps`` gradient norm on
    ``batch`` sequences drawn uniformly within those ranges (generated backward, float64)."""
    from .check import sizes_for

    ir = cell.ir
    sz = dict(sizes or sizes_for(cell))
    params = cell.init_params(sizes=sz, init=init, seed=seed, t_max=steps)
    ranges = {s: cell.spec.state_range(s) for s, _ in ir.states}
    rng = np.random.default_rng(seed)
    inputs = {n: rng.uniform(-input_bound, input_bound, shape) for n, shape in ir.input_shapes(sz, steps, batch).items()}
    state = {s: rng.uniform(*ranges[s], (batch, sz[d])) for s, d in ir.states}
    first = step_bound(cell, params, input_bound, ranges, sz)
    lags = lag_bounds(cell, params, input_bound, ranges, steps, sz)
    along = {}  # carousel state -> lower bound over the lags, from the reachable ranges
    for t, r in enumerate(reachable_ranges(cell, params, input_bound, ranges, steps, sz)):
        for s, low in carousel_lower_bounds(cell, params, input_bound, r, sz, t).items():
            along[s] = along.get(s, 1.0) * low
    closed = {}
    for s, cf in closed_forms(ir, ranges).items():
        low, high = cf.values(ir, params, input_bound, ranges, sz)
        closed[s] = {"d": cf.d, "low": cf.low, "high": cf.high, "low_value": low, "high_value": high,
                     "ends": {a: [cf.end(a, "lo"), cf.end(a, "hi")] for a in cf.ends}}  # fmt: skip
    step_norm, lag_norm = _measured(cell, params, inputs, state)
    extremes = {}  # the per-step bound's tightness away from initialisation
    for regime in EXTREMES:
        q = _extreme(cell, params, inputs, state, regime, rng)
        bound = step_bound(cell, q, input_bound, ranges, sz).bound
        measured = _measured(cell, q, inputs, state)[0]
        extremes[regime] = {"step_bound": bound, "measured_step_norm": measured,
                            "step_tightness": measured / bound if bound else None}  # fmt: skip
    return {
        "cell": ir.name, "init": init, "sizes": sz, "input_bound": input_bound,
        "state_ranges": {s: list(r) for s, r in ranges.items()},
        "step_bound": first.bound,
        "blocks": {f"d{s}'/d{r}": v for (s, r), v in first.blocks.items()},
        "expressions": {f"d{s}'/d{r}": block_expression(ir, s, r) for (s, r) in first.blocks},
        "lag_bounds": lags, "steps": steps,
        "measured_step_norm": step_norm, "step_tightness": step_norm / first.bound if first.bound else None,
        "measured_lag_norm": lag_norm, "lag_tightness": lag_norm / lags[-1] if lags[-1] else None,
        "carousels": {s: str(d) for s, d in carousels(ir).items()},
        "carousel_lower_bounds": along, "closed_forms": closed, "extremes": extremes,
    }  # fmt: skip


EXTREMES = {"large weights": "every weight times 4",
            "saturated": "the gates' biases driven to |pre-activation| >= 4, each to a side drawn at random"}  # fmt: skip


def _extreme(cell, params: dict, inputs: dict, state: dict, regime: str, rng) -> dict:
    """Parameters of one of the EXTREMES, from ``params``."""
    from .regimes import saturate

    ir = cell.ir
    if regime == "large weights":
        return params | {w.name: np.asarray(params[w.name]) * 4.0 for w in ir.weights}
    signs = {b: rng.choice([-1.0, 1.0], size=np.shape(params[b])) for b, _ in ir.biases}
    try:
        return saturate(ir, params, inputs, state, 4.0, signs)
    except ValueError:  # no finite bias saturates this cell (exp or relu fed back): its initialisation
        return params


def _measured(cell, params: dict, inputs: dict, state: dict) -> tuple[float, float]:
    """The largest per-step Jacobian norm at the first step and the largest norm of the gradient
    over all the steps, over the batch rows (generated backward, float64)."""
    from . import gradflow as gf

    step_norm = lag_norm = 0.0
    batch = np.shape(next(iter(state.values())))[0]
    for row in range(batch):
        J = gf.step_jacobians(cell, params, inputs, state, row=row)
        step_norm = max(step_norm, float(np.linalg.norm(J[0], 2)))
        P = np.eye(J.shape[1])
        for j in J:
            P = j @ P
        lag_norm = max(lag_norm, float(np.linalg.norm(P, 2)))
    return step_norm, lag_norm


# --------------------------------------------------------------------- in closed form


@dataclass
class ClosedForm:
    """Bounds on a state's weight-free self-path diagonal ``d`` (:func:`self_paths`) in closed
    form, in the bias ranges, the weights' infinity norms (largest row sum of |W|) and an input
    bound |x| <= X: each affine map ``a = W_1 v_1 + ... + b`` it reads lies per unit in

        [min b - r(a), max b + r(a)],  r(a) = ||W_1||_inf * M(v_1) + ...

    with M(v) = X for an input, the largest magnitude of a state's range, or sup|v| of another
    vector; and ``d``, monotone in each of those maps (its derivative's interval says so), has
    its extremes at the ends. ``low`` and ``high`` are ``d`` with each map at the end that
    minimises, and maximises, it."""

    state: str
    d: str
    expr: sympy.Expr  # d with the pointwise nodes written out, down to the affine maps
    rising: dict  # affine map -> True if d rises with it
    low: str
    high: str
    ends: dict  # affine map -> (its bias or None, text of r(a))

    def end(self, a: str, side: str) -> str:
        """The text of ``side`` ("lo" or "hi") of affine map ``a``'s range."""
        bias, r = self.ends[a]
        r = f"({r})" if " + " in r else r
        if bias is None:
            return f"-{r}" if side == "lo" else r
        return f"min {bias} - {r}" if side == "lo" else f"max {bias} + {r}"

    def bias_bound(self, a: str, sign: int) -> str:
        """The bias bound that keeps ``a`` <= 0 (sign -1) or >= 0 (sign 1) for |x| <= X."""
        bias, r = self.ends[a]
        r = f"({r})" if " + " in r else r
        if bias is None:
            return f"{r} = 0"
        return f"max {bias} <= -{r}" if sign < 0 else f"min {bias} >= {r}"

    def values(self, ir: CellIR, params: dict, input_bound, state_ranges: dict, sizes: dict | None = None,
               t: int = 0) -> tuple[float, float]:  # fmt: skip
        """(low, high) for these weights and biases, |x| <= input_bound and states in
        ``state_ranges``: inf d >= low and sup d <= high over every unit."""
        from .cell import infer_sizes

        sz = infer_sizes(ir, params) | dict(sizes or {})
        inf_norms = weight_norms(ir, params, "inf")
        B = node_ranges(ir, params, sz, input_bound, state_ranges, t)
        at = {}
        for a, rises in self.rising.items():
            node = ir.node_map[a]
            r = math.fsum(inf_norms[w] * float(np.max(np.abs(np.asarray(B[v], dtype=float)))) for w, v in node.terms)
            b = np.asarray(params[node.bias], dtype=float) if node.bias else np.zeros(1)
            lo, hi = float(b.min()) - r, float(b.max()) + r
            at[a] = (lo, hi) if rises else (hi, lo)
        point = lambda k: {a: (np.array([v[k]]), np.array([v[k]])) for a, v in at.items()}  # noqa: E731
        return float(_interval(self.expr, point(0))[0][0]), float(_interval(self.expr, point(1))[1][0])


def closed_forms(ir: CellIR, state_ranges: dict | None = None) -> dict[str, ClosedForm]:
    """The self paths (:func:`self_paths`) that depend on the step's affine maps alone through
    functions monotone in each, in closed form (:class:`ClosedForm`). A path reading a state, a
    parameter, a reduction or the step directly, or not monotone, has none."""
    ranges = {s: tuple(map(float, (state_ranges or {}).get(s, ir.spec.state_range(s)))) for s, _ in ir.states}
    inputs = {n for n, _ in list(ir.inputs) + list(ir.sets)}
    out = {}
    for s, d in self_paths(ir).items():
        expr = _in_affine(ir, d)
        if expr is None or not expr.free_symbols:
            continue
        whole = {a.name: (np.array([-math.inf]), np.array([math.inf])) for a in expr.free_symbols}
        rising = {}
        for a in sorted(expr.free_symbols, key=lambda x: x.name):
            lo, hi = _interval(sympy.diff(expr, a), whole)
            if float(lo[0]) >= 0 or float(hi[0]) <= 0:
                rising[a.name] = float(lo[0]) >= 0
        if len(rising) < len(expr.free_symbols):
            continue
        ends = {}
        for a in rising:
            node = ir.node_map[a]
            parts = []
            for w, v in node.terms:
                m = "X" if v in inputs else f"{max(map(abs, ranges[v])):g}" if v in ranges else f"sup|{display(v)}|"
                parts.append(f"||{w}||_inf*{m}")
            ends[a] = (node.bias, " + ".join(parts))
        syms = {a.name: a for a in expr.free_symbols}
        text = lambda k: sympy.sstr(expr.xreplace({syms[a]: sympy.Symbol(  # noqa: E731
            f"{'lo' if rising[a] == (k == 0) else 'hi'}({a})") for a in rising}))
        out[s] = ClosedForm(s, _plain(d), expr, rising, text(0), text(1), ends)
    return out


def _in_affine(ir: CellIR, expr: sympy.Expr) -> sympy.Expr | None:
    """``expr`` with every pointwise node replaced by its equation, down to affine maps; None if
    it reads anything else."""
    for _ in range(len(ir.nodes) + 1):
        subs = {}
        for x in expr.free_symbols:
            node = ir.node_map.get(x.name)
            if isinstance(node, Pointwise):
                subs[x] = node.expr
            elif not isinstance(node, Affine):
                return None
        if not subs:
            return expr
        expr = expr.xreplace(subs)
    return None


# --------------------------------------------------------------------- for all weights


@dataclass
class Theorem:
    """The per-step bound for all weights, biases and inputs (:func:`theorem`): each block's
    bound as a sum of constants times weight norms (sqrt of a size for a row or column of
    ones), at a step whose previous state lies in ``ranges``."""

    cell: str
    ranges: dict  # state -> (lo, hi): where the previous state lies
    kept: dict  # state -> (lo, hi) of the new state: within ``ranges`` where the step keeps them
    blocks: dict  # (new state, state) -> [(constant, (norm factors...))]
    unbounded: dict  # (new state, state) -> factors whose sup is infinite
    open_carousels: dict  # state -> (d, affine maps d reads): its own weight-free path reaches 1
    capped: dict = field(default_factory=dict)  # state -> (sign, sup of that d with those maps of that sign)
    closed: dict = field(default_factory=dict)  # state -> ClosedForm of its self path
    carousels: tuple = ()  # states whose own block is that self path alone
    terms: dict = field(default_factory=dict)  # affine map a closed form reads -> its (weight, argument) terms
    inputs: tuple = ()  # the cell's inputs

    def block_text(self, key) -> str:
        parts = []
        for c, factors in self.blocks[key]:
            head = [] if c == 1 and factors else [f"{c:.4g}" if np.isfinite(c) else "inf"]
            parts.append(" * ".join(head + list(factors)))
        return " + ".join(parts) or "0"

    def statements(self) -> list[str]:
        def kept(s):
            if self.keeps(s):
                return "kept by the step, so at every later step too"
            return f"not kept: the new {display(s)} in [{self.kept[s][0]:.4g}, {self.kept[s][1]:.4g}]"

        shown = "; ".join(f"{display(s)} in [{lo:g}, {hi:g}] ({kept(s)})" for s, (lo, hi) in self.ranges.items())
        out = [f"For all weights, biases and inputs, at a step whose state has {shown}:"]
        for s, r in self.blocks:
            out.append(f"  ||d{display(s)}'/d{display(r)}||_2 <= {self.block_text((s, r))}")
        if not any(self.unbounded.values()) and not self.open_carousels:
            rows = [row for rows in self.blocks.values() for row in rows]
            if len(self.blocks) == 1 and len(rows) == 1:
                c, factors = rows[0]
                out.append(f"  so vanishing is guaranteed when {' * '.join(factors)} < {1 / c:.4g}")
            else:
                out.append("  so vanishing is guaranteed when the spectral norm of the matrix of these bounds is below 1")
        for (s, r), factors in self.unbounded.items():
            if factors:
                out.append(f"  no bound on d{display(s)}'/d{display(r)} for all weights: {'; '.join(factors)} "
                           "can be arbitrarily large")  # fmt: skip
        for s, (d, affine) in self.open_carousels.items():
            line = (f"  no vanishing guarantee for all biases: d{display(s)}'/d{display(s)} holds diag({d}) on a "
                    f"path without weights, and it reaches 1")  # fmt: skip
            if s in self.capped:
                sign, value = self.capped[s]
                line += (f"; with {' and '.join(display(a) + (' <= 0' if sign < 0 else ' >= 0') for a in affine)} "
                         f"(a bound on the biases), sup|{d}| <= {value:.4g}")  # fmt: skip
                cf = self.closed.get(s)
                if cf is not None and set(affine) <= set(cf.ends):
                    line += ", which holds when " + " and ".join(cf.bias_bound(a, sign) for a in affine)
            out.append(line)
        for s, cf in self.closed.items():
            ends = "; ".join(f"{k}({a}) = {cf.end(a, k)}" for a in cf.ends for k in ("lo", "hi")
                             if f"{k}({a})" in (cf.low if s in self.carousels else cf.high))
            if s in self.carousels:
                args = {v for a in cf.rising for _, v in self.terms.get(a, ())}
                # a vector other than a state or an input has its range from every state's
                read = set(self.ranges) if args - set(self.ranges) - set(self.inputs) else args & set(self.ranges)
                at = ("at every step" if all(self.keeps(v) for v in read) else
                      "at the steps whose state lies in these ranges")  # fmt: skip
                out.append(f"  along {display(s)}'s own path alone (d{display(s)}'/d{display(s)} = diag({cf.d})), "
                           f"with |x| <= X, every unit keeps at least (inf {cf.d})^k of its gradient over k steps, "
                           f"and inf {cf.d} >= {cf.low} {at}, {ends}: the gradient along it cannot vanish faster "
                           "than that")  # fmt: skip
            else:
                out.append(f"  with |x| <= X, sup {cf.d} <= {cf.high} < 1 for bounded weights, biases and inputs, "
                           f"{ends}")  # fmt: skip
        return out

    def keeps(self, s) -> bool:
        """Whether the step keeps state ``s`` within its range."""
        lo, hi = self.kept[s]
        return self.ranges[s][0] <= lo and hi <= self.ranges[s][1]


def theorem(ir: CellIR, state_ranges: dict | None = None, diagonal_ranges: dict | None = None) -> Theorem:
    """Block bounds for all weights: affine maps and inputs unbounded, diagonal parameters in
    ``diagonal_ranges`` (default unbounded), the previous state in ``state_ranges`` (default
    the spec's ranges, [-1, 1] unless it says otherwise). Whether the step keeps each state in
    its range is said too ([-1, 1] is kept by o*tanh(...); an LSTM's c is not). Constants are
    bounds per unit (every size 1; a set's L unbounded)."""
    sizes = {k: 1 for k in ir.size_names} | ({SET: math.inf} if ir.sets else {})
    one = lambda lo, hi: (np.array([float(lo)]), np.array([float(hi)]))  # noqa: E731
    params = {p: one(*(diagonal_ranges or {}).get(p, (-math.inf, math.inf))) for p, _ in ir.diagonals}
    params |= {b: one(-math.inf, math.inf) for b, _ in ir.biases} | {b: one(-math.inf, math.inf) for b, _, _ in ir.buffers}
    x = {n: np.array([math.inf]) for n, _ in list(ir.inputs) + list(ir.sets)}
    free = {n.name: one(-math.inf, math.inf) for n in ir.nodes if isinstance(n, Affine)}
    always = (-math.inf, math.inf)  # any step

    def image(states, given=free):
        return _step_bounds(ir, params, sizes, x, states, always, given=given)

    ranges = {s: tuple(map(float, (state_ranges or {}).get(s, ir.spec.state_range(s)))) for s, _ in ir.states}
    reached = {s: one(*ranges[s]) for s, _ in ir.states}
    B = _refine_states(ir, image(reached))
    kept = {s: (float(B[ir.new(s)][0].min()), float(B[ir.new(s)][1].max())) for s, _ in ir.states}
    for n in ir.nodes:
        if isinstance(n, Reduce) and not n.over_set:
            B[count(n.name).name] = one(1, math.inf)
    sups: dict = {}

    def sup(d):
        if d not in sups:
            sups[d] = sup_abs(d, B)
        return sups[d]

    blocks, unbounded = {}, {}
    for s, _ in ir.states:
        for r, _ in ir.states:
            rows, bad = [], set()
            for term in jacobian(ir, s + NEW, r):
                c = math.prod(sup(d) for d in term.diags if d != 1)
                bad |= {_plain(d) for d in term.diags if d != 1 and not np.isfinite(sup(d))}
                if c != 0:
                    rows.append((c, tuple(_factor_names(ir, term))))
            blocks[(s, r)], unbounded[(s, r)] = rows, sorted(bad)
    opened, capped = {}, {}
    for s, d in self_paths(ir).items():
        if sup(d) >= 1:
            affine = sorted(a for a in free if _reads(ir, d, a))
            opened[s] = (_plain(d), affine)
            if affine:  # the affine maps it reads held to one side of 0: the side that helps
                sides = []
                for sign in (-1, 1):
                    side = one(-math.inf, 0.0) if sign < 0 else one(0.0, math.inf)
                    sides.append((sign, sup_abs(d, image(reached, free | {a: side for a in affine}))))
                capped[s] = min(sides, key=lambda x: x[1])
    closed = closed_forms(ir, ranges)
    terms = {a: ir.node_map[a].terms for cf in closed.values() for a in cf.rising}
    inputs = tuple(n for n, _ in list(ir.inputs) + list(ir.sets))
    return Theorem(ir.name, ranges, kept, blocks, unbounded, opened, capped, closed, tuple(carousels(ir)), terms,
                   inputs)  # fmt: skip


def _factor_names(ir: CellIR, term) -> list[str]:
    """A term's matrix factors: ||W|| for a weight, sqrt(n) for a column or row of n ones (the
    units reading or reduced), sqrt(set) for a set's broadcast or sum."""
    where = spaces(ir, term)
    out = []
    for k, w in enumerate(term.weights):
        if w == ONES:
            out.append(f"sqrt({where[k][0]})")
        elif w.startswith(REDUCE):
            out.append(f"sqrt({w[len(REDUCE):]})")
        elif w in SET_TOKENS:
            out.append(f"sqrt({SET})")
        else:
            out.append(f"||{w}||")
    return out


def _reads(ir: CellIR, expr, name: str) -> bool:
    """Whether ``expr`` reads node ``name``, directly or through pointwise nodes and reductions."""
    todo, seen = [s.name for s in expr.free_symbols], set()
    while todo:
        n = todo.pop()
        if n == name:
            return True
        node = ir.node_map.get(n)
        if n in seen or node is None or isinstance(node, Affine):
            continue
        seen.add(n)
        todo += dependencies(node)
    return False


def evaluate(ir: CellIR, th: Theorem, params: dict, sizes: dict) -> dict:
    """The theorem's block bounds for these weights (masked as the spec masks them) and sizes:
    (new state, state) -> number."""
    values = _factor_values(weight_norms(ir, params), sizes)
    return {key: math.fsum(c * math.prod(values[f] for f in factors) if c else 0.0 for c, factors in rows)
            for key, rows in th.blocks.items()}  # fmt: skip
