"""The gradient-flow report: measured and derived, for every cell, as HTML, Markdown, PNG, JSON.

``build`` computes plain data (JSON-ready) from independent jobs (:func:`report_jobs`: a cell's
measurements, an exact result, a training run), run in parallel by :mod:`.jobs`; ``write``
renders it. Sections:

1. gradient norm against lag at initialisation, every cell (loss at the last step);
2. memory horizon and decay per cell and named initialisation;
3. singular values of the per-step and accumulated Jacobians;
4. per-gate saturation;
5. exact results: the closed-form Jacobian blocks, and the bounds they imply, compared with
   measurement (rnn_tanh: sigma_max(U) bound; lstm: forget-gate product against the full
   gradient; greff_nfg / lstm_nofg: the carousel; lstm: forget bias -> large);
6. learning on the adding and temporal-order problems, success against lag, and gradient flow
   before and after training.
"""

from __future__ import annotations

import base64
import html
import io
import json
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import gradflow as gf
from .cell import catalog, load
from .extras import require
from .inits import NAMED
from .report_folder import Target, install
from .report_folder import prepare as _prepare_folder
from .spec import display
from . import studies
from .studies import GREFF_FINDINGS, VANILLA


@dataclass
class Settings:
    quick: bool = False
    cells: list = field(default_factory=list)
    lags: int = 1000  # K: gradients from T = K + 1 steps
    hidden: int = 32
    input: int = 8
    batch: int = 8
    threshold: float = 1e-3
    spectra_steps: int = 200
    learn_cells: tuple = (("rnn_tanh", "torch_default"), ("lstm", "forget_bias_1"), ("gru", "torch_default"),
                          ("lstm", "chrono"))  # fmt: skip
    learn_T: dict = field(default_factory=lambda: {"adding": [10, 30, 100, 200], "order": [10, 30, 50, 70]})
    seeds: int = 3
    max_steps: int = 2000
    trained_T: int = 100  # lag of the before/after-training comparison
    # Greff's question: the vanilla LSTM, its eight variants and lstm, one initialisation, one lag a task
    greff_cells: tuple = (VANILLA, *GREFF_FINDINGS, "lstm")
    greff_init: str = "forget_bias_1"
    greff_T: dict = field(default_factory=lambda: {"adding": 100, "order": 50})
    greff_seeds: int = 5
    # Hochreiter's lags: (cell, init) at the lags of the 1997 paper
    long_cells: tuple = (("lstm", "chrono"), ("lstm", "forget_bias_1"), ("gru", "torch_default"))
    long_T: dict = field(default_factory=lambda: {"adding": [500, 1000], "order": [100, 200]})
    long_seeds: int = 3
    long_max_steps: int = 1200

    @classmethod
    def make(cls, cells=None, quick=False):
        s = cls(quick=quick, cells=list(cells or catalog()))
        if quick:
            s.lags, s.batch, s.spectra_steps = 200, 4, 100
            s.learn_T = {"adding": [10, 30], "order": [10, 30]}
            s.learn_cells = (("rnn_tanh", "torch_default"), ("lstm", "forget_bias_1"), ("gru", "torch_default"))
            s.seeds, s.max_steps, s.trained_T = 1, 600, 30
            s.greff_T, s.greff_seeds = {"adding": 30, "order": 30}, 1
            s.long_T = {}  # the full report's
        # Greff's comparison needs the vanilla cell; it covers the variants the report covers
        s.greff_cells = tuple(c for c in s.greff_cells if c in s.cells) if VANILLA in s.cells else ()
        return s


