"""The public face of one cell: its IR, parameters, implementations, reference and Jacobians."""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from . import derive, params as _params, runtime
from .errors import DtypeError, ShapeError, SpecError
from .extras import require
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
        if not hasattr(like, "dtype"):
            like = np.asarray(like, dtype=np.float64)
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
        require("torch", "cell.torch()")
        return self._torch

    def scan(self, backend: str = "numpy") -> "Implementation":
        """The sequence as an associative scan, for cells whose new states are ``a*s + b`` with
        ``a`` and ``b`` free of every state (minGRU, minLSTM): the same methods as
        :meth:`numpy` / :meth:`torch`. Raises ScanError (a ValueError) naming the state that
        reads itself otherwise. See :mod:`lstm_verify.scan`."""
        from .scan import ScanImplementation

        made = self.__dict__.setdefault("_scans", {})
        if backend not in made:
            made[backend] = ScanImplementation(self, backend)
        return made[backend]

    def module(self, input_size=None, hidden_size=None, sizes=None, init="torch_default", seed=0,
               dtype=None, device=None, fused=True, t_max=100.0):  # fmt: skip
        """A ``torch.nn.Module`` whose backward is the generated one (``fused=False``: autograd)."""
        require("torch", "cell.module()")
        from .torch_cell import CellModule

        params = self.init_params(input_size, hidden_size, sizes, init, seed, t_max=t_max)
        return CellModule(self, params, dtype=dtype, device=device, fused=fused)

    def reference(self, params, inputs, state=None, t0=0, dps=60):
        """mpmath evaluation at ``dps`` digits: (outputs, final_state) as object arrays of mpf."""
        from .reference import reference_forward

        params, inputs, state = prepare(self.ir, "numpy", params, inputs, state)
        T, B = inputs[self.ir.inputs[0][0]].shape[:2]
        if T == 0 or B == 0:
            out = np.empty((T, B, state[self.ir.output].shape[-1]), dtype=object)
            return out, {k: np.array(v, dtype=object) for k, v in state.items()}
        return reference_forward(self.ir, params, inputs, state, t0, dps)

    # ------------------------------------------------------------------ exact derivatives

    def jacobian(self, of: str, wrt: str) -> "derive.Jacobian":
        """Closed form of d(of)/d(wrt) for one step: ``print(cell.jacobian("c'", "c"))`` shows
        ``diag(f)``; ``.latex()``, ``.sympy()`` and ``.terms`` give the other forms."""
        return derive.closed_form(self.ir, of, wrt)

    def jacobian_blocks(self):
        return derive.jacobian_blocks(self.ir)


def _attach_kernels(module):
    from . import kernels

    return kernels.attach(module)


