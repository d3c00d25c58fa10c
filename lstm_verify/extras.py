"""Optional dependencies: every import of torch or matplotlib goes through :func:`require`.

The core (specs, exact derivatives, generated NumPy code, the mpmath reference, strategies,
conformance of NumPy subjects, export to NumPy and C) needs only NumPy, SymPy, mpmath and
Hypothesis. The rest comes with an extra; a feature that needs a missing one raises
:class:`~lstm_verify.errors.MissingExtraError` naming it.
"""

from __future__ import annotations

import importlib

from .errors import MissingExtraError

# top-level module -> (distribution, the extra that brings it)
EXTRAS = {
    "torch": ("torch", "torch"),
    "matplotlib": ("matplotlib", "report"),
    "threadpoolctl": ("threadpoolctl", "report"),
    "scipy": ("scipy", "report"),
    "distributed": ("distributed", "dask"),
    "triton": ("triton", "triton"),
    # built-in framework subjects (lstm_verify.frameworks)
    "keras": ("keras", "keras"),
    "jax": ("jax", "jax"),
    "flax": ("flax", "flax"),
    "equinox": ("equinox", "equinox"),
    "haiku": ("dm-haiku", "haiku"),
    "onnx": ("onnx", "onnx"),
    "onnxruntime": ("onnxruntime", "onnx"),
}


def install_hint(module: str, extra: str | None = None) -> str:
    """``pip install 'lstm-verify[EXTRA]'`` for a top-level optional module (or ``extra``)."""
    return f"pip install 'lstm-verify[{extra or EXTRAS[module.partition('.')[0]][1]}]'"


def missing_text(module: str, what: str, extra: str | None = None) -> str:
    """One line: what needs which distribution, and the command that installs it."""
    dist = EXTRAS[module.partition(".")[0]][0]
    return f"{what} needs {dist}: {install_hint(module, extra)}"


def require(module: str, what: str, extra: str | None = None):
    """Import ``module`` (``"torch"``, ``"matplotlib.pyplot"``) or raise
    :class:`MissingExtraError` saying that ``what`` needs it and which extra brings it (the
    module's own, or ``extra`` when a feature's extra brings several modules)."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.partition(".")[0]
        if exc.name is not None and exc.name.partition(".")[0] != top:
            raise  # the package is there but one of its own dependencies is broken
        raise MissingExtraError(missing_text(module, what, extra)) from None


def available(module: str) -> bool:
    """Whether ``module`` imports (imports it if so); a broken dependency of it still raises."""
    try:
        require(module, module)
    except MissingExtraError:
        return False
    return True
