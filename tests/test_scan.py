"""The parallel-scan implementations (lstm_verify.scan) against the sequential generated code,
the mpmath reference and torch autograd; detection from the IR."""

import re

import numpy as np
import pytest
import torch

import lstm_verify as lv
from lstm_verify.compare import assert_close
from lstm_verify.scan import ScanError, is_scan, scan_form

SCAN_CELLS = ["min_gru", "min_lstm"]
TS = [1, 2, 3, 7, 33]
I, H, B = 3, 4, 2

# Two states with their own recurrences, a state-reading pointwise node to inline, a step
# counter and a buffer, a diagonal parameter whose coefficient has no batch axis, and a lin of a
# pointwise node: the parts of the generator the two catalog cells leave out.
PROBE = """
name = "scan_probe"
title = "scan probe"
cite = ["tests/test_scan.py"]
input = "x"
state = ["h", "c"]
step = "t"
diagonal = ["p"]
buffers = { period = { init = "clockwork_periods", modules = 2 } }
equations = [
  "z = sigmoid(lin(x))",
  "k = sigmoid(p)*c",
  "c' = k + tick(t, period)*tanh(lin(x))",
  "h' = (1 - z)*h + z*tanh(lin(x, z))",
]
"""


@pytest.fixture(scope="module")
def probe(tmp_path_factory):
    path = tmp_path_factory.mktemp("specs") / "scan_probe.toml"
    path.write_text(PROBE)
    return lv.load(path)


def _cell(name, probe):
    return probe if name == "scan_probe" else lv.load(name)


def _case(cell, T, seed):
    rng = np.random.default_rng([seed, T])
    p = cell.init_params(input_size=I, hidden_size=H, seed=seed)
    x = rng.normal(size=(T, B, I))
    s0 = {s: rng.normal(size=(B, H)) for s, _ in cell.ir.states}
    dy = rng.normal(size=(T, B, H))
    ds = {s: rng.normal(size=(B, H)) for s, _ in cell.ir.states}
    return p, x, s0, dy, ds


def _on(backend, d):
    if backend == "numpy":
        return d
    if isinstance(d, dict):
        return {k: torch.tensor(v) for k, v in d.items()}
    return torch.tensor(d)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("name", SCAN_CELLS + ["scan_probe"])
def test_scan_matches_the_sequential_code(name, backend, probe):
    """Forward, backward and trace equal the sequential generated code's (float64, 1e-13)."""
    cell = _cell(name, probe)
    seq, scan = getattr(cell, backend)(), cell.scan(backend)
    for T in TS:
        p, x, s0, dy, ds = (_on(backend, v) for v in _case(cell, T, seed=1))
        runs = [impl.forward(p, x, s0, t0=5, save=True) for impl in (seq, scan)]
        traces = [[], []]
        grads = [impl.backward(p, r.cache, dy, ds, trace=tr) for impl, r, tr in zip((seq, scan), runs, traces)]
        ctx = dict(cell=name, dtype=np.float64, rtol=1e-13, atol=1e-13, context=f" ({backend}, T={T})")
        assert_close(runs[1].outputs, runs[0].outputs, quantity="outputs", **ctx)
        for s in ds:
            assert_close(runs[1].state[s], runs[0].state[s], quantity=f"final {s}", **ctx)
            assert_close(grads[1].state[s], grads[0].state[s], quantity=f"dL/d{s}0", **ctx)
            for t, (a, b) in enumerate(zip(*traces)):
                assert_close(b[s], a[s], quantity=f"trace {s}, {t} from the end", **ctx)
        assert len(traces[1]) == T
        assert list(grads[1].params) == list(cell.ir.param_names)
        for k in grads[0].params:
            assert_close(grads[1].params[k], grads[0].params[k], quantity=f"dL/d{k}", **ctx)
        assert_close(grads[1].inputs["x"], grads[0].inputs["x"], quantity="dL/dx", **ctx)


@pytest.mark.parametrize("name", SCAN_CELLS + ["scan_probe"])
def test_scan_matches_mpmath(name, probe):
    cell = _cell(name, probe)
    for T in (1, 7, 33):
        p, x, s0, _, _ = _case(cell, T, seed=2)
        ref_out, ref_state = cell.reference(p, x, s0, t0=3)
        for backend in ("numpy", "torch"):
            run = cell.scan(backend).forward(_on(backend, p), _on(backend, x), _on(backend, s0), t0=3)
            ctx = dict(cell=name, dtype=np.float64, rtol=1e-13, atol=1e-14, context=f" ({backend}, T={T})")
            assert_close(run.outputs, ref_out, quantity="outputs vs mpmath", **ctx)
            for s in s0:
                assert_close(run.state[s], ref_state[s], quantity=f"final {s} vs mpmath", **ctx)


