"""A time limit on each call of a user's implementation.

:func:`time_limit` arms a ``SIGALRM`` interval timer around a block; when it fires, the signal
handler raises :class:`CallTimeout` in the main thread, which interrupts a call stuck in Python
code (a loop, ``time.sleep``, a blocking read that returns on signals). A call blocked inside one
long-running C function is interrupted only when that function returns to Python. Outside the
main thread, or where ``setitimer`` does not exist, the block runs without a limit.

:class:`CallTimeout` derives from ``BaseException``, not ``Exception``: the checker turns an
implementation's *exceptions* into failing examples that Hypothesis then shrinks, re-running
the implementation many times; a call that hangs must instead stop the whole run at once, as
Ctrl-C does.

:func:`limit_subject` wraps a subject's factory so that the factory call and every call of what
it returns (a function, or a ``torch.nn.Module``'s ``forward``) run under the limit, and counts
the calls (for progress output).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import signal
import sys
import threading
import time
from contextlib import contextmanager

DEFAULT_TIMEOUT = 60.0  # seconds per call of an implementation (command line default)


class CallTimeout(BaseException):
    """A call of the implementation did not return within the time limit."""

    def __init__(self, call: str, seconds: float):
        super().__init__(call, seconds)
        self.call, self.seconds = call, seconds

    def __str__(self):
        return f"{self.call} did not return within {self.seconds:g} s (--timeout)"


def available() -> bool:
    """True where :func:`time_limit` can interrupt a call (Unix, main thread)."""
    return hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()


@contextmanager
def time_limit(seconds: float | None, call: str):
    """Raise :class:`CallTimeout` naming ``call`` if the block runs longer than ``seconds``
    (None or 0: no limit). Nests: an enclosing limit is re-armed with its remaining time."""
    if not seconds or not available():
        yield
        return
    if not (isinstance(seconds, (int, float)) and math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"a time limit must be a positive number of seconds, got {seconds!r}")
    token = object()
    state = {"armed": token}

    def on_alarm(signum, frame):
        if state["armed"] is token:
            state["armed"] = None
            raise CallTimeout(call, seconds)

    outer_remaining, outer_interval = signal.setitimer(signal.ITIMER_REAL, 0)
    previous = signal.signal(signal.SIGALRM, on_alarm)
    start = time.monotonic()
    # an enclosing limit that ends first keeps its own deadline and handler
    if outer_remaining and outer_remaining <= seconds:
        signal.signal(signal.SIGALRM, previous)
        state["armed"] = None
        signal.setitimer(signal.ITIMER_REAL, outer_remaining)
    else:
        signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        state["armed"] = None
        signal.signal(signal.SIGALRM, previous)
        if outer_remaining:  # re-armed with what is left (an outer limit that fired ignores it)
            left = outer_remaining - (time.monotonic() - start)
            signal.setitimer(signal.ITIMER_REAL, max(left, 1e-6), outer_interval)


def _describe(args) -> str:
    shapes = []
    for a in args:
        shape = getattr(a, "shape", None)
        if shape is not None:
            shapes.append(f"{tuple(shape)} {getattr(a, 'dtype', '')}".strip())
        elif isinstance(a, (tuple, list)):
            shapes.append("(" + ", ".join(_describe([b]) for b in a) + ")")
        elif isinstance(a, dict):
            shapes.append("{" + ", ".join(f"{k}" for k in a) + "}")
        else:
            shapes.append(repr(a)[:40])
    return ", ".join(shapes)


class Limiter:
    """Runs calls of one implementation under a time limit and counts them."""

    def __init__(self, seconds: float | None, label: str, on_call=None):
        self.seconds, self.label, self.on_call = seconds, label, on_call
        self.calls = 0

    def call(self, fn, what: str, args, kwargs):
        self.calls += 1
        desc = f"{self.label}: call #{self.calls} ({what} with {_describe(args)})"
        with time_limit(self.seconds, desc):
            out = fn(*args, **kwargs)
        if self.on_call is not None:
            self.on_call(self)
        return out

    def factory(self, factory):
        """``factory`` with its call and every call of what it returns under the limit."""

        @functools.wraps(factory)
        def make(*args, **kwargs):
            self.calls += 1
            desc = f"{self.label}: call #{self.calls} (the factory with {kwargs or _describe(args)})"
            with time_limit(self.seconds, desc):
                obj = factory(*args, **kwargs)
            if self.on_call is not None:
                self.on_call(self)
            return self.wrap(obj)

        return make

    def wrap(self, obj):
        from .frameworks.base import Engine

        if isinstance(obj, Engine):  # a framework cell: its runs and gradients
            for name in ("run", "vjp"):
                method = getattr(obj, name)
                setattr(obj, name, lambda *a, _m=method, _n=name, **k: self.call(_m, _n, a, k))
            return obj
        if _is_module(obj):
            forward = obj.forward

            @functools.wraps(forward)
            def limited_forward(*args, **kwargs):
                return self.call(forward, "forward", args, kwargs)

            try:  # an instance attribute: module(x, state) runs it, hooks and class stay as they were
                object.__setattr__(obj, "forward", limited_forward)
            except (AttributeError, TypeError, RuntimeError):  # pragma: no cover - e.g. scripted modules
                pass
            return obj
        if callable(obj):

            @functools.wraps(obj)
            def limited(*args, **kwargs):
                return self.call(obj, "the function", args, kwargs)

            return limited
        return obj  # not callable: the checker reports it


def _is_module(obj) -> bool:
    # a torch module exists only once torch is imported: never import it just to ask
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.nn.Module)


def limit_subject(subj, seconds: float | None, on_call=None):
    """A copy of a conformance Subject whose factory and implementation calls run under the
    limit; returns (subject, Limiter)."""
    limiter = Limiter(seconds, subj.label, on_call)
    return dataclasses.replace(subj, factory=limiter.factory(subj.factory)), limiter


__all__ = ["DEFAULT_TIMEOUT", "CallTimeout", "Limiter", "available", "limit_subject", "time_limit"]