class Implementation:
    """Generated forward and backward for one backend.

    Every public method checks its arguments (``check=False`` skips the checks, not the
    conversions) and raises the library's own errors naming the argument: ShapeError for
    names and shapes, DtypeError for dtypes. Values that are not arrays of the backend's own
    library (NumPy arrays given to the torch backend, tensors given to the NumPy backend, nested
    lists, tuples, numbers) are converted to the dtype and device of the first array of the
    backend's own library among parameters, inputs and state (torch: the first tensor). An
    empty sequence (T = 0) returns no outputs and the initial state unchanged; an empty batch
    returns empty outputs and state; their backward gives zero parameter gradients.
    """

    def __init__(self, cell: Cell, backend: str):
        self.cell = cell
        self.backend = backend
        self.source = runtime.source(cell.ir, backend)
        self.module = runtime.load(self.source, f"{cell.name}_{backend}")
        # the fused C kernels of the torch code (None: attached; else why not)
        self.kernels = _attach_kernels(self.module) if backend == "torch" else "not a torch module"

    def __repr__(self):
        return f"<{self.backend} implementation of {self.cell.name}>"

    def forward(self, params, inputs, state=None, t0=0, save=False, check=True) -> Run:
        """Run over a sequence. ``inputs``: (T, B, n) array, or a dict for several inputs."""
        params, inputs, state = self.prepare(params, inputs, state, check)
        out, final, cache = self._forward(params, inputs, state, t0, save)
        return Run(out, final, cache)

    def prepare(self, params, inputs, state=None, check=True):
        """(params, inputs, state) converted for this backend, the state defaulting to zeros,
        and (unless ``check=False``) validated."""
        return prepare(self.cell.ir, self.backend, params, inputs, state, check)

    def _forward(self, params, inputs, state, t0, save):
        """The generated forward, or the result of an empty sequence or batch."""
        ir = self.cell.ir
        shape = tuple(inputs[ir.inputs[0][0]].shape)
        if len(shape) == 3 and (shape[0] == 0 or shape[1] == 0):
            T, B = shape[:2]
            out = _zeros_like(state[ir.output], (T, B, state[ir.output].shape[-1]))
            final = {s: _copy(state[s]) for s, _ in ir.states}
            cache = {"inputs": inputs, "state0": dict(state), "t0": t0, "empty": True} if save else None
            return out, final, cache
        return self.module.forward(params, inputs, state, t0, save)

    def backward(self, params, cache, d_outputs=None, d_state=None, trace=None) -> Grads:
        """Gradients of a loss whose gradient with respect to the outputs is ``d_outputs``
        (T, B, n) and to the final state ``d_state``. A list passed as ``trace`` receives, from
        the last step to the first, the gradient with respect to the state entering each step."""
        ir = self.cell.ir
        if cache is None:
            raise ShapeError("backward needs the cache of forward(..., save=True), got None")
        if not isinstance(cache, dict) or not {"inputs", "state0", "t0"} <= set(cache):
            raise ShapeError(f"backward: cache must be the .cache of forward(..., save=True), got {type(cache).__name__}")
        inputs, state0 = cache["inputs"], cache["state0"]
        params = _as_dict("params", params)
        conv = _Converter(self.backend, [("input", inputs), ("parameter", params)])
        params = conv.dict("parameter", params)
        check_names(ir, params)
        dtype = next(iter(inputs.values())).dtype
        for k, v in params.items():
            _check_dtype(ir, "parameter", k, v, dtype, "the cached inputs")
        T, B = tuple(inputs[ir.inputs[0][0]].shape)[:2]
        if d_outputs is not None:
            d_outputs = conv.value("d_outputs", "", d_outputs)
            want = (T, B, tuple(state0[ir.output].shape)[-1])
            if tuple(d_outputs.shape) != want:
                raise ShapeError(f"{ir.name}: d_outputs must have the outputs' shape {want}, got {tuple(d_outputs.shape)}")
            _check_dtype(ir, "d_outputs", None, d_outputs, dtype, "the cached inputs")
        if d_state is not None:
            d_state = _as_dict("d_state", d_state)
            unknown = sorted(set(d_state) - {s for s, _ in ir.states})
            if unknown:
                raise ShapeError(f"{ir.name}: d_state names {unknown}, which are not states; states are "
                                 f"{[s for s, _ in ir.states]}")  # fmt: skip
            d_state = {k: None if v is None else conv.value("d_state", k, v) for k, v in d_state.items()}
            for k, v in d_state.items():
                if v is not None and tuple(v.shape) != tuple(state0[k].shape):
                    raise ShapeError(f"{ir.name}: d_state {k!r} must have the state's shape "
                                     f"{tuple(state0[k].shape)}, got {tuple(v.shape)}")  # fmt: skip
                if v is not None:
                    _check_dtype(ir, "d_state", k, v, dtype, "the cached inputs")
        grads, d_inputs, d_state0 = self._backward(params, cache, d_outputs, d_state, trace)
        return Grads(grads, d_inputs, d_state0)

    def _backward(self, params, cache, d_outputs, d_state, trace):
        """The generated backward, or the gradients of an empty sequence or batch."""
        ir = self.cell.ir
        if not cache.get("empty"):
            return self.module.backward(params, cache, d_outputs, d_state, trace)
        inputs, state0 = cache["inputs"], cache["state0"]
        T = inputs[ir.inputs[0][0]].shape[0]
        grads = {k: _zeros_like(params[k], tuple(params[k].shape)) for k in ir.param_names}
        d_inputs = {k: _zeros_like(v, tuple(v.shape)) for k, v in inputs.items()}
        d_state = d_state or {}
        # T = 0: the final state is the initial one; B = 0: every state is empty
        d0 = {s: _copy(d_state[s]) if d_state.get(s) is not None else _zeros_like(v, tuple(v.shape))
              for s, v in state0.items()}  # fmt: skip
        if trace is not None:
            for _ in range(T):
                trace.append({s: _zeros_like(v, tuple(v.shape)) for s, v in state0.items()})
        return grads, d_inputs, d0

    def step(self, params, inputs, state=None, t=0, check=True):
        """One step: inputs (B, n) (or a dict); returns (output (B, n), new state)."""
        ir = self.cell.ir
        if not isinstance(inputs, dict):
            inputs = {ir.inputs[0][0]: inputs}
        sets = {n for n, _ in ir.sets}  # a set input has no step axis
        run = self.forward(params, {k: v if k in sets else _add_step_axis(v) for k, v in inputs.items()}, state,
                           t0=t, check=check)  # fmt: skip
        return run.outputs[0], run.state


