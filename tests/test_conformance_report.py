"""The conformance matrix: a real run on the fastest subjects, its files, and its refusals."""

from __future__ import annotations

import json
import re

import pytest

from lstm_verify.cli import main
from lstm_verify.conformance_report import MatrixRow, conventions, render, subjects

pytest.importorskip("onnxruntime", reason="the onnx extra (pip install 'lstm-verify[onnx]') runs these subjects")


def test_every_builtin_subject_and_the_option_variants_are_in_the_matrix():
    refs = subjects()
    names = {r for r, _ in refs}
    for ref in ["keras.layers:GRUCell", "flax.linen:MGUCell", "flax.nnx:LSTMCell", "equinox.nn:GRUCell",
                "haiku:VanillaRNN", "onnx:LSTM", "onnx:GRU", "onnx:RNN"]:  # fmt: skip
        assert ref in names
    assert ("onnx:GRU", {"linear_before_reset": 1}) in refs and ("keras.layers:GRUCell", {"reset_after": False}) in refs
    assert len(refs) == len({(r, json.dumps(o, sort_keys=True)) for r, o in refs})  # no row twice


def test_conformance_report_identifies_checks_and_writes_the_table(tmp_path, capsys):
    out = tmp_path / "conf"
    assert main(["conformance-report", "-o", str(out), "--only", "onnx:RNN", "--examples", "3"]) == 0
    md = (out / "conformance.md").read_text()
    data = json.loads((out / "data.json").read_text())
    rows = {(r["subject"], json.dumps(r["options"])): r for r in data["rows"]}
    tanh, relu = rows[("onnx:RNN", "{}")], rows[("onnx:RNN", '{"activations": "Relu"}')]
    assert tanh["cell"] == "rnn_tanh" and relu["cell"] == "rnn_relu"
    for r in (tanh, relu):
        assert r["passed"] and r["precision"] == "float32" and not r["error"]
        forward = [p for p in r["properties"] if p[0].startswith("forward")]
        assert forward and all(p[2] is not None and 0 <= p[3] <= 1 for p in forward)  # worst error, within tolerance
        assert any("forward only" in p[4] for p in r["properties"])
        assert any("computes in float32" in c for c in r["conventions"])
        assert any("b_h: the sum of 2 stored biases" in c for c in r["conventions"])
    assert "| `onnx:RNN (activations='Relu')` | `rnn_relu`" in md
    table = [line for line in md.splitlines() if line.startswith("|")]
    assert len({len(re.split(r"(?<!\\)\|", line)) for line in table}) == 1, table  # every row has every column
    assert "<table>" in (out / "conformance.html").read_text()
    assert "2 subjects, 2 conform" in capsys.readouterr().out


def test_conformance_report_refuses_an_unknown_prefix_and_a_foreign_folder(tmp_path, capsys):
    assert main(["conformance-report", "-o", str(tmp_path / "c"), "--only", "tensorflow"]) == 2
    assert "--only tensorflow: no built-in subject starts so" in capsys.readouterr().err
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    assert main(["conformance-report", "-o", str(foreign), "--only", "onnx:RNN"]) == 2
    assert (foreign / "notes.txt").read_text() == "mine"


def test_a_subject_that_cannot_run_is_a_row_that_says_why():
    row = MatrixRow("onnx:GRU", {"direction": "bidirectional"}, error="ShapeError: only forward")
    files = render([row], "lstm-verify conformance-report", 1.0)
    assert "not checked: ShapeError: only forward" in files["conformance.md"].decode()


def test_conventions_read_from_the_layouts():
    import lstm_verify as lv

    lstm = lv.load("lstm")
    haiku = next(lay for lay in lstm.spec.layouts if lay.name == "haiku")
    text = " ".join(conventions(lstm, haiku))
    assert "adds 1 to b_f at run time" in text and "one matrix over the concatenated inputs" in text
    flax = next(lay for lay in lstm.spec.layouts if lay.name == "flax")
    assert conventions(lstm, flax)[0] == "state passed as (c, h); the spec writes (h, c)"
