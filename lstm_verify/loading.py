"""Load a user's object from ``package.module:attribute`` and a layout from a file."""

from __future__ import annotations

import importlib
import json
import os
import stat
import sys
import tomllib
from pathlib import Path

from .errors import LstmVerifyError
from .extras import EXTRAS, install_hint


def load_object(ref: str):
    """``package.module:factory`` (attribute paths with dots allowed); the current directory
    is importable, as under pytest."""
    module_name, sep, attr = ref.partition(":")
    if not sep or not module_name or not attr:
        raise LstmVerifyError(f"--impl {ref!r}: expected MODULE:FACTORY, e.g. mypkg.cells:MyLSTM")
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        obj = importlib.import_module(module_name)
    except ImportError as exc:
        hint = f" ({install_hint(exc.name)})" if getattr(exc, "name", None) in EXTRAS else ""
        raise LstmVerifyError(f"--impl {ref!r}: cannot import {module_name!r}: {exc}{hint}") from None
    except Exception as exc:  # noqa: BLE001 - the user's module failed while importing: one line
        raise LstmVerifyError(f"--impl {ref!r}: importing {module_name!r} raised "
                              f"{type(exc).__name__}: {exc}") from None  # fmt: skip
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise LstmVerifyError(f"--impl {ref!r}: {module_name!r} has no attribute {attr!r}") from None
    return obj


LAYOUT_LIMIT = 1 << 20  # bytes; a layout is a few lines


def read_layout(text: str):
    """A layout name, or a .toml/.json file holding a layout table (a regular file of at most
    LAYOUT_LIMIT bytes, UTF-8)."""
    path = Path(text)
    if path.suffix not in (".toml", ".json"):
        return text
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            raise LstmVerifyError(f"--layout {text}: not a regular file")
        with open(path, "rb") as f:
            raw = f.read(LAYOUT_LIMIT + 1)
    except OSError as exc:
        raise LstmVerifyError(f"--layout {text}: cannot read: {exc.strerror or exc}") from None
    if len(raw) > LAYOUT_LIMIT:
        raise LstmVerifyError(f"--layout {text}: larger than {LAYOUT_LIMIT} bytes; a layout is a small table")
    try:
        raw = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LstmVerifyError(f"--layout {text}: not UTF-8 text (byte {exc.start}: "
                              f"{raw[exc.start:exc.start + 1]!r})") from None  # fmt: skip
    try:
        data = tomllib.loads(raw) if path.suffix == ".toml" else json.loads(raw)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise LstmVerifyError(f"--layout {text}: not valid {path.suffix[1:].upper()}: {exc}") from None
    except RecursionError:
        raise LstmVerifyError(f"--layout {text}: nested too deeply") from None
    if not isinstance(data, dict):
        raise LstmVerifyError(f"--layout {text}: must hold a table")
    return data
