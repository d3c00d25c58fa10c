"""Structural zeros in weight matrices, written as a comparison of per-unit buffers.

``"T_in >= T_out"`` keeps entry (out, in) of a weight where the buffer ``T`` of the input unit
is at least that of the output unit (clockwork RNN: slower modules feed faster ones). Parsed
with the same whitelist discipline as equations: one comparison, operands ``B_in``/``B_out``
for a buffer ``B`` or number literals.
"""

from __future__ import annotations

import ast
import math
import operator
from dataclasses import dataclass

from .errors import SpecError

_OPS = {
    ast.GtE: (">=", operator.ge),
    ast.LtE: ("<=", operator.le),
    ast.Gt: (">", operator.gt),
    ast.Lt: ("<", operator.lt),
    ast.Eq: ("==", operator.eq),
    ast.NotEq: ("!=", operator.ne),
}


@dataclass(frozen=True)
class Operand:
    buffer: str | None  # None for a number
    side: str | None  # "in" (column) or "out" (row)
    value: float = 0.0


@dataclass(frozen=True)
class Mask:
    left: Operand
    op: str
    right: Operand

    def evaluate(self, buffers, xp=None):
        """Boolean (out, in) matrix from per-unit buffer arrays (numpy or torch)."""

        def side(o):
            if o.buffer is None:
                return o.value
            b = buffers[o.buffer]
            return b[None, :] if o.side == "in" else b[:, None]

        fn = {sym: f for sym, f in _OPS.values()}[self.op]
        return fn(side(self.left), side(self.right))


def parse_mask(text: str, buffers, path=None, weight=None) -> Mask:
    def fail(msg, col=None):
        raise SpecError(f"mask of {weight}: {msg}", path=path, equation=text, column=col)

    if len(text) > 200:
        fail("mask text longer than 200 characters")
    for pos, ch in enumerate(text):  # ASCII: Python would read a fullwidth letter as its twin
        if not (ch.isascii() and ch.isprintable()):
            fail(f"character {ch!r} is not allowed: masks are one line of ASCII", pos + 1)
    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except SyntaxError as exc:
        fail(f"syntax error: {exc.msg}", exc.offset)
    if not isinstance(tree, ast.Compare) or len(tree.ops) != 1 or type(tree.ops[0]) not in _OPS:
        fail("expected one comparison such as 'T_in >= T_out'", 1)

    def operand(node):
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            if not math.isfinite(float(node.value)):
                fail(f"number {node.value!r} is not finite", node.col_offset + 1)
            return Operand(None, None, float(node.value))
        if isinstance(node, ast.Name):
            base, _, side = node.id.rpartition("_")
            if side in ("in", "out") and base in buffers:
                return Operand(base, side)
        fail(f"operands are B_in, B_out for a buffer B in {sorted(buffers)}, or numbers",
             getattr(node, "col_offset", 0) + 1)

    return Mask(operand(tree.left), _OPS[type(tree.ops[0])][0], operand(tree.comparators[0]))
