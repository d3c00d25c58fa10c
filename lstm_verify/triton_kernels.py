"""Triton kernels for the generated torch code on CUDA: the same blocks as the C kernels.

Each pointwise block of a generated torch module (a :class:`~lstm_verify.kernels.Segment`:
a forward block between GEMMs, or the backward's local partials) is also printed as one Triton
kernel (``lvt<k>``), from the same CSE'd SymPy expressions and the same renamed symbols as its
C function (``x<k>`` operands, ``l<k>`` items, ``c<k>`` shared subexpressions): no name of a
spec reaches the text. A kernel takes the C function's arguments (the batch, the width, the
step, then a tensor and its row stride per operand and per output: a parameter has row stride
0, a value of size 1 is read once per row) and runs a grid of tiles of at most 1024 values
(rows x columns).

**Math.** The float32 functions are the C kernels' branch-free Cephes polynomials
(``exp``, ``log``, ``tanh``; ``sigmoid``, ``softplus`` and ``log1p`` built on them), written
once more in Triton, so that the CPU, where they are tested, and the GPU compute the same
arithmetic (up to FMA contraction), instead of Triton's ``tl.exp``, which on NVIDIA GPUs is
``ex2.approx``. float64 uses ``tl.exp`` and ``tl.log`` (NumPy in the interpreter), ``tanh``
Cephes' rational approximation below 0.625 and ``1 - 2/(exp(2|x|) + 1)`` above.

**Where they run.** On CUDA tensors (:meth:`lstm_verify.kernels.Kernels.table`), and on CPU
tensors under :func:`lstm_verify.kernels.interpreted`, through Triton's interpreter
(``TRITON_INTERPRET``): that is how the tests check them on machines without a GPU. The
templates call Triton's builtins only (``tl.where``, ``tl.full``, ...), never the functions of
Triton's standard library, which are themselves ``@triton.jit`` functions compiled for the GPU
unless ``TRITON_INTERPRET`` was set before Triton was imported.

**Loading.** The module text is made here from fixed templates and printed expressions, audited
(:func:`audit`: only the names, attributes and statements the templates use) and executed as a
module registered in ``linecache`` (Triton reads a kernel's source back).
"""

from __future__ import annotations

import ast
import functools
import linecache
import re
import types

import sympy
from sympy.printing.str import StrPrinter

from .functions import BY_SYMPY

TILE = 1024  # values per program (rows x columns)