def _sizes(cell, st: Settings):
    base = {"input": st.input, "hidden": st.hidden, "proj": st.hidden // 2}
    return {k: base.get(k, st.hidden) for k in cell.ir.size_names}


def _sample_lags(K):
    """All lags up to 50, then about 60 log-spaced ones up to K (what the plots need)."""
    dense = np.arange(min(K, 50) + 1)
    sparse = np.unique(np.round(np.geomspace(51, max(K, 51), 60)).astype(int)) if K > 50 else []
    return sorted(set(dense.tolist()) | {int(k) for k in sparse if k <= K})


def _r(x, digits=4):
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return None if x is None else str(x)
    return float(f"{x:.{digits}g}")


# --------------------------------------------------------------------------- data


def require_extras() -> None:
    """The report trains cells (torch), draws plots (matplotlib) and limits its jobs' threads
    (threadpoolctl), and tests its comparisons (SciPy): all come with the ``report`` extra; a missing one is a
    MissingExtraError before anything is computed."""
    for module in ("torch", "matplotlib", "threadpoolctl", "scipy"):
        require(module, "lstm-verify report", extra="report")


def build(st: Settings, progress=True, workers=None, scheduler=None) -> dict:
    """The report's data. Its jobs (a cell's measurements, an exact result, a training run) are
    independent: they run in ``workers`` local processes (default: one a core; 1 runs them
    here) or on the Dask cluster at ``scheduler``, each on one thread, with the same results
    wherever they ran (:mod:`.jobs`)."""
    require_extras()
    from . import jobs as jb

    start = time.perf_counter()
    data: dict = {"settings": {k: v for k, v in st.__dict__.items()}, "flow": {}, "spectra": {},
                  "saturation": {}, "closed_forms": {}, "exact": {}, "learning": [], "trained": {},
                  "attention": {}, "bounds": {}, "theorems": {}, "notation": {}, "greff": [], "long_lag": []}  # fmt: skip
    data["settings"]["learn_cells"] = [list(x) for x in st.learn_cells]
    results = jb.run(report_jobs(st), workers=workers, scheduler=scheduler, progress=progress, desc="report")
    for name in st.cells:
        for section, value in results[("cell", name)].items():
            data[section][name] = value
    data["exact"] = {k: v for part in EXACT_PARTS for k, v in results[("exact", part)].items()}
    for experiment, runs in _runs(st).items():
        data[experiment] = [results[("learn", *run)] for run in runs]
    data["trained"] = {name: results[("trained", name)] for name, _ in _trained_cells(st)}
    data["seconds"] = round(time.perf_counter() - start, 1)
    return data


EXACT_PARTS = ("rnn_tanh_bound", "lstm_carousel", "carousel", "bound_sweep")


def _runs(st: Settings) -> dict[str, list[tuple]]:
    """The training runs of each experiment: (cell, init, task, T, seed, budget). ``learning``:
    success against lag for a few cells; ``greff``: Greff's variants at one lag a task;
    ``long_lag``: Hochreiter's lags."""
    return {
        "learning": [(c, i, task, T, seed, st.max_steps) for c, i in st.learn_cells for task, Ts in st.learn_T.items()
                     for T in Ts for seed in range(st.seeds)],
        "greff": [(c, st.greff_init, task, T, seed, st.max_steps) for c in st.greff_cells
                  for task, T in st.greff_T.items() for seed in range(st.greff_seeds)],
        "long_lag": [(c, i, task, T, seed, st.long_max_steps) for c, i in st.long_cells
                     for task, Ts in st.long_T.items() for T in Ts for seed in range(st.long_seeds)],
    }  # fmt: skip


def _trained_cells(st: Settings) -> list[tuple]:
    """(cell, the first initialisation named for it) for each cell that learns."""
    first: dict = {}
    for name, init in st.learn_cells:
        first.setdefault(name, init)
    return list(first.items())


def report_jobs(st: Settings) -> list:
    """The report's independent jobs, with their costs (about seconds on one core: a cell's
    measurements grow with the lags, a training run with its lag and steps)."""
    from .jobs import Job

    here = __name__
    out = [Job(("cell", name), f"{here}:cell_results", (name, st), 1 + st.lags / 200) for name in st.cells]
    out += [Job(("exact", part), f"{here}:exact_part", (part, st), 2 + st.lags / 200) for part in EXACT_PARTS]
    runs = dict.fromkeys(run for runs in _runs(st).values() for run in runs)  # a run two experiments share runs once
    out += [Job(("learn", *run), f"{here}:learn_result", (*run, st.hidden), 0.2 + run[3] * run[5] * 5e-5)
            for run in runs]  # fmt: skip
    out += [Job(("trained", name), f"{here}:trained_result", (name, init, st), 1 + st.trained_T * st.max_steps * 5e-5)
            for name, init in _trained_cells(st)]  # fmt: skip
    return out


def cell_results(name: str, st: Settings) -> dict:
    """One cell's measurements: section -> its value for the cell."""
    cell = load(name)
    sizes = _sizes(cell, st)
    lags = _sample_lags(st.lags)
    out: dict = {"flow": {}}
    for init in NAMED:
        p, x, s, _ = gf._problem(cell, sizes, st.lags + 1, st.batch, 0, init)
        f = gf.flow(cell, p, x, s, st.threshold, init=init)
        out["flow"][init] = {
            "decay": _r(f.decay), "horizon": f.horizon, "lags": lags,
            "total": [_r(f.total[k]) for k in lags],
            "states": {k: [_r(v[k]) for k in lags] for k, v in f.state_norms.items()},
            "inputs": [_r(f.input_norms[k]) for k in lags],
        }  # fmt: skip
    p, x, s, _ = gf._problem(cell, sizes, st.spectra_steps, st.batch, 0, "torch_default")
    sp = gf.spectra(cell, p, x, s)
    top = np.array(sp.step_top)
    out["spectra"] = {
        "step_top": {"min": _r(top.min()), "median": _r(float(np.median(top))), "max": _r(top.max())},
        "accumulated_top": {str(k): _r(v[0]) for k, v in sp.accumulated.items()},
        "accumulated": {str(k): [_r(x) for x in v[:8]] for k, v in sp.accumulated.items()},
    }  # fmt: skip
    out["saturation"] = {k: {kk: (_r(vv) if isinstance(vv, float) else vv) for kk, vv in v.items()}
                         for k, v in gf.saturation(cell, p, x, s).items()}  # fmt: skip
    if cell.ir.sets:
        out["attention"] = _attention(cell, p, x, s)
    from .bounds import summary, theorem

    b = summary(cell)
    out["bounds"] = {k: (_r(v) if isinstance(v, float) else v) for k, v in b.items()
                     if k in ("step_bound", "measured_step_norm", "step_tightness", "lag_bounds",
                              "measured_lag_norm", "lag_tightness", "carousel_lower_bounds", "steps",
                              "closed_forms", "extremes")}  # fmt: skip
    out["theorems"] = theorem(cell.ir).statements()
    from .derive import shown_blocks

    out["closed_forms"] = [
        {"of": of, "wrt": wrt + (" (the other vectors held fixed)" if local else ""), "text": text, "latex": latex}
        for local, of, wrt, text, latex in shown_blocks(cell.ir)
    ]
    from .derive import notation

    # the names these texts use that the spec implies but does not write (lin_h, z_h_in), defined
    out["notation"] = notation(cell.ir, [b["text"] for b in out["closed_forms"]] + out["theorems"] + [
        f"{f['d']}" for f in out["bounds"].get("closed_forms", {}).values()])
    return out


def learn_result(c: str, init: str, task: str, T: int, seed: int, budget: int, hidden: int) -> dict:
    """One training run (:func:`.tasks.train`) with at most ``budget`` updates."""
    from .tasks import train

    return train(load(c), task, T, seed, init, hidden=hidden, max_steps=budget).as_dict() | {"budget": budget}


def _attention(cell, p, x, s) -> dict:
    """How a cell's softmaxes spread their weight at initialisation: the mean largest weight
    (1/setsum) and the mean entropy as a fraction of log L (1: uniform over the L members)."""
    from .regimes import softmaxes

    values = gf.node_values(cell, p, x, s)
    out = {}
    for m, ssum, _ in softmaxes(cell.ir):
        shifted = values[cell.ir.node_map[ssum].args[0]]  # exp(e - max), (T, B, L, n)
        w = shifted / values[ssum][:, :, None]
        L = w.shape[2]
        with np.errstate(divide="ignore", invalid="ignore"):
            entropy = -np.where(w > 0, w * np.log(w), 0.0).sum(axis=2)
        out[m.removeprefix("setmax_")] = {"members": L, "mean_max_weight": _r(float(w.max(axis=2).mean())),
                                          "entropy_over_log_L": _r(float(entropy.mean() / np.log(L))) if L > 1 else 0.0}
    return out


def exact_part(part: str, st: Settings) -> dict:
    """Bounds and exact identities from the closed forms, each next to its measurement: one of
    EXACT_PARTS, as {its keys in data["exact"]: value}."""
    return {"rnn_tanh_bound": _rnn_tanh_bound, "lstm_carousel": _lstm_carousel, "carousel": _carousel,
            "bound_sweep": lambda st: {"bound_sweep": _bound_sweep(st)}}[part](st)  # fmt: skip


def _rnn_tanh_bound(st: Settings) -> dict:
    K = min(st.lags, 200)
    # rnn_tanh: ||dh_T/dh_{T-k}|| <= (gamma sigma_max(U))^k with gamma = max tanh' = 1
    cell = load("rnn_tanh")
    rows = []
    for scale in (0.5, 1.0, 2.0, 4.0):
        p, x, s, _ = gf._problem(cell, _sizes(cell, st), K + 1, st.batch, 0, "torch_default")
        p = dict(p) | {"W_h_h": p["W_h_h"] * scale}
        sigma = float(np.linalg.svd(p["W_h_h"], compute_uv=False)[0])
        f = gf.flow(cell, p, x, s, st.threshold)
        worst = max(f.total[k] / sigma**k for k in range(1, K + 1) if sigma**k > 1e-300)
        rows.append({"scale": scale, "sigma_max": _r(sigma), "bound_per_step": _r(sigma),
                     "vanishing_guaranteed": sigma < 1, "measured_decay": _r(f.decay),
                     "max_measured_over_bound": _r(worst)})  # fmt: skip
    return {"rnn_tanh_bound": rows}


def _lstm_carousel(st: Settings) -> dict:
    out = {}
    K = min(st.lags, 200)
    # lstm: the carousel alone gives dc_T/dc_{T-k} = prod diag(f); recurrent weights add paths
    cell = load("lstm")
    rows = []
    for init in ("torch_default", "forget_bias_1"):
        p, x, s, _ = gf._problem(cell, _sizes(cell, st), K + 1, st.batch, 0, init)
        f = gf.flow(cell, p, x, s, st.threshold)
        fv = gf.node_values(cell, p, x, s)["f"]
        carousel = float(np.exp(np.log(fv).mean()))  # geometric mean of f: the CEC-only factor
        J = gf.step_jacobians(cell, p, {k: v[:50] for k, v in x.items()}, s)
        H = p["W_i_h"].shape[0]
        diag_err = max(float(np.abs(J[t][H:, H:] - np.diag(fv[t, 0])).max()) for t in range(len(J)))
        rows.append({"init": init, "forget_gate_mean": _r(float(fv.mean())), "carousel_decay": _r(carousel),
                     "measured_decay": _r(f.decay), "c_block_equals_diag_f_max_error": diag_err})  # fmt: skip
    out["lstm_carousel"] = rows
    # forget bias -> large: the cell-to-cell product approaches the identity
    sweep = []
    for b in (0, 1, 2, 3, 5, 10, 20):
        p, x, s, _ = gf._problem(cell, _sizes(cell, st), K + 1, st.batch, 0, "torch_default")
        p = dict(p) | {"b_f": p["b_f"] + b}
        f = gf.flow(cell, p, x, s, st.threshold)
        fv = gf.node_values(cell, p, x, s)["f"]
        sweep.append({"forget_bias": b, "carousel_decay": _r(float(np.exp(np.log(fv).mean()))),
                      "measured_decay": _r(f.decay), "horizon": f.horizon,
                      "c_gradient_at_K": _r(f.state_norms["c"][K] / max(f.state_norms["c"][1], 1e-300))})  # fmt: skip
    out["lstm_forget_bias"] = sweep
    return out


def _carousel(st: Settings) -> dict:
    # the carousel exactly: greff_nfg with p_i = 0, and lstm_nofg: dc'/dc = I at every step
    rows = []
    for name, zero in (("greff_nfg", ("p_i",)), ("lstm_nofg", ())):
        cell = load(name)
        p, x, s, _ = gf._problem(cell, _sizes(cell, st), 100, 1, 0, "torch_default")
        p = dict(p) | {k: np.zeros_like(p[k]) for k in zero}
        J = gf.step_jacobians(cell, p, x, s)
        H = st.hidden
        P = np.eye(H)
        for j in J[::-1]:
            P = P @ j[H:, H:]
        rows.append({"cell": name, "zeroed": list(zero), "steps": len(J),
                     "max_step_block_minus_identity": float(max(np.abs(j[H:, H:] - np.eye(H)).max() for j in J)),
                     "max_product_minus_identity": float(np.abs(P - np.eye(H)).max())})  # fmt: skip
    cell = load("greff_nfg")
    p, x, s, _ = gf._problem(cell, _sizes(cell, st), 100, 1, 0, "torch_default")
    J = gf.step_jacobians(cell, p, x, s)
    H = st.hidden
    rows.append({"cell": "greff_nfg", "zeroed": [], "steps": len(J),
                 "max_step_block_minus_identity": float(max(np.abs(j[H:, H:] - np.eye(H)).max() for j in J)),
                 "note": "the input gate's peephole p_i*c adds g*i*(1-i)*p_i to the diagonal"})  # fmt: skip
    return {"carousel": rows}


SWEEP_SIGMAS = (0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0)
SWEEP_CELLS = ("rnn_tanh", "lstm", "lstm_peephole", "gru", "mgu", "mut2", "layernorm_lstm", "slstm")  # a family each


def _recurrent(cell) -> list[str]:
    """The weights that read a state: the recurrent blocks."""
    from .ir import Affine

    states = {s for s, _ in cell.ir.states}
    return [w for n in cell.ir.nodes if isinstance(n, Affine) for w, a in n.terms if a in states]


def _bound_sweep(st: Settings) -> dict:
    """Per-step bound and measured decay per step with the recurrent blocks scaled so that their
    stacked sigma_max is each of SWEEP_SIGMAS, and where the named initialisations fall, for the
    cells of SWEEP_CELLS (one per family) that the report covers."""
    from .bounds import step_bound

    out = {}
    K = min(st.lags, 200)
    for name in [c for c in SWEEP_CELLS if c in st.cells]:  # the families the report covers
        cell = load(name)
        sizes = _sizes(cell, st)
        rec = _recurrent(cell)
        rows, inits = [], []
        for init in NAMED:
            p, x, s, _ = gf._problem(cell, sizes, K + 1, st.batch, 0, init)
            X = float(max(np.abs(v).max() for v in x.values()))
            ranges = {k: cell.spec.state_range(k) for k, _ in cell.ir.states}
            sigma = float(np.linalg.norm(np.concatenate([p[w] for w in rec], axis=0), 2))
            if init == "torch_default":
                for target in SWEEP_SIGMAS:
                    q = dict(p) | {w: p[w] * (target / sigma) for w in rec}
                    f = gf.flow(cell, q, x, s, st.threshold)
                    rows.append({"sigma": target, "bound": _r(step_bound(cell, q, X, ranges).bound),
                                 "measured_decay": _r(f.decay)})  # fmt: skip
            f = gf.flow(cell, p, x, s, st.threshold)
            inits.append({"init": init, "sigma": _r(sigma), "bound": _r(step_bound(cell, p, X, ranges).bound),
                          "measured_decay": _r(f.decay)})  # fmt: skip
        out[name] = {"sweep": rows, "inits": inits, "input_bound": "max |x| of the sequences"}
    return out


def trained_result(name: str, init: str, st: Settings) -> dict:
    """Gradient flow of one cell at initialisation and after training on the adding problem at
    trained_T."""
    torch = require("torch", "lstm-verify report", extra="report")

    from .tasks import adding, train

    T = st.trained_T
    cell = load(name)
    result, layer = train(cell, "adding", T, 0, init, hidden=st.hidden, max_steps=st.max_steps, return_model=True)
    x, _ = adding(T, st.batch, np.random.default_rng(1))
    xs = {cell.ir.inputs[0][0]: x.astype(np.float64)}
    curves = {}
    for label, params in (("init", cell.init_params(sizes=_sizes(cell, st) | {"input": 2}, init=init, seed=0,
                                                    t_max=T)),
                          ("trained", {k: v.detach().double().numpy() for k, v in layer.param_dict().items()})):  # fmt: skip
        s = {k: np.asarray(v, dtype=float) for k, v in cell.zero_state(st.batch, params).items()}
        f = gf.flow(cell, params, xs, s, st.threshold)
        curves[label] = {"total": [_r(v) for v in f.total], "decay": _r(f.decay),
                         "lag_T_minus_1": _r(f.total[T - 1])}  # fmt: skip
    torch.set_flush_denormal(False)
    return {"init": init, "T": T, "solved": result.solved, "steps": result.steps, **curves}


# --------------------------------------------------------------------------- rendering


# families of the catalog, each drawn in a panel of its own; a cell's colour is its place in its
# family (tab10), the same in every figure and every report
FAMILIES = (
    ("RNN", ("rnn_tanh", "rnn_relu", "indrnn", "clockwork_rnn")),
    ("LSTM and variants", ("lstm", "lstm_peephole", "lstm_cifg", "lstm_nofg", "lstm_proj", "lstm_depth_gated",
                           "grid_lstm", "multiplicative_lstm", "layernorm_lstm", "rmsnorm_lstm")),
    ("Greff et al.'s eight", ("greff_nig", "greff_nfg", "greff_nog", "greff_niaf", "greff_noaf", "greff_np",
                              "greff_cifg", "greff_fgr")),
    ("GRU family", ("gru", "gru_cho", "mgu", "mgu_flax", "mut1", "mut2", "mut3", "min_gru")),
    ("Others", ("slstm", "slstm_expf", "slstm_unstabilized", "min_lstm", "sru", "attention_decoder")),
)  # fmt: skip
NORMAL = float(np.finfo(np.float64).tiny)  # below this a gradient norm is subnormal: precision is lost


def families(cells) -> list[tuple[str, list[str]]]:
    """(family, its cells among ``cells``), in FAMILIES' order; cells outside the catalog's
    families are Others."""
    known = {c for _, members in FAMILIES for c in members}
    out = []
    for name, members in FAMILIES:
        chosen = [c for c in members if c in cells]
        if name == "Others":
            chosen += sorted(c for c in cells if c not in known)
        if chosen:
            out.append((name, chosen))
    return out


def colour(cell: str, cells=()) -> str:
    """The cell's colour in every figure: its place in its family, in tab10's colours."""
    for _, members in families(set(cells) | {cell}):
        if cell in members:
            return f"C{members.index(cell) % 10}"
    raise AssertionError(cell)  # pragma: no cover - families() places every cell


def _ordered(data) -> list[str]:
    """The report's cells by family, in every figure and table."""
    return [c for _, members in families(list(data["flow"])) for c in members]


def _cut(values) -> tuple[np.ndarray, int | None]:
    """A curve's values as floats (None as gaps), cut from the first that leaves float64's normal
    range (below 2.2e-308, where precision is lost, down to 0); and the index of that cut, or None."""
    y = np.array([v if isinstance(v, (int, float)) else np.nan for v in values], dtype=float)
    low = np.flatnonzero(np.abs(y) < NORMAL)
    if not low.size:
        return y, None
    y[low[0]:] = np.nan
    return y, int(low[0])


def _family_panels(plt, n):
    cols = min(n, 3)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.9 * rows), sharex=True, sharey=True, squeeze=False)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    return fig, axes.ravel()[:n]


