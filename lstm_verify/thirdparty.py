"""Real third-party cells (torch.nn) as oracles, run through a spec's layout."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .errors import ShapeError


@dataclass(frozen=True)
class Target:
    build: Callable  # (sizes, options) -> torch.nn.Module
    run: Callable  # (module, xs (T, B, I), state tuple in layout order) -> (outputs, state tuple)


def _cell_runner(module, xs, state):
    outs = []
    for t in range(xs.shape[0]):
        new = module(xs[t], state if len(state) > 1 else state[0])
        state = tuple(new) if isinstance(new, tuple) else (new,)
        outs.append(state[0])
    import torch

    return torch.stack(outs), state


def _lstm_runner(module, xs, state):
    import warnings

    with warnings.catch_warnings():  # torch notes that oneDNN has no projection kernel
        warnings.filterwarnings("ignore", message="LSTM with projections is not supported")
        out, (h, c) = module(xs, tuple(s[None] for s in state))
    return out, (h[0], c[0])


def _torch():
    from .extras import require

    return require("torch", "comparing with torch.nn cells")


TARGETS: dict[str, Target] = {
    "torch.nn.RNNCell": Target(
        lambda s, o: _torch().nn.RNNCell(s["input"], s["hidden"], nonlinearity=o.get("nonlinearity", "tanh")),
        _cell_runner,
    ),
    "torch.nn.LSTMCell": Target(lambda s, o: _torch().nn.LSTMCell(s["input"], s["hidden"]), _cell_runner),
    "torch.nn.GRUCell": Target(lambda s, o: _torch().nn.GRUCell(s["input"], s["hidden"]), _cell_runner),
    "torch.nn.LSTM": Target(
        lambda s, o: _torch().nn.LSTM(s["input"], s["hidden"], proj_size=s[o["proj_size"]]),
        _lstm_runner,
    ),
}


@dataclass(frozen=True)
class TargetComparison:
    target: str
    outputs: float  # max |ours - theirs| over all steps
    state: float
    d_inputs: float  # max |ours - theirs| for the gradient of a random projection w.r.t. inputs
    scale: float  # max |theirs| output, for context


def compare_with_target(cell, layout_name="torch", sizes=None, T=100, batch=3, dtype="float64",
                        seed=0, backend="torch") -> TargetComparison:  # fmt: skip
    """Run the third-party cell and ours on the same weights and inputs; measure differences.

    The third-party module keeps its own (torch default) initialisation; the layout adapter
    maps its tensors to spec parameters. Gradients: ours from the generated backward, theirs
    from torch autograd through the third-party module.
    """
    torch = _torch()

    from .layout import from_target, get_layout

    ir = cell.ir
    layout = get_layout(ir, layout_name)
    if layout.target not in TARGETS:
        raise ShapeError(f"unknown target {layout.target!r}; known: {sorted(TARGETS)}")
    target = TARGETS[layout.target]
    sizes = cell.sizes(sizes=sizes or {"input": 3, "hidden": 5, "proj": 2})
    tdtype = getattr(torch, str(np.dtype(dtype)))
    torch.manual_seed(seed)
    module = target.build(sizes, dict(layout.options)).to(tdtype)
    theirs = {k: v.detach() for k, v in module.named_parameters()}
    params = {k: v.astype(np.dtype(dtype)) for k, v in from_target(ir, layout_name, theirs, sizes).items()}
    g = torch.Generator().manual_seed(seed + 1)
    xs = torch.randn(T, batch, sizes[ir.inputs[0][1]], generator=g, dtype=tdtype)
    state = {s: 0.5 * torch.randn(batch, sizes[d], generator=g, dtype=tdtype) for s, d in ir.states}
    weight = torch.randn(T, batch, sizes[dict(ir.states)[ir.output]], generator=g, dtype=tdtype)

    xs_t = xs.clone().requires_grad_(True)
    their_out, their_state = target.run(module, xs_t, tuple(state[s] for s in layout.state))
    (their_out * weight).sum().backward()

    impl = cell.torch() if backend == "torch" else cell.numpy()
    conv = (lambda a: torch.as_tensor(a)) if backend == "torch" else (lambda a: np.asarray(a))
    p = {k: conv(v) for k, v in params.items()}
    run = impl.forward(p, conv(xs.numpy()), {k: conv(v.numpy()) for k, v in state.items()}, save=True)
    grads = impl.backward(p, run.cache, conv(weight.numpy()))
    ours_state = tuple(_np(run.state[s]) for s in layout.state)
    return TargetComparison(
        target=layout.target,
        outputs=float(np.max(np.abs(_np(run.outputs) - _np(their_out)))),
        state=max(float(np.max(np.abs(a - _np(b)))) for a, b in zip(ours_state, their_state)),
        d_inputs=float(np.max(np.abs(_np(grads.inputs[ir.inputs[0][0]]) - _np(xs_t.grad)))),
        scale=float(np.max(np.abs(_np(their_out)))),
    )


def _np(a):
    return a.detach().cpu().numpy() if hasattr(a, "detach") else np.asarray(a)
