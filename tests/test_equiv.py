"""lstm-verify equiv: verdicts, counterexamples, exit status, and the overflow ramp."""

import math

import numpy as np
import pytest

from lstm_verify.cli import main
from lstm_verify.equiv import equiv

LSTM_LIKE = """
name = "{name}"
cite = ["test"]
input = "x"
state = ["h", "c"]
equations = [
  "f = sigmoid(lin(x, h))",
  "g = tanh(lin(x, h))",
  "c' = f*c + {k}*g",
  "h' = {j}*tanh(c)",
]
"""


def _spec(tmp_path, name, k="1", j="1"):
    path = tmp_path / f"{name}.toml"
    path.write_text(LSTM_LIKE.format(name=name, k=k, j=j))
    return str(path)


def test_greff_np_is_lstm_proved(capsys):
    assert main(["equiv", "greff_np", "lstm"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("greff_np vs lstm: equivalent (proved)\n")
    assert "proved: h' (output), c'" in out and "states: the same (h, c)" in out
    assert "time: " in out and "(proved symbolically)" in out
    assert "no difference (both finite" in out


def _sigmoid(u):
    return 1 / (1 + math.exp(-u))


def _gru(p, x, h, cho):
    """One unit of each GRU, written out by hand (hidden = input = 1)."""
    w = {k: float(np.asarray(v).ravel()[0]) for k, v in p.items()}
    r = _sigmoid(w["W_r_x"] * x + w["W_r_h"] * h + w["b_r"])
    z = _sigmoid(w["W_z_x"] * x + w["W_z_h"] * h + w["b_z"])
    if cho:
        n = math.tanh(w["W_n_x"] * x + w["W_n_h"] * (r * h) + w["b_n"])
    else:
        n = math.tanh(w["W_n_x"] * x + w["b_n_x"] + r * (w["W_n_h"] * h + w["b_n_h"]))
    return (1 - z) * n + z * h


def test_gru_vs_gru_cho_names_the_first_differing_output(capsys):
    r = equiv("gru", "gru_cho", ramp=False)
    assert not r.equivalent and r.exit_code == 1
    assert "only in gru: b_n_h, b_n_x; only in gru_cho: b_n" in r.reasons[0]
    d = r.difference
    assert (d.quantity, d.output, d.step, d.unit) == ("h'", True, 1, 0)
    assert d.sizes == {"input": 1, "hidden": 1}
    # the reported point, recomputed by hand: both values are right and they differ
    x, h = float(d.inputs["x"][0, 0]), float(d.states[0][1]["h"][0])
    assert dict(d.states[1][1]) == {"h": d.states[0][1]["h"]}
    want = (_gru(d.params, x, h, cho=False), _gru(d.params, x, h, cho=True))
    assert float(d.values[0]) == pytest.approx(want[0], rel=1e-12)
    assert float(d.values[1]) == pytest.approx(want[1], rel=1e-12)
    assert abs(want[0] - want[1]) > 1e-3
    assert main(["equiv", "gru", "gru_cho", "--no-ramp"]) == 1
    out = capsys.readouterr().out
    assert (
        "gru vs gru_cho: NOT equivalent" in out
        and "first differing output: h' at step 1, unit 0" in out
    )
    assert "not equivalent either (h' differs)" in out  # with the differing biases at 0


def test_lstm_vs_peephole_differ_in_parameters_but_agree_with_peepholes_at_zero():
    r = equiv("lstm", "lstm_peephole")
    assert r.exit_code == 1 and r.reasons == (
        "the parameter sets differ (only in lstm_peephole: p_f, p_i, p_o)",
    )
    assert r.difference is not None and r.difference.quantity == "h'"
    assert r.notes == (
        "with p_f, p_i, p_o = 0 (the parameters only one cell has): equivalent (proved)",
    )


def test_slstm_stabiliser_map_is_proved_and_float32_overflow_found():
    r = equiv("slstm", "slstm_unstabilized")
    assert r.equivalent and r.proved and r.exit_code == 0
    assert str(r.state_map) == "h -> h, c -> c*exp(m), n -> n*exp(m)"
    assert r.obligations == ("h' (output)", "c'", "n'")
    rows = {(o.dtype, o.z): o for o in r.overflow}
    assert all(o.cell == "slstm_unstabilized" and o.other == "slstm" for o in rows.values())
    # at z = 88 in float32 the forget gate rounds to 1 and c, n grow by exp(88) a step: they
    # leave float32's range at the first t with t*exp(88) > max, and h = c/n turns into inf/inf
    e = np.float32(np.exp(np.float32(88)))
    assert rows[("float32", 88.0)].step == int(np.finfo(np.float32).max // e) + 1 == 3
    assert rows[("float32", 89.0)].step == 1  # exp(89) itself overflows float32
    assert ("float64", 88.0) not in rows and ("float64", 710.0) in rows
    assert "float32: slstm_unstabilized's output is not finite while slstm's is" in r.text()


def test_wrong_constant_in_a_state_is_found_at_the_output_one_step_later(tmp_path):
    a, b = _spec(tmp_path, "cell_a"), _spec(tmp_path, "cell_b", k="0.9")
    r = equiv(a, b, ramp=False)
    assert not r.equivalent and r.exit_code == 1 and r.reasons == ()
    d = r.difference
    assert (d.quantity, d.output, d.step) == ("h'", True, 2)  # h' reads the previous c
    assert float(d.values[0]) != pytest.approx(float(d.values[1]), abs=1e-6)


def test_wrong_constant_in_the_output_is_named(tmp_path, capsys):
    a, b = _spec(tmp_path, "cell_a"), _spec(tmp_path, "cell_b", j="1.001")
    assert main(["equiv", a, b, "--no-ramp"]) == 1
    out = capsys.readouterr().out
    assert (
        "cell_a vs cell_b: NOT equivalent" in out and "first differing output: h' at step 1" in out
    )


def test_unproved_pair_is_tested_not_proved(tmp_path):
    # budget 0: nothing but identical expressions counts as proved, so the search decides
    r = equiv("slstm", "slstm_unstabilized", budget=0, points=8, ramp=False)
    assert r.equivalent and not r.proved and r.points >= 8
    assert r.verdict == f"equivalent (tested on {r.points} points, not proved)"


def test_cells_that_cannot_share_data_are_not_equivalent_without_evaluation():
    r = equiv("lstm", "lstm_proj", ramp=False)
    assert r.exit_code == 1 and r.difference is None
    assert (
        r.reasons[0]
        == "the output sizes differ: lstm's h has size hidden, lstm_proj's h has size proj"
    )


def test_missing_file_and_malformed_spec_exit_2_with_one_line(tmp_path, capsys):
    assert main(["equiv", "lstm", str(tmp_path / "missing.toml")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "missing.toml: cannot read spec file" in err
    bad = tmp_path / "bad.toml"
    bad.write_text(LSTM_LIKE.format(name="bad", k="1", j="1").replace("tanh(c)", "tanh(c"))
    assert main(["equiv", str(bad), "lstm"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("lstm-verify: error: ") and "bad.toml" in err
