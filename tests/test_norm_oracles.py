"""Third-party oracles for the normalised LSTMs (layernorm_lstm, rmsnorm_lstm).

The oracle is the layer-normalised cell of PyTorch's benchmark (benchmarks/fastrnns/
custom_lstms.py, LayerNormLSTMCell) built from the frameworks' own normalisation modules, with
no code of lstm-verify: gates = N_x(x W_ih^T) + N_h(h W_hh^T) in the order i, f, g, o (N a
LayerNorm or RMSNorm over the 4H stacked pre-activations), c' = f*c + i*g, h' = o*tanh(N_c(c')).
One difference from the benchmark, as in Ba et al. eq. 22 and the spec: the state carries c',
not N_c(c') (the benchmark returns (hy, (hy, layernorm_c(c'))), so from the second step on its
cell state is the normalised one).

The spec's parameters map into the modules: the per-gate gains a_ix, a_fx, a_gx, a_ox are the
x-side norm's 4H weight, a_ih .. a_oh the h-side's, the gate biases b_i .. b_o the h-side
LayerNorm's bias (the x-side bias is zero; RMSNorm has no bias, so they are added after it),
a_c and b_c the cell norm's weight and bias. Checked: forward of the generated NumPy and torch
implementations over several steps, their backward against torch autograd and jax.grad of the
compositions (torch.nn.LayerNorm / RMSNorm, flax.linen.LayerNorm / RMSNorm), the closed-form local
Jacobian of h' with respect to c' against torch.autograd.functional.jacobian, and the place of eps
(inside the square root) on a nearly constant cell.
"""

from __future__ import annotations

import numpy as np
import pytest

import lstm_verify as lv
from lstm_verify import derive
from lstm_verify.ir import Reduce

torch = pytest.importorskip("torch", reason="the torch extra is not installed")

CELLS = {"layernorm": "layernorm_lstm", "rmsnorm": "rmsnorm_lstm"}
GATES = "ifgo"
EPS = 1e-5
I, H, B, T = 3, 4, 3, 6
TOL = 1e-12


def _params(cell, seed=0):
    """Parameters away from torch_default's small gains: weights N(0, 1/I or 1/H), gains
    1 + N(0, 0.3), biases N(0, 0.5)."""
    rng = np.random.default_rng(seed)
    out = {}
    for k, v in cell.init_params(I, H).items():
        if k.startswith("W_"):
            out[k] = rng.normal(size=v.shape) / np.sqrt(v.shape[1])
        elif k.startswith("a_"):
            out[k] = 1.0 + 0.3 * rng.normal(size=v.shape)
        else:
            out[k] = 0.5 * rng.normal(size=v.shape)
    return out


def _data(seed=1):
    rng = np.random.default_rng(seed)
    xs = rng.normal(size=(T, B, I))
    h0, c0 = 0.5 * rng.normal(size=(B, H)), rng.normal(size=(B, H))
    d_out = rng.normal(size=(T, B, H))
    d_state = {"h": rng.normal(size=(B, H)), "c": rng.normal(size=(B, H))}
    return xs, h0, c0, d_out, d_state


def _np(a):
    return a.detach().cpu().numpy() if hasattr(a, "detach") else np.asarray(a)


def _err(got, want) -> float:
    """max |got - want| relative to max(1, max |want|)."""
    got, want = _np(got), _np(want)
    assert got.shape == want.shape, (got.shape, want.shape)
    return float(np.max(np.abs(got - want)) / max(1.0, float(np.max(np.abs(want)))))


# --------------------------------------------------------------------------- torch composition


