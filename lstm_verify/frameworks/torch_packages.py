"""Recurrent cells of third-party torch packages as built-in subjects, on the CPU:
``sru:SRUCell`` (the ``sru`` package) and ``xlstm:sLSTMCell`` (the official ``xlstm`` package's
sLSTM cell with its pure-torch ``vanilla`` backend). Gradients are torch autograd through the
package's own code.

``sru`` (2.6.0, ``sru/modules.py``, ``sru/ops.py``):

* ``SRUCell(input_size, hidden_size, **options)`` holds ``weight`` (I, k*H), ``weight_c`` (2H)
  and ``bias`` (2H). ``U = x @ weight`` is read as (L, B, H, k): the k columns of unit j are
  adjacent (``interleave`` in a layout): 0 the candidate ``W x``, 1 the forget gate, 2 the reset
  gate, 3 (only when input_size != hidden_size) a projection of x for the highway. ``weight_c``
  is [v_f, v_r], ``bias`` [b_f, b_r]. ``forward(x, c0)`` returns every ``h`` and the last ``c``;
  it does not read an initial ``h``.
* ``rescale=True`` (the default) multiplies the highway ``x`` by the buffer ``scale_x`` =
  sqrt(1 + 2 exp(highway_bias)) when k = 3; ``v1=True`` zeroes ``weight_c`` and freezes it
  (``frozen()`` lists it); ``use_tanh=True`` puts tanh on ``c`` in ``h``.
* Importing ``sru`` JIT-compiles ``csrc/sru_cpu_impl.cpp`` with ``torch.utils.cpp_extension``
  (g++ and ninja; about a minute the first time, cached in ``~/.cache/torch_extensions``) and
  tries ``sru_cuda_kernel.cu``: with a CPU-only torch, ``CUDA_HOME`` is None, that build raises
  and sru compiles a dummy CUDA module instead (its warning is silenced here).
* On the CPU, ``SRUCell.forward`` takes one of two paths, by ``torch.is_grad_enabled()``: with
  autograd on, ``elementwise_recurrence_naive``, a Python loop of torch operations (any dtype;
  it warns "Running SRU on CPU with grad_enabled=True", silenced here); with autograd off, the
  compiled ``torch.ops.sru_cpu.cpu_forward``, float32 only. The engine option ``kernel`` picks
  one: ``"torch"`` (default; forward and gradients, at the requested dtype) or ``"cpu"`` (the
  compiled kernel under ``torch.no_grad()``: forward only, in float32). A whole sequence runs in
  one call, as its users run it: every ``h``, and ``c`` after the last step.

``xlstm`` (2.0.6, ``xlstm/blocks/slstm/cell.py``, ``src/vanilla/slstm.py``):

* ``sLSTMCell(sLSTMCellConfig(hidden_size=H, num_heads=K, backend="vanilla"))`` takes the gate
  pre-activations ``W x`` (B, S, 4H), gates i, f, z, o, and a state (4, B, H) = (y, c, n, m)
  (``function="lstm"``: (y, c), a plain LSTM). Its ``sLSTMLayer`` computes ``W x`` with head-wise
  (block-diagonal) projections, a causal convolution feeding i and f, and feeds the module named
  ``fgate`` to the input gate and ``igate`` to the forget gate; the engine feeds the cell from a
  dense ``W`` (4H, I) of its own instead, the paper's cell. The cell runs one step per call, so
  that every state is seen after every step.
* Parameters of the vanilla backend: ``_recurrent_kernel_`` (K, 4*H/K, H/K), slice k the k-th
  diagonal blocks of the four recurrent weights (out, in) stacked along the rows (``heads`` in a
  layout), and ``_bias_`` (4H,), gate-major.
* The pointwise step (``slstm_forward_pointwise``): log f = logsigmoid(f~) (the sigmoid forget
  gate; there is no exponential one), m' = max(i~, log f + m), i' = min(exp(i~ - m'), 1),
  f' = min(exp(log f + m - m'), 1), c' = f' c + i' tanh(z~), n' = f' n + i', y' = sigmoid(o~) c'/n';
  m is an ordinary tensor, differentiated like the others. When every entry of n is exactly 0
  (its own zero initial state) it sets m' = i~ instead of the max: c', n', m' then differ from
  the paper's by a common factor, y' does not.
* ``backend="cuda"`` (sLSTMCellConfig's default) compiles CUDA kernels when the cell is built;
  with a CPU-only torch it fails at once (``KeyError: 'CUDA_LIB'``, which xlstm sets only when
  ``torch.cuda.is_available()``).
"""

