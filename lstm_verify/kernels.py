"""Fused C kernels for the generated torch code on the CPU, compiled at first use.

Two levels, both printed from the same CSE'd SymPy expressions as the torch code:

- **Blocks.** Between its GEMMs, a step of a generated forward is a block of pointwise
  expressions, and a step of its backward starts with a block of local partial derivatives.
  As torch operations each costs a dispatch per operation (1.5-15 µs, 6-22 a step); here each
  block is one C function (``lvk<k>``) called through ctypes on the tensors' own memory.
- **Loops.** Where every value of a step has a batch axis and no reduction or set input is
  involved, the whole forward loop (``lvseq``) and the whole backward loop (``lvbwd``) run in
  C: GEMMs through the BLAS that torch itself carries (MKL's ``sgemm_``/``dgemm_``, and for
  float32 its packed GEMM, the recurrent weights packed once per call), the pointwise work
  through the block functions, every value in a buffer of its own. The backward loop replays,
  step for step, what the Python loop does (the emitter records it), and leaves its results
  (stacked step gradients, input gradients, carries) where the Python loop's epilogue reads
  them: weight gradients stay one GEMM each after the loop, in torch.

**Where they run.** A generated torch module carries the C text (``_C_SOURCE``) and uses it when
:meth:`Kernels.table` accepts the call's tensors: CPU, all float32 or all float64, features of
unit stride, and autograd not recording through them (the kernels are not differentiable; the
generated backward is). Otherwise the torch operations run, as they always did: that path is
the fallback and the oracle. ``LSTM_VERIFY_KERNELS=0`` or :func:`disabled` turns all of it off,
:func:`without_loop` only the loops; a trace of the backward's carries runs the Python loop;
without a C compiler a :class:`KernelWarning` says so once and the torch operations run.

**CUDA.** The same blocks are printed as Triton kernels too (:mod:`.triton_kernels`,
``_TRITON_SOURCE``): :meth:`Kernels.table` hands them out for CUDA tensors (the loops stay in
Python there), and for CPU tensors under :func:`interpreted`, which runs them in Triton's
interpreter; without Triton a :class:`KernelWarning` says so once and the torch operations run.

**Threads.** Where the process runs GNU OpenMP already (torch's own ``libgomp.so.1``), the
kernels are built with ``-fopenmp`` and a block of at least ``PARALLEL`` values spreads its
batch rows over torch's threads (``torch.set_num_threads``): one runtime, no oversubscription.

**Accuracy.** float64 kernels call the C library (``exp``, ``tanh``, ``log``, ``log1p``: within
1 ulp). float32 kernels use branch-free polynomial ``exp``, ``tanh`` and ``log`` (Cephes'
``expf``, ``tanhf`` and ``logf`` coefficients) that the compiler vectorises (one call the
compiler cannot vectorise would leave the whole block scalar), with ``sigmoid`` and ``softplus``
built on them; their error against mpmath is measured in ``tests/test_kernels.py`` (3 to 3.5
million points): at most 1 ulp for exp (0.998 measured) and log (0.79), 2 for tanh (1.32), 3 for
sigmoid (2.61) and softplus (2.57) wherever the result is a normal float (below 2^-126, within
2^-149 of the true value), with NaN and the infinities propagated as the C library does.

**Compilation and cache.** ``cc`` with :data:`FLAGS` (``-O3 -march=native``), once per distinct
C text: the library lives in the generated-code cache folder (:mod:`.runtime`, same checks: a
folder of our own, mode 0700) under a name that hashes the C text, the compiler's version, the
flags and the CPU's feature flags (``-march=native`` code runs only where it was compiled),
written under a temporary name and renamed into place, with an HMAC (the cache's per-user key)
over its bytes beside it. It is loaded through ``/proc/self/fd`` from the very descriptor whose
bytes were checked. Without a cache folder it is compiled into a private temporary folder.

**Names.** No name from a spec reaches the C text: operands, items and shared subexpressions
are renamed (``x<k>``, ``l<k>``, ``c<k>``) before printing, and functions come from the table
of :mod:`.functions` only.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import hmac
import importlib
import math
import os
import platform
import shutil
import stat
import subprocess
import tempfile
import threading
import warnings
from dataclasses import dataclass

import sympy

from .functions import BY_SYMPY
from .ir import CellIR
from .spec import SCALAR

# -fno-trapping-math lets the compiler vectorise branch-free selects (IEEE results unchanged)
FLAGS = ("-O3", "-march=native", "-fno-math-errno", "-fno-trapping-math", "-fopenmp-simd", "-shared", "-fPIC",
         "-std=gnu99") + (("-mprefer-vector-width=512",) if platform.machine() in ("x86_64", "AMD64") else ())
FORMAT = 1
PARALLEL = 4096  # a block of at least this many values runs its batch rows on torch's OpenMP threads


class KernelWarning(UserWarning):
    """The fused C kernels could not be built; the generated torch code runs without them."""


class Unfusable(Exception):
    """A block the kernels cannot compute (the torch operations run instead)."""


# ----------------------------------------------------------------------------- C text


@dataclass(frozen=True)
class Segment:
    """One fused block: ``items`` (name, SymPy expression) in dependency order, over the units
    of one size. Operands are read at ``[b*stride + j]`` (a parameter: stride 0), or once per row
    (``bcast``: a value of size 1 in a block over a wider size); ``outputs`` are the items
    written to memory."""

    index: int
    items: tuple[tuple[str, sympy.Expr], ...]
    operands: tuple[tuple[str, bool], ...]  # (name, bcast)
    outputs: tuple[str, ...]
    step: str | None  # the step counter's symbol, if the block reads it

    @property
    def arity(self) -> int:
        return 3 + 2 * (len(self.operands) + len(self.outputs))


def plan_segment(index: int, items, ir: CellIR, batched: set[str], dim: str, outputs, extra=None) -> Segment:
    """The segment computing ``items`` (every one of size ``dim``, and reading some value with a
    batch axis) and writing ``outputs``, or :class:`Unfusable` when a value has the set axis or
    an operand's size neither matches ``dim`` nor is 1 with a batch axis (read once per row).
    ``extra``: operands that are not values of the cell (name -> size; batched), such as the
    blocks of a GEMM's result that the C loop adds up in the block itself."""
    extra = extra or {}
    produced = {n for n, _ in items}
    operands = {}
    step = None
    for name, expr in items:
        if name in ir.set_vectors:
            raise Unfusable(name)
        reads_batch = False
        for s in expr.free_symbols:
            n = s.name
            if n in produced:
                reads_batch = True
                continue
            if n == ir.step:
                step = n
                continue
            d = extra.get(n) or ir.dims.get(n)
            if n in ir.set_vectors or d is None:
                raise Unfusable(n)
            reads_batch |= n in batched or n in extra
            if d == dim:
                operands[n] = False
            elif d == SCALAR and n in batched:
                operands[n] = True
            else:
                raise Unfusable(n)
        if not reads_batch:
            raise Unfusable(name)
    return Segment(index, tuple(items), tuple(sorted(operands.items())), tuple(outputs), step)