class NormLSTMCell(torch.nn.Module):
    """The benchmark's LayerNormLSTMCell with c' (not N_c(c')) carried as the state; ``kind``
    "layernorm" (torch.nn.LayerNorm) or "rmsnorm" (torch.nn.RMSNorm, gate bias added after)."""

    def __init__(self, kind, p):
        super().__init__()
        f64 = torch.float64
        cat = lambda names: torch.as_tensor(np.concatenate([p[n] for n in names]), dtype=f64)  # noqa: E731
        self.kind = kind
        self.weight_ih = torch.nn.Parameter(cat([f"W_{g}x_x" for g in GATES]))  # (4H, I)
        self.weight_hh = torch.nn.Parameter(cat([f"W_{g}h_h" for g in GATES]))  # (4H, H)
        if kind == "layernorm":
            self.norm_i = torch.nn.LayerNorm(4 * H, eps=EPS, dtype=f64)
            self.norm_h = torch.nn.LayerNorm(4 * H, eps=EPS, dtype=f64)
            self.norm_c = torch.nn.LayerNorm(H, eps=EPS, dtype=f64)
            with torch.no_grad():
                self.norm_i.bias.zero_()
                self.norm_h.bias.copy_(cat([f"b_{g}" for g in GATES]))
                self.norm_c.bias.copy_(cat(["b_c"]))
            self.gate_bias = None
        else:
            self.norm_i = torch.nn.RMSNorm(4 * H, eps=EPS, dtype=f64)
            self.norm_h = torch.nn.RMSNorm(4 * H, eps=EPS, dtype=f64)
            self.norm_c = torch.nn.RMSNorm(H, eps=EPS, dtype=f64)
            self.gate_bias = torch.nn.Parameter(cat([f"b_{g}" for g in GATES]))
        with torch.no_grad():
            self.norm_i.weight.copy_(cat([f"a_{g}x" for g in GATES]))
            self.norm_h.weight.copy_(cat([f"a_{g}h" for g in GATES]))
            self.norm_c.weight.copy_(cat(["a_c"]))

    def forward(self, x, state):
        hx, cx = state
        gates = self.norm_i(x @ self.weight_ih.t()) + self.norm_h(hx @ self.weight_hh.t())
        if self.gate_bias is not None:
            gates = gates + self.gate_bias
        i, f, g, o = gates.chunk(4, 1)
        i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
        cy = f * cx + i * g
        hy = o * torch.tanh(self.norm_c(cy))
        return hy, (hy, cy)

    def run(self, xs, h0, c0):
        state, outs = (h0, c0), []
        for t in range(xs.shape[0]):
            y, state = self(xs[t], state)
            outs.append(y)
        return torch.stack(outs), state

    def spec_grads(self) -> dict:
        """The modules' gradients under the spec's names (slices of the stacked tensors)."""
        rows = {g: slice(k * H, (k + 1) * H) for k, g in enumerate(GATES)}
        out = {}
        for g, r in rows.items():
            out[f"W_{g}x_x"] = self.weight_ih.grad[r]
            out[f"W_{g}h_h"] = self.weight_hh.grad[r]
            out[f"a_{g}x"] = self.norm_i.weight.grad[r]
            out[f"a_{g}h"] = self.norm_h.weight.grad[r]
            bias = self.norm_h.bias if self.gate_bias is None else self.gate_bias
            out[f"b_{g}"] = bias.grad[r]
        out["a_c"] = self.norm_c.weight.grad
        if self.kind == "layernorm":
            out["b_c"] = self.norm_c.bias.grad
        return out


def _torch_oracle(kind, p, xs, h0, c0, d_out, d_state):
    mod = NormLSTMCell(kind, p)
    leaves = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in (xs, h0, c0)]
    outs, (hT, cT) = mod.run(*leaves)
    t = lambda a: torch.as_tensor(a, dtype=torch.float64)  # noqa: E731
    loss = (outs * t(d_out)).sum() + (hT * t(d_state["h"])).sum() + (cT * t(d_state["c"])).sum()
    loss.backward()
    if kind == "layernorm":  # the zero x-side bias adds to the same gates as the h-side one
        assert _err(mod.norm_i.bias.grad, mod.norm_h.bias.grad) <= TOL
    return {"outputs": outs, "h": hT, "c": cT, "params": mod.spec_grads(),
            "x": leaves[0].grad, "h0": leaves[1].grad, "c0": leaves[2].grad}  # fmt: skip


