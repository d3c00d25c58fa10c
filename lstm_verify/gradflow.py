"""Gradient flow over long lags, measured with the generated backward (plain data, no plots).

For a loss at the last step T, L = <w, output_T>, :func:`flow` gives ||dL/ds_{T-k}|| for every
state s and ||dL/dx_{T-k}|| for k = 0..K, from one forward and one backward pass (the backward's
``trace``), a fitted decay per step and the *memory horizon*: the first lag at which the state
gradient falls below ``threshold`` times its value at lag 0. :func:`spectra` gives the per-step
Jacobians d(state')/d(state) (rows from the generated backward, one step at a time, all
rows in one batch) and the singular values of their products over the last k steps.
:func:`saturation` gives per-gate statistics. Everything runs in float64: gradients of
vanishing cells reach 1e-40 and below.

Every function takes ``inputs`` as a (T, B, n) array (or a dict for several inputs) and
``state`` as a dict, defaulting to zeros; parameters, inputs and state are converted to NumPy.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, field

import numpy as np

from .cell import Cell, prepare
from .spec import SCALAR


def _arguments(cell: Cell, params, inputs, state):
    """(params, inputs dict, state dict) as NumPy arrays, the state defaulting to zeros."""
    return prepare(cell.ir, "numpy", params, inputs, state)


@dataclass
class Flow:
    cell: str
    init: str
    lags: list  # k = 0..K
    state_norms: dict  # state -> ||dL/ds_{T-k}|| (mean over the batch), k = 0..K
    total: list  # sqrt(sum over states of squares), normalised to 1 at k = 0
    input_norms: list  # ||dL/dx_{T-k}||
    decay: float  # fitted factor per step of `total`
    horizon: int | None  # first k with total < threshold (None: not within K)
    threshold: float

    def as_dict(self):
        return asdict(self)


def _problem(cell: Cell, sizes, steps, batch, seed, init, t_max=None, input_scale=1.0):
    from .inits import apply

    rng = np.random.default_rng(seed)
    params = cell.init_params(sizes=sizes, seed=seed)
    if init != "torch_default":
        params = apply(cell.ir, params, init, rng, t_max=t_max or steps)
    inputs = {n: input_scale * rng.standard_normal(shape) for n, shape in cell.ir.input_shapes(sizes, steps, batch).items()}
    state = {s: np.zeros((batch, sizes[d])) for s, d in cell.ir.states}
    return params, inputs, state, rng


def _row_norms(a):
    """Euclidean norm of every row, with the squares taken of values scaled by the row's
    largest magnitude: gradients of 1e-160 would square to subnormals and lose digits."""
    a = np.asarray(a, dtype=np.float64)
    m = np.max(np.abs(a), axis=1, keepdims=True)
    with np.errstate(invalid="ignore"):
        scale = np.where((m > 0) & np.isfinite(m), m, 1.0)
        out = scale[:, 0] * np.sqrt(np.sum(np.square(a / scale), axis=1))
    return np.where(np.isinf(m[:, 0]), np.inf, out)


def fit_decay(norms, floor=1e-300):
    """Least-squares factor per step of a normalised curve (log-linear fit over finite,
    nonzero values after lag 0)."""
    y = np.asarray(norms, dtype=float)
    k = np.arange(len(y))
    ok = (y > floor) & np.isfinite(y) & (k > 0)
    if ok.sum() < 2:
        return float("nan")
    slope = np.polyfit(k[ok], np.log(y[ok]), 1)[0]
    return float(np.exp(slope))


def horizon(norms, threshold):
    below = np.nonzero(np.asarray(norms) < threshold)[0]
    return int(below[0]) if below.size else None


def flow(cell: Cell, params, inputs, state=None, threshold=1e-3, seed=0, init="given") -> Flow:
    """Gradient norms of L = <w, output_T> with respect to every state and input at T - k."""
    impl = cell.numpy()
    ir = cell.ir
    params, inputs, state = _arguments(cell, params, inputs, state)
    run = impl.forward(params, inputs, state, save=True, check=False)  # checked just now
    rng = np.random.default_rng(seed + 7)
    out = np.asarray(run.outputs)
    T = out.shape[0]
    w = rng.standard_normal(out.shape[1:])
    w /= np.linalg.norm(w, axis=1, keepdims=True)
    d_state = {s: (w if s == ir.output else None) for s, _ in ir.states}
    trace: list = []
    grads = impl.backward(params, run.cache, None, d_state, trace=trace)
    trace = trace[::-1]  # step 0..T-1: gradient w.r.t. the state entering each step
    # lag k: the state entering step T - k (k = 0: the final state itself, gradient w)
    per_state = {}
    for s, _ in ir.states:
        final = w if s == ir.output else np.zeros_like(trace[-1][s])
        seq = [final] + [trace[T - k][s] for k in range(1, T + 1)]
        per_state[s] = [float(_row_norms(g).mean()) for g in seq]
    total = functools.reduce(np.hypot, [np.asarray(v) for v in per_state.values()])  # no underflow
    total = total / total[0]
    x = grads.inputs[ir.inputs[0][0]]
    inputs_n = [float("nan")] + [float(_row_norms(x[T - k]).mean()) for k in range(1, T + 1)]
    return Flow(cell.name, init, list(range(T + 1)), per_state, total.tolist(), inputs_n,
                fit_decay(total), horizon(total, threshold), threshold)  # fmt: skip


def step_jacobians(cell: Cell, params, inputs, state=None, row=0):
    """d(state_{t+1})/d(state_t) for one batch row at every step, (T, n, n) with the states
    concatenated in spec order; each row from the generated backward (all rows as one batch)."""
    params, inputs, state = _arguments(cell, params, inputs, state)
    impl = cell.numpy()
    ir = cell.ir
    names = [s for s, _ in ir.states]
    widths = [np.asarray(state[s]).shape[1] for s in names]
    n = sum(widths)
    offs = np.cumsum([0] + widths)
    T = inputs[ir.inputs[0][0]].shape[0]
    sets = {k for k, _ in ir.sets}
    cur = {s: np.asarray(state[s])[row : row + 1] for s in names}
    out = np.empty((T, n, n))
    eye = np.eye(n)
    for t in range(T):
        x = {k: np.repeat(np.asarray(v)[row : row + 1], n, axis=0) if k in sets else
             np.repeat(np.asarray(v)[t : t + 1, row : row + 1], n, axis=1) for k, v in inputs.items()}  # fmt: skip
        s = {k: np.repeat(v, n, axis=0) for k, v in cur.items()}
        run = impl.forward(params, x, s, t0=t, save=True, check=False)
        d = {names[j]: eye[:, offs[j] : offs[j + 1]] for j in range(len(names))}
        g = impl.backward(params, run.cache, None, d)
        out[t] = np.concatenate([g.state[k] for k in names], axis=1)  # row i: d out_i / d state
        cur = {k: v[:1] for k, v in run.state.items()}
    return out


@dataclass
class Spectra:
    cell: str
    step_top: list  # largest singular value of each per-step Jacobian
    lags: list
    accumulated: dict = field(default_factory=dict)  # lag -> singular values of J_{T-1}...J_{T-k}


def spectra(cell: Cell, params, inputs, state=None, lags=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)) -> Spectra:
    J = step_jacobians(cell, params, inputs, state)
    T = J.shape[0]
    top = [float(np.linalg.svd(j, compute_uv=False)[0]) for j in J]
    acc, P = {}, np.eye(J.shape[1])
    wanted = {k for k in lags if k <= T}
    for k in range(1, T + 1):
        P = P @ J[T - k]
        if k in wanted:
            acc[k] = np.linalg.svd(P, compute_uv=False).tolist()
    return Spectra(cell.name, top, sorted(wanted), acc)


def saturation(cell: Cell, params, inputs, state=None, low=0.05, high=0.95) -> dict:
    """Per gate (sigmoid or hard_sigmoid node) the fraction of unit-steps below ``low``, above
    ``high``, and the mean; per tanh of an affine map the fraction with |value| > ``high``."""
    from .regimes import applications

    values = node_values(cell, params, inputs, state)
    out = {}
    for a in applications(cell.ir):
        v = np.asarray(values[a.node])
        node_expr = cell.ir.node_map[a.node].expr
        if a.function in ("sigmoid", "hard_sigmoid") and node_expr.func.__name__ == a.function:
            out[a.node] = {"kind": a.function, "below": float((v < low).mean()),
                           "above": float((v > high).mean()), "mean": float(v.mean())}  # fmt: skip
        elif a.function == "tanh" and node_expr.func.__name__ == "tanh":
            out[a.node] = {"kind": "tanh", "saturated": float((np.abs(v) > high).mean()),
                           "mean_abs": float(np.abs(v).mean())}  # fmt: skip
    return out


def node_values(cell: Cell, params, inputs, state=None) -> dict:
    """Every node's value at every step, (T, B, n) ((T, B, L, n) with the set axis), from a
    float64 walk of the IR (SymPy's NumPy printer; the generated code saves only what its
    backward needs)."""
    params, inputs, state = _arguments(cell, params, inputs, state)
    from .functions import FUNCTIONS
    from .hygiene import lambdify
    from .ir import Affine, Reduce

    ir = cell.ir
    table = {f.sympy.__name__: _np_function(f.name) for f in FUNCTIONS.values()}
    compiled = {}
    for node in ir.nodes:
        if not isinstance(node, (Affine, Reduce)):
            compiled[node.name] = lambdify(node.expr, [table, "numpy"])
    masked = {}
    for w in ir.weights:
        m = np.asarray(params[w.name], dtype=float)
        if w.mask is not None:
            m = np.where(w.mask.evaluate({b: np.asarray(params[b]) for b, _, _ in ir.buffers}), m, 0.0)
        masked[w.name] = m
    from .cell import infer_sizes

    sizes = infer_sizes(ir, params)
    S = {k: np.asarray(v, dtype=float) for k, v in state.items()}
    T, B = inputs[ir.inputs[0][0]].shape[:2]
    sets = {k for k, _ in ir.sets}
    L = inputs[next(iter(sets))].shape[1] if sets else None
    trace: dict = {n.name: [] for n in ir.nodes}
    for t in range(T):
        vals = dict(S) | {k: np.asarray(v if k in sets else v[t], dtype=float) for k, v in inputs.items()}
        for node in ir.nodes:
            members = node.name in ir.set_vectors

            def val(a):  # a value without the set axis, read by a node with it: over the members
                return vals[a][:, None] if members and a not in ir.set_vectors else vals[a]

            if isinstance(node, Affine):
                v = sum(val(a) @ masked[w].T for w, a in node.terms)
                vals[node.name] = v + (params[node.bias] if node.bias else 0.0)
            elif isinstance(node, Reduce) and node.over_set:
                v = vals[node.args[0]]
                vals[node.name] = v.sum(1) if node.op == "setsum" else v.max(1)
            elif isinstance(node, Reduce):
                lead = (B, L) if members else (B,)
                units = np.concatenate([np.broadcast_to(val(a), lead + val(a).shape[len(lead):]) for a in node.args],
                                       axis=-1)  # fmt: skip
                if node.op == "var":
                    units = (units - vals[node.center]) ** 2
                vals[node.name] = units.sum(-1, keepdims=True) if node.op == "sum" else units.mean(-1, keepdims=True)
            else:
                names, fn = compiled[node.name]
                args = [t if n == ir.step else val(n) if n in vals else np.asarray(params[n]) for n in names]
                shape = (B, L) if members else (B,)
                vals[node.name] = np.broadcast_to(fn(*args), shape + (1 if node.dim == SCALAR else sizes[node.dim],))
            trace[node.name].append(vals[node.name])
        S = {s: vals[ir.new(s)] for s, _ in ir.states}
    return {k: np.stack(v) for k, v in trace.items()}


def _np_function(name):
    return {
        "sigmoid": lambda x: 0.5 * (1 + np.tanh(0.5 * x)),
        "tanh": np.tanh,
        "exp": np.exp,
        "relu": lambda x: np.maximum(x, 0),
        "hard_sigmoid": lambda x: np.clip(x / 6 + 0.5, 0, 1),
        "tick": lambda t, p: (np.remainder(t, p) == 0).astype(float),
        "step": lambda x: (x > 0).astype(float),
        "hard_sigmoid_grad": lambda x: ((x > -3) & (x < 3)) / 6.0,
        "log": np.log,
        "softplus": lambda x: np.logaddexp(0, x),
        "max": np.maximum,
        "min": np.minimum,
        "max_grad": lambda a, b: (a > b) + 0.5 * (a == b),
        "sqrt": np.sqrt,
    }[name]
