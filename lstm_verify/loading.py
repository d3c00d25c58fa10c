"""Load a user's object from ``package.module:attribute`` and a layout from a file."""

from __future__ import annotations

import importlib
import json
import sys
import tomllib
from pathlib import Path

from .errors import LstmVerifyError


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
        raise LstmVerifyError(f"--impl {ref!r}: cannot import {module_name!r}: {exc}") from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise LstmVerifyError(f"--impl {ref!r}: {module_name!r} has no attribute {attr!r}") from None
    return obj


def read_layout(text: str):
    """A layout name, or a .toml/.json file holding a layout table."""
    path = Path(text)
    if path.suffix not in (".toml", ".json"):
        return text
    try:
        raw = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise LstmVerifyError(f"--layout {text}: cannot read: {exc.strerror}") from None
    try:
        data = tomllib.loads(raw) if path.suffix == ".toml" else json.loads(raw)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise LstmVerifyError(f"--layout {text}: not valid {path.suffix[1:].upper()}: {exc}") from None
    if not isinstance(data, dict):
        raise LstmVerifyError(f"--layout {text}: must hold a table")
    return data
