"""What a conformance subject may be: fn(params, x, state) itself or a factory of it, a state
returned as a tuple, a lone array or a dict keyed by the spec's names; anything else is one
clear error naming what came back and what is expected."""

from __future__ import annotations

import pytest

import lstm_verify as lv
from lstm_verify.cli import main
from lstm_verify.conformance import ReturnValueError, check, is_function, subject
from lstm_verify.identify import identify

LSTM = lv.load("lstm")
GRU = lv.load("gru")
_lstm, _gru = LSTM.numpy(), GRU.numpy()


def lstm_tuple(params, x, state):
    h, c = state
    new = _lstm.step(params, x, {"h": h, "c": c}, check=False)[1]
    return new["h"], new["c"]


def lstm_dict(params, x, state):
    h, c = state
    return _lstm.step(params, x, {"h": h, "c": c}, check=False)[1]  # {"h": ..., "c": ...}


def lstm_dict_reversed(params, x, state):
    new = lstm_dict(params, x, state)
    return {"c": new["c"], "h": new["h"]}


def gru_array(params, x, h):
    return _gru.step(params, x, {"h": h}, check=False)[1]["h"]


def gru_dict(params, x, h):
    return _gru.step(params, x, {"h": h}, check=False)[1]


def lstm_factory(input_size, hidden_size):
    return lstm_tuple


def _passes(cell, impl, **options):
    report = check(cell, impl, backend="numpy", examples=10, seed=0, **options)
    assert report.passed, report.table()


@pytest.mark.parametrize("impl", [lstm_tuple, lstm_dict, lstm_dict_reversed, lstm_factory,
                                  lambda p, x, s: lstm_tuple(p, x, s), lambda **sizes: lstm_dict])  # fmt: skip
def test_lstm_function_or_factory_with_tuple_or_dict_state(impl):
    _passes(LSTM, impl)


@pytest.mark.parametrize("impl", [gru_array, gru_dict, lambda **sizes: gru_array])
def test_one_state_cell_as_array_or_dict(impl):
    _passes(GRU, impl)


def test_function_or_factory_is_read_from_the_signature():
    assert is_function(lstm_tuple) and is_function(lambda p, x, s, t=0: None)
    assert is_function(lambda *args: None)
    assert not is_function(lstm_factory) and not is_function(lambda **sizes: None)
    assert not is_function(lambda input_size, hidden_size, proj_size: None)  # three, but sizes
    import torch

    assert not is_function(torch.nn.LSTMCell)  # a class is a factory
    # what the signature cannot tell, the caller says
    ambiguous = lambda *args, **kwargs: lstm_tuple  # noqa: E731
    _passes(LSTM, subject(ambiguous, kind="factory", backend="numpy"))
    with pytest.raises(ValueError, match="kind must be one of"):
        subject(lstm_tuple, kind="fn")


def test_identify_a_function_given_as_itself():
    result = identify(lstm_dict, cells=["lstm", "gru", "rnn_tanh"])
    assert result.matches and result.matches[0].cell.name == "lstm", result.summary()


@pytest.mark.parametrize("returned, described", [
    (lambda new: None, "returned None"),
    (lambda new: new["h"], "returned ndarray of shape ("),
    (lambda new: {"hidden": new["h"], "cell": new["c"]}, "returned a dict with keys ['hidden', 'cell']"),
    (lambda new: (new["h"], new["c"], new["c"]), "returned a tuple of 3 (ndarray"),
    (lambda new: (new["h"], (new["h"], new["c"])), "), a tuple of 2)"),
    (lambda new: "h, c", "returned str 'h, c'"),
])  # fmt: skip
def test_unusable_return_value_stops_at_once_naming_it(returned, described):
    calls = []

    def fn(params, x, state):
        calls.append(1)
        return returned(lstm_dict(params, x, state))

    with pytest.raises(ReturnValueError) as info:
        check(LSTM, fn, backend="numpy", examples=20, seed=0)
    message = str(info.value)
    assert described in message, message
    assert "lstm expects the new state: a tuple (h, c) of arrays or a dict keyed by h, c" in message
    assert len(calls) == 1  # not shrunk, not retried as a failing example


def test_one_state_cell_says_what_it_expects():
    with pytest.raises(ReturnValueError, match=r"gru expects the new h: an array, a 1-tuple \(h,\) "
                                               r"or a dict \{'h': \.\.\.\}"):  # fmt: skip
        check(GRU, lambda p, x, h: {"state": h}, backend="numpy", examples=5, seed=0)


def test_cli_function_subject_and_bad_return(tmp_path, monkeypatch, capsys):
    (tmp_path / "subject_fns.py").write_text(
        "import lstm_verify as lv\n"
        "_impl = lv.load('gru').numpy()\n"
        "def step(params, x, h):\n"
        "    return _impl.step(params, x, {'h': h}, check=False)[1]\n"
        "def broken(params, x, h):\n"
        "    return {'hidden': h}\n"
    )  # fmt: skip
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["check", "gru", "--impl", "subject_fns:step", "--examples", "5", "--seed", "0"]) == 0
    assert "conforms" in capsys.readouterr().out
    assert main(["check", "gru", "--impl", "subject_fns:broken", "--examples", "5", "--seed", "0"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "returned a dict with keys ['hidden']" in err and "float()" not in err


def test_identify_says_why_nothing_matched_when_the_return_value_never_fits():
    generated = lv.load("gru").numpy()

    def fn(p, x, h):
        return {"hidden": generated.step(p, x, {"h": h})[1]["h"]}

    summary = identify(fn, cells=["gru", "mgu"]).summary()
    assert "matches no catalog cell" in summary
    assert "its return value did not fit" in summary and "keys ['hidden']" in summary
