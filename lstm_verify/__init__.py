"""lstm-verify: ground truth for recurrent cells.

    import lstm_verify as lv
    cell = lv.load("lstm")                                   # catalog name or spec path
    params = cell.init_params(input_size=3, hidden_size=5)   # NumPy arrays, named as the spec
    run = cell.numpy().forward(params, xs, save=True)        # xs: (T, B, 3); also cell.torch()
    grads = cell.numpy().backward(params, run.cache, d_outputs)
    cell.jacobian("c'", "c")                                 # exact closed form: diag(f)
"""

from importlib.metadata import PackageNotFoundError, version

from .cell import Cell, Grads, Implementation, Run, catalog, load
from .errors import LstmVerifyError, ShapeError, SpecError, VerificationError

try:
    __version__ = version("lstm-verify")
except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
    __version__ = "0+unknown"

__all__ = [
    "Cell", "Grads", "Implementation", "Run", "catalog", "load",
    "LstmVerifyError", "ShapeError", "SpecError", "VerificationError", "__version__",
]  # fmt: skip
