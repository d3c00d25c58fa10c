"""The command line: list, show, check (its exit status follows the oracles)."""

import subprocess
import sys

from lstm_verify.cell import SPEC_DIR, catalog
from lstm_verify.cli import main


def test_list(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in catalog())


def test_show_prints_equations_and_jacobians(capsys):
    assert main(["show", "rnn_tanh"]) == 0
    out = capsys.readouterr().out
    assert "h' = tanh(lin(x, h))" in out
    assert "dh'/dh = diag(1 - h'**2) · W_h_h" in out
    assert main(["show", "lstm", "--latex"]) == 0
    out = capsys.readouterr().out
    assert r"\frac{\partial c'}{\partial c} = \operatorname{diag}\left(f\right)" in out
    assert main(["show", "gru", "--source", "torch"]) == 0
    assert "torch.sigmoid" in capsys.readouterr().out


def test_show_unknown_cell_is_a_clear_error(capsys):
    assert main(["show", "nope"]) == 2
    assert "no catalog cell named 'nope'" in capsys.readouterr().err


def test_check_passes_on_catalog_cells(capsys):
    assert main(["check", "lstm", "gru_cho", "clockwork_rnn"]) == 0
    out = capsys.readouterr().out
    assert "LSTMCell equal" in out and "GRUCell differs" in out
    assert "3 passed, 0 failed" in out


def test_check_fails_when_a_spec_claims_a_wrong_equivalence(tmp_path, capsys):
    """A GRU ported with the reset gate before the matmul, claiming to be torch's GRUCell."""
    text = (SPEC_DIR / "gru_cho.toml").read_text().replace("equivalent = false\n", "")
    path = tmp_path / "claimed_gru.toml"
    path.write_text(text.replace('name = "gru_cho"', 'name = "claimed_gru"'))
    assert main(["check", str(path)]) == 1
    out = capsys.readouterr().out
    assert "expected equal" in out and "0 passed, 1 failed" in out


def test_console_script_runs():
    result = subprocess.run(
        [sys.executable, "-m", "lstm_verify.cli", "show", "mgu"], capture_output=True, text=True
    )
    assert result.returncode == 0 and "Minimal gated unit" in result.stdout


def test_check_whole_catalog(capsys):
    assert main(["check"]) == 0
    assert f"{len(catalog())} passed, 0 failed" in capsys.readouterr().out
