"""The core without its extras: torch, matplotlib and ruff made unimportable in a subprocess.

A ``sitecustomize`` module on PYTHONPATH puts a finder first on ``sys.meta_path`` that raises
ImportError for those top-level names (and records every attempt), as if they were not
installed. The core (specs, NumPy code, the reference, conformance of NumPy subjects, export,
``check`` on its NumPy paths, the pytest plugin) must work; what needs an extra must say which.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).parent / "golden"
BLOCKED = ("torch", "matplotlib", "ruff")

SITECUSTOMIZE = f"""
import os
import sys

BLOCKED = {BLOCKED!r}


class _NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            with open(os.environ["LIGHT_INSTALL_ATTEMPTS"], "a") as f:
                f.write(name + "\\n")
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None


sys.meta_path.insert(0, _NotInstalled())
"""

# a NumPy function subject, as a user would write one (gradients are not compared for NumPy)
SUBJECT = """
import lstm_verify as lv

_generated = lv.load("gru").numpy()


def factory(**sizes):
    return lambda p, x, h: (_generated.step(p, x, {"h": h})[1]["h"],)
"""


@pytest.fixture
def light(tmp_path):
    """run(args, code=None) -> CompletedProcess of Python in a core-only environment."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    (site / "mysubject.py").write_text(SUBJECT)
    attempts = tmp_path / "attempts.txt"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(ROOT)])
    env["LIGHT_INSTALL_ATTEMPTS"] = str(attempts)
    env.pop("COLUMNS", None)

    def run(*args, code=None, cwd=None):
        argv = [sys.executable, *(["-c", textwrap.dedent(code)] if code is not None else args)]
        return subprocess.run(argv, cwd=cwd or tmp_path, env=env, capture_output=True, text=True, timeout=900,
                              check=False)  # fmt: skip

    run.attempts = lambda: attempts.read_text().split() if attempts.exists() else []
    run.tmp = tmp_path
    return run


def _ok(proc):
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc.stdout


def test_the_extras_are_really_missing_in_the_subprocess(light):
    out = _ok(light(code="""
        for name in ("torch", "matplotlib.pyplot", "ruff"):
            try:
                __import__(name)
            except ImportError:
                print("missing", name)
    """))
    assert out.split("\n")[:3] == ["missing torch", "missing matplotlib.pyplot", "missing ruff"]


def test_import_load_numpy_forward_backward_and_reference(light):
    _ok(light(code="""
        import numpy as np
        import lstm_verify as lv
        from lstm_verify import strategies  # noqa: F401

        cell = lv.load("lstm")
        params = cell.init_params(input_size=3, hidden_size=5, seed=0)
        xs = np.random.default_rng(0).standard_normal((4, 2, 3))
        impl = cell.numpy()
        run = impl.forward(params, xs, save=True)
        grads = impl.backward(params, run.cache, np.ones_like(run.outputs))
        assert sorted(grads.params) == sorted(cell.ir.param_names)
        ref_out, _ = cell.reference(params, xs)
        assert np.max(np.abs(run.outputs - ref_out.astype(float))) < 1e-13
        cell.jacobian("c'", "c")  # exact derivatives (SymPy)
    """))
    # nothing in the core even tries the optional modules
    assert light.attempts() == []


def test_check_runs_the_numpy_paths_and_names_the_torch_extra(light):
    proc = light("-m", "lstm_verify.cli", "check", "lstm", "--wide")  # --wide: each column's full text
    out = _ok(proc)
    assert "not run (torch)" in out  # the bwd/autograd and torch.nn columns
    assert "no gradcheck" in out
    assert "Not run, needs torch (pip install 'lstm-verify[torch]'):" in out
    note = out[out.index("Not run, needs torch"):].split("\n\n")[0]  # up to the summary line
    for part in ("torch forward", "bwd/autograd", "gradcheck", "torch.nn.LSTMCell"):
        assert part in note
    assert "1 passed, 0 failed" in out
    narrow = _ok(light("-m", "lstm_verify.cli", "check", "lstm"))  # the default table says it too
    assert note in narrow and "1 passed, 0 failed" in narrow


def test_numpy_function_subject_conforms(light):
    out = _ok(light(code="""
        from lstm_verify.conformance import check
        from mysubject import factory

        report = check("gru", factory, backend="numpy", examples=10, seed=0)
        assert report.passed, report.table()
        print(report.table())
    """))
    assert "conforms" in out and "no gradients" in out
    proc = light("-m", "lstm_verify.cli", "check", "gru", "--impl", "mysubject:factory", "--backend", "numpy",
                 "--examples", "5", "--seed", "0", "--no-progress")  # fmt: skip
    assert "conforms" in _ok(proc)


def test_pytest_plugin_checks_a_numpy_subject(light):
    test = light.tmp / "test_user.py"
    test.write_text(textwrap.dedent("""
        from mysubject import factory


        def test_mine(lstm_verify):
            lstm_verify.check("gru", factory, backend="numpy", examples=5, seed=0)
    """))
    out = _ok(light("-m", "pytest", "-q", "-p", "no:cacheprovider", str(test)))
    assert "1 passed" in out


@pytest.mark.parametrize("name", ["lstm", "clockwork_rnn"])
def test_export_is_byte_identical_without_ruff_or_torch(light, name):
    out = _ok(light(code=f"""
        import json
        from lstm_verify.export import export

        print(json.dumps({{t: export({name!r}, t) for t in ("numpy", "torch", "c")}}))
    """))
    import json

    texts = json.loads(out)
    for target, suffix in (("numpy", ".py"), ("torch", ".py"), ("c", ".c")):
        assert texts[target] == (GOLDEN / f"{name}_{target}{suffix}").read_text(), target
    path = light.tmp / "lstm_numpy.py"
    _ok(light("-m", "lstm_verify.cli", "export", "lstm", "--target", "numpy", "-o", str(path)))
    assert path.read_text() == (GOLDEN / "lstm_numpy.py").read_text()


def test_what_needs_an_extra_says_which(light):
    out = _ok(light(code="""
        import lstm_verify as lv
        from lstm_verify.conformance import check
        from lstm_verify.errors import LstmVerifyError, MissingExtraError
        from mysubject import factory

        cell = lv.load("lstm")
        calls = {
            "torch": cell.torch,
            "module": cell.module,
            "subject": lambda: check("gru", factory, backend="torch", examples=2),
        }
        for label, call in calls.items():
            try:
                call()
            except MissingExtraError as exc:
                assert isinstance(exc, ImportError) and isinstance(exc, LstmVerifyError)
                print(label, "|", exc)
            else:
                raise AssertionError(label + " ran without torch")
    """))
    lines = out.strip().split("\n")
    assert lines == [
        "torch | cell.torch() needs torch: pip install 'lstm-verify[torch]'",
        "module | cell.module() needs torch: pip install 'lstm-verify[torch]'",
        "subject | checking a function with backend='torch' needs torch: pip install 'lstm-verify[torch]'",
    ]
    proc = light("-m", "lstm_verify.cli", "report", "lstm", "--quick", "-o", str(light.tmp / "report"))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr == "lstm-verify: error: lstm-verify report needs torch: pip install 'lstm-verify[report]'\n"
    assert not (light.tmp / "report").exists()  # refused before the path is touched


def test_impl_that_needs_torch_names_the_extra(light):
    proc = light("-m", "lstm_verify.cli", "check", "gru", "--impl", "torch.nn:GRUCell")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "pip install 'lstm-verify[torch]'" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
