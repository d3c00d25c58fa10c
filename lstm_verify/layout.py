"""The generic layout adapter: third-party tensors <-> spec parameters, driven by spec data.

A layout says, for each third-party tensor, which spec parameters it holds (see
:class:`lstm_verify.spec.Layout`): blocks stacked along the first axis (``rows``), groups of
such stacks along a new leading axis (``stack``: Keras's (2, 3H) GRU bias, ONNX's
num_directions), or a block matrix (``grid``: one weight over [x, h]); the tensors named in
``transpose`` are stored transposed (the last two axes). A spec parameter that appears in several
places (torch's bias_ih and bias_hh) is their sum; ``scale`` and ``shift`` map the summed blocks
to the spec parameter (spec = scale * blocks + shift: a forget bias added at run time, a gate
computed as 1 - z of the spec's).
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


def _t(value):
    return np.swapaxes(value, -1, -2) if value.ndim >= 2 else value


def _cut(value, sizes_, axis, what):
    """``value`` cut along ``axis`` into pieces of the given sizes (all of it)."""
    if value.ndim <= axis or value.shape[axis] != sum(sizes_):
        have = value.shape[axis] if value.ndim > axis else "no"
        raise ShapeError(f"{what} has {have} entries along axis {axis}; its blocks need {sum(sizes_)}")
    return np.split(value, np.cumsum(sizes_)[:-1], axis=axis)


def split(ir: CellIR, layout: Layout, tensor: str, value, sizes: dict) -> list[tuple[str, np.ndarray]]:
    """(spec parameter, block) for every block of one tensor, in the tensor's order."""
    value = np.asarray(value)
    what = f"{ir.name}: layout {layout.name!r} tensor {tensor!r} (shape {value.shape})"
    if tensor in layout.transpose:
        value = _t(value)
    kind, groups = layout.form(tensor)
    shape = lambda b: ir.param_shape(b, sizes)  # noqa: E731
    if kind == "stack":
        if value.ndim < 1 or value.shape[0] != len(groups):
            raise ShapeError(f"{what}: a leading axis of {len(groups)} expected")
        pieces = [(g, value[k]) for k, g in enumerate(groups)]
    elif kind == "grid":
        rows = [shape(g[0])[0] for g in groups]
        pieces = []
        for g, row in zip(groups, _cut(value, rows, 0, what)):
            cols = [shape(b)[1] if len(shape(b)) > 1 else 1 for b in g]
            pieces += [((b,), blk) for b, blk in zip(g, _cut(row, cols, 1, what))]
    else:
        pieces = [(groups[0], value)]
    out = []
    for g, piece in pieces:
        for b, blk in zip(g, _cut(piece, [shape(b)[0] for b in g], 0, what)):
            if blk.shape != shape(b):
                raise ShapeError(f"{what}: block {b!r} has shape {blk.shape}, expected {shape(b)}")
            out.append((b, blk))
    return out


def from_target(ir: CellIR, layout_name, tensors: dict, sizes: dict) -> dict:
    """Spec parameters (NumPy) from a third-party implementation's named tensors."""
    layout = layout_name if isinstance(layout_name, Layout) else get_layout(ir, layout_name)
    missing = [t for t, _ in layout.tensors if t not in tensors]
    if missing:
        raise ShapeError(f"{ir.name}: layout {layout.name!r} needs tensors {missing}")
    params: dict[str, np.ndarray] = {}
    for tensor, _ in layout.tensors:
        for name, block in split(ir, layout, tensor, _np(tensors[tensor]), sizes):
            params[name] = params[name] + block if name in params else block.copy()
    scale, shift = dict(layout.scale), dict(layout.shift)
    return {k: v * scale.get(k, 1.0) + shift.get(k, 0.0) for k, v in params.items()}


def to_target(ir: CellIR, layout_name: str, params: dict, sizes: dict) -> dict:
    """Third-party tensors from spec parameters (see :func:`stack`)."""
    return stack(get_layout(ir, layout_name), params)


def _build(layout: Layout, tensor: str, block) -> np.ndarray:
    """A tensor from its blocks in order (``block(name)`` gives each occurrence's value)."""
    kind, groups = layout.form(tensor)
    if kind == "grid":
        value = np.concatenate([np.concatenate([np.atleast_2d(block(b).T).T for b in g], 1) for g in groups], 0)
    else:
        value = np.stack([np.concatenate([block(b) for b in g], 0) for g in groups])
        if kind == "rows":
            value = value[0]
    return _t(value) if tensor in layout.transpose else value


def stack(layout: Layout, params: dict, split: np.random.Generator | None = None) -> dict:
    """A layout's tensors from spec parameters. A parameter placed in several blocks (summed
    biases) goes whole to its first block and as zeros to the others; with ``split``, it is cut
    into random parts that sum to it, so that code which drops one of them is seen."""
    scale, shift = dict(layout.scale), dict(layout.shift)
    values = {b: (_np(params[b]).astype(np.float64) - shift.get(b, 0.0)) / scale.get(b, 1.0)
              if (b in scale or b in shift) else _np(params[b]) for _, bs in layout.tensors for b in bs}  # fmt: skip
    count: dict[str, int] = {}
    for _, blocks in layout.tensors:
        for b in blocks:
            count[b] = count.get(b, 0) + 1
    share = {}
    if split is not None:
        for b, n in count.items():
            if n > 1:
                v = values[b].astype(np.float64)
                parts = [v * split.uniform(-1.0, 2.0, v.shape) for _ in range(n - 1)]
                share[b] = [v - sum(parts)] + parts
    placed: dict[str, int] = {}

    def block(b):
        k = placed.get(b, 0)
        placed[b] = k + 1
        value = _np(params[b])
        if b in share:
            return share[b][k].astype(value.dtype)
        return np.zeros_like(value) if k else np.asarray(values[b]).astype(value.dtype)

    return {tensor: _build(layout, tensor, block) for tensor, _ in layout.tensors}


def stack_gradients(layout: Layout, grads: dict) -> dict:
    """d loss/d tensor from d loss/d spec parameter: every block a parameter is summed from gets
    its whole gradient (times the layout's scale)."""
    scale = dict(layout.scale)
    return {tensor: _build(layout, tensor, lambda b: _np(grads[b]) * scale.get(b, 1.0)) for tensor, _ in layout.tensors}


def _np(a):
    return a.detach().cpu().numpy() if hasattr(a, "detach") else np.asarray(a)
