"""torch glue: the generated backward as an autograd Function, and a trainable Module."""

from __future__ import annotations

import numpy as np
import torch

from .cell import Cell, prepare


class _Sequence(torch.autograd.Function):
    """Forward and backward both generated; autograd only strings them together."""

    @staticmethod
    def forward(ctx, impl, layout, t0, *tensors):
        params, inputs, state = _unflatten(layout, tensors)
        out, final, cache = impl._forward(params, inputs, state, t0, True)
        ctx.impl, ctx.layout, ctx.params, ctx.cache = impl, layout, params, cache
        return (out, *final.values())

    @staticmethod
    def backward(ctx, d_out, *d_final):
        names = [s for s in ctx.layout[2]]
        d_state = dict(zip(names, d_final))
        grads, d_inputs, d_state0 = ctx.impl._backward(ctx.params, ctx.cache, d_out, d_state, None)
        pnames, inames, snames, trainable = ctx.layout
        flat = [grads[n] if n in trainable else None for n in pnames]
        flat += [d_inputs[n] for n in inames] + [d_state0[n] for n in snames]
        return (None, None, None, *flat)


def _unflatten(layout, tensors):
    pnames, inames, snames, _ = layout
    k, m = len(pnames), len(inames)
    return (
        dict(zip(pnames, tensors[:k])),
        dict(zip(inames, tensors[k : k + m])),
        dict(zip(snames, tensors[k + m :])),
    )


def fused_forward(cell: Cell, params, inputs, state=None, t0=0, check=True):
    """Differentiable forward whose backward is the generated one: (outputs, final state)."""
    impl = cell.torch()
    ir = cell.ir
    params, inputs, state = prepare(ir, "torch", params, inputs, state, check)
    pnames = tuple(ir.param_names) + tuple(b for b, _, _ in ir.buffers)
    inames = tuple(n for n, _ in ir.inputs) + tuple(n for n, _ in ir.sets)
    snames = tuple(s for s, _ in ir.states)
    layout = (pnames, inames, snames, frozenset(ir.param_names))
    tensors = [params[n] for n in pnames] + [inputs[n] for n in inames] + [state[n] for n in snames]
    out, *final = _Sequence.apply(impl, layout, t0, *tensors)
    return out, dict(zip(snames, final))


class CellModule(torch.nn.Module):
    """A trainable recurrent layer for one cell, parameters named as in the spec.

    ``forward(inputs, state=None, t0=0)`` takes (T, B, n) inputs (a dict for several) and
    returns ``(outputs, state)``. ``fused=True`` runs the generated backward; ``fused=False``
    lets autograd differentiate the generated forward (for checking).
    """

    def __init__(self, cell: Cell, params: dict, dtype=None, device=None, fused=True):
        super().__init__()
        self.cell = cell
        self.fused = fused
        dtype = dtype or torch.get_default_dtype()
        buffers = {b for b, _, _ in cell.ir.buffers}
        for name, value in params.items():
            t = torch.as_tensor(np.asarray(value), dtype=dtype, device=device)
            if name in buffers:
                self.register_buffer(name, t)
            else:
                self.register_parameter(name, torch.nn.Parameter(t))

    def extra_repr(self):
        return f"cell={self.cell.name!r}, fused={self.fused}"

    def param_dict(self) -> dict:
        return dict(self.named_parameters()) | dict(self.named_buffers())

    def forward(self, inputs, state=None, t0=0):
        params = self.param_dict()
        tensors = list(params.values()) + list(inputs.values() if isinstance(inputs, dict) else [inputs])
        tensors += list(state.values()) if isinstance(state, dict) else []
        recorded = any(getattr(t, "requires_grad", False) for t in tensors)
        if self.fused and torch.is_grad_enabled() and recorded:
            return fused_forward(self.cell, params, inputs, state, t0)
        # no gradient wanted (inference, evaluation): the forward alone, saving nothing
        run = self.cell.torch().forward(params, inputs, state, t0)
        return run.outputs, run.state