_HEAD = '''\
import triton
import triton.language as tl

INF = tl.constexpr(float("inf"))
NAN = tl.constexpr(float("nan"))


@triton.jit
def lv_pow2_f32(y, k):
    """y 2^k for integral k in [-150, 128], as two normal factors"""
    ki = k.to(tl.int32)
    h = ki >> 1
    fa = ((h + 127) << 23).to(tl.float32, bitcast=True)
    fc = ((ki - h + 127) << 23).to(tl.float32, bitcast=True)
    return y * fa * fc


@triton.jit
def lv_exp_f32(x):
    """Cephes expf, as the C kernels compute it"""
    xc = tl.where(x > 88.8, 88.8, x)
    xc = tl.where(xc < -104.0, -104.0, xc)
    k = tl.floor(xc * 1.4426950408889634 + 0.5)
    r = xc - k * 0.693359375
    r = r + k * 2.12194440e-4
    z = r * r
    p = ((((1.9875691500e-4 * r + 1.3981999507e-3) * r + 8.3334519073e-3) * r
          + 4.1665795894e-2) * r + 1.6666665459e-1) * r + 5.0000001201e-1
    y = lv_pow2_f32(p * z + r + 1.0, k)
    y = tl.where(x > 88.8, INF, y)
    y = tl.where(x < -104.0, 0.0, y)
    return tl.where(x != x, x, y)


@triton.jit
def lv_log_f32(x):
    """Cephes logf, as the C kernels compute it"""
    tiny = x < 1.17549435e-38
    xs = tl.where(tiny, x * 8388608.0, x)
    bits = xs.to(tl.int32, bitcast=True)
    e = ((bits >> 23) & 255) - 127 - tl.where(tiny, 23, 0)
    m = ((bits & 8388607) | 1065353216).to(tl.float32, bitcast=True)
    big = m > 1.41421356
    m = tl.where(big, m * 0.5, m)
    fe = tl.where(big, e + 1, e).to(tl.float32)
    f = m - 1.0
    z = f * f
    y = ((((((((7.0376836292e-2 * f - 1.1514610310e-1) * f + 1.1676998740e-1) * f
              - 1.2420140846e-1) * f + 1.4249322787e-1) * f - 1.6668057665e-1) * f
            + 2.0000714765e-1) * f - 2.4999993993e-1) * f + 3.3333331174e-1) * f * z
    y += -2.12194440e-4 * fe
    y += -0.5 * z
    r = f + y + 0.693359375 * fe
    r = tl.where(x == INF, x, r)
    r = tl.where(x == 0.0, -INF, r)
    r = tl.where(x < 0.0, NAN, r)
    return tl.where(x != x, x, r)


@triton.jit
def lv_exp(x):
    if x.dtype == tl.float64:
        return tl.exp(x)
    else:
        return lv_exp_f32(x)


@triton.jit
def lv_log(x):
    if x.dtype == tl.float64:
        return tl.log(x)
    else:
        return lv_log_f32(x)


@triton.jit
def lv_tanh(x):
    """Cephes: an odd polynomial (float32) or rational function (float64) below 0.625, else
    1 - 2/(exp(2|x|) + 1); tanh(-0) = -0"""
    a = tl.abs(x)
    z = x * x
    if x.dtype == tl.float64:
        p = (-9.64399179425052238628e-1 * z - 9.92877231001918586564e1) * z - 1.61468768441708447952e3
        q = ((z + 1.12811678491632931402e2) * z + 2.23548839060100448583e3) * z + 4.84406305325125486048e3
        small = x + x * z * (p / q)
    else:
        small = x + x * z * ((((-5.70498872745e-3 * z + 2.06390887954e-2) * z - 5.37397155531e-2) * z
                              + 1.33314422036e-1) * z - 3.33332819422e-1)
    big = 1.0 - 2.0 / (lv_exp(2.0 * a) + 1.0)
    big = tl.where(x < 0.0, -big, big)
    return tl.where(x == 0.0, x, tl.where(a < 0.625, small, tl.where(x != x, x, big)))  # tanh(-0) = -0


@triton.jit
def lv_sigmoid(x):
    e = lv_exp(-tl.abs(x))
    r = 1.0 / (1.0 + e)
    return tl.where(x >= 0.0, r, e * r)


@triton.jit
def lv_log1p(y):
    """log(1 + y) for y >= 0 without losing a small y"""
    u = 1.0 + y
    d = u - 1.0
    return tl.where(d == 0.0, y, lv_log(u) * (y / tl.where(d == 0.0, 1.0, d)))


@triton.jit
def lv_softplus(x):
    return tl.where(x > 0.0, x, 0.0) + lv_log1p(lv_exp(-tl.abs(x)))


@triton.jit
def lv_sqrt(x):
    if x.dtype == tl.float64:
        return tl.sqrt(x)
    else:
        return tl.sqrt_rn(x)  # tl.sqrt of float32 may be approximate on the GPU


@triton.jit
def lv_relu(x):
    return tl.where(x < 0.0, 0.0, x)


@triton.jit
def lv_hard_sigmoid(x):
    y = x / 6.0 + 0.5
    return tl.where(y < 0.0, 0.0, tl.where(y > 1.0, 1.0, y))


@triton.jit
def lv_max(a, b):
    return tl.where((a >= b) | (a != a), a, b)


@triton.jit
def lv_min(a, b):
    return tl.where((a <= b) | (a != a), a, b)


@triton.jit
def lv_tick(t, period):
    zero = tl.full(period.shape, 0.0, period.dtype)
    return tl.where(t - period * tl.floor(t / period) == 0.0, zero + 1.0, zero)


@triton.jit
def lv_step(x):
    zero = tl.full(x.shape, 0.0, x.dtype)
    return tl.where(x > 0.0, zero + 1.0, zero)


@triton.jit
def lv_hard_sigmoid_grad(x):
    zero = tl.full(x.shape, 0.0, x.dtype)
    return tl.where((x > -3.0) & (x < 3.0), zero + 0.16666666666666666, zero)


@triton.jit
def lv_max_grad(a, b):
    s = a + b
    zero = tl.full(s.shape, 0.0, s.dtype)
    return tl.where(a > b, zero + 1.0, zero) + tl.where(a == b, zero + 0.5, zero)
'''

_LAUNCH = '''

def lv_launcher(kernel):
    """The kernel called as its C twin is: (B, n, t, tensor, row stride, ...), on tiles of at
    most TILE values."""

    def launch(B, n, t, *args):
        BN = min(triton.next_power_of_2(max(n, 1)), TILE)
        BB = min(triton.next_power_of_2(max(B, 1)), max(1, TILE // BN))
        kernel[(triton.cdiv(B, BB), triton.cdiv(n, BN))](B, n, float(t), *args, BB=BB, BN=BN)

    return launch


KERNELS = [KERNEL_LIST]
'''


class _Refused(Exception):
    pass