def _printer(suffix: str, real: str):
    from .export import _CPrinter

    class _KernelPrinter(_CPrinter):
        """The export's C printer, with literals of the kernel's own precision."""

        def _literal(self, value: float) -> str:
            if not math.isfinite(float(value)):
                raise Unfusable(f"constant {float(value)}")
            text = repr(float(value))
            return f"{text}f" if real == "float" else text

        def _print_Float(self, expr):
            return self._literal(expr)

        def _print_Integer(self, expr):
            return self._literal(expr)

        def _print_Rational(self, expr):
            return f"({self._literal(expr.p)}/{self._literal(expr.q)})"

        def _print_Function(self, expr):
            if type(expr) not in BY_SYMPY:
                raise Unfusable(f"no kernel for {type(expr).__name__}")
            return super()._print_Function(expr)

        def emptyPrinter(self, expr):  # noqa: N802 - SymPy's name
            raise Unfusable(f"no kernel for {type(expr).__name__}")

        def _print_Piecewise(self, expr):
            raise Unfusable("no kernel for Piecewise")

    return _KernelPrinter(suffix, real)


def renamed(seg: Segment, operand, step):
    """A segment's computation over renamed symbols: ``(assignments, local)``, where
    ``assignments`` are (symbol, expression) pairs in dependency order (shared subexpressions
    ``c<k>`` and items ``l<k>``, CSE'd) and ``local`` maps each item's name to its symbol.
    ``operand(k, bcast)`` is the symbol of operand k, ``step`` that of the step counter. No
    name of the spec survives."""
    names = {name: operand(k, bcast) for k, (name, bcast) in enumerate(seg.operands)}
    if seg.step:
        names[seg.step] = step
    local = {n: sympy.Symbol(f"l{k}") for k, (n, _) in enumerate(seg.items)}
    names.update(local)
    exprs = []
    for _, e in seg.items:
        missing = {s.name for s in e.free_symbols} - set(names)
        if missing:  # pragma: no cover - plan_segment names every operand
            raise Unfusable(f"unbound {sorted(missing)}")
        exprs.append(e.xreplace({s: names[s.name] for s in e.free_symbols}))
    replacements, reduced = sympy.cse(exprs, symbols=sympy.numbered_symbols("c"), order="none")
    pending = list(replacements) + [(local[n], e) for (n, _), e in zip(seg.items, reduced)]
    produced = {sym for sym, _ in pending}
    ordered, ready = [], set()
    while pending:  # in dependency order: a shared subexpression may read an earlier item
        k = next(k for k, (_, e) in enumerate(pending) if not (e.free_symbols & produced) - ready)
        sym, expr = pending.pop(k)
        ordered.append((sym, expr))
        ready.add(sym)
    return ordered, local


