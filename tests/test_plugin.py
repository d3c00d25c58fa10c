"""The pytest plugin (lstm_verify.pytest_plugin): fixture, marker, options, import cost.

Users' test files run in pytest subprocesses (torch does not survive pytester's in-process
module snapshots); the plugin is found through its pytest11 entry point, as a user's would be.
"""

import subprocess
import sys
from importlib.metadata import entry_points

import pytest

from lstm_verify.pytest_plugin import LstmVerify

pytest_plugins = ["pytester"]

# The README's example: a user's whole test file.
USER_EXAMPLE = """\
import torch


def test_torch_lstm_cell_is_an_lstm(lstm_verify):
    lstm_verify.check("lstm", torch.nn.LSTMCell)
"""

FAST = ("--lstm-verify-examples", "10", "-p", "no:cacheprovider")
HEAVY = ("torch", "matplotlib", "sympy", "hypothesis")


@pytest.fixture
def user(pytester):
    """A pytester whose runs warn as strictly as this project's own."""
    pytester.makeini("[pytest]\nfilterwarnings =\n    error\n    ignore::DeprecationWarning:torch.*\n")
    return pytester


def test_user_example_passes(user):
    assert len(USER_EXAMPLE.splitlines()) <= 10
    user.makepyfile(test_user=USER_EXAMPLE)
    result = user.runpytest_subprocess(*FAST)
    result.assert_outcomes(passed=1)


def test_wrong_claim_fails_with_the_table_and_identification(user):
    user.makepyfile(test_user=USER_EXAMPLE.replace('"lstm"', '"gru_cho"').replace("LSTMCell", "GRUCell"))
    result = user.runpytest_subprocess(*FAST)
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "torch.nn.modules.rnn.GRUCell against gru_cho:" in out
    assert "matches `gru`" in out
    assert "DOES NOT CONFORM" in out
    assert "pytest_plugin.py" not in out  # the table, not a traceback through the plugin


def test_marker_supplies_defaults(user):
    user.makepyfile(test_user="""
        import pytest
        import torch

        pytestmark = pytest.mark.lstm_verify("gru", examples=4)

        @pytest.mark.lstm_verify("lstm", layout="torch")
        def test_impl_only(lstm_verify):
            report = lstm_verify.check(impl=torch.nn.LSTMCell)
            assert report.cell == "lstm" and report.rows[0].examples == 4

        @pytest.mark.lstm_verify(impl=torch.nn.GRUCell)
        def test_everything_from_markers(lstm_verify):
            assert lstm_verify.check().cell == "gru"
            assert lstm_verify.identify(cells=["gru", "gru_cho"]).summary().startswith("matches `gru`")

        def test_call_overrides_marker(lstm_verify):
            assert lstm_verify.check("lstm", torch.nn.LSTMCell, examples=3).rows[0].examples == 3
    """)
    result = user.runpytest_subprocess("-p", "no:cacheprovider", "--strict-markers")
    result.assert_outcomes(passed=3)


def test_examples_option_overrides_the_budget(user):
    user.makepyfile(test_user="""
        import pytest
        import torch

        @pytest.mark.lstm_verify("lstm", torch.nn.LSTMCell, examples=500)
        def test_budget(lstm_verify):
            lstm_verify.check()
    """)
    result = user.runpytest_subprocess("-p", "no:cacheprovider", "-rP", "--lstm-verify-examples", "5",
                                       "--lstm-verify-seed", "7", "--lstm-verify-ci")  # fmt: skip
    result.assert_outcomes(passed=1)
    # a passing check's table is attached to the test (shown by -rP)
    result.stdout.fnmatch_lines(["*Captured lstm-verify call*", "*LSTMCell against lstm:*"])
    result.stdout.re_match_lines([r"\s*forward, ordinary and near-zero\s+5\s+ok$"])


def test_marker_profiles_and_options_are_registered(user):
    # no torch here; the profile run is a subprocess so as not to load the profile in this one
    user.makepyfile(test_user="""
        import pytest
        from hypothesis import settings

        @pytest.mark.lstm_verify("lstm")
        def test_profiles():
            assert settings().derandomize and settings().database is None
            assert settings.get_profile("lstm-verify-dev").deadline is None
    """)
    result = user.runpytest_subprocess("--strict-markers", "--hypothesis-profile", "lstm-verify-ci")
    result.assert_outcomes(passed=1)
    result = user.runpytest_inprocess("--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.lstm_verify(cell, impl=None, **options)*"])
    result = user.runpytest_inprocess("--help")
    result.stdout.fnmatch_lines(["*--lstm-verify-examples=N*", "*--lstm-verify-seed=N*", "*--lstm-verify-ci*"])


def test_bad_marker_is_a_setup_error(user):
    user.makepyfile(test_user="""
        import pytest

        @pytest.mark.lstm_verify("lstm", exampels=3)
        def test_typo(lstm_verify):
            pass
    """)
    result = user.runpytest_inprocess()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*unknown options*'exampels'*"])


def test_option_precedence():
    fx = LstmVerify({"cell": "gru", "impl": "M", "examples": 50, "layout": "torch"})
    assert fx.options() == {"cell": "gru", "impl": "M", "examples": 50, "layout": "torch"}
    assert fx.options("lstm", examples=9, seed=1) == {"cell": "lstm", "impl": "M", "examples": 9,
                                                      "layout": "torch", "seed": 1}  # fmt: skip
    fx = LstmVerify({"cell": "gru", "examples": 50}, examples=5, seed=3, ci=True)
    assert fx.options(impl="N", examples=9, seed=1, ci=False) == {"cell": "gru", "impl": "N", "examples": 5,
                                                                  "seed": 3, "ci": True}  # fmt: skip
    with pytest.raises(TypeError, match="no impl"):
        LstmVerify({"cell": "lstm"}).check()
    with pytest.raises(TypeError, match="no cell and impl"):
        LstmVerify().check()


def test_plugin_is_registered_and_light_to_import():
    assert "lstm_verify.pytest_plugin" in {ep.value for ep in entry_points(group="pytest11", name="lstm_verify")}
    for module in ("lstm_verify.pytest_plugin", "lstm_verify"):
        code = f"import sys, {module}; print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        assert out.stdout.strip() == "[]", (module, out.stdout, out.stderr)
    # the package's names still work, loaded on first use
    code = "import lstm_verify as lv; print(lv.load('lstm').name, 'lstm' in lv.catalog(), lv.Cell.__name__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["lstm", "True", "Cell"]