def _figures(data) -> dict:
    matplotlib = require("matplotlib", "lstm-verify report", extra="report")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figs = {}
    cells = _ordered(data)

    def save(name, fig):
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
        plt.close(fig)
        figs[name] = buf.getvalue()

    from matplotlib.ticker import LogLocator

    grouped = families(cells)
    threshold = data["settings"]["threshold"]
    fig, axes = _family_panels(plt, len(grouped))
    for ax, (fam, members) in zip(axes, grouped):
        for c in members:
            d = data["flow"][c]["torch_default"]
            y, cut = _cut(d["total"])
            ax.semilogy(d["lags"], y, label=c, color=colour(c, cells), lw=1.4)
            if cut is not None and cut > 0:  # where the curve leaves float64's normal range
                ax.semilogy([d["lags"][cut - 1]], [y[cut - 1]], marker="x", color=colour(c, cells), ms=7, mew=2)
        ax.axhline(threshold, color="grey", lw=0.8, ls=":")
        ax.set_title(fam, fontsize=10)
        ax.yaxis.set_major_locator(LogLocator(base=1e50))  # a tick every 50 decades
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=7, loc="lower left")
    axes[0].set_ylim(bottom=NORMAL / 10)
    fig.supxlabel("lag $k$ (steps between the loss and the state)")
    fig.supylabel(r"$\|\partial L/\partial s_{T-k}\| \,/\, \|\partial L/\partial s_T\|$")
    fig.suptitle(f"Gradient norm against lag at initialisation (torch default), float64. Dotted: the horizon's "
                 f"threshold {threshold:g}; x: the curve leaves float64's normal range (< 2.2e-308) there")  # fmt: skip
    fig.tight_layout()
    save("gradflow.png", fig)

    key = [c for c in ("rnn_tanh", "lstm", "gru", "mgu", "lstm_peephole", "clockwork_rnn") if c in cells] or cells[:4]
    fig, axes = plt.subplots(2, 3, figsize=(12, 7.5), sharex=True, sharey=True)
    for ax, c in zip(axes.ravel(), key):
        curves = {}
        for j, init in enumerate(NAMED):
            d = data["flow"][c][init]
            y, _ = _cut(d["total"])
            curves[init] = y
            ax.semilogy(d["lags"], y, label=init, color=f"C{j}", ls=["-", "--", "-.", ":", (0, (1, 3))][j % 5],
                        lw=2.4 - 0.35 * j)  # fmt: skip
        # initialisations that give the same curve hide each other: say so
        classes: list[list[str]] = []
        for init in NAMED:
            home = next((k for k in classes if np.allclose(curves[k[0]], curves[init], rtol=1e-9, atol=0,
                                                           equal_nan=True)), None)  # fmt: skip
            if home is None:
                classes.append([init])
            else:
                home.append(init)
        same = "; ".join(" = ".join(k) for k in classes if len(k) > 1)
        title = c if not same else c + "\n" + "\n".join(textwrap.wrap(f"(same curve: {same})", 48))
        ax.set_title(title, fontsize=9)
        ax.yaxis.set_major_locator(LogLocator(base=1e50))
        ax.grid(True, alpha=0.3)
    for ax in axes.ravel()[len(key):]:
        ax.axis("off")
    axes[0, 0].legend(fontsize=8)
    fig.supxlabel("lag k")
    fig.supylabel("normalised gradient norm")
    fig.suptitle("How the initialisation changes gradient flow")
    fig.tight_layout()
    save("gradflow_inits.png", fig)

    rows = [c for _, members in grouped for c in members]  # by family
    H = np.array([[data["flow"][c][i]["horizon"] if data["flow"][c][i]["horizon"] is not None
                   else np.nan for i in NAMED] for c in rows], dtype=float)  # fmt: skip
    K = data["settings"]["lags"]
    fig, ax = plt.subplots(figsize=(7.5, 0.32 * len(rows) + 1.5))
    shade = np.log10(np.nan_to_num(H, nan=K) + 1)
    im = ax.imshow(shade, aspect="auto", cmap="viridis")
    ax.set_xticks(range(len(NAMED)), NAMED, rotation=20)
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    start = 0
    for fam, members in grouped:  # a line between families, each named at its right
        if start:
            ax.axhline(start - 0.5, color="white", lw=2)
        ax.annotate(fam, (len(NAMED) - 0.4, start + (len(members) - 1) / 2), fontsize=8, va="center",
                    annotation_clip=False)  # fmt: skip
        start += len(members)
    for r in range(len(rows)):
        for c in range(len(NAMED)):
            v = H[r, c]
            ax.text(c, r, f">{K}" if np.isnan(v) else f"{int(v)}", ha="center", va="center", fontsize=7,
                    color="black" if im.norm(shade[r, c]) > 0.6 else "white")  # fmt: skip
    ax.set_title(f"Memory horizon: first lag with gradient < {data['settings']['threshold']:g} of lag 0")
    fig.colorbar(im, ax=ax, label="log10(horizon + 1)", pad=0.25)
    save("horizon.png", fig)

    fig, axes = _family_panels(plt, len(grouped))
    for ax, (fam, members) in zip(axes, grouped):
        for c in members:
            acc = data["spectra"][c]["accumulated_top"]
            ks = sorted(int(k) for k in acc)
            y, _ = _cut([acc[str(k)] for k in ks])
            ax.loglog(ks, y, marker=".", color=colour(c, cells), label=c)
        ax.set_title(fam, fontsize=10)
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=7, loc="lower left")
    fig.supxlabel("lag $k$")
    fig.supylabel(r"largest singular value of $J_{T-1} \cdots J_{T-k}$")
    fig.suptitle("Accumulated Jacobian at initialisation (torch default)")
    fig.tight_layout()
    save("spectra.png", fig)

    fig, a2 = plt.subplots(figsize=(8, 0.3 * len(cells) + 1.6), layout="constrained")
    tops = [data["spectra"][c]["step_top"] for c in cells]
    y = np.arange(len(cells))
    a2.hlines(y, [t["min"] for t in tops], [t["max"] for t in tops], color=[colour(c, cells) for c in cells])
    a2.plot([t["median"] for t in tops], y, "o", color="black", ms=4, label="median over the steps")
    a2.axvline(1.0, color="red", lw=0.8, ls=":", label="1: neither growth nor decay")
    a2.set_xscale("log")
    a2.set_yticks(y, cells, fontsize=8)
    a2.invert_yaxis()  # the tables' order, top to bottom
    a2.set_xlabel("largest singular value of the per-step Jacobian (min to max over the steps)")
    a2.set_title("Per-step Jacobian at initialisation (torch default)")
    a2.legend(fontsize=8, loc="lower right")
    save("spectra_steps.png", fig)

    learning = data["learning"] + data.get("long_lag", [])
    if learning:
        tasks = sorted({r["task"] for r in learning})
        fig, axes = plt.subplots(1, len(tasks), figsize=(6 * len(tasks), 4.2), squeeze=False)
        for ax, task in zip(axes[0], tasks):
            runs = [r for r in learning if r["task"] == task]
            for j, (c, init) in enumerate(sorted({(r["cell"], r["init"]) for r in runs})):
                Ts = sorted({r["T"] for r in runs if (r["cell"], r["init"]) == (c, init)})
                rate = [np.mean([r["solved"] for r in runs if r["cell"] == c and r["init"] == init and r["T"] == T])
                        for T in Ts]  # fmt: skip
                # lines that coincide stay visible by their markers' sizes, not by moved values
                ax.semilogx(Ts, rate, marker="osD^v"[j % 5], ms=11 - 2 * (j % 4), fillstyle="none",
                            ls=["-", "--", "-.", ":"][j % 4], label=f"{c} ({init})", alpha=0.85)  # fmt: skip
            every = sorted({r["T"] for r in runs})
            ax.set_xticks(every, [str(T) for T in every])
            ax.minorticks_off()
            ax.set_ylim(-0.05, 1.05)
            ax.set_xlabel("lag T (sequence length)")
            ax.set_ylabel("fraction of seeds solved")
            ax.set_title({"adding": "Adding problem (MSE < 0.01)", "order": "Temporal order (accuracy >= 95%)"}[task])
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=8)
        save("learning.png", fig)

    greff = data.get("greff", [])
    if greff:
        tasks = sorted({r["task"] for r in greff})
        order = list(data["settings"]["greff_cells"])
        fig, axes = plt.subplots(1, len(tasks), figsize=(5.5 * len(tasks), 0.42 * len(order) + 1.6), sharey=True,
                                 squeeze=False, layout="constrained")  # fmt: skip
        y = np.arange(len(order))
        for ax, task in zip(axes[0], tasks):
            for j, c in enumerate(order):
                rs = [r for r in greff if r["cell"] == c and r["task"] == task]
                k = sum(r["solved"] for r in rs)
                lo, hi = studies.wilson(k, len(rs))
                ax.errorbar(k / len(rs), j, xerr=[[k / len(rs) - lo], [hi - k / len(rs)]], fmt="o", capsize=3,
                            color=colour(c, order + cells))  # fmt: skip
                ax.annotate(f"{k}/{len(rs)}", (1.04, j), va="center", fontsize=8, annotation_clip=False)
            base = [r for r in greff if r["cell"] == VANILLA and r["task"] == task]
            if base:
                ax.axvline(np.mean([r["solved"] for r in base]), color="grey", ls=":", lw=1,
                           label=f"{VANILLA} (vanilla)")  # fmt: skip
                ax.legend(fontsize=8, loc="best")
            ax.set_xlim(-0.05, 1.12)
            ax.set_xlabel("fraction of seeds solved (95% Wilson interval)")
            ax.set_title(f"{task}, T = {rs[0]['T'] if rs else '?'}")
            ax.grid(True, axis="x", alpha=0.3)
        axes[0][0].set_yticks(y, order, fontsize=8)
        axes[0][0].invert_yaxis()
        fig.suptitle(f"Greff's variants against the vanilla LSTM ({data['settings']['greff_init']})")
        save("greff.png", fig)

    trained = data["trained"]
    if trained:
        fig, ax = plt.subplots(figsize=(8, 5))
        for i, (c, d) in enumerate(trained.items()):
            for label, ls in (("init", ":"), ("trained", "-")):
                y = np.array([v if isinstance(v, (int, float)) and v else np.nan for v in d[label]["total"]], dtype=float)
                ax.semilogy(range(len(y)), y, ls=ls, color=f"C{i}", label=f"{c} ({label})")
        ax.set_xlabel("lag k")
        ax.set_ylabel("normalised gradient norm")
        ax.set_title(f"Before and after training on the adding problem, T = {next(iter(trained.values()))['T']}")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        save("before_after.png", fig)

    sweep = data["exact"]["lstm_forget_bias"]
    swept = data["exact"].get("bound_sweep", {})
    if swept:
        cols = min(4, len(swept))
        rows = -(-len(swept) // cols)
        fig, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 3.8 * rows), squeeze=False, layout="constrained")
        for ax in axes.flat[len(swept) :]:
            ax.set_visible(False)
        for ax, (c, d) in zip(axes.flat, swept.items()):
            sig = [r["sigma"] for r in d["sweep"]]
            ax.semilogy(sig, [r["bound"] for r in d["sweep"]], "o-", label="per-step bound")
            ax.semilogy(sig, [r["measured_decay"] for r in d["sweep"]], "s-", label="measured decay per step")
            ax.axhline(1.0, color="grey", lw=0.8, ls=":")
            safe = [r["sigma"] for r in d["sweep"] if r["bound"] < 1]
            if safe:
                ax.axvspan(min(sig), max(safe), color="tab:green", alpha=0.12, label="vanishing guaranteed")
            at: dict = {}  # initialisations that land on one point share one label
            for r in d["inits"]:
                at.setdefault((r["sigma"], r["measured_decay"]), []).append(r["init"])
            for k, ((x, y), names) in enumerate(sorted(at.items())):
                ax.plot(x, y, "k^", ms=5)
                ax.annotate(", ".join(names), (x, y), fontsize=7, xytext=(3, 3 + 9 * (k % 2)),
                            textcoords="offset points")  # fmt: skip
            ax.set_xlabel("sigma_max of the recurrent blocks")
            ax.set_title(c)
        axes[0][0].legend(fontsize=8)
        fig.suptitle("Per-step Jacobian bound against the measured decay (torch default scaled; inits marked)")
        save("bounds.png", fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    b = [r["forget_bias"] for r in sweep]
    ax.plot(b, [r["carousel_decay"] for r in sweep], "o-", label="forget-gate product (geometric mean of f)")
    ax.plot(b, [r["measured_decay"] for r in sweep], "s-", label="measured decay of the full gradient")
    ax.axhline(1.0, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("added forget-gate bias")
    ax.set_ylabel("factor per step")
    ax.set_title("lstm: forget bias -> large approaches the constant error carousel")
    ax.legend(fontsize=8)
    ax.grid(True, alpha=0.3)
    save("forget_bias.png", fig)
    return figs


def _tables(data) -> list:
    """(where, title, header, rows) for every table in the report: ``where`` is the figure it
    follows, or the key of the section (SECTIONS) it ends."""
    cells = _ordered(data)
    K = data["settings"]["lags"]
    t = []
    t.append(("horizon.png", "Memory horizon and decay per step, by initialisation", ["cell"] + [f"{i}: horizon / decay" for i in NAMED],
              [[c] + [f"{d['horizon'] if d['horizon'] is not None else '>' + str(K)} / {d['decay']}"
                      for d in (data['flow'][c][i] for i in NAMED)] for c in cells]))  # fmt: skip
    t.append(("spectra_steps.png", "Jacobian singular values (torch default)", ["cell", "per-step max sigma (min / median / max)",
              "accumulated sigma_max at lag 10", "at lag 100"],
              [[c, "{min} / {median} / {max}".format(**data["spectra"][c]["step_top"]),
                data["spectra"][c]["accumulated_top"].get("10"), data["spectra"][c]["accumulated_top"].get("100")]
               for c in cells]))  # fmt: skip
    sat_rows = []
    for c in cells:
        parts = []
        for g, v in data["saturation"][c].items():
            if v["kind"] == "tanh":
                parts.append(f"{display(g)}: |.|>0.95 {v['saturated']:.0%}")
            else:
                parts.append(f"{display(g)}: <0.05 {v['below']:.0%}, >0.95 {v['above']:.0%}, mean {v['mean']:.2f}")
        sat_rows.append([c, "; ".join(parts) or "-"])
    t.append(("jacobian", "Gate saturation at initialisation (fraction of unit-steps)", ["cell", "gates"], sat_rows))
    compared = [c for c in ("lstm", "layernorm_lstm", "rmsnorm_lstm", "attention_decoder") if c in cells]
    if len(compared) > 1 and "lstm" in compared:
        def hz(c, i):
            h = data["flow"][c][i]["horizon"]
            return h if h is not None else f">{K}"

        t.append(("reach", "Normalisation and attention against the LSTM: memory horizon by initialisation",
                  ["init"] + compared, [[i] + [hz(c, i) for c in compared] for i in NAMED]))  # fmt: skip
    attention = data.get("attention", {})
    if attention:
        t.append(("jacobian", "Attention weights at initialisation (torch default)",
                  ["cell", "softmax", "members L", "mean largest weight", "entropy / log L"],
                  [[c, k, v["members"], v["mean_max_weight"], v["entropy_over_log_L"]]
                   for c, d in attention.items() for k, v in d.items()]))  # fmt: skip
    bounds = data.get("bounds", {})
    if bounds:
        t.append(("exact", "Per-step gradient bound at initialisation (torch default, the sizes of lstm-verify check, |x| <= 1, "
                  "states in the spec's ranges)", ["cell", "bound on ||ds'/ds||", "measured", "measured / bound",
                  "bound at lag 10", "measured", "measured / bound", "along the carousel alone, at least",
                  "self path in closed form (bias ranges, infinity norms, X = 1)",
                  "measured / bound, weights x 4", "measured / bound, saturated"],
                  [[c, b["step_bound"], b["measured_step_norm"], b["step_tightness"], f"{b['lag_bounds'][-1]:.3g}",
                    b["measured_lag_norm"], b["lag_tightness"],
                    ", ".join(f"{k}: {v:.3g}" for k, v in b["carousel_lower_bounds"].items()) or "-",
                    ", ".join(f"{f['d']} in [{f['low_value']:.3g}, {f['high_value']:.3g}]"
                              for f in b.get("closed_forms", {}).values()) or "-"] +
                   [_r(b["extremes"][k]["step_tightness"]) for k in ("large weights", "saturated")]
                   for c, b in bounds.items()]))  # fmt: skip
    for c, d in data["exact"].get("bound_sweep", {}).items():
        t.append(("bounds.png", f"{c}: per-step bound against the measured decay, torch default with the recurrent blocks scaled "
                  "to sigma_max, and the named initialisations",
                  ["weights", "sigma_max of the recurrent blocks", "bound on ||ds'/ds|| per step",
                   "vanishing guaranteed", "measured decay per step"],
                  [["scaled", r["sigma"], f"{r['bound']:.3g}", "yes" if r["bound"] < 1 else "no", r["measured_decay"]]
                   for r in d["sweep"]] +
                  [[r["init"], r["sigma"], f"{r['bound']:.3g}", "yes" if r["bound"] < 1 else "no", r["measured_decay"]]
                   for r in d["inits"]]))  # fmt: skip
    ex = data["exact"]
    t.append(("exact", "rnn_tanh: measured decay against the bound (gamma sigma_max(U))^k, gamma = 1",
              ["U scaled by", "sigma_max(U)", "vanishing guaranteed", "measured decay", "max over k of measured / bound"],
              [[r["scale"], r["sigma_max"], r["vanishing_guaranteed"], r["measured_decay"], r["max_measured_over_bound"]]
               for r in ex["rnn_tanh_bound"]]))  # fmt: skip
    t.append(("forget_bias.png", "lstm: forget-gate product against the measured decay",
              ["init", "mean f", "carousel factor (geomean f)", "measured decay", "max |dc'/dc - diag(f)|"],
              [[r["init"], r["forget_gate_mean"], r["carousel_decay"], r["measured_decay"],
                f"{r['c_block_equals_diag_f_max_error']:.1e}"] for r in ex["lstm_carousel"]]))  # fmt: skip
    t.append(("forget_bias.png", "lstm: forget bias sweep", ["added b_f", "carousel factor", "measured decay", "horizon",
              f"c-gradient at lag {min(K, 200)} / lag 1"],
              [[r["forget_bias"], r["carousel_decay"], r["measured_decay"],
                r["horizon"] if r["horizon"] is not None else f">{K}", r["c_gradient_at_K"]] for r in ex["lstm_forget_bias"]]))  # fmt: skip
    t.append(("exact", "The constant error carousel, exactly", ["cell", "zeroed", "steps", "max |dc'/dc - I| per step",
              "max |product - I|"],
              [[r["cell"], ", ".join(r["zeroed"]) or "-", r["steps"], f"{r['max_step_block_minus_identity']:.3g}",
                f"{r['max_product_minus_identity']:.3g}" if "max_product_minus_identity" in r else r.get("note", "")]
               for r in ex["carousel"]]))  # fmt: skip
    if data["learning"]:
        runs = data["learning"]
        groups = sorted({(r["cell"], r["init"], r["task"]) for r in runs})
        rows = []
        for c, init, task in groups:
            for T in sorted({r["T"] for r in runs if r["task"] == task}):
                rs = [r for r in runs if (r["cell"], r["init"], r["task"], r["T"]) == (c, init, task, T)]
                if rs:
                    rows.append([task, f"{c} ({init})", T, f"{sum(r['solved'] for r in rs)}/{len(rs)}",
                                 ", ".join(str(r["steps"]) for r in rs),
                                 ", ".join(f"{r['metric']:.3g}" for r in rs), f"{sum(r['seconds'] for r in rs):.0f} s"])  # fmt: skip
        t.append(("learning.png", "Learning: success against lag (seeds 0..n-1)",
                  ["task", "cell (init)", "T", "solved", "updates per seed", "test MSE / accuracy", "wall time"], rows))
    if data.get("long_lag"):
        t.append(("learning.png", "Hochreiter's lags: success at lags of 100 to 1000 steps (seeds 0..n-1)",
                  ["task", "cell (init)", "T", "solved", "95% interval", "updates per seed (budget)",
                   "test MSE / accuracy", "wall time per run", "wall time, all seeds"],
                  [[g["task"], f"{g['cell']} ({g['init']})", g["T"], f"{g['solved']}/{g['runs']}", _ci(g["ci"]),
                    ", ".join(map(str, g["updates"])) + f" ({_budget(data['long_lag'])})",
                    ", ".join(f"{m:.3g}" for m in g["metrics"]), f"{g['seconds'] / g['runs']:.0f} s",
                    f"{g['seconds']:.0f} s"] for g in studies.summary(data["long_lag"])]))  # fmt: skip
    if data.get("greff"):
        t.append(("greff.png", *_greff_table(data)))
    if data["trained"]:
        t.append(("before_after.png", f"Gradient at lag T-1 relative to lag 0, before and after training (adding, T = {data['settings']['trained_T']})",
                  ["cell", "solved", "at init", "after training", "decay at init", "decay after"],
                  [[c, d["solved"], d["init"]["lag_T_minus_1"], d["trained"]["lag_T_minus_1"], d["init"]["decay"],
                    d["trained"]["decay"]] for c, d in data["trained"].items()]))  # fmt: skip
    return t


def _ci(ci) -> str:
    return f"[{ci[0]:.2f}, {ci[1]:.2f}]"


def _budget(runs) -> str:
    return "/".join(str(b) for b in sorted({r["budget"] for r in runs}))


def _greff_table(data) -> tuple:
    """Greff's vanilla LSTM, each variant against it, and lstm: per task the success rate, its
    interval, the median updates until solved and the tests' p-values; the verdict."""
    runs = data["greff"]
    budget = max(r["budget"] for r in runs)
    tasks = sorted({r["task"] for r in runs})
    lag = {r["task"]: r["T"] for r in runs}
    verdicts = {v["cell"]: v for v in studies.greff(runs, budget)}
    header = ["cell", "change", "Greff et al. 2015"]
    for task in tasks:
        header += [f"{task}, T = {lag[task]}: solved", "95% interval", "median updates", "p: success / updates"]
    header.append("verdict")
    rows = []
    for c in data["settings"]["greff_cells"]:
        change, found = ("vanilla LSTM (peepholes)", "the baseline") if c == VANILLA else (
            GREFF_FINDINGS[c][0], GREFF_FINDINGS[c][2]) if c in GREFF_FINDINGS else ("lstm: greff_np's function", "-")
        row = [c, change, found]
        for task in tasks:
            mine = [r for r in runs if r["cell"] == c and r["task"] == task]
            p = studies.compare(mine, [r for r in runs if r["cell"] == VANILLA and r["task"] == task], budget)
            tests = "-" if c == VANILLA else f"{p['p_success']:.2g} / {p['p_updates']:.2g}"
            row += [f"{p['solved']}/{p['runs']}", _ci(p["ci"]), f"{p['median_updates']:.0f}", tests]
        row.append(verdicts[c]["verdict"] if c in verdicts else "-")
        rows.append(row)
    return (f"Greff's question: each variant against the vanilla LSTM ({data['settings']['greff_init']}, "
            f"budget {budget} updates; an unsolved run counts as {budget + 1} updates)", header, rows)


def _md_table(title, header, rows):
    cell = lambda x: str(x).replace("|", "\\|")
    out = [f"### {title}", "", "| " + " | ".join(cell(x) for x in header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(cell(x) for x in r) + " |" for r in rows]
    return "\n".join(out) + "\n"


def _inline(text) -> str:
    """Text as HTML: escaped, Markdown's `code` spans as <code>."""
    parts = html.escape(str(text)).split("`")
    if len(parts) % 2 == 0:  # an unpaired backtick stays a backtick
        parts[-2:] = ["`".join(parts[-2:])]
    return "".join(f"<code>{p}</code>" if k % 2 else p for k, p in enumerate(parts))


def _anchor(title: str) -> str:
    return "s-" + "".join(ch if ch.isalnum() else "-" for ch in title.lower()).strip("-")


def _html_table(title, header, rows):
    h = "".join(f"<th>{_inline(x)}</th>" for x in header)
    body = "".join("<tr>" + "".join(f"<td>{_inline(x)}</td>" for x in r) + "</tr>" for r in rows)
    return f"<h3 id='{_anchor(title)}'>{_inline(title)}</h3>\n<table><tr>{h}</tr>{body}</table>\n"


# each figure's heading in the report
FIGURE_TITLES = {
    "gradflow.png": "Gradient norm against lag, by family",
    "gradflow_inits.png": "How the initialisation changes gradient flow",
    "horizon.png": "Memory horizon per cell and initialisation",
    "spectra.png": "Accumulated Jacobian, by family",
    "spectra_steps.png": "Per-step Jacobian",
    "bounds.png": "Gradient bounds against measurement",
    "forget_bias.png": "The LSTM's forget bias",
    "greff.png": "Greff's variants against the vanilla LSTM",
    "learning.png": "Learning at long lags",
    "before_after.png": "Gradient flow before and after training",
}

INTRO = (
    "A loss at the last step T, L = <w, output_T>, is differentiated with the generated backward with "
    "respect to every state at T-k; the curves are the norm of that gradient (states concatenated, "
    "mean over {batch} sequences of standard-normal inputs, input size {input}, hidden size {hidden}), "
    "normalised to 1 at k = 0, in float64. The memory horizon is the first lag at which it falls "
    "below {threshold:g}; the decay is a log-linear fit per step."
)

# one section per question: (key, title, introduction, its figures in order)
SECTIONS = (
    ("reach", "How far back does the gradient reach?", INTRO,
     ("gradflow.png", "gradflow_inits.png", "horizon.png")),
    ("jacobian", "What do the one-step Jacobians do?",
     "The largest singular value of the one-step Jacobian ds'/ds, and of the product of k of them, bound how "
     "fast a gradient can grow or shrink over k steps; a saturated gate's derivative is near 0.",
     ("spectra.png", "spectra_steps.png")),
    ("exact", "What do the exact derivatives guarantee?",
     "Bounds that follow from the closed-form Jacobians (at the end of the report), each next to what is "
     "measured on the same weights.", ("bounds.png", "forget_bias.png")),
    ("greff", "Which parts of the LSTM matter? (Greff et al. 2015)",
     "Greff et al. compared the vanilla LSTM (with peepholes: lstm_peephole) with eight variants, each "
     "changing one part, on speech, handwriting and music. Here every variant and lstm learn the adding and "
     "temporal-order problems from the same seeds; each is compared with the vanilla cell by Fisher's exact "
     "test on the success counts and a Mann-Whitney test on the updates until solved (an unsolved run counting "
     "as more than the budget), each at level 0.05 and not corrected for their number: with all eight variants "
     "on two tasks, one or two of the 32 tests could separate by chance where nothing differs.",
     ("greff.png",)),
    ("lags", "How long a lag can a cell learn? (Hochreiter & Schmidhuber 1997)",
     "The adding problem (the sum of two marked values among T; solved: test MSE < 0.01, where predicting "
     "the mean gives 1/6) and the temporal-order problem (the order of two symbols among T distractors; "
     "solved: accuracy >= 95%, chance 25%), with the generated torch cells and their generated backward. "
     "Hochreiter & Schmidhuber reported the LSTM bridging lags of 100 to 1000 steps on these problems.",
     ("learning.png", "before_after.png")),
)  # fmt: skip


def _sections(data, figs, tables) -> list[tuple[str, str, list]]:
    """(title, introduction, parts) per question with anything to show; a part is ("figure",
    name), ("table", table) or ("list", title, items), each figure followed by the tables that
    summarise it."""
    out = []
    for key, title, intro, names in SECTIONS:
        parts: list = []
        for name in names:
            if name in figs:
                parts.append(("figure", name))
                parts += [("table", t) for t in tables if t[0] == name]
        parts += [("table", t) for t in tables if t[0] == key]
        if key == "greff" and data.get("greff"):
            runs = data["greff"]
            parts.append(("list", "Each variant against Greff et al.'s finding",
                          [v["sentence"] for v in studies.greff(runs, max(r["budget"] for r in runs))]))  # fmt: skip
        if parts:
            out.append((title, intro.format(**data["settings"]) if key == "reach" else intro, parts))
    return out


def _with_notation(c, data) -> str:
    words = data.get("notation", {}).get(c, [])
    return ("where " + "; ".join(words)) if words else ""


def _render(data, command: str) -> dict:
    """Every file of the report: name -> bytes."""
    figs = _figures(data)
    tables = _tables(data)
    st = data["settings"]
    header = f"Generated by `{command}` (lstm-verify, {data['seconds']:.0f} s{', quick' if st['quick'] else ''})."
    sections = _sections(data, figs, tables)
    md = [f"# Gradient flow in recurrent cells\n\n{header}\n"]
    for title, intro, parts in sections:
        md.append(f"## {title}\n\n{intro}\n")
        for part in parts:
            if part[0] == "figure":
                md.append(f"![{FIGURE_TITLES.get(part[1], part[1])}]({part[1]})\n")
            elif part[0] == "table":
                md.append(_md_table(*part[1][1:]))
            else:
                md.append(f"### {part[1]}\n\n" + "\n".join(f"- {x}" for x in part[2]) + "\n")
    if data.get("theorems"):
        md.append("## Gradient bounds for all weights\n")
        for c, lines in data["theorems"].items():
            md.append(f"**{c}**\n\n```\n" + "\n".join(lines + ([_with_notation(c, data)] if _with_notation(c, data)
                                                              else [])) + "\n```\n")  # fmt: skip
    md.append("## Closed-form one-step Jacobians\n")
    for c, blocks in data["closed_forms"].items():
        lines = [f"d{b['of']}/d{b['wrt']} = {b['text']}" for b in blocks]
        md.append(f"**{c}**\n\n```\n" + "\n".join(lines + ([_with_notation(c, data)] if _with_notation(c, data)
                                                          else [])) + "\n```\n")  # fmt: skip
    out = {"report.md": "\n".join(md).encode("utf-8")}
    out.update(figs)
    out["data.json"] = json.dumps(data, indent=1, default=str).encode("utf-8")
    contents: list[tuple[str, str, list[str]]] = []  # (anchor, title, the titles of its parts)

    def section(title, parts=()):
        contents.append((_anchor(title), title, list(parts)))
        return f"<h2 id='{_anchor(title)}'>{html.escape(title)}</h2>"

    def part_title(part):
        return FIGURE_TITLES.get(part[1], part[1]) if part[0] == "figure" else part[1][1] if part[0] == "table" \
            else part[1]

    body = []
    for title, intro, parts in sections:
        body.append(section(title, [part_title(p) for p in parts]) + f"<p>{_inline(intro)}</p>")
        for part in parts:
            name = part_title(part)
            if part[0] == "figure":
                body.append(f"<figure><h3 id='{_anchor(name)}'>{html.escape(name)}</h3>"
                            f'<img alt="{html.escape(name)}" src="data:image/png;base64,'
                            f'{base64.b64encode(figs[part[1]]).decode()}"></figure>')  # fmt: skip
            elif part[0] == "table":
                body.append(_html_table(*part[1][1:]))
            else:
                body.append(f"<h3 id='{_anchor(name)}'>{html.escape(name)}</h3><ul>"
                            + "".join(f"<li>{_inline(x)}</li>" for x in part[2]) + "</ul>")  # fmt: skip
    if data.get("theorems"):
        body.append(section("Gradient bounds for all weights"))
        for c, lines in data["theorems"].items():
            where = _with_notation(c, data)
            body.append(f"<details><summary>{html.escape(c)}</summary><pre>{html.escape(chr(10).join(lines))}</pre>"
                        + (f"<p>{html.escape(where)}</p>" if where else "") + "</details>")  # fmt: skip
    body.append(section("Closed-form one-step Jacobians"))
    for c, blocks in data["closed_forms"].items():
        rows = "".join(f"<tr><td>d{html.escape(b['of'])}/d{html.escape(b['wrt'])}</td><td><code>{html.escape(b['text'])}"
                       f"</code></td><td><details><summary>LaTeX</summary><code>{html.escape(b['latex'])}</code>"
                       "</details></td></tr>" for b in blocks)  # fmt: skip
        where = _with_notation(c, data)
        body.append(f"<details><summary>{html.escape(c)}</summary><table><tr><th>block</th><th>plain</th>"
                    f"<th>LaTeX</th></tr>{rows}</table>" + (f"<p>{html.escape(where)}</p>" if where else "")
                    + "</details>")  # fmt: skip
    toc = "".join(f"<li><a href='#{a}'>{html.escape(t)}</a>"
                  + ("<ul>" + "".join(f"<li><a href='#{_anchor(p)}'>{_inline(p)}</a></li>" for p in parts) + "</ul>"
                     if parts else "") + "</li>" for a, t, parts in contents)  # fmt: skip
    head = (f"<h1>Gradient flow in recurrent cells</h1><p>{_inline(header)}</p>"
            f"<nav><h2>Contents</h2><ul>{toc}</ul></nav>")  # fmt: skip
    style = ("body{font-family:sans-serif;max-width:1200px;margin:auto;padding:1em}img{max-width:100%}"
             "table{border-collapse:collapse;margin:1em 0;font-size:90%}td,th{border:1px solid #ccc;"
             "padding:3px 6px;text-align:left}code{font-size:85%}figure{margin:1em 0}summary{cursor:pointer}")  # fmt: skip
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>Gradient flow report</title><style>{style}"
            f"</style></head><body>{head}{''.join(body)}</body></html>")  # fmt: skip
    out["report.html"] = page.encode("utf-8")
    return out


def prepare(out, force: bool = False) -> Target:
    """Check an output path before computing (see :mod:`lstm_verify.report_folder`); without
    the report's extra (torch, matplotlib) a MissingExtraError, before the path is touched."""
    require_extras()
    return _prepare_folder(out, force)


def write(data, out, command: str, force: bool = False) -> Path:
    """Render the report and put it at ``out`` (a path or a :class:`Target` from
    :func:`prepare`), replacing a previous report there as one step: readers see the old
    report or the new one. ``force``: write into an existing folder that is not a report,
    replacing only files of the report's names."""
    if isinstance(out, Target):
        out, force = out.path, out.force
    prepare(out, force)  # fail before rendering; the path may have changed since the caller checked
    files = _render(data, command)
    return install(prepare(out, force), files, command)