from __future__ import annotations

import inspect
import warnings

import numpy as np

from ..errors import LstmVerifyError, MissingExtraError, ShapeError
from .base import Engine

_SRU_WARNINGS = (
    "Just-in-time loading and compiling the CUDA kernels of SRU was unsuccessful",
    "Running SRU on CPU with grad_enabled=True",
)


def _torch():
    from ..extras import require

    return require("torch", "checking a torch package's cell", extra="torch")


def _import(module: str, target: str, extra: str, ignore=()):
    """Import a package, or say what is missing or what failed while it was imported (sru
    compiles C++ at import)."""
    import importlib

    _torch()
    try:
        with warnings.catch_warnings():
            for text in ignore:
                warnings.filterwarnings("ignore", message=text)
            return importlib.import_module(module)
    except ImportError as exc:
        if exc.name is not None and exc.name.partition(".")[0] == module:
            raise MissingExtraError(f"checking {target} needs {module}: pip install 'lstm-verify[{extra}]'") from None
        raise LstmVerifyError(f"{target}: importing {module} failed: {type(exc).__name__}: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - a package that builds code at import
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise LstmVerifyError(f"{target}: importing {module} failed: {type(exc).__name__}: {first}") from exc


class TorchEngine(Engine):
    """A torch module run over whole sequences; subclasses build ``self.module`` and define
    :meth:`_sequence`. Tensors are the module's parameters that require gradients (others, such
    as sru's frozen ``weight_c`` under ``v1=True``, are :meth:`frozen`)."""

    gradients = "torch"
    sequence = True
    n_state = 1

    def __init__(self, sizes, options, dtype):
        super().__init__(sizes, options, dtype)
        self.torch = _torch()
        self.computes = self.dtype

    def _tdtype(self):
        return getattr(self.torch, self.computes.name)

    def _params(self):
        return dict(self.module.named_parameters())

    def tensors(self):
        return {k: p.detach().cpu().numpy().copy() for k, p in self._params().items() if p.requires_grad}

    def frozen(self):
        return {k for k, p in self._params().items() if not p.requires_grad}

    def set_tensors(self, values):
        params = {k: p for k, p in self._params().items() if p.requires_grad}
        missing = sorted(set(params) - set(values))
        if missing:
            raise ShapeError(f"{self.target}: set_tensors needs every tensor; missing {missing}")
        with self.torch.no_grad():
            for k, p in params.items():
                a = np.asarray(values[k])
                if tuple(a.shape) != tuple(p.shape):
                    raise ShapeError(f"{self.target}: tensor {k!r} has shape {tuple(p.shape)}, got {a.shape}")
                p.copy_(self.torch.as_tensor(a, dtype=p.dtype))

    def _sequence(self, xs, state: tuple) -> list[tuple]:
        """The state after every step (T tuples, ``None`` where not exposed) from torch inputs."""
        raise NotImplementedError

    def _in(self, a, grad=False):
        return self.torch.tensor(np.asarray(a), dtype=self._tdtype()).requires_grad_(grad)

    def _check(self, xs, state):
        n_in = self.module_input
        if xs.ndim != 3 or xs.shape[-1] != n_in:
            raise ShapeError(f"{self.target}: xs must be (T, B, {n_in}), got shape {tuple(xs.shape)}")
        if len(state) != self.n_state:
            raise ShapeError(f"{self.target}: the state is a tuple of {self.n_state} arrays, got {len(state)}")

    def _out(self, a):
        return None if a is None else a.detach().cpu().numpy()

    def run(self, xs, state):
        xs = np.asarray(xs)
        self._check(xs, state)
        if xs.shape[0] == 0:
            return []
        with self._grad_mode(False):
            steps = self._sequence(self._in(xs), tuple(self._in(s) for s in state))
        return [tuple(self._out(s) for s in st) for st in steps]

    def _grad_mode(self, grad: bool):
        return self.torch.enable_grad() if grad else self.torch.no_grad()

    def vjp(self, xs, state, w_out, w_state, output):
        """Gradients of ``sum_t <w_out[t], states_t[output]> + sum_k <w_state[k], states_T[k]>``
        by torch autograd: (tensor gradients by name, d xs, d initial state)."""
        torch = self.torch
        xs = np.asarray(xs)
        self._check(xs, state)
        params = {k: p for k, p in self._params().items() if p.requires_grad}
        x = self._in(xs, grad=True)
        s0 = tuple(self._in(s, grad=True) for s in state)
        with self._grad_mode(True):
            steps = self._sequence(x, s0) if xs.shape[0] else []
            final = steps[-1] if steps else s0

            def w(a, like):
                return torch.as_tensor(np.asarray(a), dtype=like.dtype)

            loss = sum((st[output] * w(wt, st[output])).sum() for st, wt in zip(steps, w_out))
            loss = loss + sum((s * w(ws, s)).sum() for s, ws in zip(final, w_state) if ws is not None)
            wrt = list(params.values()) + [x, *s0]
            grads = torch.autograd.grad(loss, wrt, allow_unused=True) if torch.is_tensor(loss) else [None] * len(wrt)
        g = [self._out(torch.zeros_like(a) if d is None else d) for a, d in zip(wrt, grads)]
        n = len(params)
        return dict(zip(params, g[:n])), g[n], tuple(g[n + 1 :])


# --------------------------------------------------------------------------- sru


class SRUCellEngine(TorchEngine):
    """``sru.SRUCell(input_size, hidden_size, **options)`` in eval mode; the state is (h, c), of
    which the cell reads only c. The spec's sizes: ``hidden`` and ``input`` (``input`` defaults
    to ``hidden``, as for a spec whose x has the hidden size)."""

    target = "sru.SRUCell"
    extra = "sru"
    n_state = 2
    KERNELS = ("torch", "cpu")

    def __init__(self, sizes, options, dtype):
        options = dict(options)
        kernel = options.pop("kernel", "torch")
        if kernel not in self.KERNELS:
            raise ShapeError(f"{self.target}: option 'kernel' must be one of {self.KERNELS}, got {kernel!r}")
        sru = _import("sru", self.target, self.extra, ignore=_SRU_WARNINGS[:1])
        sig = inspect.signature(sru.SRUCell.__init__)
        taken = {k: p.default for k, p in sig.parameters.items() if k not in ("self", "input_size", "hidden_size")}
        for k in options:
            if k not in taken:
                raise ShapeError(f"{self.target}: unknown option {k!r}; SRUCell takes {sorted(taken)} "
                                 f"and the engine's 'kernel' ({' or '.join(self.KERNELS)})")  # fmt: skip
        self.defaults = {**taken, "kernel": "torch"}
        super().__init__(sizes, {**options, "kernel": kernel}, dtype)
        if "hidden" not in self.sizes:
            raise ShapeError(f"{self.target}: needs the size 'hidden', got {sorted(self.sizes)}")
        hidden = int(self.sizes["hidden"])
        self.module_input = int(self.sizes.get("input", hidden))
        self.kernel = kernel
        if kernel == "cpu":  # the compiled kernel reads float32 only, and has no backward
            self.gradients = None
            self.computes = np.dtype(np.float32)
        try:
            module = sru.SRUCell(self.module_input, hidden, **options)
        except (TypeError, ValueError, AssertionError) as exc:
            raise ShapeError(f"{self.target} with options {options}: sru refused it: {exc}") from None
        self.module = module.to(self._tdtype()).eval()
        path = ("elementwise_recurrence_naive, torch operations with autograd on" if kernel == "torch"
                else "torch.ops.sru_cpu.cpu_forward, compiled C++, autograd off")  # fmt: skip
        self.label = f"{self.target} (sru {sru.__version__}, {path}, computes in {self.computes.name})"

    def __repr__(self):
        return f"<{self.label}>"

    def _grad_mode(self, grad: bool):
        torch = self.torch
        return torch.enable_grad() if self.kernel == "torch" or grad else torch.no_grad()

    def _check(self, xs, state):
        super()._check(xs, state)
        shape = (xs.shape[1], self.module.output_size)
        for s in state:
            if tuple(np.shape(s)) != shape:
                raise ShapeError(f"{self.target}: each state array must be {shape}, got {tuple(np.shape(s))}")

    def _sequence(self, xs, state):
        _, c0 = state
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_SRU_WARNINGS[1])
            h, c = self.module(xs, c0)
        T = xs.shape[0]
        return [(h[t], None) for t in range(T - 1)] + [(h[T - 1], c)]