def prepare(ir: CellIR, backend: str, params, inputs, state=None, check=True):
    """(params, inputs, state) converted for ``backend`` (see :class:`Implementation`), the
    state defaulting to zeros, and (unless ``check=False``) validated."""
    inputs = normalize_inputs(ir, inputs)
    params = _as_dict("params", params)
    if state is not None:
        state = _as_dict("state", state)
    groups = [("parameter", params), ("input", inputs)] + ([("state", state)] if state is not None else [])
    conv = _Converter(backend, groups)
    params, inputs = conv.dict("parameter", params), conv.dict("input", inputs)
    if state is None:
        first = inputs[ir.inputs[0][0]]
        if check:
            check_names(ir, params)
            _check_rank(ir, ir.inputs[0][0], first)
        like = conv.like(params, inputs)
        sizes = infer_sizes(ir, params)
        state = {s: _zeros_like(like, (first.shape[1], sizes[d])) for s, d in ir.states}
    else:
        state = conv.dict("state", state)
    if check:
        validate(ir, params, inputs, state)
    return params, inputs, state


def _add_step_axis(v):
    if isinstance(v, (list, tuple)):
        return [v]
    return v[None] if hasattr(v, "shape") else v


def _as_dict(what, value) -> dict:
    if not isinstance(value, dict):
        raise ShapeError(f"{what} must be a dict keyed by the spec's names, got {type(value).__name__}")
    return value


def _is_tensor(a) -> bool:
    return hasattr(a, "detach") and type(a).__module__.startswith("torch")


class _Converter:
    """Converts values to the backend's arrays: see :class:`Implementation`."""

    def __init__(self, backend, groups):
        self.torch = backend == "torch"
        own = _is_tensor if self.torch else (lambda a: isinstance(a, np.ndarray))
        values = [v for _, g in groups for v in g.values()]
        ref = next((v for v in values if own(v)), None)
        self.fixed = ref is not None  # converted arrays take the reference dtype
        if ref is None:
            ref = next((v for v in values if isinstance(v, np.ndarray) or _is_tensor(v)), None)
        if self.torch:
            import torch

            if ref is None:
                self.dtype, self.device = torch.get_default_dtype(), torch.device("cpu")
            elif _is_tensor(ref):
                self.dtype, self.device = ref.dtype, ref.device
            else:
                self.dtype, self.device = _torch_dtype(ref.dtype), torch.device("cpu")
        else:
            self.device = None
            self.dtype = np.dtype(np.float64) if ref is None else _numpy_dtype(ref.dtype)

    def dict(self, group, values) -> dict:
        return {k: self.value(group, k, v) for k, v in values.items()}

    def value(self, group, name, v):
        what = f"{group} {name!r}" if name else group
        if self.torch:
            import torch

            if isinstance(v, torch.Tensor):
                return v
            if isinstance(v, np.ndarray):
                dtype = self.dtype if self.fixed else _torch_dtype(v.dtype)
                return torch.as_tensor(_numeric(what, v), dtype=dtype, device=self.device)
            return torch.as_tensor(_nested(what, v, _numpy_dtype(self.dtype)), dtype=self.dtype, device=self.device)
        if isinstance(v, np.ndarray):
            return v
        if _is_tensor(v):
            a = v.detach().cpu().numpy()
            return a.astype(self.dtype) if self.fixed and a.dtype != self.dtype else a
        return _nested(what, v, self.dtype)

    def like(self, params, inputs):
        return next(iter(params.values()), None) if params else next(iter(inputs.values()))


