"""The public API: loading, parameters, validation of bad input, caching."""

import numpy as np
import pytest

import lstm_verify as lv
from lstm_verify.errors import DtypeError, ShapeError, SpecError


def test_minute_tour(tmp_path):
    cell = lv.load("lstm")
    params = cell.init_params(input_size=3, hidden_size=5, init="torch_default", seed=0)
    xs = np.random.default_rng(0).standard_normal((10, 2, 3))
    run = cell.numpy().forward(params, xs, save=True)
    grads = cell.numpy().backward(params, run.cache, d_outputs=np.ones_like(run.outputs))
    assert run.outputs.shape == (10, 2, 5) and set(run.state) == {"h", "c"}
    assert set(grads.params) == set(cell.ir.param_names)
    assert grads.inputs["x"].shape == xs.shape and grads.state["c"].shape == (2, 5)
    out, state = cell.numpy().step(params, xs[0])
    np.testing.assert_array_equal(out, run.outputs[0])
    assert "lstm" in lv.catalog()


def test_load_by_path(tmp_path):
    text = (lv.cell.SPEC_DIR / "gru.toml").read_text()
    path = tmp_path / "mygru.toml"
    path.write_text(text.replace('name = "gru"', 'name = "mygru"'))
    assert lv.load(path).name == "mygru"
    with pytest.raises(SpecError, match="no catalog cell named 'nope'"):
        lv.load("nope")
    with pytest.raises(SpecError, match="missing.toml"):
        lv.load(tmp_path / "missing.toml")


def test_sizes_are_checked():
    cell = lv.load("lstm_proj")
    with pytest.raises(ShapeError, match="proj"):
        cell.init_params(3, 4)
    p = cell.init_params(3, 4, sizes={"proj": 2})
    assert p["W_h_m"].shape == (2, 4) and p["W_i_h"].shape == (4, 2)
    with pytest.raises(ShapeError, match="positive int"):
        cell.init_params(3, 0, sizes={"proj": 2})
    with pytest.raises(ValueError, match="unknown initialisation"):
        cell.init_params(3, 4, sizes={"proj": 2}, init="bogus")


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda p, x, s: p.pop("b_i"), "missing parameters"),
        (lambda p, x, s: p.__setitem__("W_f_h", np.zeros((4, 3))), "size 'hidden'"),
        (lambda p, x, s: x.__setitem__("x", np.zeros((5, 2, 7))), "features"),
        (lambda p, x, s: x.__setitem__("x", np.zeros((5, 3))), r"\(T, B, input\)"),
        (lambda p, x, s: s.__setitem__("c", np.zeros((3, 4))), "state 'c'"),
        (lambda p, x, s: s.pop("c"), "state lacks 'c'"),
        (lambda p, x, s: x["x"].__setitem__((1, 0, 0), np.nan), "NaN"),
        (lambda p, x, s: p["b_o"].__setitem__(0, np.inf), "NaN or infinity"),
        (lambda p, x, s: x.__setitem__("y", x["x"]), "takes inputs"),
    ],
)
def test_bad_input_is_named(mutate, message):
    cell = lv.load("lstm")
    params = cell.init_params(3, 4)
    inputs = {"x": np.zeros((5, 2, 3))}
    state = {"h": np.zeros((2, 4)), "c": np.zeros((2, 4))}
    mutate(params, inputs, state)
    with pytest.raises(ShapeError, match=message):
        cell.numpy().forward(params, inputs, state)


def test_dtype_mismatch_is_a_dtype_error_naming_both_dtypes():
    cell = lv.load("lstm")
    params = cell.init_params(3, 4)
    xs = np.zeros((5, 2, 3), dtype=np.float32)
    with pytest.raises(DtypeError, match=r"input 'x' has dtype float32, parameters have float64") as info:
        cell.numpy().forward(params, xs)
    assert not isinstance(info.value, ShapeError)
    assert isinstance(info.value, TypeError) and isinstance(info.value, ValueError)


def test_torch_input_is_validated_too():
    import torch

    cell = lv.load("gru")
    params = {k: torch.tensor(v) for k, v in cell.init_params(3, 4).items()}
    xs = torch.zeros(5, 2, 3, dtype=torch.float64)
    xs[2, 1, 0] = float("nan")
    with pytest.raises(ShapeError, match="NaN"):
        cell.torch().forward(params, xs)


def test_generated_source_cache(tmp_path, monkeypatch):
    # the cache's security and repair are tested in test_runtime.py; here only that an entry is
    # written and served
    from lstm_verify import runtime

    monkeypatch.setenv("LSTM_VERIFY_CACHE", str(tmp_path))
    cell = lv.load("mgu")
    cold = runtime.source(cell.ir, "numpy")
    files = [f for f in tmp_path.iterdir() if f.suffix == ".py"]
    assert len(files) == 1 and cell.spec.sha256[:16] in files[0].name
    assert runtime.source(cell.ir, "numpy") == cold
    assert runtime.source(cell.ir, "numpy", use_cache=False) == cold


def test_write_atomic_leaves_nothing_on_failure(tmp_path):
    from lstm_verify.runtime import write_atomic

    target = tmp_path / "out.py"
    target.write_text("old")

    with pytest.raises(TypeError):
        write_atomic(target, 123)  # not text: the write fails half-way
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.py"]
