"""The catalog self-check: every oracle against every cell, as rows of measured errors."""

from __future__ import annotations

import dataclasses
import textwrap
import time
from dataclasses import dataclass, field

import numpy as np

from .cell import Cell
from .compare import Errors, errors
from .extras import available, install_hint

# a row passes when every measured error is within these bounds
LIMITS = {
    "fwd64": 1e-13,  # normwise error against mpmath, float64 (about 450 eps)
    "fwd32": 2e-5,  # float32 (about 170 eps)
    "bwd_autograd": 1e-10,  # normwise relative difference, float64
    "bwd_fd": 1e-6,  # directional finite difference, float64
    "thirdparty": {"float64": 1e-12, "float32": 1e-5},  # max abs difference, outputs in [-1, 1]
}

DEFAULT_SIZES = {"input": 3, "hidden": 4, "proj": 2, "attn": 3, "item": 2, "set": 5}
OTHER_SIZE = 3  # a size name the table does not know (a user's spec)


def sizes_for(cell: Cell, base=None) -> dict[str, int]:
    """Small sizes every catalog cell accepts (input = hidden where the spec ties them)."""
    base = dict(base or DEFAULT_SIZES)
    return {k: base.get(k, OTHER_SIZE) for k in cell.ir.size_names}


def random_inputs(cell: Cell, sizes, T, batch, rng, scale=1.0, dtype=np.float64):
    """N(0, scale^2) inputs: (T, batch, n) per step, (batch, L, n) for a set input."""
    return {n: (scale * rng.standard_normal(shape)).astype(dtype)
            for n, shape in cell.ir.input_shapes(sizes, T, batch).items()}  # fmt: skip


def random_state(cell: Cell, sizes, batch, rng, scale=0.5, dtype=np.float64):
    """N(0, scale^2) per state, or uniform in the spec's range where it gives one."""
    ranges = dict(cell.spec.ranges)

    def draw(s, shape):
        if s in ranges:
            return rng.uniform(*ranges[s], shape)
        return scale * rng.standard_normal(shape)

    return {s: draw(s, (batch, sizes[d])).astype(dtype) for s, d in cell.ir.states}


@dataclass
class Row:
    cell: str
    results: dict = field(default_factory=dict)  # column -> (value, passed, text)
    seconds: float = 0.0
    # what could not run -> the optional module it needs ("torch"); a column that did not run
    # at all has the value None and the text "not run (torch)"
    not_run: dict = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """No measured error beyond its limit (columns that did not run are in ``not_run``)."""
        return all(ok for _, ok, _ in self.results.values())


def not_run_note(rows) -> str | None:
    """One line per missing optional module: which checks did not run and how to get them."""
    by_module: dict = {}
    for row in rows:
        for part, module in row.not_run.items():
            by_module.setdefault(module, {})[part] = None
    lines = []
    for module, parts in by_module.items():
        lines.append(f"Not run, needs {module} ({install_hint(module)}):")
        lines += textwrap.wrap(", ".join(parts), 98, initial_indent="  ", subsequent_indent="  ")
    return "\n".join(lines) or None


def forward_vs_mpmath(cell: Cell, dtype, saturated=False, T=4, batch=2, seed=0,
                      backends=("numpy", "torch")):  # fmt: skip
    """Max errors of the generated forwards (NumPy and torch, or ``backends``) against the
    mpmath reference.

    Ordinary: torch-default weights, unit-normal inputs and state. Saturated: uniform weights
    scaled so that pre-activations reach |z| of about 50. Returns (Errors, max |z| seen).
    """
    params, inputs, state, ref_out, ref_state, exact, zmax = _mpmath_case(cell, np.dtype(dtype), saturated, T, batch,
                                                                          seed)  # fmt: skip
    worst = None
    impls = []
    if "numpy" in backends:
        impls.append((cell.numpy(), np.asarray))
    if "torch" in backends:
        impls.append((cell.torch(), _torch().as_tensor))
    for impl, conv in impls:
        with np.errstate(all="ignore"):  # an overflow is measured below, against the reference
            run = impl.forward({k: conv(v) for k, v in params.items()}, {k: conv(v) for k, v in inputs.items()},
                               {k: conv(v) for k, v in state.items()})  # fmt: skip
        got = np.concatenate([_np(run.outputs).ravel()] + [_np(run.state[s]).ravel() for s, _ in cell.ir.states])
        ref = np.concatenate([ref_out.ravel()] + [ref_state[s].ravel() for s, _ in cell.ir.states])
        e = errors(got, ref, dtype)
        worst = e if worst is None else Errors(*(max(a, b) for a, b in zip(
            (worst.max_abs, worst.max_rel, worst.max_ulp, worst.normwise),
            (e.max_abs, e.max_rel, e.max_ulp, e.normwise))))
    return dataclasses.replace(worst, exact_max=exact), zmax