def _numeric(what, a: np.ndarray) -> np.ndarray:
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        raise DtypeError(f"{what} has dtype {a.dtype}; a floating-point array is expected")
    return a


def _nested(what, v, dtype):
    """A nested list, tuple or number as an array of ``dtype``; anything else is an error."""
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (list, tuple, numbers.Real)) and not hasattr(v, "__array__"):
        raise DtypeError(f"{what} must be an array (or a nested list of numbers), got {type(v).__name__}")
    try:
        if hasattr(v, "__array__"):
            return _numeric(what, np.asarray(v))
        return np.asarray(v, dtype=dtype)
    except (ValueError, TypeError) as exc:
        raise ShapeError(f"{what}: cannot make an array of {dtype} from the {type(v).__name__} given "
                         f"(ragged or not numbers: {exc})") from None  # fmt: skip


def _torch_dtype(dtype):
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    return torch.from_numpy(np.zeros(0, dtype=dtype)).dtype


def _numpy_dtype(dtype):
    if hasattr(dtype, "is_floating_point"):  # a torch dtype
        import torch

        return torch.zeros(0, dtype=dtype).numpy().dtype
    return np.dtype(dtype)


def _copy(a):
    return a.clone() if _is_tensor(a) else np.array(a, copy=True)


def normalize_inputs(ir: CellIR, inputs) -> dict:
    names = [n for n, _ in ir.inputs] + [n for n, _ in ir.sets]
    if not isinstance(inputs, dict):
        if len(names) != 1:
            raise ShapeError(f"cell {ir.name!r} has inputs {names}: pass a dict")
        inputs = {names[0]: inputs}
    if set(inputs) != set(names):
        raise ShapeError(f"cell {ir.name!r} takes inputs {names}, got {sorted(inputs)}")
    return inputs


def expected_params(ir: CellIR) -> list[str]:
    """Names a parameter dict must have: trainable parameters, then buffers."""
    return list(ir.param_names) + [b for b, _, _ in ir.buffers]


def check_names(ir: CellIR, params) -> None:
    """ShapeError naming missing or unknown parameters, with the names expected."""
    expected = expected_params(ir)
    missing = [n for n in expected if n not in params]
    unknown = sorted(str(k) for k in params if k not in set(expected))
    problems = ([f"missing parameters {missing}"] if missing else []) + \
        ([f"unknown parameters {unknown}"] if unknown else [])  # fmt: skip
    if problems:
        raise ShapeError(f"{ir.name}: {'; '.join(problems)}; the parameters are {expected}")


def infer_sizes(ir: CellIR, params) -> dict[str, int]:
    """Size names from parameter shapes; ShapeError on missing parameters or conflicts."""
    missing = [n for n in expected_params(ir) if n not in params]
    if missing:
        raise ShapeError(f"{ir.name}: missing parameters {missing}; the parameters are {expected_params(ir)}")
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


def _check_rank(ir, name, a):
    dim = dict(ir.inputs)[name]
    if len(tuple(a.shape)) != 3:
        raise ShapeError(f"{ir.name}: input {name!r} must be (T, B, {dim}), got shape {tuple(a.shape)}")


def _is_float(a) -> bool:
    if _is_tensor(a):
        return a.is_floating_point()
    return np.issubdtype(a.dtype, np.floating)


def _check_dtype(ir, group, name, a, dtype, owner="parameters") -> None:
    what = f"{group} {name!r}" if name is not None else group
    if not _is_float(a):
        raise DtypeError(f"{ir.name}: {what} has dtype {a.dtype}; a floating-point dtype is expected")
    if a.dtype != dtype:
        raise DtypeError(f"{ir.name}: {what} has dtype {a.dtype}, {owner} have {dtype}; convert one to the other")