def _ours(cell, backend, p, xs, h0, c0, d_out, d_state):
    impl = cell.numpy() if backend == "numpy" else cell.torch()
    if backend == "torch":
        conv = lambda a: torch.as_tensor(a, dtype=torch.float64)  # noqa: E731
        p = {k: conv(v) for k, v in p.items()}
        xs, h0, c0, d_out = conv(xs), conv(h0), conv(c0), conv(d_out)
        d_state = {k: conv(v) for k, v in d_state.items()}
    run = impl.forward(p, xs, {"h": h0, "c": c0}, save=True)
    grads = impl.backward(p, run.cache, d_out, d_state)
    return {"outputs": run.outputs, "h": run.state["h"], "c": run.state["c"], "params": grads.params,
            "x": grads.inputs["x"], "h0": grads.state["h"], "c0": grads.state["c"]}  # fmt: skip


def _compare(ours, oracle, names) -> dict:
    errs = {k: _err(ours[k], oracle[k]) for k in ("outputs", "h", "c", "x", "h0", "c0")}
    assert set(oracle["params"]) == set(names) == set(ours["params"])
    errs.update({f"d{k}": _err(ours["params"][k], oracle["params"][k]) for k in names})
    return errs


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("kind", sorted(CELLS))
def test_equals_torch_norm_modules_with_autograd(kind, backend):
    cell = lv.load(CELLS[kind])
    p = _params(cell)
    data = _data()
    oracle = _torch_oracle(kind, p, *data)
    ours = _ours(cell, backend, p, *data)
    assert float(np.max(np.abs(_np(oracle["outputs"])))) > 0.1  # not trivially small
    errs = _compare(ours, oracle, cell.ir.param_names)
    worst = max(errs, key=errs.get)
    assert errs[worst] <= TOL, (worst, errs)


# --------------------------------------------------------------------------- epsilon convention


def _near_constant(kind, p, seed=2):
    """Gains of i, f, g zero and their biases equal across units, so the gates are constant
    across units and c' = f*c + i*g keeps c's tiny spread: LayerNorm's c' has variance ~1e-12
    around 0.3; RMSNorm's (g = tanh(0) = 0) is c's own ~1e-6, mean square ~1e-12."""
    rng = np.random.default_rng(seed)
    p = dict(p)
    for g in "ifg":
        for side in "xh":
            p[f"a_{g}{side}"] = np.zeros(H)
        p[f"b_{g}"] = np.full(H, 0.0 if (kind == "rmsnorm" and g == "g") else 0.4)
    base = 0.3 if kind == "layernorm" else 0.0
    c0 = base + 1e-6 * rng.normal(size=(B, H))
    return p, c0


@pytest.mark.parametrize("kind", sorted(CELLS))
def test_eps_inside_the_square_root(kind):
    """On a nearly constant (LayerNorm) or nearly zero (RMSNorm) cell, eps dominates the
    statistic: lstm-verify agrees with the torch modules, and eps added outside the square root
    would give outputs that differ by far more than the tolerance."""
    cell = lv.load(CELLS[kind])
    p, c0 = _near_constant(kind, _params(cell))
    xs, h0, _, d_out, d_state = _data()
    xs, d_out = xs[:3], d_out[:3]
    ours = _ours(cell, "numpy", p, xs, h0, c0, d_out, d_state)
    oracle = _torch_oracle(kind, p, xs, h0, c0, d_out, d_state)
    mod = NormLSTMCell(kind, p)
    c1 = mod(torch.as_tensor(xs[0]), (torch.as_tensor(h0), torch.as_tensor(c0)))[1][1]
    normed = _np(mod.norm_c(c1))
    c1 = _np(c1)
    stat = c1.var(axis=1) if kind == "layernorm" else (c1**2).mean(axis=1)
    assert 1e-14 < stat.max() < 1e-11, stat  # the regime where eps is ~1e6 times the statistic
    errs = _compare(ours, oracle, cell.ir.param_names)
    worst = max(errs, key=errs.get)
    assert errs[worst] <= TOL, (worst, errs)
    # eps outside, a*(c' - m)/(sqrt(v) + eps) + b, would be a different cell here
    center = c1.mean(axis=1, keepdims=True) if kind == "layernorm" else 0.0
    outside = p["a_c"] * (c1 - center) / (np.sqrt(stat)[:, None] + EPS) + p.get("b_c", 0.0)
    assert np.max(np.abs(outside - normed)) > 1e-2