_CASES: dict = {}  # the last few mpmath cases (each costs up to seconds): several implementations share one


def _mpmath_case(cell: Cell, dtype, saturated, T, batch, seed):
    """The inputs of :func:`forward_vs_mpmath` and the mpmath reference's outputs and final state,
    the largest exact value and the largest |z|; computed once per spec and arguments, and
    returned as fresh copies."""
    key = (cell.ir.spec.sha256, dtype.str, bool(saturated), T, batch, seed)
    if key not in _CASES:
        _CASES[key] = _compute_mpmath_case(cell, dtype.type, saturated, T, batch, seed)
        while len(_CASES) > 32:
            _CASES.pop(next(iter(_CASES)))
    params, inputs, state, ref_out, ref_state, exact, zmax = _CASES[key]

    def fresh(d):
        return {k: np.array(v, copy=True) for k, v in d.items()}

    return fresh(params), fresh(inputs), fresh(state), ref_out.copy(), fresh(ref_state), exact, zmax


def _compute_mpmath_case(cell: Cell, dtype, saturated, T, batch, seed):
    sizes = sizes_for(cell)
    rng = np.random.default_rng(seed)
    if saturated:
        params = cell.init_params(sizes=sizes, init="uniform", scale=6.0, seed=seed, dtype=dtype)
        inputs = random_inputs(cell, sizes, T, batch, rng, scale=3.0, dtype=dtype)
    else:
        params = cell.init_params(sizes=sizes, seed=seed, dtype=dtype)
        inputs = random_inputs(cell, sizes, T, batch, rng, dtype=dtype)
    state = random_state(cell, sizes, batch, rng, dtype=dtype)
    from .reference import reference_forward

    affine = {n.name for n in cell.ir.nodes if not hasattr(n, "expr")}
    trainable = set(cell.ir.param_names)
    log_scale, tried = 0.0, []  # (log of the weights' scale, log of the first step's largest |z|)
    for attempt in range(8 if saturated else 1):
        trace: list = []
        ref_out, ref_state = reference_forward(cell.ir, params, inputs, state, trace=trace)
        z = [max(abs(float(v)) for k, a in step.items() if k in affine for v in a.ravel()) for step in trace]
        zmax = max(z)
        if not saturated or z[0] == 0 or (attempt and 25 <= z[0] <= 100):
            break
        # rescale so the first step's largest |z| is 50: one step when pre-activations are linear in
        # the weights; secant steps in log-log when they are not (mLSTM's m multiplies two maps)
        tried.append((log_scale, np.log(z[0])))
        slope = 1.0 if len(tried) < 2 else (tried[-1][1] - tried[-2][1]) / (tried[-1][0] - tried[-2][0])
        step = (np.log(50) - tried[-1][1]) / max(slope, 0.5)
        log_scale += step
        params = {k: (v * np.exp(step) if k in trainable else v).astype(dtype) for k, v in params.items()}
    exact = max(abs(float(v)) for step in trace for a in step.values() for v in np.ravel(a))
    return params, inputs, state, ref_out, ref_state, exact, zmax


def _problem(cell, T, batch, seed):
    """float64 parameters, inputs, initial state and the weights of a random linear loss
    over every output and the final state; and the generator for further draws."""
    sizes = sizes_for(cell)
    rng = np.random.default_rng(seed)
    params = cell.init_params(sizes=sizes, seed=seed)
    inputs = random_inputs(cell, sizes, T, batch, rng)
    state = random_state(cell, sizes, batch, rng)
    out_dim = dict(cell.ir.states)[cell.ir.output]
    w_out = rng.standard_normal((T, batch, sizes[out_dim]))
    w_state = {s: rng.standard_normal((batch, sizes[d])) for s, d in cell.ir.states}
    return params, inputs, state, w_out, w_state, rng


