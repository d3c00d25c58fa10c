"""Command-line edges: every bad input is one line on stderr, never a traceback; Ctrl-C is exit
130; a hanging implementation is stopped by --timeout; progress goes to stderr on request."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from lstm_verify import cli
from lstm_verify.cli import MAX_EXAMPLES, main

_names = itertools.count()

HANGING = """
import time

CALLED = []


def hang(input_size, hidden_size):
    def fn(params, x, state):
        time.sleep(3600)

    return fn


def untouchable(input_size, hidden_size):
    raise AssertionError("the implementation was run")


NOT_CALLABLE = 3
"""


@pytest.fixture
def impl_module(tmp_path, monkeypatch):
    """Write a module into tmp_path, importable by --impl; returns its (unique) name."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))

    def make(source=HANGING):
        name = f"cli_edges_impl_{next(_names)}"
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        return name

    return make


def _one_line_error(err: str, *parts):
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    for p in parts:
        assert p in lines[0], err


def test_non_callable_impl_is_a_one_line_error(impl_module, capsys):
    mod = impl_module()
    assert main(["check", "lstm", "--impl", f"{mod}:NOT_CALLABLE"]) == 2
    _one_line_error(capsys.readouterr().err, f"--impl {mod}:NOT_CALLABLE", "int object 3 is not callable")
    assert main(["identify", "--impl", f"{mod}:CALLED"]) == 2
    _one_line_error(capsys.readouterr().err, "list object [] is not callable")


def test_impl_module_failing_at_import_is_a_one_line_error(impl_module, capsys):
    mod = impl_module("raise RuntimeError('broken at import')\n")
    assert main(["identify", "--impl", f"{mod}:f"]) == 2
    _one_line_error(capsys.readouterr().err, "raised RuntimeError: broken at import")
    mod = impl_module("def f(:\n")
    assert main(["identify", "--impl", f"{mod}:f"]) == 2
    _one_line_error(capsys.readouterr().err, "raised SyntaxError")


def test_non_utf8_layout_file_is_a_one_line_error(tmp_path, capsys):
    path = tmp_path / "layout.toml"
    path.write_bytes(b'tensors = {k = ["W_i_x"]}\n# \xff\xfe latin-1\n')
    assert main(["check", "lstm", "--impl", "torch.nn:LSTMCell", "--layout", str(path)]) == 2
    _one_line_error(capsys.readouterr().err, f"--layout {path}: not UTF-8 text (byte 28")


def test_layout_special_or_huge_file_is_refused(tmp_path, capsys):
    fifo = tmp_path / "layout.json"
    os.mkfifo(fifo)
    assert main(["identify", "--impl", "torch.nn:LSTMCell", "--layout", str(fifo)]) == 2
    _one_line_error(capsys.readouterr().err, "not a regular file")
    big = tmp_path / "big.json"
    big.write_text("[" * 200_000 + "]" * 200_000)
    assert main(["identify", "--impl", "torch.nn:LSTMCell", "--layout", str(big)]) == 2
    _one_line_error(capsys.readouterr().err, f"--layout {big}")
    huge = tmp_path / "huge.toml"
    huge.write_text("# x\n" * 300_000)
    assert main(["identify", "--impl", "torch.nn:LSTMCell", "--layout", str(huge)]) == 2
    _one_line_error(capsys.readouterr().err, "larger than")


def test_unknown_state_names_are_named_before_running_anything(impl_module, capsys):
    mod = impl_module()
    assert main(["check", "lstm", "--impl", f"{mod}:untouchable", "--state", "x,y"]) == 2
    _one_line_error(capsys.readouterr().err, "--state x,y: x, y are not states of lstm, whose states are h, c")
    assert main(["check", "lstm", "--impl", f"{mod}:untouchable", "--state", "c,x"]) == 2
    _one_line_error(capsys.readouterr().err, "x is not a state of lstm")
    assert main(["check", "lstm", "--impl", f"{mod}:untouchable", "--state", "c"]) == 2
    _one_line_error(capsys.readouterr().err, "must list every state of lstm once (h, c); missing h")
    assert main(["check", "lstm", "--impl", f"{mod}:untouchable", "--state", "h,h"]) == 2
    _one_line_error(capsys.readouterr().err, "h given twice")
    assert main(["identify", "--impl", f"{mod}:untouchable", "--state", "c,h", "lstm", "gru"]) == 2
    _one_line_error(capsys.readouterr().err, "c is not a state of gru, whose states are h")
    assert main(["identify", "--impl", f"{mod}:untouchable", "--state", "q"]) == 2
    _one_line_error(capsys.readouterr().err, "--state q: no catalog cell has exactly these states")


@pytest.mark.parametrize("value", ["0", "-1", str(MAX_EXAMPLES + 1), str(10**9), "ten"])
def test_examples_out_of_range_is_an_argument_error(value, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["check", "lstm", "--impl", "torch.nn:LSTMCell", "--examples", value])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "argument --examples" in err and "Traceback" not in err
    assert ("must be between 1 and 100000" in err) or ("not a whole number" in err)


@pytest.mark.parametrize("value", ["-1", "nan", "inf", "soon"])
def test_timeout_must_be_a_finite_number_of_seconds(value, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["identify", "--impl", "torch.nn:LSTMCell", "--timeout", value])
    assert exc.value.code == 2 and "argument --timeout" in capsys.readouterr().err


