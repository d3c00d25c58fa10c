"""lstm-verify: ground truth for recurrent cells.

    import lstm_verify as lv
    cell = lv.load("lstm")                                   # catalog name or spec path
    params = cell.init_params(input_size=3, hidden_size=5)   # NumPy arrays, named as the spec
    run = cell.numpy().forward(params, xs, save=True)        # xs: (T, B, 3); also cell.torch()
    grads = cell.numpy().backward(params, run.cache, d_outputs)
    cell.jacobian("c'", "c")                                 # exact closed form: diag(f)
"""

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

from .errors import LstmVerifyError, ShapeError, SpecError, VerificationError

if TYPE_CHECKING:  # pragma: no cover
    from .cell import Cell, Grads, Implementation, Run, catalog, load

try:
    __version__ = version("lstm-verify")
except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
    __version__ = "0+unknown"

__all__ = [
    "Cell", "Grads", "Implementation", "Run", "catalog", "load",
    "LstmVerifyError", "ShapeError", "SpecError", "VerificationError", "__version__",
]  # fmt: skip

# .cell pulls in SymPy (seconds); it is imported on first use of one of its names (PEP 562) so
# that `import lstm_verify.<submodule>` (the pytest plugin, the strategies) stays light.
_FROM_CELL = frozenset({"Cell", "Grads", "Implementation", "Run", "catalog", "load"})


def __getattr__(name):
    if name in _FROM_CELL:
        from . import cell

        value = getattr(cell, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | _FROM_CELL)