class _TritonPrinter(StrPrinter):
    """Python-syntax expressions over the renamed symbols, calling the ``lv_*`` helpers; any
    other kind of expression is refused (the block stays in torch)."""

    _ALLOWED = (sympy.Add, sympy.Mul, sympy.Pow, sympy.Symbol, sympy.Number)
    printmethod = "_lv_triton"  # not StrPrinter's _sympystr: our functions print as the spec writes them

    def _print(self, expr, **kwargs):
        if not (isinstance(expr, self._ALLOWED) or type(expr) in BY_SYMPY
                or isinstance(expr, (sympy.exp, sympy.tanh, sympy.log))):  # fmt: skip
            raise _Refused(type(expr).__name__)
        if isinstance(expr, sympy.Number) and not expr.is_finite:  # nan, oo, zoo: StrPrinter spells them
            raise _Refused(f"constant {expr}")
        return super()._print(expr, **kwargs)

    def _literal(self, value) -> str:
        value = float(value)
        if value != value or value in (float("inf"), float("-inf")):
            raise _Refused(f"constant {value}")
        return f"({value!r})" if value < 0 else repr(value)

    def _print_Float(self, expr):
        return self._literal(expr)

    def _print_Integer(self, expr):
        return self._literal(expr)

    def _print_Rational(self, expr):
        return f"({self._literal(expr.p)} / {self._literal(expr.q)})"

    def _print_Pow(self, expr, rational=False):
        base, e = expr.as_base_exp()
        b = f"({self._print(base)})"
        if e.is_Rational and e.q == 2 and abs(e.p) <= 17:  # base**(k/2), k odd
            k = abs(int(e.p))
            s = f"lv_sqrt({self._print(base)})"
            prod = s if k == 1 else f"({s} * {self._print(base ** ((k - 1) // 2))})"
            return prod if e > 0 else f"(1.0 / {prod})"
        if e.is_Integer and 0 < e <= 8:
            return "(" + " * ".join([b] * int(e)) + ")"
        if e.is_Integer and -8 <= e < 0:
            return f"(1.0 / {self._print(base ** -e)})"
        raise _Refused(f"exponent {e}")

    def _print_Function(self, expr):
        f = BY_SYMPY[type(expr)]
        return f"lv_{f.name}({', '.join(self._print(a) for a in expr.args)})"

    def _print_exp(self, expr):
        return f"lv_exp({self._print(expr.args[0])})"

    def _print_tanh(self, expr):
        return f"lv_tanh({self._print(expr.args[0])})"

    def _print_log(self, expr):
        return f"lv_log({self._print(expr.args[0])})"


@functools.lru_cache(maxsize=4096)
def kernel_text(seg) -> str:
    """The Triton kernel of one segment: the same renamed, CSE'd expressions as
    :func:`lstm_verify.kernels.kernel_text`. Raises :class:`lstm_verify.kernels.Unfusable`."""
    from .kernels import Unfusable, renamed

    ordered, local = renamed(seg, lambda k, bcast: sympy.Symbol(f"x{k}"), sympy.Symbol("t"))
    printer = _TritonPrinter()
    args = ["B", "n", "t"]
    body = [
        "    b = (tl.program_id(0) * BB + tl.arange(0, BB)[:, None]).to(tl.int64)",
        "    j = tl.program_id(1) * BN + tl.arange(0, BN)[None, :]",
        "    rows = b < B",
        "    m = rows & (j < n)",
    ]
    for k, (_, bcast) in enumerate(seg.operands):
        args += [f"a{k}", f"r{k}"]
        if bcast:
            body.append(f"    x{k} = tl.load(a{k} + b * r{k}, mask=rows, other=0.0)")
        else:
            body.append(f"    x{k} = tl.load(a{k} + b * r{k} + j, mask=m, other=0.0)")
    for k, _ in enumerate(seg.outputs):
        args += [f"o{k}", f"q{k}"]
    try:
        for sym, expr in ordered:
            body.append(f"    {sym.name} = {printer.doprint(expr)}")
    except Exception as exc:  # noqa: BLE001 - whatever the printer refuses stays in torch
        raise Unfusable(f"no Triton kernel for {type(exc).__name__}: {exc}") from None
    for k, name in enumerate(seg.outputs):
        body.append(f"    tl.store(o{k} + b * q{k} + j, tl.broadcast_to({local[name].name}, (BB, BN)), mask=m)")
    return "\n".join(["@triton.jit", f"def lvt{seg.index}({', '.join(args)}, BB: tl.constexpr, BN: tl.constexpr):",
                      *body])  # fmt: skip


