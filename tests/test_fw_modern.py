"""Third-party torch packages as built-in subjects, checked against the catalog through the public
check: the ``sru`` package's SRUCell (its pure-torch recurrence and its compiled CPU kernel) and
the official ``xlstm`` package's sLSTM cell (its pure-torch ``vanilla`` backend); the layout
forms they need (``interleave``, ``heads``); deliberately wrong layouts; a missing package."""

from __future__ import annotations

import re
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import lstm_verify as lv
from lstm_verify.conformance import check, make_layout, reference_states
from lstm_verify.errors import MissingExtraError, ShapeError, SpecError
from lstm_verify.frameworks import builtin
from lstm_verify.layout import from_target, stack, stack_gradients

SPECS = Path(__file__).resolve().parent.parent / "specs"
EXAMPLES = 4
SRU_OK = {"rescale": False}  # SRUCell's options that compute the paper's cell

# a cell with 2-head block-diagonal recurrence and a layout that stores it per head
HEADS_SPEC = """
name = "heads_demo"
title = "block-diagonal recurrence"
cite = ["test"]
input = "x"
state = ["h"]
buffers = { head = { init = "heads", heads = 2 } }
masks = { W_a_h = "head_in == head_out", W_b_h = "head_in == head_out" }
equations = ["a = lin(x, h)", "b = lin(x, h)", "h' = tanh(a)*sigmoid(b)"]

[layouts.demo]
target = "demo"

[layouts.demo.tensors]
W = ["W_a_x", "W_b_x"]
R = { heads = 2, rows = ["W_a_h", "W_b_h"] }
bias = ["b_a", "b_b"]
"""


def _need(module: str):
    """The package, or a skip that says how to install it. Importing sru compiles its C++ CPU
    kernel (cached after the first time) and warns that its CUDA kernels were not built."""
    pytest.importorskip("torch", reason="the torch extra is not installed")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Just-in-time loading and compiling the CUDA kernels of SRU")
        return pytest.importorskip(module, reason=f"{module} is not installed: pip install 'lstm-verify[{module}]'")


def _random_params(cell, sizes, seed=0):
    rng = np.random.default_rng(seed)
    return {k: rng.normal(size=v.shape) if k in cell.ir.param_names else v
            for k, v in cell.init_params(sizes=sizes).items()}  # fmt: skip


def _slstm_positive_n(tmp_path) -> Path:
    """The catalog's slstm with initial normalisers drawn from [0.001, 1] instead of [0, 1]:
    xlstm's cell takes another stabiliser when every n is exactly 0 (test_xlstm_zero_normaliser)."""
    text = (SPECS / "slstm.toml").read_text()
    new, count = re.subn(r"(?m)^ranges = \{ n = \[0, 1\] \}$", "ranges = { n = [0.001, 1] }", text)
    assert count == 1, "specs/slstm.toml no longer draws n from [0, 1]: update this test"
    path = tmp_path / "slstm.toml"
    path.write_text(new)
    return path


def _gradient_rows_ran(report):
    rows = [r for r in report.rows if r.name.startswith("gradients")]
    return bool(rows) and all(not r.skipped and r.examples > 0 for r in rows)


# --------------------------------------------------------------------------- layout forms


def test_interleave_round_trip():
    """sru's weight (I, 3H): column 3*j + k is row j of the k-th block (candidate, forget, reset)."""
    cell = lv.load("sru")
    sizes = cell.sizes(sizes={"hidden": 3})
    params = _random_params(cell, sizes)
    layout = make_layout(cell.ir, "sru")
    weight = stack(layout, params)["weight"]
    assert weight.shape == (3, 9)
    np.testing.assert_array_equal(weight[:, 3 * 2 + 1], params["W_f_x"][2])
    np.testing.assert_array_equal(weight[:, 3 * 1 + 0], params["W_c_x"][1])
    back = from_target(cell.ir, layout, stack(layout, params), sizes)
    for k in ("W_c_x", "W_f_x", "W_r_x", "v_f", "v_r", "b_f", "b_r"):
        np.testing.assert_array_equal(back[k], params[k])
    with pytest.raises(ShapeError, match="interleaved"):
        from_target(cell.ir, layout, {**stack(layout, params), "weight": np.zeros((3, 8))}, sizes)