def backward_vs_autograd(cell: Cell, T=50, batch=2, seed=0) -> float:
    """Normwise relative difference: generated backward (NumPy and torch) vs torch autograd
    through the generated torch forward, float64, a loss over every output and the final state."""
    torch = _torch()

    params, inputs, state, w_out, w_state, rng = _problem(cell, T, batch, seed)
    train = set(cell.ir.param_names)
    tp = {k: torch.tensor(v, requires_grad=k in train) for k, v in params.items()}
    ti = {k: torch.tensor(v, requires_grad=True) for k, v in inputs.items()}
    ts = {k: torch.tensor(v, requires_grad=True) for k, v in state.items()}
    run = cell.torch().forward(tp, ti, ts)
    loss = (run.outputs * torch.tensor(w_out)).sum() + sum(
        (run.state[s] * torch.tensor(w)).sum() for s, w in w_state.items()
    )
    loss.backward()
    leaves = [tp[k] for k in cell.ir.param_names] + list(ti.values()) + list(ts.values())
    # a state whose old value no step reads (Grid LSTM's outgoing depth vectors) gets no .grad
    expected = np.concatenate([(t.grad.numpy() if t.grad is not None else np.zeros(t.shape)).ravel() for t in leaves])
    worst = 0.0
    for impl, conv in ((cell.numpy(), np.asarray), (cell.torch(), torch.as_tensor)):
        p = {k: conv(v) for k, v in params.items()}
        r = impl.forward(p, {k: conv(v) for k, v in inputs.items()}, {k: conv(v) for k, v in state.items()}, save=True)
        g = impl.backward(p, r.cache, conv(w_out), {k: conv(v) for k, v in w_state.items()})
        got = [g.params[k] for k in cell.ir.param_names] + [g.inputs[k] for k in ti] + [g.state[k] for k in ts]
        got = np.concatenate([_np(a).ravel() for a in got])
        worst = max(worst, float(np.linalg.norm(got - expected) / np.linalg.norm(expected)))
    return worst


def backward_vs_finite_differences(cell: Cell, T=50, batch=2, seed=0, directions=3, gradcheck=True):
    """Central differences of the loss along random directions in (params, inputs, state),
    float64, against the generated NumPy backward; plus (``gradcheck=True``, needs torch)
    torch.autograd.gradcheck (fast mode) on the fused module over the same sequence. Returns
    (max relative error, gradcheck passed), the latter None when gradcheck did not run."""
    params, inputs, state, w_out, w_state, rng = _problem(cell, T, batch, seed)
    impl = cell.numpy()
    train = list(cell.ir.param_names)

    def loss(p, x, s):
        r = impl.forward(p, x, s, check=False)
        return float((r.outputs * w_out).sum() + sum((r.state[k] * w).sum() for k, w in w_state.items()))

    r = impl.forward(params, inputs, state, save=True)
    g = impl.backward(params, r.cache, w_out, w_state)
    worst = 0.0
    eps = 1e-6
    for _ in range(directions):
        vp = {k: rng.standard_normal(params[k].shape) for k in train}
        vx = {k: rng.standard_normal(v.shape) for k, v in inputs.items()}
        vs = {k: rng.standard_normal(v.shape) for k, v in state.items()}

        def shifted(sign):
            p = dict(params) | {k: params[k] + sign * eps * vp[k] for k in train}
            return loss(p, {k: inputs[k] + sign * eps * vx[k] for k in inputs},
                        {k: state[k] + sign * eps * vs[k] for k in state})  # fmt: skip

        fd = (shifted(1) - shifted(-1)) / (2 * eps)
        exact = sum(float((g.params[k] * vp[k]).sum()) for k in train)
        exact += sum(float((g.inputs[k] * vx[k]).sum()) for k in inputs)
        exact += sum(float((g.state[k] * vs[k]).sum()) for k in state)
        worst = max(worst, abs(fd - exact) / max(abs(exact), 1e-8))
    if not gradcheck:
        return worst, None
    torch = _torch()
    from .torch_cell import fused_forward

    names = train + list(inputs) + [s for s, _ in cell.ir.states]
    buffers = {b: torch.tensor(v) for b, v in params.items() if b not in train}
    leaves = [torch.tensor(params[k]) for k in train] + [torch.tensor(v) for v in inputs.values()]
    leaves += [torch.tensor(state[s]) for s, _ in cell.ir.states]
    leaves = [t.requires_grad_(True) for t in leaves]
    k, m = len(train), len(inputs)

    def fn(*ts):
        p = dict(zip(names[:k], ts[:k])) | buffers
        out, final = fused_forward(cell, p, dict(zip(names[k:k + m], ts[k:k + m])),
                                   dict(zip(names[k + m:], ts[k + m:])), check=False)  # fmt: skip
        return (out,) + tuple(final.values())

    ok = torch.autograd.gradcheck(fn, leaves, eps=1e-6, atol=1e-6, rtol=1e-5, fast_mode=True,
                                  raise_exception=False)  # fmt: skip
    return worst, bool(ok)


