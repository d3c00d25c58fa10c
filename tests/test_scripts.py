"""Every script in the repository answers --help with its usage and exit status 0, and touches
nothing: no file in its folder is created, changed or removed, and neither the working folder
nor the cache and home folders gain anything."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "benchmarks").glob("*.py")) + ["tests/golden/refresh.py"]


def _listing(folder: Path) -> dict:
    """Every file under ``folder`` with its size and modification time (ns)."""
    out = {}
    for p in folder.rglob("*"):
        if p.is_file() and "__pycache__" not in p.parts:
            st = p.stat()
            out[str(p.relative_to(folder))] = (st.st_size, st.st_mtime_ns)
    return out


def test_every_script_is_listed():
    found = {str(p.relative_to(ROOT)) for p in ROOT.rglob("*.py")
             if "__main__" in p.read_text(encoding="utf-8") and "lstm_verify" not in p.parts
             and p.name != Path(__file__).name and ".venv" not in p.parts}  # fmt: skip
    assert found <= set(SCRIPTS), sorted(found - set(SCRIPTS))


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_help_has_no_side_effects(script, tmp_path):
    cwd, home, cache = tmp_path / "cwd", tmp_path / "home", tmp_path / "cache"
    for d in (cwd, home, cache):
        d.mkdir()
    folder = (ROOT / script).parent
    before = _listing(folder)
    env = dict(os.environ, HOME=str(home), XDG_CACHE_HOME=str(cache), LSTM_VERIFY_CACHE=str(cache / "lv"),
               PYTHONDONTWRITEBYTECODE="1")  # fmt: skip
    proc = subprocess.run([sys.executable, str(ROOT / script), "--help"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage:"), proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr
    assert _listing(folder) == before, f"{script} --help changed files in {folder}"
    assert [list(d.rglob("*")) for d in (cwd, home, cache)] == [[], [], []]
