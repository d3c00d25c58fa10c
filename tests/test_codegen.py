"""Generated NumPy and torch code against independent oracles, for every spec in specs/."""

import linecache
import re
import traceback

import numpy as np
import pytest
import torch

from lstm_verify import kernels
from lstm_verify.cell import catalog, load
from lstm_verify.check import (
    LIMITS,
    backward_vs_autograd,
    backward_vs_finite_differences,
    forward_vs_mpmath,
    random_inputs,
    random_state,
    sizes_for,
)
from lstm_verify.compare import assert_close

CELLS = catalog()


@pytest.fixture(params=["c-kernels", "c-blocks", "triton", "torch-ops"])
def path(request):
    """Every oracle test on every path of the generated torch code (:mod:`lstm_verify.kernels`):
    the forward loop in C where the cell allows it, the Python loop with its blocks in C, the
    Python loop with its blocks as the Triton kernels CUDA runs (in Triton's interpreter), and
    every block as torch operations."""
    if request.param == "torch-ops":
        with kernels.disabled():
            yield request.param
    elif request.param == "c-blocks":
        with kernels.without_loop():
            yield request.param
    elif request.param == "triton":
        pytest.importorskip("triton", reason="Triton is not installed (the extra 'triton'): no Triton kernels")
        with kernels.interpreted():
            yield request.param
    else:
        yield request.param


def _on_path(name, path):
    cell = load(name)
    if path.startswith("c-") and kernels.compiler() is None:
        pytest.skip("no C compiler (cc or gcc) on the PATH: the generated code runs without its C kernels")
    if path.startswith("c-"):  # never a silent fallback to the torch operations
        assert cell.torch().kernels is None, f"{name}: no kernels: {cell.torch().kernels}"
    if path == "triton":
        assert cell.torch().module._KERNELS._triton_table(interpret=True) is not None, f"{name}: no Triton kernels"
    return cell


def test_catalog_is_complete():
    expected = {
        "rnn_tanh", "rnn_relu", "lstm", "lstm_nofg", "lstm_peephole", "lstm_cifg", "gru", "gru_cho",
        "greff_nig", "greff_nfg", "greff_nog", "greff_niaf", "greff_noaf", "greff_np", "greff_cifg",
        "greff_fgr", "mut1", "mut2", "mut3", "mgu", "lstm_proj", "lstm_depth_gated", "clockwork_rnn",
    }  # fmt: skip
    assert expected <= set(CELLS)


@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("saturated", [False, True], ids=["ordinary", "saturated"])
def test_forward_matches_mpmath(name, dtype, saturated, path):
    backends = ("numpy", "torch") if path == "c-kernels" else ("torch",)
    e, zmax = forward_vs_mpmath(_on_path(name, path), dtype, saturated=saturated, backends=backends)
    limit = LIMITS["fwd64" if dtype == np.float64 else "fwd32"]
    # or the equations as written cannot be evaluated in dtype (slstm_unstabilized's exp(236))
    assert e.normwise <= limit or e.beyond(dtype), f"{name} {dtype.__name__}: {e}"
    if saturated:
        assert zmax >= 49, f"saturated regime reached only |z| = {zmax}"


@pytest.mark.parametrize("name", CELLS)
def test_backward_matches_autograd_over_50_steps(name, path):
    assert backward_vs_autograd(_on_path(name, path), T=50) <= LIMITS["bwd_autograd"]


@pytest.mark.parametrize("name", CELLS)
def test_backward_matches_finite_differences_over_50_steps(name, path):
    # Triton's interpreter runs each block launch as NumPy operations per tile (milliseconds):
    # gradcheck's hundreds of forwards over 50 steps took up to 126 s a cell there. Its loop is
    # the Python loop that c-blocks checks over 50 steps; its blocks are checked here over 3
    # (a carry through two steps).
    T = 3 if path == "triton" else 50
    rel, gradcheck_ok = backward_vs_finite_differences(_on_path(name, path), T=T)
    assert gradcheck_ok, "torch.autograd.gradcheck rejected the generated backward"
    assert rel <= LIMITS["bwd_fd"]


def test_backward_check_can_fail():
    """A deliberately wrong partial derivative must be caught by both backward oracles."""
    cell = load("lstm")
    impl = cell.numpy()
    src = re.sub(r"(_p\d+_g_lin_g) = 1 - v_g\*\*2", r"\1 = 1 - v_g", impl.source)
    assert src != impl.source
    from lstm_verify import runtime

    impl.module = runtime.load(src, "lstm_broken")
    try:
        rel, _ = backward_vs_finite_differences(cell, T=5)
        assert rel > LIMITS["bwd_fd"]
        assert backward_vs_autograd(cell, T=5) > LIMITS["bwd_autograd"]
    finally:
        del cell.__dict__["_numpy"]


@pytest.mark.parametrize("name", ["lstm", "gru_cho", "clockwork_rnn", "lstm_depth_gated"])
def test_sequence_split_and_step_agree(name):
    """T steps at once equal k steps then T-k with the carried state (and t0 for the clock),
    and equal step() called T times."""
    cell = load(name)
    sizes = sizes_for(cell)
    rng = np.random.default_rng(3)
    params = cell.init_params(sizes=sizes, seed=3)
    xs = random_inputs(cell, sizes, 7, 2, rng)
    state = random_state(cell, sizes, 2, rng)
    impl = cell.numpy()
    whole = impl.forward(params, xs, state, t0=1)
    first = impl.forward(params, {k: v[:3] for k, v in xs.items()}, state, t0=1)
    rest = impl.forward(params, {k: v[3:] for k, v in xs.items()}, first.state, t0=4)
    np.testing.assert_array_equal(np.concatenate([first.outputs, rest.outputs]), whole.outputs)
    s = state
    for t in range(7):
        out, s = impl.step(params, {k: v[t] for k, v in xs.items()}, s, t=1 + t)
        np.testing.assert_array_equal(out, whole.outputs[t])


