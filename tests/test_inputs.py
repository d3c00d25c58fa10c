"""Bad or unusual arguments at the public entry points: the library's own error naming the
argument, or the right answer, never a raw error from generated code.

* An empty sequence (T = 0) returns no outputs and the initial state unchanged; an empty
  batch returns empty outputs and state; the backward of either gives zero parameter
  gradients (and, for T = 0, the final-state gradient as the initial-state gradient).
* Nested lists, tuples and arrays of the other library are converted (to the dtype and device
  of the backend's own arrays); what cannot be converted is a DtypeError or ShapeError.
* Unknown or missing parameter names, and unknown state names, are a ShapeError listing them
  and the names expected; a dtype mismatch is a DtypeError naming both dtypes.
"""

import numpy as np
import pytest
import torch

import lstm_verify as lv
from lstm_verify.errors import DtypeError, LstmVerifyError, ShapeError

CELLS = ["lstm", "gru", "lstm_peephole", "clockwork_rnn", "lstm_proj"]
BACKENDS = ["numpy", "torch"]


def setup(name, backend, dtype=np.float64):
    cell = lv.load(name)
    sizes = {k: 4 for k in cell.ir.size_names} | {"input": 3}
    params = cell.init_params(sizes=sizes, dtype=dtype)
    if backend == "torch":
        params = {k: torch.tensor(v) for k, v in params.items()}
    return cell, getattr(cell, backend)(), params, sizes


def array(backend, a):
    return torch.tensor(a) if backend == "torch" else a


def states(cell, sizes, batch, backend, seed=1):
    rng = np.random.default_rng(seed)
    return {s: array(backend, rng.standard_normal((batch, sizes[d]))) for s, d in cell.ir.states}


def out_size(cell, sizes):
    return sizes[dict(cell.ir.states)[cell.ir.output]]


def inputs(cell, sizes, T, B, backend, seed=0):
    rng = np.random.default_rng(seed)
    return {n: array(backend, rng.standard_normal((T, B, sizes[d]))) for n, d in cell.ir.inputs}


# --------------------------------------------------------------------------- empty sequences


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", CELLS)
def test_empty_sequence_returns_the_initial_state(name, backend):
    cell, impl, params, sizes = setup(name, backend)
    s0 = states(cell, sizes, 2, backend)
    run = impl.forward(params, inputs(cell, sizes, 0, 2, backend), s0, save=True)
    assert tuple(run.outputs.shape) == (0, 2, out_size(cell, sizes))
    for s in s0:
        np.testing.assert_array_equal(np.asarray(run.state[s]), np.asarray(s0[s]))
        assert run.state[s] is not s0[s]  # the caller owns the final state
    d_state = states(cell, sizes, 2, backend, seed=7)
    d_out = array(backend, np.zeros((0, 2, out_size(cell, sizes))))
    trace = []
    g = impl.backward(params, run.cache, d_out, d_state, trace=trace)
    assert trace == []
    assert set(g.params) == set(cell.ir.param_names)
    for k in cell.ir.param_names:
        assert tuple(g.params[k].shape) == tuple(params[k].shape) and not np.asarray(g.params[k]).any()
    for n, _ in cell.ir.inputs:
        assert tuple(g.inputs[n].shape) == (0, 2, sizes[dict(cell.ir.inputs)[n]])
    for s in s0:
        np.testing.assert_array_equal(np.asarray(g.state[s]), np.asarray(d_state[s]))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", CELLS)
def test_empty_batch_gives_empty_outputs_and_zero_gradients(name, backend):
    cell, impl, params, sizes = setup(name, backend)
    run = impl.forward(params, inputs(cell, sizes, 5, 0, backend), save=True)
    assert tuple(run.outputs.shape) == (5, 0, out_size(cell, sizes))
    assert {s: tuple(v.shape) for s, v in run.state.items()} == {s: (0, sizes[d]) for s, d in cell.ir.states}
    trace = []
    g = impl.backward(params, run.cache, array(backend, np.zeros((5, 0, out_size(cell, sizes)))), trace=trace)
    assert len(trace) == 5
    assert all(not np.asarray(g.params[k]).any() for k in cell.ir.param_names)
    assert all(tuple(g.state[s].shape) == (0, sizes[d]) for s, d in cell.ir.states)
    out, _ = impl.step(params, {n: array(backend, np.zeros((0, sizes[d]))) for n, d in cell.ir.inputs})
    assert tuple(out.shape) == (0, out_size(cell, sizes))