@functools.lru_cache(maxsize=4096)
def kernel_text(seg: Segment, suffix: str, real: str) -> str:
    """The C function of one segment, for one precision. Every symbol is renamed before
    printing (operands ``x<k>``, items ``l<k>``, shared subexpressions ``c<k>``): no name of
    the spec reaches the C text."""
    printer = _printer(suffix, real)
    args = ["long B", "long n", "double t"]
    head = []
    for k, (name, bcast) in enumerate(seg.operands):
        args += [f"const {real} *a{k}", f"long r{k}"]
        if bcast:
            head.append(f"        const {real} x{k} = a{k}[b * r{k}];")
        else:
            head.append(f"        const {real} *restrict x{k} = a{k} + b * r{k};")
    for k, name in enumerate(seg.outputs):
        args += [f"{real} *o{k}", f"long q{k}"]
        head.append(f"        {real} *restrict y{k} = o{k} + b * q{k};")
    ordered, local = renamed(seg, lambda k, bcast: sympy.Symbol(f"x{k}" if bcast else f"x{k}[j]"),
                             sympy.Symbol(f"(({real})t)"))

    def text(expr):
        try:
            return printer.doprint(expr)
        except Unfusable:
            raise
        except Exception as exc:  # noqa: BLE001 - whatever the printer refuses stays in torch
            raise Unfusable(f"{type(exc).__name__}: {exc}") from None

    body = [f"            const {real} {sym.name} = {text(expr)};" for sym, expr in ordered]
    body += [f"            y{k}[j] = {local[name].name};" for k, name in enumerate(seg.outputs)]
    return "\n".join([
        f"void lvk{seg.index}{suffix}({', '.join(args)})",
        "{",
        f"#pragma omp parallel for if (B * n >= {PARALLEL})",
        "    for (long b = 0; b < B; ++b) {",
        *head,
        "#pragma omp simd",
        "        for (long j = 0; j < n; ++j) {",
        *body,
        "        }",
        "    }",
        "}",
    ])  # fmt: skip


_MATH = r"""
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* 2^k for integer k in [-150, 128], as two normal factors (never a subnormal or an overflowing
   exponent field on its own) */
static inline float lv_pow2_f32(float y, int k) {
    int h = k >> 1;
    int32_t a = (h + 127) << 23, c = (k - h + 127) << 23;
    float fa, fc;
    memcpy(&fa, &a, 4);
    memcpy(&fc, &c, 4);
    return y * fa * fc;
}

/* Cephes expf: x = k ln2 + r, |r| <= ln2/2, degree-6 polynomial; branch-free, so it vectorises */
static inline float lv_exp_f32(float x) {
    float xc = x > 88.8f ? 88.8f : x;
    xc = xc < -104.0f ? -104.0f : xc;
    float k = floorf(xc * 1.44269504088896341f + 0.5f);
    float r = xc - k * 0.693359375f;
    r = r + k * 2.12194440e-4f;
    float z = r * r;
    float p = ((((1.9875691500e-4f * r + 1.3981999507e-3f) * r + 8.3334519073e-3f) * r
                + 4.1665795894e-2f) * r + 1.6666665459e-1f) * r + 5.0000001201e-1f;
    float y = lv_pow2_f32(p * z + r + 1.0f, (int)k);
    y = x > 88.8f ? INFINITY : y;
    y = x < -104.0f ? 0.0f : y;
    return x != x ? x : y;
}

static inline float lv_sigmoid_f32(float x) {
    float e = lv_exp_f32(-fabsf(x));
    float r = 1.0f / (1.0f + e);
    return x >= 0 ? r : e * r;
}

/* Cephes tanhf: an odd polynomial below 0.625, else 1 - 2/(exp(2|x|) + 1) */
static inline float lv_tanh_f32(float x) {
    float a = fabsf(x);
    float z = x * x;
    float small = ((((-5.70498872745e-3f * z + 2.06390887954e-2f) * z - 5.37397155531e-2f) * z
                    + 1.33314422036e-1f) * z - 3.33332819422e-1f) * z * a + a;
    float big = 1.0f - 2.0f / (lv_exp_f32(2.0f * a) + 1.0f);
    return copysignf(a < 0.625f ? small : big, x);
}

typedef void (*lv_gemm_f32)(const char *, const char *, const int *, const int *, const int *, const float *,
                            const float *, const int *, const float *, const int *, const float *, float *, const int *);
typedef void (*lv_gemm_f64)(const char *, const char *, const int *, const int *, const int *, const double *,
                            const double *, const int *, const double *, const int *, const double *, double *,
                            const int *);
/* MKL's packed GEMM (CBLAS enums as ints: 101 row major, 111 no transpose, 112 transpose,
   151 packed, 162 the B matrix) */
typedef size_t (*lv_pack_size)(int, int, int, int);
typedef void (*lv_pack)(int, int, int, int, int, int, float, const float *, int, float *);
typedef void (*lv_compute)(int, int, int, int, int, int, const float *, int, const float *, int, float, float *, int);

/* Cephes logf: x = m 2^e with m in [sqrt(1/2), sqrt(2)), a degree-9 polynomial in m - 1;
   subnormals scaled first; 0 -> -inf, x < 0 -> NaN, +inf -> +inf, NaN -> NaN; branch-free */
static inline float lv_log_f32(float x) {
    int tiny = x < 1.17549435e-38f;
    float xs = tiny ? x * 8388608.0f : x;
    int32_t bits;
    memcpy(&bits, &xs, 4);
    int e = ((bits >> 23) & 0xff) - 127 - (tiny ? 23 : 0);
    int32_t mb = (bits & 0x007fffff) | 0x3f800000;
    float m;
    memcpy(&m, &mb, 4);
    int big = m > 1.41421356f;
    m = big ? m * 0.5f : m;
    float fe = (float)(big ? e + 1 : e);
    float f = m - 1.0f;
    float z = f * f;
    float y = ((((((((7.0376836292e-2f * f - 1.1514610310e-1f) * f + 1.1676998740e-1f) * f
                   - 1.2420140846e-1f) * f + 1.4249322787e-1f) * f - 1.6668057665e-1f) * f
                 + 2.0000714765e-1f) * f - 2.4999993993e-1f) * f + 3.3333331174e-1f) * f * z;
    y += -2.12194440e-4f * fe;
    y += -0.5f * z;
    float r = f + y + 0.693359375f * fe;
    r = x == INFINITY ? x : r;
    r = x == 0.0f ? -INFINITY : r;
    r = x < 0.0f ? NAN : r;
    return x != x ? x : r;
}

/* log(1 + y) for y >= 0 without losing a small y: log(u) * y / (u - 1), u = 1 + y rounded */
static inline float lv_log1p_f32(float y) {
    float u = 1.0f + y;
    float d = u - 1.0f;
    return d == 0.0f ? y : lv_log_f32(u) * (y / d);
}

static inline double lv_exp_f64(double x) { return exp(x); }
static inline double lv_tanh_f64(double x) { return tanh(x); }
static inline double lv_sigmoid_f64(double x) {
    double e = exp(-fabs(x));
    return x >= 0 ? 1 / (1 + e) : e / (1 + e);
}
"""

