"""Built-in subjects: framework cells checked with no adapter code (``--impl keras.layers:GRUCell``).

Each framework module (imported only when one of its subjects is used; the framework itself
only when an engine is built) lists its engines in ``ENGINES = {reference: Engine subclass}``.
A reference ending in ``.onnx`` is a model file: its recurrent node is the subject.
"""

from __future__ import annotations

import importlib

from ..errors import LstmVerifyError
from .base import Engine, JaxEngine

# the part of a reference before ":" -> the module of this package that holds its engines
MODULES = {
    "keras.layers": "keras_cells",
    "flax.linen": "flax_cells",
    "flax.nnx": "flax_cells",
    "equinox.nn": "jax_cells",
    "haiku": "jax_cells",
    "onnx": "onnx_ops",
    "sru": "torch_packages",
    "xlstm": "torch_packages",
}

__all__ = ["Engine", "JaxEngine", "MODULES", "builtin", "is_builtin", "references"]


def is_builtin(ref) -> bool:
    """Whether ``ref`` names a built-in subject (``"flax.linen:GRUCell"``, ``"model.onnx"``)."""
    if not isinstance(ref, str):
        return False
    return ref.lower().endswith(".onnx") or ref.partition(":")[0] in MODULES


def _module(prefix: str):
    return importlib.import_module(f"{__name__}.{MODULES[prefix]}")


def builtin(ref: str) -> type[Engine] | None:
    """The engine class for a reference, or None if it is not built in. A model file gives the
    ONNX module's ``model_engine(path)``."""
    if ref.lower().endswith(".onnx"):
        return _module("onnx").model_engine(ref)
    prefix = ref.partition(":")[0]
    if prefix not in MODULES:
        return None
    engines = _module(prefix).ENGINES
    if ref not in engines:
        known = sorted(k for k in engines if k.startswith(prefix + ":"))
        raise LstmVerifyError(f"--impl {ref!r}: not a built-in subject; {prefix} has {known}")
    return engines[ref]


def references() -> list[str]:
    """Every built-in reference, in a stable order."""
    out = []
    for prefix, mod in MODULES.items():
        out += [k for k in _module(prefix).ENGINES if k.partition(":")[0] == prefix]
    return out