def test_heads_round_trip(tmp_path):
    """Slice k of a heads tensor stacks the k-th diagonal blocks; off-block entries (masked in the
    spec) are not stored, and come back as zeros."""
    path = tmp_path / "heads_demo.toml"
    path.write_text(HEADS_SPEC)
    cell = lv.load(path)
    sizes = cell.sizes(sizes={"input": 2, "hidden": 4})
    params = _random_params(cell, sizes)
    layout = make_layout(cell.ir, "demo")
    R = stack(layout, params)["R"]
    assert R.shape == (2, 4, 2)
    np.testing.assert_array_equal(R[1, :2], params["W_a_h"][2:, 2:])
    np.testing.assert_array_equal(R[1, 2:], params["W_b_h"][2:, 2:])
    np.testing.assert_array_equal(R[0, 2:], params["W_b_h"][:2, :2])
    back = from_target(cell.ir, layout, stack(layout, params), sizes)
    mask = np.kron(np.eye(2), np.ones((2, 2)))
    np.testing.assert_array_equal(back["W_a_h"], params["W_a_h"] * mask)
    np.testing.assert_array_equal(stack_gradients(layout, {k: np.ones_like(v) for k, v in params.items()})["R"],
                                  np.ones((2, 4, 2)))  # fmt: skip
    with pytest.raises(ShapeError, match="2 heads"):
        from_target(cell.ir, layout, {**stack(layout, params), "R": np.zeros((4, 2, 2))}, sizes)
    with pytest.raises(ShapeError, match="multiples of 2"):
        stack(layout, {**params, "W_a_h": np.zeros((3, 3))})


@pytest.mark.parametrize("value", ['{ heads = 0, rows = ["W_a_h"] }', "{ heads = 2, rows = [] }",
                                   '{ heads = 2, rows = ["W_a_h"], by = 1 }', '{ heads = true, rows = ["W_a_h"] }',
                                   '{ interleave = [["b_a"], ["b_b"]] }'])  # fmt: skip
def test_malformed_forms_are_spec_errors(tmp_path, value):
    path = tmp_path / "bad.toml"
    path.write_text(HEADS_SPEC.replace('R = { heads = 2, rows = ["W_a_h", "W_b_h"] }', f"R = {value}"))
    with pytest.raises(SpecError, match="tensor 'R' must be"):
        lv.load(path)


# --------------------------------------------------------------------------- sru


def test_sru_conforms():
    """SRUCell(rescale=False) on its pure-torch path, forward and gradients, at float64."""
    _need("sru")
    report = check("sru", "sru:SRUCell", options=SRU_OK, examples=EXAMPLES, seed=0)
    assert report.passed, report.table()
    assert report.precision == "float64" and _gradient_rows_ran(report), report.table()


def test_sru_compiled_cpu_kernel_conforms_in_float32():
    """kernel="cpu": sru's compiled CPU forward (autograd off), which reads float32 only."""
    _need("sru")
    report = check("sru", "sru:SRUCell", options={**SRU_OK, "kernel": "cpu"}, examples=EXAMPLES, seed=0)
    assert report.passed, report.table()
    assert report.precision == "float32"
    assert all("runs forward only" in r.skipped for r in report.rows if r.name.startswith("gradients"))


def test_sru_v1_is_sru_without_the_state_terms():
    """v1=True zeroes and freezes weight_c: the spec's cell with v_f = v_r = 0 (layout sru_v1)."""
    _need("sru")
    eng = builtin("sru:SRUCell")({"hidden": 3}, {**SRU_OK, "v1": True}, "float64")
    assert eng.frozen() == {"weight_c"} and set(eng.tensors()) == {"weight", "bias"}
    report = check("sru", "sru:SRUCell", options={**SRU_OK, "v1": True}, examples=EXAMPLES, seed=0)
    assert report.passed, report.table()


def test_sru_default_rescale_has_no_layout():
    """SRUCell's default rescale=True scales the highway x by sqrt(3): not the paper's cell."""
    _need("sru")
    report = check("sru", "sru:SRUCell", examples=EXAMPLES, seed=0, identify=False)
    assert not report.passed and "rescale=False" in report.error, report.table()


@pytest.mark.parametrize("weight", [["W_c_x", "W_f_x", "W_r_x"], {"interleave": [["W_f_x", "W_c_x", "W_r_x"]]}],
                         ids=["blocks-not-interleaved", "gates-swapped"])  # fmt: skip
