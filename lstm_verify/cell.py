"""The public face of one cell: its IR, parameters, implementations, reference and Jacobians."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from . import derive, params as _params, runtime
from .errors import ShapeError, SpecError
from .ir import CellIR, build_ir
from .spec import read_spec

_HERE = Path(__file__).resolve().parent
# wheels carry the catalog inside the package; a source checkout keeps it at the top level
SPEC_DIR = _HERE / "specs" if (_HERE / "specs").is_dir() else _HERE.parent / "specs"


def catalog() -> list[str]:
    """Names of the cells shipped with the package."""
    return sorted(p.stem for p in SPEC_DIR.glob("*.toml"))


def load(name_or_path) -> "Cell":
    """A catalog cell by name (``"lstm"``) or a spec file by path."""
    text = str(name_or_path)
    path = Path(text)
    if not text.endswith(".toml") and "/" not in text and "\\" not in text:
        path = SPEC_DIR / f"{text}.toml"
        if not path.exists():
            raise SpecError(f"no catalog cell named {text!r}; known: {', '.join(catalog())}")
    return Cell(build_ir(read_spec(path)))


@dataclass(frozen=True)
class Run:
    """Result of a forward pass over a sequence."""

    outputs: Any  # (T, B, n) values of the output state at every step
    state: dict  # final state
    cache: dict | None  # what backward needs (only with save=True)


@dataclass(frozen=True)
class Grads:
    params: dict
    inputs: dict
    state: dict  # gradient with respect to the initial state


class Cell:
    def __init__(self, ir: CellIR):
        self.ir = ir

    def __repr__(self):
        return f"<Cell {self.name}: {self.ir.spec.title}>"

    @property
    def name(self) -> str:
        return self.ir.name

    @property
    def spec(self):
        return self.ir.spec

    # ------------------------------------------------------------------ sizes and data

    def sizes(self, input_size=None, hidden_size=None, sizes=None) -> dict[str, int]:
        return _params.resolve_sizes(self.ir, input_size, hidden_size, sizes)

    def init_params(self, input_size=None, hidden_size=None, sizes=None, init="torch_default",
                    seed=0, scale=1.0, dtype=np.float64, t_max=100.0) -> dict[str, np.ndarray]:  # fmt: skip
        """Parameters and buffers as NumPy arrays under a named initialisation: ``torch_default``,
        ``uniform``, ``normal``, or one for gradient flow (see :mod:`lstm_verify.inits`):
        ``forget_bias_1``, ``chrono`` (with ``t_max``), ``orthogonal``."""
        from . import inits

        sz = self.sizes(input_size, hidden_size, sizes)
        if init in inits.NAMED and init != "torch_default":
            base = _params.init_params(self.ir, sz, "torch_default", seed, scale, np.dtype(np.float64))
            rng = np.random.default_rng([seed, 1])
            return {k: v.astype(dtype) for k, v in inits.apply(self.ir, base, init, rng, t_max).items()}
        return _params.init_params(self.ir, sz, init, seed, scale, np.dtype(dtype))

    def zero_state(self, batch: int, params) -> dict:
        sizes = infer_sizes(self.ir, params)
        like = params[self.ir.param_names[0]]
        return {s: _zeros_like(like, (batch, sizes[d])) for s, d in self.ir.states}

    # ------------------------------------------------------------------ implementations

    @cached_property
    def _numpy(self):
        return Implementation(self, "numpy")

    @cached_property
    def _torch(self):
        return Implementation(self, "torch")

    def numpy(self) -> "Implementation":
        """The generated NumPy implementation."""
        return self._numpy

    def torch(self) -> "Implementation":
        """The generated torch implementation (any device and dtype of its inputs)."""
        return self._torch

    def module(self, input_size=None, hidden_size=None, sizes=None, init="torch_default", seed=0,
               dtype=None, device=None, fused=True, t_max=100.0):  # fmt: skip
        """A ``torch.nn.Module`` whose backward is the generated one (``fused=False``: autograd)."""
        from .torch_cell import CellModule

        params = self.init_params(input_size, hidden_size, sizes, init, seed, t_max=t_max)
        return CellModule(self, params, dtype=dtype, device=device, fused=fused)

    def reference(self, params, inputs, state=None, t0=0, dps=60):
        """mpmath evaluation at ``dps`` digits: (outputs, final_state) as object arrays of mpf."""
        from .reference import reference_forward

        inputs = normalize_inputs(self.ir, inputs)
        if state is None:
            batch = next(iter(inputs.values())).shape[1]
            state = {k: np.asarray(_to_numpy(v)) for k, v in self.zero_state(batch, params).items()}
        return reference_forward(self.ir, params, inputs, state, t0, dps)

    # ------------------------------------------------------------------ exact derivatives

    def jacobian(self, of: str, wrt: str):
        """Closed form of d(of)/d(wrt) for one step, e.g. ``jacobian("c'", "c")``."""
        return derive.jacobian(self.ir, of, wrt)

    def jacobian_blocks(self):
        return derive.jacobian_blocks(self.ir)


class Implementation:
    """Generated forward and backward for one backend."""

    def __init__(self, cell: Cell, backend: str):
        self.cell = cell
        self.backend = backend
        self.source = runtime.source(cell.ir, backend)
        self.module = runtime.load(self.source, f"{cell.name}_{backend}")

    def __repr__(self):
        return f"<{self.backend} implementation of {self.cell.name}>"

    def forward(self, params, inputs, state=None, t0=0, save=False, check=True) -> Run:
        """Run over a sequence. ``inputs``: (T, B, n) array, or a dict for several inputs."""
        ir = self.cell.ir
        inputs = normalize_inputs(ir, inputs)
        if state is None:
            batch = next(iter(inputs.values())).shape[1]
            state = self.cell.zero_state(batch, params)
        if check:
            validate(ir, params, inputs, state)
        out, final, cache = self.module.forward(params, inputs, state, t0, save)
        return Run(out, final, cache)

    def backward(self, params, cache, d_outputs=None, d_state=None, trace=None) -> Grads:
        """Gradients of a loss whose gradient with respect to the outputs is ``d_outputs``
        (T, B, n) and to the final state ``d_state``. A list passed as ``trace`` receives, from
        the last step to the first, the gradient with respect to the state entering each step."""
        if cache is None:
            raise ShapeError("backward needs the cache of forward(..., save=True)")
        grads, d_inputs, d_state0 = self.module.backward(params, cache, d_outputs, d_state, trace)
        return Grads(grads, d_inputs, d_state0)

    def step(self, params, inputs, state=None, t=0, check=True):
        """One step: inputs (B, n) (or a dict); returns (output (B, n), new state)."""
        ir = self.cell.ir
        if not isinstance(inputs, dict):
            inputs = {ir.inputs[0][0]: inputs}
        run = self.forward(params, {k: v[None] for k, v in inputs.items()}, state, t0=t, check=check)
        return run.outputs[0], run.state


def normalize_inputs(ir: CellIR, inputs) -> dict:
    names = [n for n, _ in ir.inputs]
    if not isinstance(inputs, dict):
        if len(names) != 1:
            raise ShapeError(f"cell {ir.name!r} has inputs {names}: pass a dict")
        inputs = {names[0]: inputs}
    if set(inputs) != set(names):
        raise ShapeError(f"cell {ir.name!r} takes inputs {names}, got {sorted(inputs)}")
    return inputs


def infer_sizes(ir: CellIR, params) -> dict[str, int]:
    """Size names from parameter shapes; ShapeError on missing parameters or conflicts."""
    missing = [n for n in ir.param_names + tuple(b for b, _, _ in ir.buffers) if n not in params]
    if missing:
        raise ShapeError(f"{ir.name}: missing parameters {missing}")
    found: dict[str, tuple[int, str]] = {}

    def note(dim, n, where):
        if dim in found and found[dim][0] != n:
            raise ShapeError(
                f"{ir.name}: size {dim!r} is {found[dim][0]} from {found[dim][1]} but {n} from {where}"
            )
        found.setdefault(dim, (n, where))

    for w in ir.weights:
        shape = tuple(params[w.name].shape)
        if len(shape) != 2:
            raise ShapeError(f"{ir.name}: weight {w.name} must be 2-D (out, in), got shape {shape}")
        note(w.out_dim, shape[0], w.name)
        note(w.in_dim, shape[1], w.name)
    for name, dim in list(ir.biases) + list(ir.diagonals) + [(b, d) for b, d, _ in ir.buffers]:
        shape = tuple(params[name].shape)
        if len(shape) != 1:
            raise ShapeError(f"{ir.name}: {name} must be 1-D, got shape {shape}")
        note(dim, shape[0], name)
    return {k: v for k, (v, _) in found.items()}


def validate(ir: CellIR, params, inputs, state) -> None:
    sizes = infer_sizes(ir, params)
    dtype = params[ir.param_names[0]].dtype
    batch = None
    T = None
    for name, dim in ir.inputs:
        a = inputs[name]
        shape = tuple(a.shape)
        if len(shape) != 3:
            raise ShapeError(f"{ir.name}: input {name!r} must be (T, B, {dim}), got shape {shape}")
        T = shape[0] if T is None else T
        batch = shape[1] if batch is None else batch
        if shape[0] != T or shape[1] != batch:
            raise ShapeError(f"{ir.name}: input {name!r} has shape {shape}; other inputs have T={T}, B={batch}")
        if dim in sizes and shape[2] != sizes[dim]:
            raise ShapeError(f"{ir.name}: input {name!r} has {shape[2]} features, the weights expect {dim}={sizes[dim]}")
    for name, dim in ir.states:
        if name not in state:
            raise ShapeError(f"{ir.name}: state lacks {name!r}; states are {[s for s, _ in ir.states]}")
        shape = tuple(state[name].shape)
        if shape != (batch, sizes.get(dim, shape[-1])):
            raise ShapeError(f"{ir.name}: state {name!r} must be ({batch}, {dim}), got shape {shape}")
    for group, arrays in (("parameter", params), ("input", inputs), ("state", state)):
        for k, a in arrays.items():
            if a.dtype != dtype:
                raise ShapeError(f"{ir.name}: {group} {k!r} has dtype {a.dtype}, parameters have {dtype}")
            if not _all_finite(a):
                raise ShapeError(f"{ir.name}: {group} {k!r} contains NaN or infinity")


def _all_finite(a) -> bool:
    """Whether every element is finite: NaN propagates through min and max and an infinity
    is one of them, so one reduction pass decides (10x faster than an elementwise test)."""
    if hasattr(a, "detach"):
        import torch

        if a.numel() == 0 or not a.is_floating_point():
            return True
        lo, hi = torch.aminmax(a.detach())
        return bool(torch.isfinite(lo) & torch.isfinite(hi))
    a = np.asarray(a)
    if a.size == 0 or not np.issubdtype(a.dtype, np.floating):
        return True
    return bool(np.isfinite(a.min()) and np.isfinite(a.max()))


def _zeros_like(like, shape):
    if hasattr(like, "detach"):
        import torch

        return torch.zeros(shape, dtype=like.dtype, device=like.device)
    return np.zeros(shape, dtype=like.dtype)


def _to_numpy(a):
    return a.detach().cpu().numpy() if hasattr(a, "detach") else a