def test_empty_sequence_through_the_trainable_module():
    cell = lv.load("lstm")
    layer = cell.module(3, 4, dtype=torch.float64)
    s0 = {k: torch.randn(2, 4, dtype=torch.float64, requires_grad=True) for k in ("h", "c")}
    out, state = layer(torch.zeros(0, 2, 3, dtype=torch.float64, requires_grad=True), s0)
    assert tuple(out.shape) == (0, 2, 4)
    (state["h"].sum() + 2 * state["c"].sum()).backward()
    assert torch.equal(s0["h"].grad, torch.ones(2, 4, dtype=torch.float64))
    assert torch.equal(s0["c"].grad, 2 * torch.ones(2, 4, dtype=torch.float64))
    assert all(p.grad is None or not p.grad.any() for p in layer.parameters())


def test_empty_sequence_reference():
    cell = lv.load("gru")
    out, state = cell.reference(cell.init_params(3, 4), np.zeros((0, 2, 3)))
    assert out.shape == (0, 2, 4) and state["h"].shape == (2, 4)


# --------------------------------------------------------------------------- conversions


@pytest.mark.parametrize("backend", BACKENDS)
def test_nested_list_input_is_converted(backend):
    _, impl, params, _ = setup("lstm", backend)
    xs = np.random.default_rng(0).standard_normal((4, 2, 3))
    want = impl.forward(params, array(backend, xs)).outputs
    got = impl.forward(params, xs.tolist()).outputs
    assert type(got) is type(want)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    out, _ = impl.step(params, list(map(tuple, xs[0])))  # a list of tuples, one per batch row
    assert tuple(out.shape) == (2, 4)
    out, _ = impl.step(params, xs[0].tolist())  # one step may take another GEMM path: rounding
    np.testing.assert_allclose(np.asarray(out), np.asarray(want[0]), rtol=1e-13, atol=1e-15)


def test_numpy_parameters_of_init_params_run_on_torch():
    cell = lv.load("lstm")
    params = cell.init_params(3, 4)  # NumPy float64
    xs = np.random.default_rng(0).standard_normal((4, 2, 3))
    want = cell.numpy().forward(params, xs).outputs
    run = cell.torch().forward(params, torch.tensor(xs), save=True)
    assert run.outputs.dtype == torch.float64
    np.testing.assert_allclose(run.outputs.numpy(), want, rtol=1e-12, atol=1e-14)
    # the inputs' dtype wins: float32 inputs make float32 parameters
    run32 = cell.torch().forward(params, torch.tensor(xs, dtype=torch.float32))
    assert run32.outputs.dtype == torch.float32
    np.testing.assert_allclose(run32.outputs.numpy(), want, rtol=1e-4, atol=1e-5)
    # the backward takes the NumPy parameters too
    g = cell.torch().backward(params, run.cache, torch.ones_like(run.outputs))
    assert g.params["W_i_x"].dtype == torch.float64
    out, _ = cell.torch().step(params, torch.tensor(xs[0]))
    np.testing.assert_allclose(out.numpy(), want[0], rtol=1e-12, atol=1e-14)