_COMMON = {
    "sqrt": "static inline {T} lv_sqrt{S}({T} x) {{ return {SQRT}(x); }}",

    "relu": "static inline {T} lv_relu{S}({T} x) {{ return x < 0 ? 0 : x; }}",
    "hard_sigmoid": "static inline {T} lv_hard_sigmoid{S}({T} x) {{ {T} y = x / 6 + ({T})0.5; "
                    "return y < 0 ? 0 : (y > 1 ? 1 : y); }}",

    "max": "static inline {T} lv_max{S}({T} a, {T} b) {{ return (a >= b || a != a) ? a : b; }}",
    "min": "static inline {T} lv_min{S}({T} a, {T} b) {{ return (a <= b || a != a) ? a : b; }}",
    "tick": "static inline {T} lv_tick{S}({T} t, {T} period) {{ return t - period * {FLOOR}(t / period) == 0 ? 1 : 0; }}",
    "step": "static inline {T} lv_step{S}({T} x) {{ return x > 0 ? 1 : 0; }}",
    "hard_sigmoid_grad": "static inline {T} lv_hard_sigmoid_grad{S}({T} x) {{ return (x > -3 && x < 3) ? "
                         "({T})1 / 6 : 0; }}",
    "max_grad": "static inline {T} lv_max_grad{S}({T} a, {T} b) {{ return (a > b ? 1 : 0) + (a == b ? ({T})0.5 : 0); }}",
}  # fmt: skip


def source(segments) -> str:
    """The C text of a module's kernels: both precisions of every segment."""
    out = [_MATH]
    for suffix, real, fn in (("_f64", "double", ""), ("_f32", "float", "f")):
        names = dict(T=real, S=suffix, EXP=f"exp{fn}", FABS=f"fabs{fn}", FLOOR=f"floor{fn}", LOG=f"log{fn}",
                     LOG1P=f"log1p{fn}", SQRT=f"sqrt{fn}")  # fmt: skip
        out += [h.format(**names) for h in _COMMON.values()]
        if real == "double":  # float32's log is the vectorised one of _MATH
            out.append("static inline double lv_log_f64(double x) { return log(x); }")
            out.append("static inline double lv_softplus_f64(double x) { return (x > 0 ? x : 0) + log1p(exp(-fabs(x))); }")
        else:
            out.append("static inline float lv_softplus_f32(float x) { return (x > 0 ? x : 0) + "
                       "lv_log1p_f32(lv_exp_f32(-fabsf(x))); }")
        out += [kernel_text(s, suffix, real) for s in segments]
    return "\n\n".join(out) + "\n"