def test_clockwork_modules_hold_between_ticks():
    cell = load("clockwork_rnn")
    params = cell.init_params(3, 8, seed=0)
    np.testing.assert_array_equal(params["period"], [1, 1, 2, 2, 4, 4, 8, 8])
    xs = np.random.default_rng(0).standard_normal((9, 1, 3))
    out = cell.numpy().forward(params, xs).outputs[:, 0]
    # steps 1..8: the period-8 module (last two units) updates only at t = 0 and t = 8
    np.testing.assert_array_equal(out[1:8, 6:], np.repeat(out[:1, 6:], 7, 0))
    assert not np.array_equal(out[8, 6:], out[7, 6:])
    # period-2 module holds on odd steps
    np.testing.assert_array_equal(out[1, 2:4], out[0, 2:4])


@pytest.mark.parametrize("name", ["lstm", "gru", "greff_fgr"])
def test_torch_module_trains_with_generated_backward(name):
    cell = load(name)
    torch.manual_seed(0)
    fused = cell.module(3, 5, dtype=torch.float64)
    plain = cell.module(3, 5, dtype=torch.float64, fused=False)
    xs = torch.randn(20, 4, 3, dtype=torch.float64)
    for m in (fused, plain):
        out, state = m(xs)
        (out.pow(2).sum() + sum(s.sum() for s in state.values())).backward()
    for (n, a), (_, b) in zip(fused.named_parameters(), plain.named_parameters()):
        assert_close(a.grad, b.grad, cell=name, quantity=f"dL/d{n}", rtol=1e-10, atol=1e-12)
    opt = torch.optim.Adam(fused.parameters(), lr=0.05)
    target = torch.sin(torch.linspace(0, 3, 20, dtype=torch.float64))[:, None, None].expand(20, 4, 5)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        out, _ = fused(xs)
        loss = (out - target).pow(2).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_torch_code_follows_input_dtype_and_device(dtype):
    cell = load("lstm_peephole")
    m = cell.module(3, 4, dtype=dtype, device="cpu")
    out, state = m(torch.randn(5, 2, 3, dtype=dtype))
    assert out.dtype == dtype and out.device.type == "cpu"
    assert all(s.dtype == dtype for s in state.values())
    assert "device=like.device" in cell.torch().source  # allocations follow the caller's device
    assert ".cuda(" not in cell.torch().source and "'cpu'" not in cell.torch().source


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_numpy_code_keeps_float32(dtype):
    cell = load("gru")
    params = cell.init_params(3, 4, dtype=dtype)
    run = cell.numpy().forward(params, np.ones((3, 2, 3), dtype), save=True)
    assert run.outputs.dtype == dtype
    grads = cell.numpy().backward(params, run.cache, np.ones_like(run.outputs))
    assert all(g.dtype == dtype for g in grads.params.values())


def test_saturation_gives_no_nan_and_no_warning():
    """The stable sigmoid: no overflow warning, finite gradients at |z| = 800 (float64) and 90
    (float32), where 1/(1+exp(-x)) would give NaN gradients."""
    cell = load("lstm")
    for dtype, z in ((np.float64, 800.0), (np.float32, 90.0)):
        params = {k: np.zeros_like(v) for k, v in cell.init_params(1, 2, dtype=dtype).items()}
        for k in ("b_i", "b_f", "b_o"):
            params[k] = np.array([-z, z], dtype)
        params["b_g"] = np.array([z, -z], dtype)
        run = cell.numpy().forward(params, np.zeros((3, 1, 1), dtype), save=True)
        grads = cell.numpy().backward(params, run.cache, np.ones_like(run.outputs))
        assert np.isfinite(run.outputs).all()
        assert all(np.isfinite(g).all() for g in grads.params.values())


def test_generated_lines_show_in_tracebacks():
    cell = load("lstm")
    params = cell.init_params(3, 4)
    params["W_i_h"] = np.zeros((4, 5))  # inconsistent on purpose, validation bypassed
    with pytest.raises(ValueError) as info:
        state = {"h": np.zeros((1, 4)), "c": np.zeros((1, 4))}
        cell.numpy().forward(params, np.zeros((2, 1, 3)), state, check=False)
    frames = traceback.extract_tb(info.value.__traceback__)
    generated = [f for f in frames if f.filename.startswith("<lstm-verify generated lstm_numpy")]
    assert generated and generated[-1].line  # linecache serves the generated text
    assert linecache.getline(generated[-1].filename, generated[-1].lineno).strip() == generated[-1].line


def test_source_is_deterministic_and_headed():
    from lstm_verify.codegen import generate

    cell = load("lstm_peephole")
    a, b = generate(cell.ir, "numpy"), generate(load("lstm_peephole").ir, "numpy")
    assert a == b
    assert cell.spec.sha256 in a and "c' = f*c + i*g" in a and "Greff" in a