def test_identify_with_nothing_tried_says_why(capsys):
    assert main(["identify", "--impl", "torch.nn:Linear", "lstm", "gru", "lstm_proj"]) == 1
    out = capsys.readouterr().out
    assert "(0 tried)" in out
    assert "why: no candidate cell could be given to the implementation" in out
    assert "lstm, gru: calling the factory with {'hidden_size': 4, 'input_size': 3} failed" in out
    assert "lstm_proj: calling the factory with {'hidden_size': 4, 'input_size': 3, 'proj_size': 2}" in out


def test_identify_with_no_layout_for_the_module_says_why(impl_module, capsys):
    mod = impl_module("""
        import torch

        class Odd(torch.nn.Module):
            def __init__(self, input_size, hidden_size):
                super().__init__()
                self.kernel = torch.nn.Parameter(torch.zeros(hidden_size, input_size))

            def forward(self, x, state):
                return state
    """)
    assert main(["identify", "--impl", f"{mod}:Odd", "rnn_tanh"]) == 1
    out = capsys.readouterr().out
    assert "(0 tried)" in out and "rnn_tanh: no layout given, and the cell has no layout for" in out


@pytest.mark.parametrize("command", [["list"], ["show", "lstm"], ["check", "lstm"],
                                     ["identify", "--impl", "torch.nn:LSTMCell"],
                                     ["report", "lstm", "-o", "REPORT"],
                                     ["export", "lstm", "--target", "numpy", "-o", "EXPORT"]])  # fmt: skip
def test_ctrl_c_is_one_line_and_exit_130(command, tmp_path, monkeypatch, capsys):
    import lstm_verify.cell
    import lstm_verify.export
    import lstm_verify.identify
    import lstm_verify.report

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(lstm_verify.cell, "load", interrupted)  # every command loads a cell
    monkeypatch.setattr(lstm_verify.cell, "catalog", interrupted)
    monkeypatch.setattr(lstm_verify.identify, "identify", interrupted)
    monkeypatch.setattr(lstm_verify.report, "build", interrupted)
    monkeypatch.setattr(lstm_verify.export, "write", interrupted)  # binds load at its import
    argv = [str(tmp_path / a) if a in ("REPORT", "EXPORT") else a for a in command]
    assert main(argv) == 130
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and captured.err.strip() == "lstm-verify: interrupted"
    assert not (tmp_path / "REPORT").exists() and not (tmp_path / "EXPORT").exists()


def test_real_sigint_in_a_hung_implementation(impl_module, tmp_path):
    mod = impl_module("""
        import sys
        import time

        def hang(input_size, hidden_size):
            def fn(params, x, state):
                print("entered", flush=True)
                time.sleep(3600)

            return fn
    """)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path)] + sys.path))
    # SIGINT as a terminal delivers it: a process started with SIGINT ignored (a pytest-xdist
    # worker's children inherit that) keeps ignoring it, as Python and shells intend
    proc = subprocess.Popen([sys.executable, "-m", "lstm_verify.cli", "identify", "--impl", f"{mod}:hang",
                             "rnn_tanh", "--timeout", "0"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    try:
        assert proc.stdout.readline().strip() == "entered"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
        proc.communicate()  # reap it and close its pipes, also when the wait above failed
    assert proc.returncode == 130, err
    assert "Traceback" not in err and err.strip() == "lstm-verify: interrupted"


def test_hanging_function_is_stopped_by_the_timeout(impl_module, capsys):
    mod = impl_module()
    assert main(["check", "rnn_tanh", "--impl", f"{mod}:hang", "--timeout", "0.2"]) == 1
    err = capsys.readouterr().err
    _one_line_error(err, f"lstm-verify: FAIL: {mod}:hang: call #", "(the function with {W_h_x, W_h_h, b_h}",
                    "did not return within 0.2 s (--timeout)")  # fmt: skip
    assert main(["identify", "--impl", f"{mod}:hang", "--timeout", "0.2", "rnn_tanh"]) == 1
    _one_line_error(capsys.readouterr().err, "did not return within 0.2 s")


def test_hanging_module_forward_is_stopped_by_the_timeout(impl_module, capsys):
    mod = impl_module("""
        import time

        import torch

        class SlowRNN(torch.nn.RNNCell):
            def forward(self, x, h):
                while True:
                    time.sleep(0.01)
    """)
    assert main(["check", "rnn_tanh", "--impl", f"{mod}:SlowRNN", "--timeout", "0.2"]) == 1
    _one_line_error(capsys.readouterr().err, f"{mod}:SlowRNN: call #", "(forward with",
                    "did not return within 0.2 s")  # fmt: skip


def test_progress_goes_to_stderr_only_when_asked(capsys):
    argv = ["check", "rnn_tanh", "--impl", "torch.nn:RNNCell", "--examples", "2", "--seed", "0"]
    assert main(argv + ["--progress"]) == 0
    captured = capsys.readouterr()
    assert "check rnn_tanh:" in captured.err and "calls of the implementation" in captured.err
    assert "conforms" in captured.out and "calls of the implementation" not in captured.out
    assert main(argv) == 0  # stderr is not a terminal here: quiet by default
    assert capsys.readouterr().err == ""
    assert main(["identify", "--impl", "torch.nn:RNNCell", "rnn_tanh", "--progress"]) == 0
    captured = capsys.readouterr()
    assert "identify:" in captured.err and "matches `rnn_tanh`" in captured.out


def test_help_documents_the_new_options(capsys):
    with pytest.raises(SystemExit):
        main(["check", "--help"])
    out = capsys.readouterr().out
    assert "--timeout SECONDS" in out and "--progress" in out and "1 to 100000" in out
    with pytest.raises(SystemExit):
        main(["report", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--force" in out and "no other file is touched" in out and ".lstm-verify-report" in out
    assert cli.DEFAULT_TIMEOUT == 60.0
