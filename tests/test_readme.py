"""The README as tested documentation: every fenced block runs here, with the output it shows.

* ``pycon``: a doctest session (ELLIPSIS, NORMALIZE_WHITESPACE), each block in its own namespace.
* ``python`` that defines ``test_*`` functions: written to a file and run by pytest (with the
  plugin, as a user would); other ``python`` blocks: executed.
* ``toml``: a spec, parsed and built.
* ``console``: each ``$ lstm-verify ...`` line is run; the lines after it are its expected
  output (``...`` matches anything).
* ``bash``: the two install commands; ``.ci/run`` runs the second (the test command), and the
  first is tried by hand in a fresh environment (see the issue notes). Here: their form.
"""

from __future__ import annotations

import doctest
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import lstm_verify as lv
from lstm_verify.cli import main
from lstm_verify.ir import build_ir
from lstm_verify.spec import parse_spec

README = Path(__file__).resolve().parent.parent / "README.md"
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.S | re.M)


def blocks(kind: str | None = None) -> list[tuple[int, str, str]]:
    """(line, language, text) of every fenced block of the README."""
    text = README.read_text(encoding="utf-8")
    out = []
    for m in _FENCE.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        if kind is None or m.group(1) == kind:
            out.append((line, m.group(1), m.group(2)))
    return out


def ids(kind):
    return [f"line{line}" for line, _, _ in blocks(kind)]


def test_every_block_is_of_a_tested_kind():
    kinds = {lang for _, lang, _ in blocks()}
    assert kinds <= {"pycon", "python", "toml", "console", "bash"}, kinds
    assert len(blocks()) >= 8


@pytest.mark.parametrize("block", blocks("pycon"), ids=ids("pycon"))
def test_pycon_block(block):
    line, _, text = block
    parser = doctest.DocTestParser()
    test = parser.get_doctest(text, {}, f"README.md:{line}", str(README), line)
    assert test.examples, "a pycon block without examples"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    runner.run(test, out=lambda s: pytest.fail(s, pytrace=False))
    assert runner.summarize(verbose=False).failed == 0


@pytest.mark.parametrize("block", blocks("python"), ids=ids("python"))
def test_python_block(block, tmp_path, monkeypatch):
    line, _, text = block
    if re.search(r"^def test_", text, re.M):
        path = tmp_path / f"test_readme_line{line}.py"
        path.write_text(text)
        # the plugin's own option keeps the conformance budget small here (default 100)
        args = ["-q", "-p", "no:cacheprovider", "--lstm-verify-examples", "10", str(path)]
        proc = subprocess.run([sys.executable, "-m", "pytest", *args], cwd=tmp_path,
                              capture_output=True, text=True)  # fmt: skip
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert re.search(r"\b[1-9]\d* passed", proc.stdout), proc.stdout
    else:
        monkeypatch.chdir(tmp_path)
        exec(compile(text, f"README.md:{line}", "exec"), {"__name__": "readme"})  # noqa: S102


@pytest.mark.parametrize("block", blocks("toml"), ids=ids("toml"))
def test_toml_block(block):
    _, _, text = block
    ir = build_ir(parse_spec(text))
    catalog = lv.load(ir.name)  # a spec shown in the README is the catalog's own
    assert ir.spec.equations == catalog.spec.equations or ir.name not in lv.catalog()


def _matches(expected: list[str], got: str) -> bool:
    pattern = "\n".join(".*" if e.strip() == "..." else re.escape(e).replace(r"\.\.\.", ".*")
                        for e in expected)  # fmt: skip
    return re.search(pattern, got, re.S) is not None


@pytest.mark.parametrize("block", blocks("console"), ids=ids("console"))
def test_console_block(block, capsys):
    _, _, text = block
    commands: list[tuple[str, list[str]]] = []
    for row in text.splitlines():
        if row.startswith("$ "):
            commands.append((row[2:], []))
        elif commands:
            commands[-1][1].append(row)
    assert commands
    for command, expected in commands:
        argv = shlex.split(command)
        assert argv[0] == "lstm-verify", command
        status = main(argv[1:])
        out = capsys.readouterr()
        got = " ".join((out.out + out.err).split())
        want = [" ".join(e.split()) for e in " ".join(expected).split("...")]
        assert all(w in got for w in want if w), f"{command}: expected {expected!r}, got:\n{out.out}{out.err}"
        assert status in (0, 1), f"{command} exited {status}: {out.err}"


@pytest.mark.parametrize("block", blocks("bash"), ids=ids("bash"))
def test_bash_block(block):
    """The install commands: a fresh venv, torch's CPU wheel first, then the package."""
    _, _, text = block
    assert text.startswith("python3 -m venv .venv && . .venv/bin/activate && pip install torch==")
    assert "lstm-verify report" in text or text.rstrip().endswith("pytest -n auto")
