"""The generic layout adapter: third-party tensors <-> spec parameters, driven by spec data.

A layout says, for each third-party tensor, which spec parameters it holds (see
:class:`lstm_verify.spec.Layout`): blocks stacked along the first axis (``rows``), groups of
such stacks along a new leading axis (``stack``: Keras's (2, 3H) GRU bias, ONNX's
num_directions), a block matrix (``grid``: one weight over [x, h]), or blocks interleaved row by
row (``interleave``: row ``n*j + k`` is row ``j`` of the k-th of n blocks, the sru package's
per-unit gate columns), or one slice per head of block-diagonal weights (``heads``, K heads of
contiguous equal unit blocks: slice k stacks the k-th diagonal block of each listed weight along
its rows, xLSTM's (K, 4*H/K, H/K) recurrent kernel); the tensors named in
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
    elif kind == "interleave":
        (g,) = groups
        rows = [shape(b)[0] for b in g]
        if len(set(rows)) != 1:
            raise ShapeError(f"{what}: interleaved blocks {list(g)} must have equal rows, got {rows}")
        if value.ndim < 1 or value.shape[0] != sum(rows):
            raise ShapeError(f"{what}: {len(g)} interleaved blocks of {rows[0]} rows need {sum(rows)} rows")
        pieces = [((b,), value[k :: len(g)]) for k, b in enumerate(g)]
    elif kind.startswith("heads:"):
        pieces = _heads_split(value, int(kind[6:]), groups[0], shape, what)
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
    elif kind == "interleave":
        blocks = [block(b) for b in groups[0]]
        value = np.stack(blocks, axis=1).reshape((-1,) + blocks[0].shape[1:])
    elif kind.startswith("heads:"):
        value = _heads_build(layout, tensor, int(kind[6:]), [(b, block(b)) for b in groups[0]])
    else:
        value = np.stack([np.concatenate([block(b) for b in g], 0) for g in groups])
        if kind == "rows":
            value = value[0]
    return _t(value) if tensor in layout.transpose else value


def _head_blocks(shape_, heads, what):
    """(rows, columns) of one head's diagonal block of a matrix of ``shape_``."""
    if len(shape_) != 2 or shape_[0] % heads or shape_[1] % heads:
        raise ShapeError(f"{what}: a {heads}-head block-diagonal weight needs a matrix whose sides are "
                         f"multiples of {heads}, got shape {tuple(shape_)}")  # fmt: skip
    return shape_[0] // heads, shape_[1] // heads


def _heads_split(value, heads, names, shape, what):
    """Each weight of a (heads, rows, columns) tensor, zero outside its diagonal blocks."""
    dims = [_head_blocks(shape(b), heads, f"{what}: block {b!r}") for b in names]
    cols = {c for _, c in dims}
    expect = (heads, sum(r for r, _ in dims), dims[0][1])
    if len(cols) != 1 or value.shape != expect:
        raise ShapeError(f"{what}: {heads} heads of {list(names)} need shape {expect}")
    out, start = [], 0
    for b, (r, c) in zip(names, dims):
        full = np.zeros(shape(b), value.dtype)
        for k in range(heads):
            full[k * r:(k + 1) * r, k * c:(k + 1) * c] = value[k, start:start + r]
        out.append(((b,), full))
        start += r
    return out


def _heads_build(layout, tensor, heads, blocks):
    """The (heads, rows, columns) tensor of weights' diagonal blocks (off-block entries, which a
    mask of the spec zeroes, are not stored)."""
    what = f"layout {layout.name!r} tensor {tensor!r}"
    slices = []
    for k in range(heads):
        part = []
        for b, v in blocks:
            r, c = _head_blocks(np.shape(v), heads, f"{what}: block {b!r}")
            part.append(np.asarray(v)[k * r:(k + 1) * r, k * c:(k + 1) * c])
        slices.append(np.concatenate(part, 0))
    return np.stack(slices)


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