def test_torch_tensors_run_on_numpy():
    cell = lv.load("gru")
    params = cell.init_params(3, 4)
    xs = np.random.default_rng(0).standard_normal((4, 2, 3))
    want = cell.numpy().forward(params, xs).outputs
    got = cell.numpy().forward({k: torch.tensor(v) for k, v in params.items()}, torch.tensor(xs)).outputs
    assert isinstance(got, np.ndarray)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "value, error, message",
    [
        ("abc", DtypeError, "input 'x' must be an array .* got str"),
        (None, DtypeError, "input 'x' must be an array .* got NoneType"),
        ({1.0}, DtypeError, "input 'x' must be an array .* got set"),
        (True, DtypeError, "got bool"),
        ([[[1.0, 2.0, 3.0]], [[1.0, 2.0]]], ShapeError, "input 'x': cannot make an array"),
        ([[["a", "b", "c"]]], ShapeError, "input 'x': cannot make an array"),
        (3.0, ShapeError, r"input 'x' must be \(T, B, input\), got shape \(\)"),
        ((1.0, 2.0, 3.0), ShapeError, r"input 'x' must be \(T, B, input\), got shape \(3,\)"),
    ],
    ids=["str", "None", "set", "bool", "ragged", "strings", "scalar", "tuple"],
)
def test_unconvertible_input_is_named(backend, value, error, message):
    _, impl, params, _ = setup("lstm", backend)
    with pytest.raises(error, match=message):
        impl.forward(params, value)


def test_integer_input_array_is_a_dtype_error():
    _, impl, params, _ = setup("lstm", "numpy")
    with pytest.raises(DtypeError, match=r"input 'x' has dtype int64; a floating-point dtype"):
        impl.forward(params, np.zeros((2, 1, 3), dtype=np.int64))


def test_string_array_to_torch_is_a_dtype_error():
    _, impl, params, _ = setup("lstm", "torch")
    with pytest.raises(DtypeError, match=r"input 'x' has dtype <U1; a floating-point array"):
        impl.forward(params, np.full((2, 1, 3), "a"))


def test_params_not_a_dict_is_named():
    _, impl, params, _ = setup("lstm", "numpy")
    with pytest.raises(ShapeError, match="params must be a dict .* got list"):
        impl.forward(list(params.values()), np.zeros((2, 1, 3)))
    with pytest.raises(ShapeError, match="state must be a dict .* got tuple"):
        impl.forward(params, np.zeros((2, 1, 3)), (np.zeros((1, 4)), np.zeros((1, 4))))


# --------------------------------------------------------------------------- names and dtypes


@pytest.mark.parametrize("backend", BACKENDS)
def test_unknown_parameter_is_an_error_listing_the_names(backend):
    _, impl, params, _ = setup("lstm", backend)
    params = dict(params, W_i_y=params["W_i_x"], bogus=params["b_i"])
    with pytest.raises(ShapeError, match=r"unknown parameters \['W_i_y', 'bogus'\]; the parameters are \['W_i_x'"):
        impl.forward(params, array(backend, np.zeros((2, 1, 3))))


def test_missing_and_unknown_parameters_together():
    _, impl, params, _ = setup("lstm", "numpy")
    params["b_x"] = params.pop("b_i")
    with pytest.raises(ShapeError, match=r"missing parameters \['b_i'\]; unknown parameters \['b_x'\]"):
        impl.forward(params, np.zeros((2, 1, 3)))


def test_missing_buffer_is_named():
    cell, impl, params, _ = setup("clockwork_rnn", "numpy")
    buffer = cell.ir.buffers[0][0]
    del params[buffer]
    with pytest.raises(ShapeError, match=rf"missing parameters \['{buffer}'\]"):
        impl.forward(params, np.zeros((2, 1, 3)))


def test_unknown_state_name_is_named():
    _, impl, params, _ = setup("lstm", "numpy")
    state = {"h": np.zeros((1, 4)), "c": np.zeros((1, 4)), "m": np.zeros((1, 4))}
    with pytest.raises(ShapeError, match=r"state has unknown names \['m'\]"):
        impl.forward(params, np.zeros((2, 1, 3)), state)