# ----------------------------------------------------------------------------- at run time

_enabled = os.environ.get("LSTM_VERIFY_KERNELS", "1") != "0"
_loop_enabled = True
_interpret = False
_lock = threading.Lock()
_libraries: dict[str, object] = {}
_warned: set[str] = set()  # the kinds of kernel ("c", "triton") already warned about
_held: list[int] = []


@contextlib.contextmanager
def without_loop():
    """Run the generated torch code's forward loop in Python (its blocks still through the
    kernels), not in C."""
    global _loop_enabled
    before, _loop_enabled = _loop_enabled, False
    try:
        yield
    finally:
        _loop_enabled = before


@contextlib.contextmanager
def disabled():
    """Run the generated torch code without its kernels (every block as torch operations)."""
    global _enabled
    before, _enabled = _enabled, False
    try:
        yield
    finally:
        _enabled = before


@contextlib.contextmanager
def interpreted():
    """Run the blocks of the generated torch code on CPU tensors through their Triton kernels,
    in Triton's interpreter (the forward and backward loops stay in Python): how the kernels
    that CUDA runs are tested without a GPU. Raises ImportError without Triton."""
    global _interpret
    importlib.import_module("triton")  # fails here, not inside a forward

    before, _interpret = _interpret, True
    try:
        yield
    finally:
        _interpret = before


def enabled() -> bool:
    return _enabled