def test_sru_wrong_layout_is_caught(weight):
    _need("sru")
    layout = {"tensors": {"weight": weight, "weight_c": ["v_f", "v_r"], "bias": ["b_f", "b_r"]},
              "transpose": ["weight"], "state": ["h", "c"]}  # fmt: skip
    report = check("sru", "sru:SRUCell", layout=layout, options=SRU_OK, examples=EXAMPLES, seed=0, identify=False,
                   shrink=False)  # fmt: skip
    assert not report.passed and report.rows[0].first_failure is not None, report.table()


# --------------------------------------------------------------------------- xlstm


def test_xlstm_slstm_conforms(tmp_path):
    """xlstm's sLSTMCell (vanilla backend, 4 heads of 2 units) against slstm: states h, c, n, m
    at every step and gradients, at float64, from initial normalisers in [0.001, 1]."""
    _need("xlstm")
    report = check(_slstm_positive_n(tmp_path), "xlstm:sLSTMCell", examples=EXAMPLES, seed=0)
    assert report.passed, report.table()
    assert report.precision == "float64" and _gradient_rows_ran(report), report.table()


def test_xlstm_zero_normaliser_takes_another_stabiliser():
    """When every n is exactly 0 (xlstm's own initial state), its cell sets m' = i~ where the paper
    has max(log f + m, i~): c', n', m' differ from the paper's by a common factor, h' does not."""
    _need("xlstm")
    cell = lv.load("slstm")
    eng = builtin("xlstm:sLSTMCell")({"input": 3, "hidden": 8}, {}, "float64")
    sizes = eng.sizes
    params = _random_params(cell, sizes, seed=3)
    params["b_it"] = np.full(8, -30.0)  # i~ far below log f + m = log sigmoid(f~)
    eng.set_tensors(stack(make_layout(cell.ir, "xlstm"), params))
    rng = np.random.default_rng(4)
    x = rng.normal(size=(1, 2, 3))
    zero = {s: np.zeros((2, 8)) for s in ("h", "c", "n", "m")}
    (got,) = eng.run(x, tuple(zero[s] for s in ("h", "c", "n", "m")))
    (ref,) = reference_states(cell, params, {"x": x}, zero)
    np.testing.assert_allclose(got[0], ref["h"], rtol=0, atol=1e-12)
    i_tilde = x[0] @ params["W_it_x"].T + params["b_it"]
    np.testing.assert_allclose(got[3], i_tilde, rtol=0, atol=1e-12)
    assert np.all(ref["m"] > i_tilde + 1.0)


def test_xlstm_wrong_gate_order_is_caught(tmp_path):
    """Input weights in the order of sLSTMLayer's module names (its fgate feeds i, its igate f)."""
    _need("xlstm")
    layout = {"tensors": {"W": ["W_ft_x", "W_it_x", "W_zt_x", "W_ot_x"],
                          "_recurrent_kernel_": {"heads": 4, "rows": ["W_it_h", "W_ft_h", "W_zt_h", "W_ot_h"]},
                          "_bias_": ["b_it", "b_ft", "b_zt", "b_ot"]},
              "state": ["h", "c", "n", "m"]}  # fmt: skip
    report = check(_slstm_positive_n(tmp_path), "xlstm:sLSTMCell", layout=layout, examples=EXAMPLES, seed=0,
                   identify=False, shrink=False)  # fmt: skip
    assert not report.passed and report.rows[0].first_failure is not None, report.table()


def test_xlstm_cuda_backend_says_what_it_needs():
    _need("xlstm")
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the cuda backend may build here")
    with pytest.raises(ShapeError, match="xlstm could not build it: .*CUDA build of torch"):
        builtin("xlstm:sLSTMCell")({"input": 3, "hidden": 8}, {"backend": "cuda"}, "float64")


# --------------------------------------------------------------------------- missing packages


@pytest.mark.parametrize("ref, module", [("sru:SRUCell", "sru"), ("xlstm:sLSTMCell", "xlstm")])
def test_missing_package_names_its_extra(monkeypatch, ref, module):
    pytest.importorskip("torch", reason="the torch extra is not installed")
    monkeypatch.setitem(sys.modules, module, None)  # import raises ImportError(name=module)
    with pytest.raises(MissingExtraError, match=rf"pip install 'lstm-verify\[{module}\]'"):
        builtin(ref)({"input": 3, "hidden": 8}, {}, "float64")