@pytest.mark.parametrize("name", SCAN_CELLS + ["scan_probe"])
def test_scan_backward_matches_autograd_through_the_scan(name, probe):
    """torch autograd through the scan forward (the out-of-place doubling scan it records)
    against the generated backward (the in-place work-efficient scan)."""
    cell = _cell(name, probe)
    scan = cell.scan("torch")
    for T in (2, 7, 33):
        p, x, s0, dy, ds = (_on("torch", v) for v in _case(cell, T, seed=3))
        leaves = [v.requires_grad_() for k, v in p.items() if k in cell.ir.param_names] + [x.requires_grad_()]
        leaves += [v.requires_grad_() for v in s0.values()]
        run = scan.forward(p, x, s0, t0=2, save=True)
        loss = (run.outputs * dy).sum() + sum((run.state[s] * ds[s]).sum() for s in ds)
        auto = torch.autograd.grad(loss, leaves)
        with torch.no_grad():
            g = scan.backward(p, run.cache, dy, ds)
        ours = [g.params[k] for k in p if k in cell.ir.param_names] + [g.inputs["x"]] + [g.state[s] for s in s0]
        for a, b in zip(ours, auto):
            assert_close(a, b, cell=name, quantity="gradient vs autograd", dtype=np.float64, rtol=1e-12,
                         atol=1e-13, context=f" (T={T})")  # fmt: skip


def test_long_products_underflow_and_the_scan_still_matches_the_loop():
    """Over 5000 steps the products of 1 - z underflow to exactly 0 in float64; the scan never
    divides by them, so it stays finite and equal to the loop."""
    cell = lv.load("min_gru")
    T = 5000
    p, x, s0, dy, ds = _case(cell, T, seed=4)
    lin = np.einsum("tbi,hi->tbh", x, p["W_z_x"]) + p["b_z"]
    assert (np.prod(1 - 1 / (1 + np.exp(-lin)), axis=0) == 0).all(), "the products do not underflow"
    for backend in ("numpy", "torch"):
        pp, xx, ss, dd, dds = (_on(backend, v) for v in (p, x, s0, dy, ds))
        runs = [impl.forward(pp, xx, ss, save=True) for impl in (getattr(cell, backend)(), cell.scan(backend))]
        grads = [impl.backward(pp, r.cache, dd, dds) for impl, r in zip((getattr(cell, backend)(), cell.scan(backend)), runs)]
        ctx = dict(cell="min_gru", dtype=np.float64, rtol=1e-12, atol=1e-12, context=f" ({backend}, T={T})")
        assert_close(runs[1].outputs, runs[0].outputs, quantity="outputs", **ctx)
        for k in grads[0].params:
            assert_close(grads[1].params[k], grads[0].params[k], quantity=f"dL/d{k}", **ctx)
        assert_close(grads[1].state["h"], grads[0].state["h"], quantity="dL/dh0", **ctx)


def test_scan_float32_and_empty_sequences():
    cell = lv.load("min_lstm")
    p, x, s0, dy, _ = _case(cell, 33, seed=5)
    p32 = {k: v.astype(np.float32) for k, v in p.items()}
    out32 = cell.scan("numpy").forward(p32, x.astype(np.float32), {"h": s0["h"].astype(np.float32)}).outputs
    assert out32.dtype == np.float32
    ref = cell.numpy().forward(p, x, s0).outputs
    assert_close(out32, ref, cell="min_lstm", quantity="float32 outputs", dtype=np.float32)
    run = cell.scan("numpy").forward(p, x[:0], s0, save=True)
    assert run.outputs.shape == (0, B, H)
    assert_close(run.state["h"], s0["h"], cell="min_lstm", quantity="final h of T = 0")
    g = cell.scan("numpy").backward(p, run.cache, dy[:0], {"h": np.ones((B, H))})
    assert_close(g.state["h"], np.ones((B, H)), cell="min_lstm", quantity="dL/dh0 of T = 0")


