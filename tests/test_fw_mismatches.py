"""The deliberate mismatches of the frameworks issue, end to end through `lstm-verify check`:
each is caught, and identification names the right catalog cell or convention."""

from __future__ import annotations

import importlib.util

import pytest

from lstm_verify.cli import main

CASES = [
    # (needs, cell, reference, options, identification)
    ("keras", "gru_cho", "keras.layers:GRUCell", [], "matches `gru` (GRU, reset gate after the hidden matmul"),
    ("keras", "gru", "keras.layers:GRUCell", ["reset_after=false"], "matches `gru_cho` (GRU, reset gate before"),
    ("keras", "lstm", "keras.layers:LSTMCell", ["recurrent_activation=hard_sigmoid"],
     "matches `lstm` with hard_sigmoid (torch and Keras 3: x/6 + 1/2, clipped) in place of sigmoid"),
    ("onnxruntime", "gru", "onnx:GRU", [], "matches `gru_cho` (GRU, reset gate before"),
    ("onnxruntime", "gru_cho", "onnx:GRU", ["linear_before_reset=1"], "matches `gru` (GRU, reset gate after"),
    ("onnxruntime", "lstm", "onnx:LSTM", ["activations=HardSigmoid,Tanh,Tanh"],
     "matches `lstm` with hard_sigmoid in the 0.2x + 1/2 convention (Keras 2, ONNX HardSigmoid's defaults)"),
    ("flax", "mgu", "flax.linen:MGUCell", [], "matches `mgu_flax`"),
]  # fmt: skip


@pytest.mark.parametrize("needs, cell, ref, options, expected", CASES, ids=[f"{c[2]} {' '.join(c[3])} as {c[1]}" for c in CASES])
def test_a_claimed_convention_mismatch_is_caught_and_identified(capsys, needs, cell, ref, options, expected):
    if importlib.util.find_spec(needs) is None:
        pytest.skip(f"{needs} is not installed (pip install 'lstm-verify[frameworks]')")
    argv = ["check", cell, "--impl", ref, "--examples", "5"] + [a for o in options for a in ("--impl-option", o)]
    assert main(argv) == 1
    out = capsys.readouterr().out
    assert "DOES NOT CONFORM" in out
    identification = out.split("identification: ", 1)[1]
    assert identification.startswith(expected), identification
    if ref != "flax.linen:MGUCell":
        assert "(compared at float32, the precision it computes in)" in identification


def test_flax_lstm_state_given_as_h_c_is_identified_as_a_state_order(capsys):
    if importlib.util.find_spec("flax") is None:
        pytest.skip("flax is not installed (pip install 'lstm-verify[flax]')")
    assert main(["check", "lstm", "--impl", "flax.linen:LSTMCell", "--state", "h,c", "--examples", "5"]) == 1
    out = capsys.readouterr().out
    assert "identification: matches `lstm` with its state passed as (c, h) instead of (h, c)" in out, out
