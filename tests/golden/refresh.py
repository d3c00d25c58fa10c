"""Rewrite the golden exports after an intended change to the generator:

    python tests/golden/refresh.py

then review the diff (git diff tests/golden) before committing it.
"""

from pathlib import Path

from lstm_verify.export import export

HERE = Path(__file__).parent
CELLS = ("lstm", "gru", "clockwork_rnn")

if __name__ == "__main__":
    for name in CELLS:
        for target, suffix in (("numpy", ".py"), ("torch", ".py"), ("c", ".c")):
            path = HERE / f"{name}_{target}{suffix}"
            path.write_text(export(name, target))
            print(f"wrote {path}")
