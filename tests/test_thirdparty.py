"""The real torch.nn cells as oracles, through the generic layout adapter."""

import numpy as np
import pytest

from lstm_verify.cell import load
from lstm_verify.layout import from_target, to_target
from lstm_verify.thirdparty import compare_with_target

EQUAL = ["rnn_tanh", "rnn_relu", "lstm", "greff_np", "gru", "lstm_proj"]
TOL = {"float64": 1e-12, "float32": 1e-5}


@pytest.mark.parametrize("name", EQUAL)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_equals_torch_nn_over_100_steps(name, dtype, backend):
    c = compare_with_target(load(name), "torch", T=100, dtype=dtype, backend=backend)
    assert c.scale > 0.1  # the outputs are not trivially zero
    assert max(c.outputs, c.state, c.d_inputs) <= TOL[dtype], c


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_gru_cho_does_not_equal_gru_cell(dtype):
    """Same weights through the same layout, but the reset gate sits before the matmul."""
    c = compare_with_target(load("gru_cho"), "torch", T=100, dtype=dtype)
    assert c.outputs > 1e-2, c
    assert not load("gru_cho").spec.layouts[0].equivalent


@pytest.mark.parametrize("name", EQUAL + ["gru_cho"])
def test_layout_round_trip(name):
    cell = load(name)
    sizes = cell.sizes(sizes={"input": 3, "hidden": 4, "proj": 2})
    params = cell.init_params(sizes=sizes, seed=1)
    tensors = to_target(cell.ir, "torch", params, sizes)
    back = from_target(cell.ir, "torch", tensors, sizes)
    assert set(back) == set(cell.ir.param_names)
    for k in back:
        np.testing.assert_array_equal(back[k], params[k])


def test_layout_rejects_wrong_shapes():
    from lstm_verify.errors import ShapeError

    cell = load("lstm")
    sizes = cell.sizes(3, 4)
    tensors = to_target(cell.ir, "torch", cell.init_params(3, 4), sizes)
    tensors["weight_hh"] = tensors["weight_hh"][:-1]
    with pytest.raises(ShapeError, match="weight_hh"):
        from_target(cell.ir, "torch", tensors, sizes)