def check_cell(cell: Cell, use_torch=None) -> Row:
    """Every oracle on one cell. Without torch (``use_torch=False``, the default when torch
    is not installed) the NumPy paths run and what needs torch is listed in ``Row.not_run``:
    the torch forward, the autograd comparison, gradcheck and the torch.nn cells."""
    from .thirdparty import compare_with_target

    if use_torch is None:
        use_torch = available("torch")
    row = Row(cell.name)
    start = time.perf_counter()
    backends = ("numpy", "torch") if use_torch else ("numpy",)
    if not use_torch:
        row.not_run["the generated torch forward (fwd and sat: NumPy only)"] = "torch"
    for label, dtype, sat in (("fwd64", np.float64, False), ("fwd32", np.float32, False),
                              ("sat64", np.float64, True), ("sat32", np.float32, True)):  # fmt: skip
        e, zmax = forward_vs_mpmath(cell, dtype, saturated=sat, backends=backends)
        limit = LIMITS["fwd64" if dtype == np.float64 else "fwd32"]
        reach = f" |z|<={zmax:.0f}" if sat else ""
        if not e.normwise <= limit and e.beyond(dtype):  # not computable as written: say so
            text = f"beyond {np.dtype(dtype).name}: exact values reach {e.exact_max:.0e}{reach}"
            row.results[label] = (e, True, text)
        else:
            row.results[label] = (e, e.normwise <= limit, f"{e.normwise:.0e} {e.max_ulp:.0f}ulp{reach}")
    if use_torch:
        rel = backward_vs_autograd(cell)
        row.results["bwd/autograd"] = (rel, rel <= LIMITS["bwd_autograd"], f"{rel:.1e}")
    else:
        row.results["bwd/autograd"] = (None, True, "not run (torch)")
        row.not_run["bwd/autograd"] = "torch"
    fd, ok = backward_vs_finite_differences(cell, gradcheck=use_torch)
    if ok is None:
        row.not_run["gradcheck (bwd/fd: finite differences only)"] = "torch"
    note = {True: "", False: " gradcheck FAILED", None: " no gradcheck"}[ok]
    row.results["bwd/fd"] = (fd, fd <= LIMITS["bwd_fd"] and ok is not False, f"{fd:.1e}{note}")
    for layout in torch_layouts(cell):
        if not use_torch:
            row.results[layout.target] = (None, True, "not run (torch)")
            row.not_run[layout.target] = "torch"
            continue
        diffs = []
        for dtype in ("float64", "float32"):
            c = compare_with_target(cell, layout.name, dtype=dtype)
            diffs.append(max(c.outputs, c.state, c.d_inputs))
        equal = diffs[0] <= LIMITS["thirdparty"]["float64"] and diffs[1] <= LIMITS["thirdparty"]["float32"]
        ok = equal == layout.equivalent
        verdict = "equal" if equal else "differs"
        expect = "" if ok else (" (expected equal)" if layout.equivalent else " (expected to differ)")
        row.results[layout.target] = (diffs[0], ok, f"{verdict} {diffs[0]:.0e}/{diffs[1]:.0e}{expect}")
    row.seconds = time.perf_counter() - start
    return row


def torch_layouts(cell) -> list:
    """The spec's layouts for torch.nn cells (the catalog check's third-party oracles; the other
    frameworks' layouts are used by `check --impl` and the conformance report)."""
    from .thirdparty import TARGETS

    return [lay for lay in cell.spec.layouts if lay.target in TARGETS]


def _torch():
    from .extras import require

    return require("torch", "this check")


def _np(a):
    return a.detach().cpu().numpy() if hasattr(a, "detach") else np.asarray(a)