class Kernels:
    """The kernels of one generated module, per dtype: ``table(tensors)`` is the list of
    callables when every tensor suits them, else None."""

    def __init__(self, library, arities, loop=None, module=None, triton_text=None):
        import torch

        self._torch = torch
        self.loop_names = loop
        self.module = module  # its buffer pool (_scratch, _recycle) serves the loops too
        self.loops = {}
        blas = _blas() if loop and library is not None else None
        for dtype, suffix in ((torch.float32, "_f32"), (torch.float64, "_f64")) if blas else ():
            f = getattr(library, f"lvseq{suffix}")
            f.restype = ctypes.c_int
            f.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_double] + [ctypes.c_void_p] * 9
            self.loops[dtype] = (f, blas[dtype])
        self.backs = {}
        for dtype, suffix in ((torch.float32, "_f32"), (torch.float64, "_f64")) if blas else ():
            f = getattr(library, f"lvbwd{suffix}", None)
            if f is not None:
                f.restype = ctypes.c_int
                f.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_double] + [ctypes.c_void_p] * 12
                self.backs[dtype] = (f, blas[dtype])
        self.tables = {}
        for dtype, suffix in ((torch.float32, "_f32"), (torch.float64, "_f64")) if library is not None else ():
            fns = []
            for k, arity in enumerate(arities):
                f = getattr(library, f"lvk{k}{suffix}")
                f.restype = None
                f.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_double] + [
                    _Address if i % 2 == 0 else ctypes.c_long for i in range(arity - 3)
                ]
                fns.append(f)
            self.tables[dtype] = fns
        self.library = library
        self.triton_text = triton_text
        self._triton: dict[bool, list | None] = {}  # interpreted -> launchers (None: no Triton)

    def _suits(self, tensors):
        """The device type and dtype of the call's tensors where a kernel can take them (one
        device, float32 or float64 throughout, features of unit stride, no gradient being
        recorded through them), else None."""
        torch = self._torch
        if not _enabled:
            return None
        if torch.is_grad_enabled() and any(torch.is_tensor(t) and t.requires_grad for t in tensors):
            return None  # autograd records through the torch operations
        first = next((t for t in tensors if torch.is_tensor(t)), None)
        if first is None or first.dtype not in (torch.float32, torch.float64):
            return None
        for t in tensors:
            if not torch.is_tensor(t):
                return None
            if t.dtype != first.dtype or t.device != first.device or (t.dim() and t.shape[-1] > 1 and t.stride(-1) != 1):
                return None
        return first.device.type, first.dtype

    def table(self, tensors):
        """The block kernels for these tensors: the C functions on the CPU, the Triton kernels on
        CUDA (and on the CPU under :func:`interpreted`), or None (the torch operations run)."""
        suits = self._suits(tensors)
        if suits is None:
            return None
        device, dtype = suits
        if device == "cpu" and not _interpret:
            return self.tables.get(dtype)
        if device == "cuda" or (device == "cpu" and _interpret):
            return self._triton_table(interpret=device == "cpu")
        return None

    def _c_ready(self, tensors) -> bool:
        """Whether the C loops can take these tensors."""
        suits = self._suits(tensors)
        return suits is not None and suits[0] == "cpu" and not _interpret and suits[1] in self.tables

    def _triton_table(self, interpret: bool):
        if interpret not in self._triton:
            self._triton[interpret] = None
            if self.triton_text:
                from . import triton_kernels

                module = triton_kernels.load_or_warn(self.triton_text, interpret, _warn_triton)
                if module is not None:
                    self._triton[interpret] = _interpreted(module.KERNELS) if interpret else module.KERNELS
        return self._triton[interpret]


    def sequence(self, args, params, inputs, state, t0, save=False):
        """The forward loop in C: ``(outputs, final state, cache)`` (the cache holds the inputs,
        the initial state, t0 and the saved values, as the Python loop's does; None unless
        ``save``), or None where it cannot run (then the Python loop runs). ``args`` is the
        module's ``_sequence_args``."""
        torch = self._torch
        if not self.loops or not _loop_enabled or _interpret:
            return None
        in_names, st_names, output, saved_names = self.loop_names
        ready = self._operands(args, params, inputs, state, [state[s] for s in st_names])
        if ready is None:
            return None
        xs, T, B, weights, others, sizes, widths = ready
        dtype = xs[0].dtype
        fn, blas = self.loops[dtype]
        s0 = [state[s].contiguous() for s in st_names]
        final = [torch.empty(s.shape, dtype=dtype) for s in s0]
        out = torch.empty((T, B, s0[st_names.index(output)].shape[-1]), dtype=dtype)
        saved = [self._buffer((T, B, int(w)), xs[0]) for w in widths] if save else []

        rc = fn(T, B, float(t0), blas, _pointers(weights), _pointers(others), _pointers(xs), _pointers(s0),
                _pointers(final), out.data_ptr(), _pointers(saved) if save else None, _sizes(sizes))  # fmt: skip
        if rc == -1:
            raise MemoryError("the C forward loop could not allocate its buffers")
        if rc != 0:
            return None
        cache = None
        if save:
            cache = self.module._Cache(inputs=inputs, state0=dict(state), t0=t0, saved=dict(zip(saved_names, saved)))
            if not torch.is_grad_enabled():  # the saved buffers go back to the pool with the record
                self.module._recycle(cache, saved)
        return out, dict(zip(st_names, final)), cache

    def _operands(self, args, params, inputs, state, more):
        """What both loops take, or None where the C cannot run (see :meth:`table`; an empty
        sequence or batch): the inputs, T, B, and the module's ``_sequence_args`` with its
        weights and parameters made contiguous (copies the caller keeps alive for the call)."""
        in_names = self.loop_names[0]
        if not self._c_ready([*params.values(), *[inputs[x] for x in in_names], *more]):
            return None
        xs = [inputs[x].contiguous() for x in in_names]
        T, B = xs[0].shape[0], xs[0].shape[1]
        if T == 0 or B == 0:
            return None
        weights, others, sizes, widths = args(params, inputs, state)
        return (xs, T, B, [w.contiguous() for w in weights], [p.contiguous() for p in others], sizes, widths)

    def _buffer(self, shape, like):
        """A buffer from the module's pool (while no gradient is recorded), else a new one."""
        buf = self.module._scratch(shape, like)
        return self._torch.empty(shape, dtype=like.dtype) if buf is None else buf

    def backward_loop(self, args, params, cache, d_outputs, carries, diagonals, stacks, widths):
        """The backward loop in C: ``(stacked gradient blocks, input gradients, state gradients)``
        as the Python loop leaves them (``diagonals``' gradients added in place), or None where
        it cannot run. ``args`` is the module's ``_sequence_args``; ``stacks`` and ``widths`` the
        widths of the stacks and of the inputs read pointwise."""
        torch = self._torch
        if not self.backs or not _loop_enabled or _interpret or not isinstance(cache, dict) or "saved" not in cache:
            return None
        saved_names = self.loop_names[3]
        inputs, state0 = cache["inputs"], cache["state0"]
        saved = [cache["saved"][k] for k in saved_names]
        more = [*saved, *carries, *diagonals] + ([] if d_outputs is None else [d_outputs])
        ready = self._operands(args, params, inputs, state0, more)
        if ready is None or any(not d.is_contiguous() for d in diagonals):  # added to in place
            return None
        xs, T, B, weights, others, sizes, _ = ready
        dtype = xs[0].dtype
        fn, blas = self.backs[dtype]
        saved = [v.contiguous() for v in saved]
        carries = [c.contiguous() for c in carries]
        d_out = None if d_outputs is None else d_outputs.contiguous()
        out_stacks = [self._buffer((T, B, int(w)), xs[0]) for w in stacks]  # pooled by the epilogue
        out_dx = [torch.empty((T, B, int(w)), dtype=dtype) for w in widths]
        out_carries = [torch.empty(c.shape, dtype=dtype) for c in carries]

        rc = fn(T, B, float(cache["t0"]), blas, _pointers(weights), _pointers(others), _pointers(xs), _pointers(saved),
                None if d_out is None else d_out.data_ptr(), _pointers(carries), _pointers(out_stacks),
                _pointers(diagonals), _pointers(out_dx), _pointers(out_carries), _sizes(sizes))  # fmt: skip
        if rc == -1:
            raise MemoryError("the C backward loop could not allocate its buffers")
        if rc != 0:
            return None
        return out_stacks, out_dx, out_carries