def test_detection_accepts_the_min_cells():
    for name in SCAN_CELLS:
        form = scan_form(lv.load(name).ir)
        assert [r.state for r in form.recurrences] == ["h"]
    assert str(scan_form(lv.load("min_gru").ir).recurrences[0]) == "h' = a*h + b with a = 1 - z, b = h_tilde*z"
    assert str(scan_form(lv.load("min_lstm").ir).recurrences[0]) == "h' = a*h + b with a = f_norm, b = h_tilde*i_norm"


@pytest.mark.parametrize("name, state, where", [
    ("lstm", "h", "i = sigmoid(lin(x, h))"),
    ("gru", "h", "r = sigmoid(lin(x, h))"),
    ("rnn_tanh", "h", "h' = tanh(lin(x, h))"),
])  # fmt: skip
def test_detection_rejects_cells_whose_gates_read_the_state(name, state, where):
    cell = lv.load(name)
    assert not is_scan(cell.ir)
    with pytest.raises(ScanError, match=rf"its state {state} enters lin\(\.\.\.\) in .{re.escape(where)}") as info:
        cell.scan("numpy")
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("equations, message", [
    (['z = sigmoid(lin(x))', "h' = z*h*h + lin(x)"], r"its state h reads itself through h\*\*2\*z"),
    (['z = sigmoid(lin(x))', "c' = z*c + lin(x)", "h' = z*h + c"], r"the new value of h reads the state c"),
    (['z = sigmoid(lin(x))', "h' = tanh(z*h)"], r"its state h reads itself through tanh\(h\*z\)"),
])  # fmt: skip
def test_detection_names_the_state_that_is_not_affine(tmp_path, equations, message):
    states = ["h", "c"] if any(e.startswith("c'") for e in equations) else ["h"]
    path = tmp_path / "bad.toml"
    path.write_text(f"name = 'bad'\ncite = ['test']\ninput = 'x'\nstate = {states!r}\nequations = {equations!r}\n")
    with pytest.raises(ScanError, match=message):
        lv.load(path).scan("numpy")


PAPER_MIN_LSTM = """
name = "min_lstm_quotient"
title = "minLSTM with the normalised gates written as quotients"
cite = ["Feng et al. 2024, Section 3"]
input = "x"
state = ["h"]
equations = [
  "f = sigmoid(lin(x))",
  "i = sigmoid(lin(x))",
  "h_tilde = lin(x)",
  "h' = f/(f + i)*h + i/(f + i)*h_tilde",
]
"""


def test_min_lstm_is_the_papers_quotient_and_finite_where_the_quotient_is_not(tmp_path):
    """The catalog's sigmoid(log f - log i) equals f/(f + i) as the paper writes it (its mpmath
    reference); where both gates underflow, the quotient is 0/0 in float64 and ours is not."""
    path = tmp_path / "min_lstm_quotient.toml"
    path.write_text(PAPER_MIN_LSTM)
    paper, cell = lv.load(path), lv.load("min_lstm")
    rename = {"W_f_x": "W_f_pre_x", "b_f": "b_f_pre", "W_i_x": "W_i_pre_x", "b_i": "b_i_pre",
              "W_h_tilde_x": "W_h_tilde_x", "b_h_tilde": "b_h_tilde"}  # fmt: skip
    p, x, s0, _, _ = _case(cell, 7, seed=6)
    # -800: sigmoid underflows to 0 in float64; softplus(800 + u) - softplus(800 + v) loses
    # log2(800) bits to cancellation, hence atol 1e-13 on outputs of order 1
    for shift in (0.0, -800.0):
        p = p | {"b_f_pre": p["b_f_pre"] + shift, "b_i_pre": p["b_i_pre"] + shift}
        ref, _ = paper.reference({k: p[v] for k, v in rename.items()}, x, s0)
        for impl in (cell.numpy(), cell.scan("numpy")):
            assert_close(impl.forward(p, x, s0).outputs, ref, cell="min_lstm", quantity="outputs vs the quotient",
                         dtype=np.float64, rtol=1e-13, atol=1e-13, context=f" (biases shifted by {shift})")  # fmt: skip
    with np.errstate(invalid="ignore", divide="ignore"):
        quotient = paper.numpy().forward({k: p[v] for k, v in rename.items()}, x, s0).outputs
    assert np.isnan(quotient).any()


def test_show_says_which_cells_run_as_a_scan(capsys):
    from lstm_verify.cli import main

    assert main(["show", "min_gru"]) == 0
    assert "runs as an associative scan (cell.scan): h' = a*h + b with a = 1 - z" in capsys.readouterr().out
    assert main(["show", "gru"]) == 0
    assert "scan" not in capsys.readouterr().out
