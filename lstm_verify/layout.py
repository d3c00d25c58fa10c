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
    """Third-party tensors from spec parameters (see :func:`stack`)."""
    return stack(get_layout(ir, layout_name), params)


def stack(layout: Layout, params: dict, split: np.random.Generator | None = None) -> dict:
    """A layout's tensors from spec parameters. A parameter stacked into several tensors (summed
    biases) goes whole to its first tensor and as zeros to the others; with ``split``, it is cut
    into random parts that sum to it, so that code which drops one of them is seen."""
    share = {}
    if split is not None:
        count: dict[str, int] = {}
        for _, blocks in layout.tensors:
            for b in blocks:
                count[b] = count.get(b, 0) + 1
        for b, n in count.items():
            if n > 1:
                v = _np(params[b]).astype(np.float64)
                parts = [v * split.uniform(-1.0, 2.0, v.shape) for _ in range(n - 1)]
                share[b] = [v - sum(parts)] + parts
    placed: dict[str, int] = {}
    out = {}
    for tensor, blocks in layout.tensors:
        parts = []
        for b in blocks:
            value = _np(params[b])
            k = placed.get(b, 0)
            if b in share:
                parts.append(share[b][k].astype(value.dtype))
            else:
                parts.append(np.zeros_like(value) if k else value)
            placed[b] = k + 1
        stacked = np.concatenate(parts, 0)
        out[tensor] = stacked.T if tensor in layout.transpose else stacked
    return out


def stack_gradients(layout: Layout, grads: dict) -> dict:
    """d loss/d tensor from d loss/d spec parameter: a parameter stacked into several tensors
    (summed biases) gives each its whole gradient."""
    out = {}
    for tensor, blocks in layout.tensors:
        g = np.concatenate([_np(grads[b]) for b in blocks], 0)
        out[tensor] = g.T if tensor in layout.transpose else g
    return out


def _np(a):
    return a.detach().cpu().numpy() if hasattr(a, "detach") else np.asarray(a)