@pytest.mark.parametrize(
    "where",
    ["parameter", "input", "state"],
)
def test_torch_dtype_mismatch_names_both_dtypes(where):
    _, impl, params, _ = setup("lstm", "torch")
    xs = torch.zeros(2, 1, 3, dtype=torch.float64)
    state = {"h": torch.zeros(1, 4, dtype=torch.float64), "c": torch.zeros(1, 4, dtype=torch.float64)}
    if where == "parameter":
        params["b_f"] = params["b_f"].float()
        message = r"parameter 'b_f' has dtype torch.float32, parameters have torch.float64"
    elif where == "input":
        xs = xs.float()
        message = r"input 'x' has dtype torch.float32, parameters have torch.float64"
    else:
        state["c"] = state["c"].float()
        message = r"state 'c' has dtype torch.float32, parameters have torch.float64"
    with pytest.raises(DtypeError, match=message):
        impl.forward(params, xs, state)


def test_nan_in_torch_state_is_named():
    _, impl, params, _ = setup("lstm", "torch")
    state = {"h": torch.zeros(1, 4, dtype=torch.float64), "c": torch.full((1, 4), float("inf"), dtype=torch.float64)}
    with pytest.raises(ShapeError, match="state 'c' contains NaN or infinity"):
        impl.forward(params, torch.zeros(2, 1, 3, dtype=torch.float64), state)


def test_errors_are_the_library_s_own():
    for cls in (DtypeError, ShapeError):
        assert issubclass(cls, LstmVerifyError) and issubclass(cls, ValueError)
    assert issubclass(DtypeError, TypeError)


# --------------------------------------------------------------------------- backward arguments


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda i, p, r: i.backward(p, None), "needs the cache"),
        (lambda i, p, r: i.backward(p, {"x": 1}), "cache must be the .cache of forward"),
        (lambda i, p, r: i.backward(p, r.cache, np.ones((3, 2, 4))), r"d_outputs must have the outputs' shape \(4, 2, 4\)"),
        (lambda i, p, r: i.backward(p, r.cache, None, {"m": np.ones((2, 4))}), r"d_state names \['m'\]"),
        (lambda i, p, r: i.backward(p, r.cache, None, {"c": np.ones((2, 3))}), r"d_state 'c' must have the state's shape \(2, 4\)"),
        (lambda i, p, r: i.backward(dict(p, bogus=p["b_i"]), r.cache), r"unknown parameters \['bogus'\]"),
        (lambda i, p, r: i.backward(p, r.cache, np.ones((4, 2, 4), np.float32)), "d_outputs has dtype float32"),
    ],
    ids=["no-cache", "not-a-cache", "d_outputs-shape", "d_state-name", "d_state-shape", "unknown-param", "d_outputs-dtype"],
)  # fmt: skip
def test_bad_backward_arguments_are_named(call, message):
    _, impl, params, _ = setup("lstm", "numpy")
    run = impl.forward(params, np.zeros((4, 2, 3)), save=True)
    with pytest.raises(LstmVerifyError, match=message):
        call(impl, params, run)


# --------------------------------------------------------------------------- generated torch backward


def test_torch_backward_with_parameters_and_inputs_that_require_grad():
    """The cache holds tensors that require grad (the caller's own parameters and inputs):
    the generated backward must still run and give the same gradients as without."""
    cell = lv.load("lstm")
    base = cell.init_params(3, 4)
    xs = np.random.default_rng(0).standard_normal((5, 2, 3))
    d_out = np.random.default_rng(1).standard_normal((5, 2, 4))
    want = cell.numpy().backward(base, cell.numpy().forward(base, xs, save=True).cache, d_out)
    params = {k: torch.tensor(v, requires_grad=True) for k, v in base.items()}
    x = torch.tensor(xs, requires_grad=True)
    run = cell.torch().forward(params, x, save=True)
    got = cell.torch().backward(params, run.cache, torch.tensor(d_out))
    for k in cell.ir.param_names:
        np.testing.assert_allclose(got.params[k].detach().numpy(), want.params[k], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(got.inputs["x"].detach().numpy(), want.inputs["x"], rtol=1e-10, atol=1e-12)
