"""The generic layout adapter: third-party tensors <-> spec parameters, driven by spec data.

A layout lists, for each third-party tensor, the spec parameters stacked along its first axis
(after transposing the tensors named in ``transpose``). A spec parameter that appears in several
tensors (torch's bias_ih and bias_hh) is their sum.
"""

from __future__ import annotations

import numpy as np

from .errors import ShapeError
from .ir import CellIR
from .spec import Layout


def get_layout(ir: CellIR, name: str) -> Layout:
    for layout in ir.spec.layouts:
        if layout.name == name:
            return layout
    known = [lay.name for lay in ir.spec.layouts]
    raise ShapeError(f"cell {ir.name!r} has no layout {name!r}; it has {known}")


def _split(ir, layout, tensor, value, sizes):
    blocks = dict(layout.tensors)[tensor]
    value = np.asarray(value)
    if tensor in layout.transpose:
        value = value.T
    rows = [ir.param_shape(b, sizes)[0] for b in blocks]
    if value.shape[0] != sum(rows):
        raise ShapeError(
            f"{ir.name}: layout {layout.name!r} tensor {tensor!r} has {value.shape[0]} rows; "
            f"blocks {list(blocks)} need {sum(rows)}"
        )
    out, start = [], 0
    for b, n in zip(blocks, rows):
        block = value[start : start + n]
        if block.shape != ir.param_shape(b, sizes):
            raise ShapeError(f"{ir.name}: block {b!r} of {tensor!r} has shape {block.shape}, "
                             f"expected {ir.param_shape(b, sizes)}")  # fmt: skip
        out.append((b, block))
        start += n
    return out


def from_target(ir: CellIR, layout_name: str, tensors: dict, sizes: dict) -> dict:
    """Spec parameters (NumPy) from a third-party implementation's named tensors."""
    layout = get_layout(ir, layout_name)
    missing = [t for t, _ in layout.tensors if t not in tensors]
    if missing:
        raise ShapeError(f"{ir.name}: layout {layout_name!r} needs tensors {missing}")
    params: dict[str, np.ndarray] = {}
    for tensor, _ in layout.tensors:
        for name, block in _split(ir, layout, tensor, _np(tensors[tensor]), sizes):
            params[name] = params[name] + block if name in params else block.copy()
    return params


def to_target(ir: CellIR, layout_name: str, params: dict, sizes: dict) -> dict:
    """Third-party tensors from spec parameters; a shared parameter goes to its first tensor and
    zeros to the others, so the sums are right."""
    layout = get_layout(ir, layout_name)
    placed: set[str] = set()
    out = {}
    for tensor, blocks in layout.tensors:
        parts = []
        for b in blocks:
            value = _np(params[b])
            parts.append(np.zeros_like(value) if b in placed else value)
            placed.add(b)
        stacked = np.concatenate([p if p.ndim == 2 else p for p in parts], 0)
        out[tensor] = stacked.T if tensor in layout.transpose else stacked
    return out


def _np(a):
    return a.detach().cpu().numpy() if hasattr(a, "detach") else np.asarray(a)