# --------------------------------------------------------------------------- xlstm


class SLSTMCellEngine(TorchEngine):
    """xlstm's ``sLSTMCell(sLSTMCellConfig(hidden_size=H, **options))`` (backend ``vanilla``
    unless the options say otherwise), fed the gate pre-activations ``W x`` of a dense input
    weight ``W`` (4H, I) that the engine holds (rows: gates i, f, z, o), one step per call; the
    state is (h, c, n, m) for ``function="slstm"``, (h, c) for ``"lstm"``. Sizes are fixed at
    input 3, hidden 8, so that each of the default 4 heads has a 2 x 2 recurrent block."""

    target = "xlstm.sLSTMCell"
    extra = "xlstm"
    fixed_sizes = {"input": 3, "hidden": 8}
    # sLSTMCellConfig fields the engine sets: the size, tensor layouts of its calls, dtypes
    RESERVED = ("hidden_size", "num_states", "input_shape", "internal_input_shape", "output_shape", "dtype",
                "dtype_b", "dtype_r", "dtype_w", "dtype_g", "dtype_s", "dtype_a",
                "enable_automatic_mixed_precision")  # fmt: skip

    def __init__(self, sizes, options, dtype):
        _import("xlstm", self.target, self.extra)
        import dataclasses

        from xlstm import __version__
        from xlstm.blocks.slstm.cell import sLSTMCell, sLSTMCellConfig

        fields = {f.name: f for f in dataclasses.fields(sLSTMCellConfig)}
        taken = sorted(set(fields) - set(self.RESERVED))
        for k in options:
            if k in self.RESERVED:
                raise ShapeError(f"{self.target}: option {k!r} is set by the check (sizes, call layout, dtype)")
            if k not in fields:
                raise ShapeError(f"{self.target}: unknown option {k!r}; sLSTMCellConfig takes {taken}")
        self.defaults = {k: (f.default if f.default is not dataclasses.MISSING else f.default_factory())
                         for k, f in fields.items() if k in taken} | {"backend": "vanilla"}  # fmt: skip
        super().__init__(sizes, options, dtype)
        for k in ("input", "hidden"):
            if k not in self.sizes:
                raise ShapeError(f"{self.target}: needs the sizes 'input' and 'hidden', got {sorted(self.sizes)}")
        hidden, self.module_input = int(self.sizes["hidden"]), int(self.sizes["input"])
        config = {k: v for k, v in self.options.items() if k in taken}
        torch = self.torch
        try:
            cell = sLSTMCell(sLSTMCellConfig(hidden_size=hidden, **config))
        except Exception as exc:  # noqa: BLE001 - the cuda backend compiles at construction
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            hint = (" (its cuda backend compiles CUDA kernels at construction: it needs a CUDA build of "
                    "torch and a GPU; backend='vanilla' is its pure-torch cell)"
                    if config["backend"] == "cuda" else "")  # fmt: skip
            raise ShapeError(f"{self.target} with options {dict(options)}: xlstm could not build it: "
                             f"{type(exc).__name__}: {text}{hint}") from exc  # fmt: skip
        self.cell = cell.to(self._tdtype()).eval()
        self.n_state = cell.config.num_states
        self.W = torch.nn.Parameter(torch.zeros(4 * hidden, self.module_input, dtype=self._tdtype()))
        self.label = (f"{self.target} (xlstm {__version__}, {self.options['backend']} backend, "
                      f"function {self.options['function']!r}, {cell.config.num_heads} heads, "
                      f"computes in {self.computes.name})")  # fmt: skip

    def __repr__(self):
        return f"<{self.label}>"

    def _params(self):
        return {"W": self.W, **dict(self.cell.named_parameters())}

    def _check(self, xs, state):
        super()._check(xs, state)
        shape = (xs.shape[1], self.cell.config.hidden_size)
        for s in state:
            if tuple(np.shape(s)) != shape:
                raise ShapeError(f"{self.target}: each state array must be {shape}, got {tuple(np.shape(s))}")

    def _sequence(self, xs, state):
        torch = self.torch
        s = torch.stack(state)
        out = []
        for t in range(xs.shape[0]):
            wx = xs[t] @ self.W.T  # (B, 4H): gates i, f, z, o
            _, s = self.cell(wx[:, None, :], s)
            out.append(tuple(s.unbind(0)))
        return out


ENGINES = {
    "sru:SRUCell": SRUCellEngine,
    "xlstm:sLSTMCell": SLSTMCellEngine,
}
