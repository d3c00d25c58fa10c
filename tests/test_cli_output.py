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