def source(segments) -> str:
    """The Triton module of a generated torch module's blocks."""
    kernels = [kernel_text(s) for s in segments]
    launch = _LAUNCH.replace("TILE", str(TILE)).replace(
        "KERNEL_LIST", ", ".join(f"lv_launcher(lvt{s.index})" for s in segments))
    return _HEAD + "\n\n" + "\n\n\n".join(kernels) + "\n\n" + launch


# ----------------------------------------------------------------------------- the audit

_NAMES = {
    "triton", "tl", "INF", "NAN", "float", "min", "max", "y", "k", "ki", "h", "fa", "fc", "x", "xc", "r", "z", "p",
    "s", "tiny", "xs", "bits", "e", "m", "big", "fe", "f", "a", "small", "q", "u", "d", "zero", "period", "t", "B",
    "n", "b", "j", "rows", "BB", "BN", "kernel", "launch", "args", "KERNELS",
}  # fmt: skip
_NAME = re.compile(r"(?:[xlcaroq]\d+|lvt\d+|lv_[a-z0-9_]+)\Z")
_ATTRIBUTES = {
    "jit", "constexpr", "to", "int32", "int64", "float32", "float64", "where", "floor", "abs", "exp", "log", "sqrt", "sqrt_rn",
    "full", "shape", "dtype", "program_id", "arange", "load", "store", "broadcast_to", "next_power_of_2", "cdiv",
    "language",
}  # fmt: skip
_NODES = (
    ast.Module, ast.Import, ast.alias, ast.FunctionDef, ast.arguments, ast.arg, ast.Return, ast.Assign,
    ast.AugAssign, ast.If, ast.Expr, ast.Call, ast.keyword, ast.Name, ast.Attribute, ast.Constant, ast.BinOp,
    ast.UnaryOp, ast.Compare, ast.BoolOp, ast.Subscript, ast.Slice, ast.Tuple, ast.List, ast.Starred,
    ast.expr_context, ast.operator, ast.unaryop, ast.cmpop, ast.boolop,
)  # fmt: skip


def audit(text: str) -> None:
    """Check a Triton module's text against what the templates write; raises
    :class:`lstm_verify.hygiene.GeneratedCodeError` naming the first offending line."""
    from .hygiene import GeneratedCodeError

    def fail(node, why):
        raise GeneratedCodeError(f"Triton kernels, line {getattr(node, 'lineno', '?')}: {why}; not executed")

    try:
        tree = ast.parse(text)
    except SyntaxError as exc:
        raise GeneratedCodeError(f"Triton kernels: not valid Python at line {exc.lineno}: {exc.msg}") from None
    for node in ast.walk(tree):
        if not isinstance(node, _NODES):
            fail(node, f"{type(node).__name__} is not allowed")
        if isinstance(node, ast.Import):
            if [(a.name, a.asname) for a in node.names] not in ([("triton", None)], [("triton.language", "tl")]):
                fail(node, "an import other than triton")
        name = node.id if isinstance(node, ast.Name) else node.arg if isinstance(node, ast.arg) else (
            node.name if isinstance(node, ast.FunctionDef) else None)
        if name is not None and name not in _NAMES and not _NAME.match(name):
            fail(node, f"name {name!r}")
        if isinstance(node, ast.Attribute) and node.attr not in _ATTRIBUTES:
            fail(node, f"attribute {node.attr!r}")
        if isinstance(node, ast.Constant) and not isinstance(node.value, (int, float, str, type(None))):
            fail(node, f"constant {node.value!r}")


_counter = iter(range(10**9))


def load(text: str, interpret: bool) -> types.ModuleType:
    """The module of Triton kernels ``text``, compiled for the GPU or for Triton's interpreter."""
    import triton

    audit(text)
    filename = f"<lstm-verify triton kernels #{next(_counter)}>"
    linecache.cache[filename] = (len(text), None, text.splitlines(True), filename)
    module = types.ModuleType("lstm_verify_triton_kernels")
    module.__file__ = filename
    with triton.knobs.runtime.scope():  # read when a kernel is decorated
        triton.knobs.runtime.interpret = interpret
        exec(compile(text, filename, "exec"), module.__dict__)  # noqa: S102 - audited, from templates
    return module


def load_or_warn(text: str, interpret: bool, warn):
    """:func:`load`, or None after ``warn(reason)`` where Triton is missing or refuses the text."""
    try:
        return load(text, interpret)
    except ImportError as exc:
        warn(f"Triton is not installed ({exc}; pip install 'lstm-verify[triton]')")
    except Exception as exc:  # noqa: BLE001 - whatever Triton refuses, the torch operations run
        warn(f"{type(exc).__name__}: {exc}")
    return None


__all__ = ["TILE", "audit", "kernel_text", "load", "load_or_warn", "source"]