class _Address:
    """A C function's pointer argument given as a tensor: its data pointer (ctypes calls
    ``from_param`` with the tensor, which the caller keeps alive for the call)."""

    @classmethod
    def from_param(cls, tensor):
        return ctypes.c_void_p(tensor.data_ptr())


def _interpreted(launchers):
    """Launchers run by Triton's interpreter, with NumPy's floating-point warnings off: like the
    C kernels and torch, they compute IEEE results (inf, NaN) silently."""
    import numpy

    def quiet(launch):
        def run(*args):
            with numpy.errstate(all="ignore"):
                launch(*args)

        return run

    return [quiet(f) for f in launchers]


def _pointers(tensors):
    """A C array of the data pointers of contiguous tensors (which the caller keeps alive)."""
    if not all(t.is_contiguous() for t in tensors):  # pragma: no cover - the callers make them so
        raise AssertionError("a C loop takes contiguous tensors only")
    return (ctypes.c_void_p * max(len(tensors), 1))(*[t.data_ptr() for t in tensors])


def _sizes(values):
    return (ctypes.c_long * max(len(values), 1))(*[int(v) for v in values])


_blas_pointers = None


def _blas():
    """{dtype: array of BLAS entry points} from torch's CPU library (MKL in the x86 builds):
    float32 ``sgemm_`` and, where the library has them, MKL's packed ``cblas_sgemm_pack_get_size``,
    ``cblas_sgemm_pack`` and ``cblas_sgemm_compute`` (a recurrent weight packed once per call,
    as torch's own packed linear does); float64 ``dgemm_``. None when there is no GEMM."""
    global _blas_pointers
    if _blas_pointers is None:
        import torch

        def address(lib, name):
            try:
                return ctypes.cast(getattr(lib, name), ctypes.c_void_p).value
            except AttributeError:
                return None

        try:
            lib = ctypes.CDLL(os.path.join(os.path.dirname(torch.__file__), "lib", "libtorch_cpu.so"))
        except OSError:
            lib = None
        f32 = [address(lib, n) for n in ("sgemm_", "cblas_sgemm_pack_get_size", "cblas_sgemm_pack",
                                          "cblas_sgemm_compute")] if lib else [None]  # fmt: skip
        f64 = [address(lib, "dgemm_")] if lib else [None]
        if None in f32[1:]:
            f32[1:] = [None, None, None]
        _blas_pointers = {}
        if f32[0] and f64[0]:
            _blas_pointers = {torch.float32: (ctypes.c_void_p * 4)(*f32), torch.float64: (ctypes.c_void_p * 4)(*f64)}
    return _blas_pointers or None


def _warn_once(kind: str, text: str) -> None:
    with _lock:
        if kind in _warned:
            return
        _warned.add(kind)
    warnings.warn(f"{text}; the generated torch code runs without them", KernelWarning, stacklevel=5)


def _warn(reason: str) -> None:
    _warn_once("c", f"fused C kernels not built: {reason}")


def _warn_triton(reason: str) -> None:
    _warn_once("triton", f"Triton kernels not built: {reason}")


def compiler() -> str | None:
    return os.environ.get("CC") and shutil.which(os.environ["CC"]) or shutil.which("cc") or shutil.which("gcc")


def _cpu_flags() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


_compiler_ids: dict[str, str] = {}


def _compiler_id(cc: str) -> str:
    if cc not in _compiler_ids:
        out = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=60)
        _compiler_ids[cc] = (out.stdout.splitlines() or [""])[0]
    return _compiler_ids[cc]


