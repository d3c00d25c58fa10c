"""The conformance check and identification on correct and mutated implementations."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import strategies as st

import lstm_verify as lv
from lstm_verify.cli import main
from lstm_verify.compare import sensitivity, tolerance
from lstm_verify.conformance import _settings, _strategy, check, run_property, subject
from lstm_verify.errors import GenerationError, ShapeError
from lstm_verify.identify import identify

from mutants import CORRECT, MUTANTS, HandLSTM, HandRNN, as_subject


@pytest.mark.parametrize("name, cell, factory, options, expected", CORRECT, ids=[c[0] for c in CORRECT])
def test_correct_implementations_conform(name, cell, factory, options, expected):
    report = check(cell, as_subject(name, factory, options), seed=0, shrink=False)
    assert report.passed, report.table()
    assert all(r.examples > 0 for r in report.rows if not r.skipped)


@pytest.mark.parametrize("name, cell, factory, options, expected", MUTANTS, ids=[m[0] for m in MUTANTS])
def test_mutant_is_caught_and_identified(name, cell, factory, options, expected):
    """Every mutant fails within the default example budget; where a catalog cell or a
    convention variant explains it, identification names that one first."""
    report = check(cell, as_subject(name, factory, options), seed=0, shrink=False)
    assert not report.passed, report.table()
    summary = report.identification.summary()
    if expected is not None:
        assert expected in summary.split("; against")[0], summary
    else:
        assert "not `" not in summary, summary  # names no wrong alternative


def test_float32_inside_is_checked_at_float32_and_never_called_another_cell():
    """An implementation that returns float64 but computes in float32: dtype auto finds it (its
    error on a benign probe is float32 rounding) and says so first; a float64 check fails it,
    and identification says it is the claimed cell in float32, not a different cell."""
    factory = subject(lambda **s: HandLSTM(**s, float32_inside=True), label="f32 inside")
    report = check("lstm", factory, seed=0, examples=20, shrink=False)
    assert report.passed, report.table()
    assert report.precision == "float32"
    assert report.table().splitlines()[0].startswith("computes in float32 (float64 results with relative error")
    strict = check("lstm", factory, seed=0, examples=20, shrink=False, dtype="float64")
    assert not strict.passed
    summary = strict.identification.summary()
    assert summary.startswith("computes `lstm` in float32"), summary
    # an implementation computing in float64 is checked at float64
    assert check("lstm", torch.nn.LSTMCell, seed=0, examples=5).precision == "float64"


def test_failure_is_shrunk_and_names_quantity_step_and_values():
    report = check("rnn_tanh", subject(lambda **s: HandRNN(**s, transpose_hh=True)), seed=1, examples=40)
    assert not report.passed
    message = next(r.message for r in report.rows if not r.passed)
    assert message.startswith("rnn_tanh: h' at step ")
    assert "got " in message and "expected " in message and "tolerance" in message
    assert "on rnn_tanh (" in message and "param W_h_h" in message  # the shrunk example itself
    # shrunk: the transposition needs two hidden units to show, and a step or two
    assert "'hidden': 2" in message
    steps = int(message.split(" steps,")[0].rsplit(" ", 1)[1])
    assert steps <= 2, message


def test_identification_without_a_claim():
    ident = identify(torch.nn.GRUCell)
    assert ident.matches and ident.matches[0].cell.name == "gru"
    ident = identify(lambda **s: HandLSTM(**s, state_order="ch"), cells=["lstm"])
    assert "state passed as (c, h)" in ident.summary()


def test_user_layout_with_own_names_and_transposed_weights():
    class Mine(torch.nn.Module):  # stores x-weights as (input, 4H), gates i, f, g, o
        def __init__(self, input_size, hidden_size):
            super().__init__()
            self.kernel = torch.nn.Parameter(torch.empty(input_size, 4 * hidden_size))
            self.recurrent = torch.nn.Parameter(torch.empty(4 * hidden_size, hidden_size))
            self.bias = torch.nn.Parameter(torch.empty(4 * hidden_size))

        def forward(self, x, state):
            h, c = state
            i, f, g, o = (x @ self.kernel + h @ self.recurrent.T + self.bias).chunk(4, 1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            return torch.sigmoid(o) * torch.tanh(c), c

    layout = {"tensors": {"kernel": ["W_i_x", "W_f_x", "W_g_x", "W_o_x"],
                          "recurrent": ["W_i_h", "W_f_h", "W_g_h", "W_o_h"],
                          "bias": ["b_i", "b_f", "b_g", "b_o"]}, "transpose": ["kernel"]}  # fmt: skip
    report = check("lstm", Mine, layout=layout, examples=30, seed=0)
    assert report.passed, report.table()
    with pytest.raises(ShapeError, match="not parameters of lstm"):
        check("lstm", Mine, layout={"kernel": ["W_q_x"]}, examples=5)
    with pytest.raises(ShapeError, match="unmapped"):
        check("lstm", Mine, layout={"kernel": ["W_i_x"]}, examples=5)


def test_numpy_function_subject_checks_values_and_skips_gradients():
    cell = lv.load("gru")
    generated = cell.numpy()

    def factory(**sizes):
        return lambda p, x, h: (generated.step(p, x, {"h": h})[1]["h"],)

    report = check(cell, factory, backend="numpy", examples=30, seed=0)
    assert report.passed, report.table()
    assert any("no gradients" in r.skipped for r in report.rows)


def test_condition_scaled_tolerance():
    # f = a - b with a ~ b: the base tolerance is relative to |f|, tiny; the condition estimate
    # adds room proportional to |a| + |b|, which is what rounding of a and b can move f by
    a, b = np.array([1e3 * (1 + 1e-12)]), np.array([1e3])
    f = lambda o: o["a"] - o["b"]  # noqa: E731
    sens = sensitivity(f, {"a": a, "b": b})
    assert 1e3 <= sens[0] <= 2e3 * (1 + 1e-6)
    ref = f({"a": a, "b": b})
    base, scaled = tolerance(np.float64, ref), tolerance(np.float64, ref, sens)
    off_by_rounding = 4 * np.finfo(float).eps * 1e3
    assert off_by_rounding > base[0] and off_by_rounding < scaled[0]
    # a well-conditioned value keeps the tight tolerance
    s2 = sensitivity(lambda o: 2 * o["a"], {"a": np.array([1.0])})
    assert tolerance(np.float64, np.array([2.0]), s2)[0] < 1e-11


def test_cli_check_impl(capsys):
    assert main(["check", "gru", "--impl", "torch.nn:GRUCell", "--examples", "20", "--seed", "0"]) == 0
    assert "conforms" in capsys.readouterr().out
    assert main(["check", "gru_cho", "--impl", "torch.nn:GRUCell", "--examples", "20", "--seed", "0"]) == 1
    out = capsys.readouterr().out
    assert "DOES NOT CONFORM" in out and "matches `gru`" in out


def test_cli_identify(capsys):
    assert main(["identify", "--impl", "torch.nn:GRUCell"]) == 0
    assert "matches `gru`" in capsys.readouterr().out


def test_cli_layout_file_and_bad_input(tmp_path, capsys, monkeypatch):
    mod = tmp_path / "user_cells.py"
    mod.write_text("import torch\nclass Cell(torch.nn.LSTMCell):\n    pass\n")
    layout = tmp_path / "layout.json"
    layout.write_text(json.dumps({"tensors": {"weight_ih": ["W_i_x", "W_f_x", "W_g_x", "W_o_x"],
                                              "weight_hh": ["W_i_h", "W_f_h", "W_g_h", "W_o_h"],
                                              "bias_ih": ["b_i", "b_f", "b_g", "b_o"],
                                              "bias_hh": ["b_i", "b_f", "b_g", "b_o"]}}))  # fmt: skip
    monkeypatch.chdir(tmp_path)
    assert main(["check", "lstm", "--impl", "user_cells:Cell", "--layout", str(layout), "--examples", "10"]) == 0
    capsys.readouterr()
    assert main(["check", "lstm", "--impl", "user_cells:Nope"]) == 2
    assert "has no attribute 'Nope'" in capsys.readouterr().err
    assert main(["check", "lstm", "--impl", "no_such_module:X"]) == 2
    assert "cannot import 'no_such_module'" in capsys.readouterr().err
    assert main(["check", "lstm", "--impl", "user_cells"]) == 2
    assert "expected MODULE:FACTORY" in capsys.readouterr().err
    assert main(["check", "lstm", "--impl", "user_cells:Cell", "--layout", str(tmp_path / "missing.toml")]) == 2
    assert "cannot read" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text("tensors = {weight_ih = [")
    assert main(["check", "lstm", "--impl", "user_cells:Cell", "--layout", str(bad)]) == 2
    assert "not valid TOML" in capsys.readouterr().err
    assert main(["check", "lstm", "gru", "--impl", "user_cells:Cell"]) == 2
    assert "exactly one cell" in capsys.readouterr().err


# --------------------------------------------------------------------------- whose fault


def test_tool_fault_while_drawing_stops_at_once_unshrunk():
    """An error in the tool's own data generation is a GenerationError raised at once: never
    a failing example, never shrunk, never blamed on the implementation."""
    calls = []

    def boom(n):
        calls.append(n)
        raise ZeroDivisionError("inside the tool")

    with pytest.raises(GenerationError, match="drawing a case failed: ZeroDivisionError: inside the tool") as info:
        run_property(lv.load("lstm"), lambda case: None, st.integers(0, 10**6).map(boom), _settings(50, None, True))
    assert len(calls) == 1
    assert isinstance(info.value.__cause__, ZeroDivisionError)
    assert "not of the implementation" in str(info.value)


def test_tool_fault_in_the_reference_stops_at_once_unshrunk():
    cell = lv.load("gru")
    calls = []

    def check_(case):
        calls.append(case)
        raise KeyError("a reference value")

    with pytest.raises(GenerationError, match="computing the reference failed: KeyError"):
        run_property(cell, check_, _strategy(cell, {"regime": "ordinary"}, 2), _settings(50, None, True))
    assert len(calls) == 1


def test_any_exception_of_the_implementation_is_its_failure():
    def factory(**sizes):
        return lambda p, x, h: (h / 0 if isinstance(h, int) else 1 // 0,)

    report = check("gru", factory, backend="numpy", examples=5, seed=0, identify=False, shrink=False)
    assert not report.passed
    message = next(r.message for r in report.rows if not r.passed)
    assert "the implementation raised ZeroDivisionError" in message


def test_factory_that_cannot_be_built_stops_the_check_unshrunk():
    """A factory that refuses some sizes is a configuration error named as such, raised at
    once rather than shrunk as if the cell computed wrong values."""
    refused = []

    def factory(input_size, hidden_size):
        if hidden_size != 4:
            refused.append(hidden_size)
            raise TypeError(f"only hidden_size=4, got {hidden_size}")
        return torch.nn.GRUCell(input_size, hidden_size)

    with pytest.raises(ShapeError, match="calling the factory"):
        check("gru", factory, examples=20, seed=0, identify=False)
    assert len(refused) == 1


def test_long_saturated_peephole_cases_never_fail_on_their_own():
    """The regime that gave up on lstm_peephole ("did not settle in 8 rounds"): every draw
    now builds a case."""
    cell = lv.load("lstm_peephole")
    strategy = _strategy(cell, {"regime": "long_saturated"}, 4)
    n, first, exc, unsatisfiable = run_property(cell, lambda case: None, strategy, _settings(8, None, True))
    assert (first, exc, unsatisfiable) == (None, None, False) and n == 8


def test_property_with_no_drawable_case_is_reported_not_raised():
    result = run_property(lv.load("gru"), lambda case: None, st.integers().filter(lambda _: False),
                          _settings(5, None, True))  # fmt: skip
    assert result == (0, None, None, True)