# --------------------------------------------------------------------------- flax.linen and jax.grad


@pytest.fixture
def jax64():
    jax = pytest.importorskip("jax", reason="jax is not installed: pip install 'lstm-verify[flax]'")
    pytest.importorskip("flax", reason="flax is not installed: pip install 'lstm-verify[flax]'")
    old = bool(jax.config.read("jax_enable_x64"))
    jax.config.update("jax_enable_x64", True)
    try:
        yield jax
    finally:
        jax.config.update("jax_enable_x64", old)


def _flax_loss(kind):
    import flax.linen as fnn
    import jax.nn as jax_nn
    import jax.numpy as jnp

    if kind == "layernorm":
        norm4, normc = fnn.LayerNorm(epsilon=EPS), fnn.LayerNorm(epsilon=EPS)
    else:
        norm4, normc = fnn.RMSNorm(epsilon=EPS), fnn.RMSNorm(epsilon=EPS)

    def apply(module, v, scale, bias=None):
        params = {"scale": scale} if bias is None else {"scale": scale, "bias": bias}
        return module.apply({"params": params}, v)

    def loss(p, xs, h0, c0, d_out, dh, dc):
        cat = lambda names: jnp.concatenate([p[n] for n in names])  # noqa: E731
        W_ih, W_hh = cat([f"W_{g}x_x" for g in GATES]), cat([f"W_{g}h_h" for g in GATES])
        a_x, a_h, b = cat([f"a_{g}x" for g in GATES]), cat([f"a_{g}h" for g in GATES]), cat([f"b_{g}" for g in GATES])
        h, c, total = h0, c0, 0.0
        for t in range(xs.shape[0]):
            if kind == "layernorm":
                gates = apply(norm4, xs[t] @ W_ih.T, a_x, jnp.zeros_like(b)) + apply(norm4, h @ W_hh.T, a_h, b)
            else:
                gates = apply(norm4, xs[t] @ W_ih.T, a_x) + apply(norm4, h @ W_hh.T, a_h) + b
            i, f, g, o = jnp.split(gates, 4, axis=1)
            c = jax_nn.sigmoid(f) * c + jax_nn.sigmoid(i) * jnp.tanh(g)
            h = jax_nn.sigmoid(o) * jnp.tanh(apply(normc, c, p["a_c"], p.get("b_c")))
            total = total + jnp.sum(h * d_out[t])
        return total + jnp.sum(h * dh) + jnp.sum(c * dc), (h, c)

    return loss


