"""Generate NumPy and torch source for a cell: sequence forward and its exact BPTT backward.

The generated module has two functions::

    forward(params, inputs, state, t0=0, save=False) -> (outputs, final_state, cache)
    backward(params, cache, d_outputs=None, d_state=None, trace=None) -> (grads, d_inputs, d_state0)

``inputs`` maps input names to (T, B, n) arrays, ``state`` maps state names to (B, n), outputs
are (T, B, n) values of the output state. The loop body is scheduled in stages: all affine maps
that are ready, then all pointwise nodes that are ready (one CSE'd block). Affine maps sharing
an argument use one stacked GEMM; those whose argument is an input are hoisted out of the time
loop. The backward recomputes nothing: the forward saves exactly the values that the CSE'd
partial derivatives and the weight gradients read.

The torch code adds what makes it fast on its own helpers (see the prelude): recurrent products
of equal gate blocks as one batched GEMM with contiguous blocks (``_blocked``), packed MKL
weights when nothing records gradients (``_linear``), saved values and outputs written straight
into their buffers (``out=``), and a small pool for buffers that live within one call.

The package is split by concern: :mod:`.printers` (the SymPy printers and how names are
spelled), :mod:`.plan` (the schedule, the GEMM groups, what is saved), :mod:`.emit` (the
generated module's text: the prelude from :mod:`lstm_verify.prelude`, the forward loop and the
backward loop, walked once for both backends), :mod:`.backends` (the lines each backend writes
where they differ: NumPy's plain program, torch's speed machinery) and :mod:`.fused` (the C and
Triton kernels of the torch module, :mod:`lstm_verify.kernels`: its pointwise blocks as
kernels, and its forward and backward loops in C where the cell allows).
"""

from .emit import (
    PRELUDE, PRELUDE_MARK, _block, _Code, _constants, _cse_block, _unpack_params, drop_unread, generate, prelude,
    readable_step,
)
from .plan import Group, Plan, groups, plan, schedule
from .printers import BACKENDS, PRINTERS, NumpyPrinter, OverSet, TorchPrinter, _v, fold_constants

__all__ = [
    "BACKENDS", "PRELUDE", "PRELUDE_MARK", "PRINTERS", "Group", "NumpyPrinter", "OverSet", "Plan", "TorchPrinter",
    "drop_unread", "fold_constants", "generate", "groups", "plan", "prelude", "readable_step", "schedule",
    # used by lstm_verify.scan, which emits its modules with the same pieces
    "_Code", "_block", "_constants", "_cse_block", "_unpack_params", "_v",
]  # fmt: skip
