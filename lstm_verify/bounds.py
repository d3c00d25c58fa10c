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
from .ir import Affine, CellIR, Reduce, dependencies
from .regimes import _bound, _interval, _step_bounds
from .spec import NEW, SCALAR, SET, display


@dataclass
class StepBound:
    """An upper bound on ||d s'/d s||_2 for one step (all states stacked in spec order)."""

    cell: str
    bound: float
    blocks: dict = field(default_factory=dict)  # (new state, previous state) -> bound on its norm
    terms: dict = field(default_factory=dict)  # (new state, previous state) -> [bound of each term]
    matrix: np.ndarray | None = None  # the block bounds, states in spec order


def weight_norms(ir: CellIR, params: dict) -> dict[str, float]:
    """sigma_max of every weight as the generated code uses it (masked where the spec masks it)."""
    out = {}
    for w in ir.weights:
        m = np.asarray(params[w.name], dtype=float)
        if w.mask is not None:
            m = np.where(w.mask.evaluate({b: np.asarray(params[b]) for b, _, _ in ir.buffers}), m, 0.0)
        out[w.name] = float(np.linalg.norm(m, 2)) if m.size else 0.0
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
    B = _step_bounds(ir, params, sizes, x, s, t)
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
                sups[d] = sup_abs(sympy.sympify(d), B)
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
        lo, hi = _interval(sympy.sympify(d), B)
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
    split = split[:3]
    if not split:
        return float(np.max(_bound(expr, B)))
    k = SPLITS[len(split)]
    worst = 0.0
    for idx in np.ndindex(*([k] * len(split))):
        piece = dict(B)
        for n, j in zip(split, idx):
            lo, hi = (np.asarray(v, dtype=float) for v in B[n])
            step = (hi - lo) / k
            piece[n] = (lo + j * step, hi if j == k - 1 else lo + (j + 1) * step)
        worst = max(worst, float(np.max(_bound(expr, piece))))
        if not np.isfinite(worst):
            break
    return worst


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
    from . import gradflow as gf
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
    step_norm = lag_norm = 0.0
    for row in range(batch):
        J = gf.step_jacobians(cell, params, inputs, state, row=row)
        step_norm = max(step_norm, float(np.linalg.norm(J[0], 2)))
        P = np.eye(J.shape[1])
        for j in J:
            P = j @ P
        lag_norm = max(lag_norm, float(np.linalg.norm(P, 2)))
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
        "carousel_lower_bounds": along,
    }  # fmt: skip


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

    def block_text(self, key) -> str:
        parts = []
        for c, factors in self.blocks[key]:
            head = [] if c == 1 and factors else [f"{c:.4g}" if np.isfinite(c) else "inf"]
            parts.append(" * ".join(head + list(factors)))
        return " + ".join(parts) or "0"

    def statements(self) -> list[str]:
        def kept(s):
            lo, hi = self.kept[s]
            if self.ranges[s][0] <= lo and hi <= self.ranges[s][1]:
                return "kept by the step, so at every later step too"
            return f"not kept: the new {display(s)} in [{lo:.4g}, {hi:.4g}]"

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
            out.append(line)
        return out


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
    B = image(reached)
    kept = {s: (float(B[ir.new(s)][0].min()), float(B[ir.new(s)][1].max())) for s, _ in ir.states}
    for n in ir.nodes:
        if isinstance(n, Reduce) and not n.over_set:
            B[count(n.name).name] = one(1, math.inf)
    sups: dict = {}

    def sup(d):
        if d not in sups:
            sups[d] = sup_abs(sympy.sympify(d), B)
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
                    sides.append((sign, sup_abs(sympy.sympify(d), image(reached, free | {a: side for a in affine}))))
                capped[s] = min(sides, key=lambda x: x[1])
    return Theorem(ir.name, ranges, kept, blocks, unbounded, opened, capped)


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
    todo, seen = [s.name for s in sympy.sympify(expr).free_symbols], set()
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
