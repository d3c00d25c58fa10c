"""limits: a hung implementation call is interrupted and stops the run (no timed assertions)."""

from __future__ import annotations

import signal
import time

import numpy as np
import pytest

from lstm_verify import limits
from lstm_verify.conformance import subject
from lstm_verify.limits import CallTimeout, time_limit

pytestmark = pytest.mark.skipif(not limits.available(), reason="needs SIGALRM in the main thread")


def _quiet_timer():
    return signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def test_a_sleeping_call_is_interrupted_and_named():
    handler = signal.getsignal(signal.SIGALRM)
    with pytest.raises(CallTimeout, match=r"my call did not return within 0.2 s") as err:
        with time_limit(0.2, "my call"):
            time.sleep(3600)
    assert err.value.call == "my call" and err.value.seconds == 0.2
    assert not isinstance(err.value, Exception)  # no `except Exception` in the checker takes it
    assert _quiet_timer() and signal.getsignal(signal.SIGALRM) is handler


def test_a_busy_python_loop_is_interrupted():
    n = 0
    with pytest.raises(CallTimeout), time_limit(0.2, "loop"):
        while True:
            n += 1
    assert _quiet_timer()


def test_a_call_that_returns_leaves_no_timer():
    with time_limit(5, "quick"):
        x = sum(range(10))
    assert x == 45 and _quiet_timer()
    with time_limit(None, "unlimited"), time_limit(0, "unlimited too"):
        pass
    with pytest.raises(ValueError, match="positive number"), time_limit(float("nan"), "bad"):
        pass


def test_limits_nest():
    with time_limit(3600, "outer"):
        with pytest.raises(CallTimeout, match="inner"), time_limit(0.2, "inner"):
            time.sleep(3600)
        remaining, _ = signal.getitimer(signal.ITIMER_REAL)
        assert 0 < remaining <= 3600  # the outer limit is armed again
        with pytest.raises(CallTimeout, match="outer"):  # an outer limit shorter than the inner
            with time_limit(0.2, "outer 2"):
                with time_limit(3600, "inner 2"):
                    time.sleep(3600)
    assert _quiet_timer()


def _hanging_factory(input_size, hidden_size):
    def fn(params, x, state):
        time.sleep(3600)

    return fn


def test_limited_subject_stops_the_check_without_shrinking():
    from lstm_verify.conformance import check

    calls = []
    subj, limiter = limits.limit_subject(subject(_hanging_factory, label="hang:f"), 0.2,
                                         on_call=lambda lim: calls.append(lim.calls))  # fmt: skip
    with pytest.raises(CallTimeout, match=r"hang:f: call #\d+ \(the function with") as err:
        check("rnn_tanh", subj, examples=5)
    assert "did not return within 0.2 s" in str(err.value)
    # the factory call for the probe sizes, then the precision probe's first step: the hung call
    # is neither retried nor shrunk
    assert limiter.calls == 2 and calls == [1]
    assert _quiet_timer()


def test_limited_subject_counts_calls_of_a_module():
    import torch

    from lstm_verify.conformance import check

    seen = []
    subj, limiter = limits.limit_subject(subject(torch.nn.RNNCell, label="torch.nn:RNNCell"), 30,
                                         on_call=lambda lim: seen.append(lim.calls))  # fmt: skip
    report = check("rnn_tanh", subj, examples=2, seed=0)
    assert report.passed, report.table()
    assert limiter.calls > 10 and seen and seen == sorted(seen)
    module = subj.factory(input_size=2, hidden_size=3)
    assert type(module) is torch.nn.RNNCell  # the class is untouched: layouts are found by it
    out = module(torch.zeros(1, 2), torch.zeros(1, 3))
    assert out.shape == (1, 3) and np.isfinite(out.detach().numpy()).all()
