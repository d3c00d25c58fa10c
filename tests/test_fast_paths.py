"""The generated torch code's paths for when no gradient is recorded: recurrent weights packed
into MKL's GEMM layout, saved values and outputs computed straight into their buffers. They
must compute what the recorded path computes (addmm, copies), and both what the float64 NumPy
code computes; the caller's tensors must stay the caller's."""

import numpy as np
import pytest
import torch

from lstm_verify.cell import catalog, load

CELLS = catalog()


def _setup(name, dtype, T=9, B=3):
    cell = load(name)
    sizes = {k: {"input": 5, "hidden": 8}.get(k, 4) for k in cell.ir.size_names}
    params = cell.init_params(sizes=sizes, dtype=np.float64)
    rng = np.random.default_rng(0)
    xs = {n: rng.standard_normal(shape) for n, shape in cell.ir.input_shapes(sizes, T, B).items()}
    state = {s: rng.standard_normal((B, sizes[d])) * 0.5 for s, d in cell.ir.states}
    d_out = rng.standard_normal((T, B, sizes[dict(cell.ir.states)[cell.ir.output]]))
    t = lambda a: torch.tensor(a, dtype=dtype)  # noqa: E731
    return cell, (params, xs, state, d_out), (
        {k: t(v) for k, v in params.items()}, {k: t(v) for k, v in xs.items()},
        {k: t(v) for k, v in state.items()}, t(d_out))  # fmt: skip


def _run(module, params, xs, state, d_out):
    out, final, cache = module.forward(params, xs, state, 0, True)
    grads, d_inputs, d_state0 = module.backward(params, cache, d_out)
    return [out, *final.values(), *grads.values(), *d_inputs.values(), *d_state0.values()]


@pytest.mark.parametrize("name", CELLS)
def test_unrecorded_path_computes_what_the_recorded_path_computes(name):
    cell, ref_args, args = _setup(name, torch.float32)
    module = cell.torch().module
    with torch.no_grad():
        fast = _run(module, *args)
    with torch.enable_grad():
        slow = _run(module, *args)
    ref = _run(cell.numpy().module, *ref_args)
    for a, b, r in zip(fast, slow, ref):
        scale = max(1.0, float(np.abs(r).max()))
        assert (a - b).abs().max().item() <= 2e-5 * scale
        assert np.abs(a.numpy() - r).max() <= 2e-5 * scale


def test_packed_gemm_is_used_on_this_machine():
    if not torch.backends.mkl.is_available():
        pytest.skip("this build of torch has no MKL")
    cell, _, args = _setup("lstm", torch.float32)
    module = cell.torch().module
    with torch.no_grad():
        _run(module, *args)  # the backward's recurrent product packs its weight
    assert module.PACKED_GEMM is True


def test_outputs_and_final_state_are_the_callers_own():
    cell, _, (params, xs, state, d_out) = _setup("lstm", torch.float32)
    module = cell.torch().module
    with torch.no_grad():
        out, final, cache = module.forward(params, xs, state, 0, True)
        h = final["h"].clone()
        grads = module.backward(params, cache, d_out)[0]
        out2, final2, cache2 = module.forward(params, xs, state, 0, True)
        out2.mul_(0)  # the caller changes the outputs in place
        assert torch.equal(final2["h"], h)
        grads2 = module.backward(params, cache2, d_out)[0]
    for k in grads:
        assert torch.equal(grads[k], grads2[k])


def test_peephole_gradients_are_reduced_after_the_loop():
    src = load("lstm_peephole").torch().source
    loop = src[src.index("def backward"):].split("for _t in range")[1].split("grads = {}")[0]
    assert "_grad_p_" not in loop and ".sum(" not in loop


@pytest.mark.parametrize("name", CELLS)
def test_results_of_one_call_survive_the_next(name):
    """Scratch buffers go back to a pool for the next call: nothing handed to the caller (or
    kept for the backward) may live in one."""
    cell, _, (params, xs, state, d_out) = _setup(name, torch.float32)
    module = cell.torch().module
    with torch.no_grad():
        first = _run(module, params, xs, state, d_out)
        kept = [t.clone() for t in first]
        _, _, cache = module.forward(params, xs, state, 0, True)  # a call whose backward is pending
        other = {k: v * 0.5 + 1 for k, v in xs.items()}
        _run(module, params, other, state, d_out * 3)
        later = _run(module, params, other, state, d_out * 3)
        again = module.backward(params, cache, d_out)
    assert module._POOL  # the pool is in use
    for a, b in zip(first, kept):
        assert torch.equal(a, b)
    grads = list(again[0].values())
    assert all(torch.equal(a, b) for a, b in zip(grads, first[1 + len(cell.ir.states):]))
    assert later[0].shape == first[0].shape


def test_saved_buffers_return_to_the_pool_only_when_nothing_holds_them():
    cell, _, (params, xs, state, d_out) = _setup("lstm", torch.float32)
    module = cell.torch().module
    module._POOL.clear()
    with torch.no_grad():
        _, _, cache = module.forward(params, xs, state, 0, True)
        kept = cache["saved"]["f"]  # a caller holding on to part of the record
        copy = kept.clone()
        del cache
        pooled = sum(len(v) for v in module._POOL.values())
        for k in range(3):
            _run(module, params, {n: v * (k + 2) for n, v in xs.items()}, state, d_out)
        assert torch.equal(kept, copy)
        del kept
        _, _, cache = module.forward(params, xs, state, 0, True)
        del cache
    assert sum(len(v) for v in module._POOL.values()) > pooled  # the record's buffers came back