@pytest.mark.parametrize("kind", sorted(CELLS))
def test_equals_flax_norm_modules_with_jax_grad(kind, jax64):
    jax = jax64
    cell = lv.load(CELLS[kind])
    p = _params(cell)
    xs, h0, c0, d_out, d_state = _data()
    xs, d_out = xs[:3], d_out[:3]  # three steps: compiling more costs seconds
    loss = _flax_loss(kind)
    (value, (hT, cT)), grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2, 3), has_aux=True))(
        {k: jax.numpy.asarray(v) for k, v in p.items()}, xs, h0, c0, d_out, d_state["h"], d_state["c"])  # fmt: skip
    assert grads[1].dtype == np.float64
    ours = _ours(cell, "numpy", p, xs, h0, c0, d_out, d_state)
    want = float(np.sum(ours["outputs"] * d_out) + np.sum(ours["h"] * d_state["h"]) + np.sum(ours["c"] * d_state["c"]))
    errs = {"loss": abs(float(value) - want) / max(1.0, abs(want)), "h": _err(ours["h"], hT), "c": _err(ours["c"], cT),
            "x": _err(ours["x"], grads[1]), "h0": _err(ours["h0"], grads[2]), "c0": _err(ours["c0"], grads[3])}  # fmt: skip
    assert set(grads[0]) == set(cell.ir.param_names)
    errs.update({f"d{k}": _err(ours["params"][k], grads[0][k]) for k in cell.ir.param_names})
    worst = max(errs, key=errs.get)
    assert errs[worst] <= TOL, (worst, errs)


# --------------------------------------------------------------------------- local Jacobian


def _local_jacobian_numeric(cell, c_new, o, p):
    """derive.local_jacobian(h', c') expanded with derive.structured_matrix at numeric values:
    c', o and the gains as vectors, the reductions' values (mean and population variance, or
    mean square) computed here, the unit counts H."""
    import sympy

    ir = cell.ir
    j = derive.local_jacobian(ir, "h_", "c_")
    col = lambda v: sympy.Matrix([sympy.Float(float(e), 30) for e in v])  # noqa: E731
    values = {"c_": col(c_new), "o": col(o)}
    sym = {k: col(p[k]) for k in ("a_c", "b_c") if k in p}
    for node in ir.nodes:
        if isinstance(node, Reduce):
            sym[derive.count(node.name).name] = sympy.Integer(H)
    if "b_c" in p:  # layernorm: mean_h and var_h of c'
        values["mean_h"] = col([np.mean(c_new)])
        values["var_h"] = col([np.var(c_new)])
    else:  # rmsnorm: mean_h of c'**2
        values["mean_h"] = col([np.mean(c_new**2)])
    m = derive.structured_matrix(ir, j.terms, values, sym, {"hidden": H}, "hidden", "hidden")
    return j, np.array(m.evalf(30).tolist(), dtype=np.float64)


def _torch_local_jacobian(kind, c_new, o, p):
    mod = NormLSTMCell(kind, p)
    o_t = torch.as_tensor(o)
    return _np(torch.autograd.functional.jacobian(lambda c: o_t * torch.tanh(mod.norm_c(c)), torch.as_tensor(c_new)))


def _random_point(seed=3):
    rng = np.random.default_rng(seed)
    return rng.normal(size=H), rng.uniform(0.05, 0.95, size=H)


def test_layernorm_local_jacobian_is_diag_plus_rank_one_and_equals_autograd():
    cell = lv.load("layernorm_lstm")
    p = _params(cell)
    c_new, o = _random_point()
    j, ours = _local_jacobian_numeric(cell, c_new, o, p)
    ones = sorted(t.weights for t in j.terms)
    assert ones == [(), (derive.ONES, derive.REDUCE + "hidden"), (derive.ONES, derive.REDUCE + "hidden")], j
    want = _torch_local_jacobian("layernorm", c_new, o, p)
    assert np.max(np.abs(want - np.diag(np.diag(want)))) > 1e-2  # the rank-one part matters here
    assert _err(ours, want) <= TOL, (ours, want)


def test_rmsnorm_local_jacobian_equals_autograd():
    cell = lv.load("rmsnorm_lstm")
    p = _params(cell)
    c_new, o = _random_point()
    _, ours = _local_jacobian_numeric(cell, c_new, o, p)
    want = _torch_local_jacobian("rmsnorm", c_new, o, p)
    assert _err(ours, want) <= TOL, (ours, want)