def _flags() -> tuple[str, ...]:
    """FLAGS, with ``-fopenmp`` where the process runs GNU OpenMP already (torch's own
    ``libgomp.so.1``): the kernels then share torch's threads (``torch.set_num_threads``)
    instead of starting a second runtime."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as f:
            gomp = any(line.rstrip().endswith("/libgomp.so.1") for line in f)
    except OSError:
        gomp = False
    return FLAGS + (("-fopenmp",) if gomp else ())


def _key(text: str, cc: str) -> str:
    h = hashlib.sha256()
    for part in (str(FORMAT), text, cc, _compiler_id(cc), " ".join(_flags()), platform.machine(), _cpu_flags()):
        h.update(part.encode() + b"\0")
    return h.hexdigest()


def _compile(text: str, cc: str, folder: str, name: str) -> str:
    """Compile into ``folder``/``name`` (a temporary name first, then renamed); returns the path."""
    src = os.path.join(folder, f".{name}.{os.getpid()}.{threading.get_ident()}.c")
    tmp = src[:-2] + ".so"
    try:
        with open(src, "w", encoding="utf-8") as f:
            f.write(text)
        out = subprocess.run([cc, *_flags(), "-o", tmp, src, "-lm"], capture_output=True, text=True, timeout=300)
        if out.returncode != 0:
            raise Unfusable(f"{cc} failed: {out.stderr.strip()[:2000]}")
        os.replace(tmp, os.path.join(folder, name))
    finally:
        for p in (src, tmp):
            with contextlib.suppress(OSError):
                os.unlink(p)
    return os.path.join(folder, name)


def _verified(fd: int, folder_fd: int, name: str, secret: bytes) -> bool:
    """Whether the open file ``fd`` is a regular file of ours, writable by no one else, whose
    bytes match the HMAC stored beside it."""
    from . import runtime

    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
        return False
    data = runtime._read_at_most(fd, 64 << 20)
    try:
        mac_fd = os.open(name + ".mac", os.O_RDONLY | os.O_NOFOLLOW | runtime._O_NONBLOCK | runtime._O_CLOEXEC,
                         dir_fd=folder_fd)  # fmt: skip
    except OSError:
        return False
    try:
        mac = runtime._read_at_most(mac_fd, 256)
    finally:
        os.close(mac_fd)
    want = hmac.new(secret, name.encode() + b"\0" + data, "sha256").hexdigest().encode()
    return hmac.compare_digest(mac, want)


def _load_checked(folder_fd: int, name: str, secret: bytes) -> object | None:
    """The library ``name`` in the checked folder if :func:`_verified`, loaded from the very
    descriptor whose bytes were checked; else None."""
    from . import runtime

    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | runtime._O_NONBLOCK | runtime._O_CLOEXEC, dir_fd=folder_fd)
    except OSError:
        return None
    try:
        lib = ctypes.CDLL(f"/proc/self/fd/{fd}") if _verified(fd, folder_fd, name, secret) else None
    except BaseException:
        os.close(fd)
        raise
    if lib is None:
        os.close(fd)
        return None
    # kept open for the life of the process: the loader knows a library by its path, and a
    # descriptor number closed here could name another library later
    _held.append(fd)
    return lib


def library(text: str):
    """The loaded library of C text ``text``: from the cache when an entry verifies, else
    compiled (and cached). Raises :class:`Unfusable` naming what failed."""
    from . import runtime

    cc = compiler()
    if cc is None:
        raise Unfusable("no C compiler (cc or gcc) on the PATH")
    key = _key(text, cc)
    with _lock:
        if key in _libraries:
            return _libraries[key]
        lib = None
        name = f"lvk-{key[:32]}.so"
        directory = runtime.cache_dir()
        dfd = None
        if directory is not None and os.path.isdir("/proc/self/fd"):
            try:
                dfd = runtime._open_folder(directory)
                secret = runtime._secret(dfd)
            except runtime._Unusable:
                if dfd is not None:
                    os.close(dfd)
                dfd = None
        try:
            if dfd is not None:
                lib = _load_checked(dfd, name, secret)
                if lib is None:
                    with tempfile.TemporaryDirectory(prefix="lstm-verify-kernels-") as tmp:
                        path = _compile(text, cc, tmp, name)
                        with open(path, "rb") as f:
                            data = f.read()
                    mac = hmac.new(secret, name.encode() + b"\0" + data, "sha256").hexdigest().encode()
                    runtime._write_entry(dfd, name, data)
                    runtime._write_entry(dfd, name + ".mac", mac)
                    lib = _load_checked(dfd, name, secret)
            if lib is None:  # no cache folder, or what was just written does not verify
                with tempfile.TemporaryDirectory(prefix="lstm-verify-kernels-") as tmp:
                    lib = ctypes.CDLL(_compile(text, cc, tmp, name))
        except (OSError, subprocess.SubprocessError) as exc:
            raise Unfusable(f"cannot build the kernels: {exc}") from None
        finally:
            if dfd is not None:
                os.close(dfd)
        _libraries[key] = lib
        return lib


def attach(module) -> str | None:
    """Give a generated torch module its kernels (``module._KERNELS``); returns None, or why not."""
    text = getattr(module, "_C_SOURCE", None)
    if not text:
        return "the module has no fused blocks"
    reason = None
    try:
        lib = library(text)
    except Unfusable as exc:
        _warn(str(exc))
        lib, reason = None, str(exc)
    # without the C library the Triton kernels still serve CUDA tensors (and the interpreter)
    module._KERNELS = Kernels(lib, module._C_ARITY, getattr(module, "_C_LOOP", None), module,
                              getattr(module, "_TRITON_SOURCE", None))
    return reason


__all__ = [
    "KernelWarning", "Kernels", "Segment", "attach", "disabled", "enabled", "interpreted", "kernel_text", "library",
    "renamed", "source",
    "without_loop",
]
