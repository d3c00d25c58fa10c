"""Command-line output people read: tables within 100 columns unless --wide, limits as a
sentence, errors before any table, options named as flags, the canonical cell named first."""

from __future__ import annotations

import pytest

import lstm_verify as lv
from lstm_verify.cell import SPEC_DIR, catalog
from lstm_verify.cli import main
from lstm_verify.errors import SpecError
from lstm_verify.identify import identify

# --------------------------------------------------------------------------- same_as


def test_same_as_names_a_catalog_cell_with_the_same_equations():
    aliases = {n: lv.load(n).spec.same_as for n in catalog() if lv.load(n).spec.same_as}
    assert aliases == {"greff_np": "lstm"}
    for name, same in aliases.items():
        assert [e.text for e in lv.load(name).spec.equations] == [e.text for e in lv.load(same).spec.equations]


@pytest.mark.parametrize("value", ['"lstmm"', '"greff_np"', "1", '["lstm"]'])
def test_same_as_must_name_another_catalog_cell(tmp_path, value):
    text = (SPEC_DIR / "greff_np.toml").read_text().replace('same_as = "lstm"', f"same_as = {value}")
    path = tmp_path / "greff_np.toml"
    path.write_text(text)
    with pytest.raises(SpecError, match="'same_as' must name another catalog cell"):
        lv.load(path)


def test_identify_names_the_canonical_cell_first():
    import torch

    result = identify(torch.nn.LSTMCell, cells=["greff_np", "lstm"])  # the alias first on purpose
    assert [m.cell.name for m in result.matches[:2]] == ["lstm", "greff_np"]
    assert result.summary().startswith("matches `lstm` (LSTM with forget gate); also matches `greff_np` "
                                       "(Greff NP: no peepholes; the same equations as `lstm`)")  # fmt: skip


def test_cli_identify_names_the_canonical_cell_first(capsys):
    assert main(["identify", "--impl", "torch.nn:LSTMCell", "greff_np", "lstm", "gru"]) == 0
    out = capsys.readouterr().out
    assert out.index("`lstm`") < out.index("`greff_np`"), out
    assert "matches `lstm` (LSTM with forget gate)" in out


# --------------------------------------------------------------------------- check tables


@pytest.fixture(scope="module")
def claimed_gru(tmp_path_factory):
    """A GRU ported with the reset gate before the matmul, claiming to be torch's GRUCell: a
    failing row."""
    text = (SPEC_DIR / "gru_cho.toml").read_text().replace("equivalent = false\n", "")
    path = tmp_path_factory.mktemp("specs") / "claimed_gru.toml"
    path.write_text(text.replace('name = "gru_cho"', 'name = "claimed_gru"'))
    return str(path)


def test_check_table_fits_100_columns_and_says_its_limits(claimed_gru, capsys):
    assert main(["check", "lstm", claimed_gru]) == 1
    out = capsys.readouterr().out
    width = max(map(len, out.splitlines()))
    assert width <= 100, out
    assert "{" not in out and "'fwd64'" not in out  # limits as a sentence, not a dict
    assert "A row passes when the forward is within 1e-13 (float64) and 2e-05 (float32) of mpmath" in out
    assert "ulp" not in out  # the ULP count only with --wide, where it is explained
    assert "LSTMCell equal" in out and "GRUCell differs" in out
    assert "claimed_gru fails: torch.nn.GRUCell differs" in out and "(expected equal)" in out
    assert "1 passed, 1 failed" in out


def test_check_wide_shows_ulps_and_explains_them(capsys):
    assert main(["check", "--verbose", "rnn_tanh"]) == 0
    out = capsys.readouterr().out
    assert "ulp" in out.split("\ncell ")[1]  # in the rows
    assert "ulp: the worst element's error in units in the last place" in out
    assert "rows pass or fail on the normwise error" in out
    assert "RNNCell equal " in out and "/" in out.split("RNNCell equal ")[1].split()[0]  # both differences
    assert main(["check", "--wide", "rnn_tanh"]) == 0
    assert "ulp" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["check", "lstmm"], "no catalog cell named 'lstmm'"),
    (["check", "lstm", "rnn_tanh", "lstmm"], "no catalog cell named 'lstmm'"),
    (["check", "lstm", "--examples", "5"], "--examples applies only with --impl"),
    (["check", "lstm", "--layout", "torch", "--seed", "1"], "--layout, --seed apply only with --impl"),
    (["check", "lstm", "--impl", "torch.nn:LSTMCell", "--wide"], "--wide/--verbose applies to the catalog check"),
])  # fmt: skip
def test_check_errors_come_before_any_output(argv, message, capsys):
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # no legend, no table header
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], captured.err


def test_no_layout_error_names_the_flag_on_the_command_line(capsys):
    import torch

    from lstm_verify.conformance import check
    from lstm_verify.errors import ShapeError

    assert main(["check", "lstm", "--impl", "torch.nn:LSTM"]) == 2
    err = capsys.readouterr().err
    assert "pass --layout FILE" in err and "layout=" not in err, err
    assert main(["identify", "--impl", "torch.nn:LSTM", "lstm"]) == 1
    out = capsys.readouterr().out
    assert "pass --layout FILE" in out and "layout=" not in out, out
    with pytest.raises(ShapeError, match="pass layout= "):  # the library speaks of its keyword
        check("lstm", torch.nn.LSTM)


def test_check_table_without_torch_fits_and_says_what_did_not_run(monkeypatch, capsys):
    from lstm_verify import check as check_module

    run_cell = check_module.check_cell
    monkeypatch.setattr(check_module, "check_cell", lambda cell, use_torch=None: run_cell(cell, use_torch=False))
    assert main(["check", "lstm", "clockwork_rnn"]) == 0
    out = capsys.readouterr().out
    assert max(map(len, out.splitlines())) <= 100, out
    row = next(line for line in out.splitlines() if line.startswith("lstm "))
    assert row.split()[6] == "-" and "LSTMCell -" in row  # bwd/ag and torch.nn did not run
    assert "Not run, needs torch (pip install 'lstm-verify[torch]'):" in out
