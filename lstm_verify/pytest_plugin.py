"""pytest plugin: check your recurrent cell against a spec from inside your own tests.

Installed with lstm-verify (entry point ``pytest11: lstm_verify``), so nothing to enable::

    import torch

    def test_my_lstm(lstm_verify):
        lstm_verify.check("lstm", torch.nn.LSTMCell)

Marker arguments are defaults for the fixture's calls, closest marker first (function, class,
module)::

    @pytest.mark.lstm_verify("lstm", layout="torch", examples=200)
    def test_mine(lstm_verify):
        lstm_verify.check(impl=MyCell)

``lstm_verify.check(cell=None, impl=None, **options)`` runs :func:`lstm_verify.conformance.check`
(options: ``layout``, ``state``, ``backend``, ``examples``, ``seed``, ``identify``, ``max_size``,
``ci``, ``shrink``), fails the test with the report table if the implementation does not conform
and returns the report; ``lstm_verify.identify(impl, **options)`` returns the
:class:`~lstm_verify.identify.Identification` (which cell the implementation computes).

Command line: ``--lstm-verify-examples N`` and ``--lstm-verify-seed N`` override every check's
budget and seed; ``--lstm-verify-ci`` (or the ``CI`` environment variable) derandomises. The
conformance table of a passing check is attached to the test as a report section, shown by
``pytest -rP``. Hypothesis profiles ``lstm-verify-dev`` and ``lstm-verify-ci`` are registered for
your own ``@given`` tests (``--hypothesis-profile lstm-verify-ci``).

Importing this module imports only pytest: torch, SymPy and Hypothesis are loaded when a test
uses the fixture, so the plugin costs nothing in test runs that do not.
"""

from __future__ import annotations

import os

import pytest

MARKER = "lstm_verify"
CHECK_OPTIONS = ("layout", "state", "backend", "examples", "seed", "identify", "max_size", "ci", "shrink")
PROFILES = {
    "lstm-verify-dev": {"deadline": None},
    "lstm-verify-ci": {"deadline": None, "derandomize": True, "database": None},
}


def pytest_addoption(parser):
    group = parser.getgroup("lstm-verify", "lstm-verify conformance checks")
    group.addoption("--lstm-verify-examples", type=int, default=None, metavar="N",
                    help="Hypothesis budget of every lstm_verify check (main property; the "
                         "others get shares of it), overriding the tests' own")  # fmt: skip
    group.addoption("--lstm-verify-seed", type=int, default=None, metavar="N",
                    help="seed of every lstm_verify check, overriding the tests' own")
    group.addoption("--lstm-verify-ci", action="store_true", default=False,
                    help="derandomise lstm_verify checks (default when the CI variable is set)")


@pytest.hookimpl(tryfirst=True)  # before hypothesis' own plugin loads --hypothesis-profile
def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        f"{MARKER}(cell, impl=None, **options): defaults for the lstm_verify fixture's "
        "check() and identify(): the spec (catalog name or path), the implementation "
        "(factory), and options such as layout=, state=, backend=, examples=, seed=.",
    )
    try:
        from hypothesis import settings
    except ImportError:  # pragma: no cover - hypothesis is in the test extra
        return
    for name, kwargs in PROFILES.items():
        settings.register_profile(name, **kwargs)


def _marker_defaults(node) -> dict:
    """Marker arguments as keyword defaults; the closest marker wins, per argument."""
    out: dict = {}
    for mark in node.iter_markers(MARKER):  # closest first
        if len(mark.args) > 2:
            pytest.fail(f"@pytest.mark.{MARKER} takes (cell, impl=None, **options), got "
                        f"{len(mark.args)} positional arguments", pytrace=False)
        kwargs = dict(zip(("cell", "impl"), mark.args)) | dict(mark.kwargs)
        for k, v in kwargs.items():
            out.setdefault(k, v)
    unknown = sorted(set(out) - {"cell", "impl"} - set(CHECK_OPTIONS))
    if unknown:
        pytest.fail(f"@pytest.mark.{MARKER}: unknown options {unknown}; it takes cell, impl, "
                    f"{', '.join(CHECK_OPTIONS)}", pytrace=False)
    return out


class LstmVerify:
    """What the ``lstm_verify`` fixture gives a test: ``check`` and ``identify``."""

    def __init__(self, defaults=None, examples=None, seed=None, ci=False, node=None):
        self.defaults = dict(defaults or {})
        self.examples = examples  # command-line overrides
        self.seed = seed
        self.ci = ci
        self.node = node
        self.reports: list = []

    def options(self, cell=None, impl=None, **options) -> dict:
        """The arguments ``check`` passes to :func:`conformance.check`: the call's, over the
        marker's, under the command line's."""
        d = self.defaults
        out = {k: d[k] for k in CHECK_OPTIONS if k in d} | options
        out["cell"] = cell if cell is not None else d.get("cell")
        out["impl"] = impl if impl is not None else d.get("impl")
        if self.ci:
            out["ci"] = True
        if self.examples is not None:
            out["examples"] = self.examples
        if self.seed is not None:
            out["seed"] = self.seed
        return out

    def check(self, cell=None, impl=None, **options):
        """Check ``impl`` against ``cell``; fail the test with the report table unless it
        conforms. Returns the :class:`~lstm_verify.conformance.Report`."""
        __tracebackhide__ = True
        from .conformance import check

        opts = self.options(cell, impl, **options)
        if opts["cell"] is None or opts["impl"] is None:
            missing = " and ".join(k for k in ("cell", "impl") if opts[k] is None)
            raise TypeError(f"lstm_verify.check: no {missing}; pass it, or give it to "
                            f"@pytest.mark.{MARKER}(cell, impl)")  # fmt: skip
        report = check(opts.pop("cell"), opts.pop("impl"), **opts)
        self.reports.append(report)
        if not report.passed:
            pytest.fail(report.table(), pytrace=False)
        if self.node is not None:
            self.node.add_report_section("call", "lstm-verify", report.table() + "\n")
        return report

    def identify(self, impl=None, **options):
        """Which catalog cell or convention variant ``impl`` computes: an
        :class:`~lstm_verify.identify.Identification` (``.matches``, ``.summary()``). The
        marker's ``layout``, ``state`` and ``backend`` apply; its cell does not (pass
        ``claimed=`` to ask about one cell)."""
        __tracebackhide__ = True
        from .identify import identify

        d = self.defaults
        impl = impl if impl is not None else d.get("impl")
        if impl is None:
            raise TypeError(f"lstm_verify.identify: no impl; pass it, or give it to "
                            f"@pytest.mark.{MARKER}(cell, impl)")  # fmt: skip
        opts = {k: d[k] for k in ("layout", "state", "backend") if k in d} | options
        return identify(impl, **opts)


@pytest.fixture
def lstm_verify(request):
    """Check a recurrent cell implementation against a spec: ``lstm_verify.check(cell, impl)``
    fails the test with a conformance table unless it conforms; ``lstm_verify.identify(impl)``
    says which cell it computes. Defaults come from ``@pytest.mark.lstm_verify(cell, impl,
    **options)``."""
    config = request.config
    ci = bool(config.getoption("--lstm-verify-ci") or os.environ.get("CI"))
    return LstmVerify(
        _marker_defaults(request.node),
        examples=config.getoption("--lstm-verify-examples"),
        seed=config.getoption("--lstm-verify-seed"),
        ci=ci,
        node=request.node,
    )