def validate(ir: CellIR, params, inputs, state) -> None:
    """ShapeError or DtypeError, naming the argument, for anything the generated code cannot
    run on correctly: missing or unknown names, wrong shapes, dtypes or devices, NaN or inf."""
    check_names(ir, params)
    first = next(iter(params.values()))
    dtype = first.dtype
    for group, arrays in (("parameter", params), ("input", inputs), ("state", state)):
        for k, a in arrays.items():
            _check_dtype(ir, group, k, a, dtype)
            if _is_tensor(a) and a.device != first.device:
                raise DtypeError(f"{ir.name}: {group} {k!r} is on {a.device}, parameters are on {first.device}")
    sizes = infer_sizes(ir, params)
    batch = None
    T = None
    for name, dim in ir.inputs:
        a = inputs[name]
        shape = tuple(a.shape)
        _check_rank(ir, name, a)
        T = shape[0] if T is None else T
        batch = shape[1] if batch is None else batch
        if shape[0] != T or shape[1] != batch:
            raise ShapeError(f"{ir.name}: input {name!r} has shape {shape}; other inputs have T={T}, B={batch}")
        if dim in sizes and shape[2] != sizes[dim]:
            raise ShapeError(f"{ir.name}: input {name!r} has {shape[2]} features, the weights expect {dim}={sizes[dim]}")
    members = None
    for name, dim in ir.sets:
        shape = tuple(inputs[name].shape)
        if len(shape) != 3 or shape[0] != batch or shape[1] < 1:
            raise ShapeError(f"{ir.name}: set input {name!r} must be (B, L, {dim}) with B={batch} and L >= 1 "
                             f"members, fixed over time; got shape {shape}")  # fmt: skip
        members = shape[1] if members is None else members
        if shape[1] != members:
            raise ShapeError(f"{ir.name}: set input {name!r} has {shape[1]} members, other set inputs {members}")
        if dim in sizes and shape[2] != sizes[dim]:
            raise ShapeError(f"{ir.name}: set input {name!r} has {shape[2]} features, the weights expect "
                             f"{dim}={sizes[dim]}")  # fmt: skip
    unknown = sorted(str(k) for k in state if k not in dict(ir.states))
    if unknown:
        raise ShapeError(f"{ir.name}: state has unknown names {unknown}; states are {[s for s, _ in ir.states]}")
    for name, dim in ir.states:
        if name not in state:
            raise ShapeError(f"{ir.name}: state lacks {name!r}; states are {[s for s, _ in ir.states]}")
        shape = tuple(state[name].shape)
        if shape != (batch, sizes.get(dim, shape[-1] if shape else -1)):
            raise ShapeError(f"{ir.name}: state {name!r} must be ({batch}, {dim}), got shape {shape}")
    named = [(group, k, a) for group, arrays in (("parameter", params), ("input", inputs), ("state", state))
             for k, a in arrays.items()]  # fmt: skip
    if _all_finite_together([a for _, _, a in named]):
        return
    for group, k, a in named:
        if not _all_finite(a):
            raise ShapeError(f"{ir.name}: {group} {k!r} contains NaN or infinity")


_SMALL = 1 << 16  # tensors up to this many elements are checked in one pass together


def _all_finite_together(arrays) -> bool:
    """Whether every element of every array is finite, for torch tensors of one device: the
    small ones concatenated into one pass (each pass costs a dispatch, 10-50 µs), the large
    ones one pass each. False also where this cannot decide (other kinds of arrays)."""
    if not arrays or not all(hasattr(a, "detach") for a in arrays):
        return False
    import torch

    floats = [a for a in arrays if a.numel() and a.is_floating_point()]
    if len({(a.device, a.dtype) for a in floats}) > 1:
        return False
    small = [a.detach().reshape(-1) for a in floats if a.numel() <= _SMALL]
    if small and not _all_finite(torch.cat(small) if len(small) > 1 else small[0]):
        return False
    return all(_all_finite(a) for a in floats if a.numel() > _SMALL)


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
