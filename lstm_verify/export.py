"""Standalone modules for a verified cell: NumPy, torch, or C, with no dependency on lstm-verify.

``export(cell, target)`` returns the text; ``write(cell, target, path, force)`` writes it
atomically. The output depends only on the spec and this generator (no dates, no paths), so
the same spec gives byte-identical files on any machine.

* ``numpy`` / ``torch``: the generated sequence forward and exact backward, plus ``step``,
  shape tables and, for torch, an autograd Function and a ``Layer`` module trained with the
  generated backward. Python output is the generator's own text, written to read well
  within 100 columns; no formatter runs, so nothing outside this package can change it.
* ``c``: forward inference, one step and a sequence, float64 (``_f64``) and float32 (``_f32``),
  row-major arrays, C99 (``gcc -O2 -Wall -Werror`` clean). A reduction (``sum``, ``mean``,
  ``var``) and every node of size ``"1"`` is one number per batch row, a local read without the
  unit index wherever a pointwise expression broadcasts it; ``var`` is two-pass, the mean of the
  squared deviations from its ``center`` mean node. A set input is (batch, L, n), L = the size
  ``set``, fixed over time (the sequence passes the same pointer to every step); a node with the
  set axis is an array of L rows (``V_x[m][j]``, or ``V_x[m]`` for size 1) computed member by
  member, reading values without the axis as they are (broadcast over the members); ``setsum`` /
  ``setmax`` reduce over the members, and ``lin`` of a set input is computed per member.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import sympy
from sympy.printing.c import C99CodePrinter

from . import __version__, files
from .cell import Cell, load
from .codegen import fold_constants, generate, readable_step
from .errors import LstmVerifyError
from .functions import BY_SYMPY
from .hygiene import audit_python, c_comment, quoted_lines
from .ir import Affine, Pointwise, Reduce, dependencies
from .spec import SCALAR, SET, display

TARGETS = ("numpy", "torch", "c")
SUFFIX = {"numpy": ".py", "torch": ".py", "c": ".c"}


def default_path(cell: Cell, target: str) -> str:
    return f"{cell.name}_{target}{SUFFIX[target]}"


def _command(cell: Cell, target: str) -> str:
    return f"lstm-verify export {cell.name} --target {target} -o {default_path(cell, target)}"


def _shape_text(cell: Cell, name: str) -> str:
    for w in cell.ir.weights:
        if w.name == name:
            mask = "" if w.mask is None else ", structural zeros where the mask fails"
            return f"({w.out_dim}, {w.in_dim}){mask}"
    return f"({cell.ir.dims[name]},)"


def _torch_places(cell: Cell) -> dict:
    """Spec parameter -> where torch keeps it, from the spec's first layout."""
    from .check import torch_layouts

    out: dict = {}
    for layout in torch_layouts(cell)[:1]:
        for tensor, blocks in layout.tensors:
            for k, b in enumerate(blocks):
                out.setdefault(b, []).append(f"{layout.target}.{tensor} block {k}"
                                             + (" (transposed)" if tensor in layout.transpose else ""))  # fmt: skip
    return {k: " + ".join(v) for k, v in out.items()}


def _about(cell: Cell, target: str) -> list[str]:
    """What the exported file says of itself. It holds spec text (title, sources, equations,
    notes, file and layout names), so it reaches the output only through
    :func:`hygiene.quoted_lines` (Python) or :func:`hygiene.c_comment` (C)."""
    ir = cell.ir
    spec = ir.spec
    places = _torch_places(cell)
    lines = [
        f"{ir.name}: {spec.title}",
        "",
        f"Exported by lstm-verify {__version__} (target {target}) from spec {Path(spec.path).name},",
        f"sha256 {spec.sha256}.",
        f"Regenerate: {_command(cell, target)}",
        "",
        "Sources: " + "; ".join(spec.cite),
        "Equations (lin = affine map: one weight per argument, plus a bias; h' = new value):",
        *[f"    {e.text}" for e in spec.equations],
        "",
        f"Inputs: {', '.join(f'{n} ({d})' for n, d in ir.inputs)}. "
        f"State: {', '.join(f'{n} ({d})' for n, d in ir.states)}. Output: {ir.output}.",
        "Parameters (weights stored (out, in), as torch stores them):",
    ]
    for name in ir.param_names:
        where = f"  = {places[name]}" if name in places else ""
        lines.append(f"    {name}: {_shape_text(cell, name)}{where}")
    for b, dim, bs in ir.buffers:
        opts = ", ".join(f"{k}={v}" for k, v in bs.options)
        lines.append(f"    {b}: ({dim},) fixed buffer, {bs.init}({opts})")
    if places:
        lines.append("A parameter in two torch tensors is their sum (torch's bias_ih + bias_hh).")
    if spec.notes:
        lines += ["", *_wrap(f"Note: {spec.notes}", 95)]
    return [line.rstrip() for line in lines]


def _wrap(text, width):
    import textwrap

    return textwrap.wrap(text, width)


# --------------------------------------------------------------------------- Python targets

# a cell with set inputs: the Layer passes them on (after the per-step inputs) and takes the
# batch size from the first per-step input
_TORCH_LAYER_SETS = [
    ("    forward(inputs, state=None, t0=0): inputs (T, B, n) (a dict for several inputs);\n",
     "    forward(inputs, state=None, t0=0): inputs (T, B, n) (a dict for several inputs; set\n"
     "    inputs (B, L, n), fixed over time);\n"),
    ("first = next(iter(inputs.values()))", "first = inputs[INPUTS[0]]"),
    ("names = (pnames, tuple(INPUTS), tuple(STATES))",
     "names = (pnames, tuple(INPUTS) + tuple(_SETS), tuple(STATES))"),
    ("[inputs[n] for n in INPUTS]", "[inputs[n] for n in INPUTS + _SETS]"),
]

_TORCH_LAYER = '''

class SequenceFunction(torch.autograd.Function):
    """The generated forward and backward as one autograd node."""

    @staticmethod
    def forward(ctx, t0, names, *tensors):
        k, m = len(names[0]), len(names[1])
        params = dict(zip(names[0], tensors[:k]))
        inputs = dict(zip(names[1], tensors[k : k + m]))
        state = dict(zip(names[2], tensors[k + m :]))
        out, final, cache = forward(params, inputs, state, t0, True)
        ctx.params, ctx.cache, ctx.names = params, cache, names
        return (out, *[final[s] for s in names[2]])

    @staticmethod
    def backward(ctx, d_out, *d_final):
        d_state = dict(zip(ctx.names[2], d_final))
        grads, d_inputs, d_state0 = backward(ctx.params, ctx.cache, d_out, d_state)
        flat = [grads.get(n) if n in PARAM_SHAPES else None for n in ctx.names[0]]
        flat += [d_inputs[n] for n in ctx.names[1]] + [d_state0[n] for n in ctx.names[2]]
        return (None, None, *flat)


def init_params(sizes, seed=0, dtype=torch.float32, device=None):
    """torch.nn's default initialisation, U(-1/sqrt(hidden), 1/sqrt(hidden)), and the buffers."""
    g = torch.Generator().manual_seed(seed)
    k = 1 / math.sqrt(sizes.get("hidden", 1))
    out = {}
    for name, dims in PARAM_SHAPES.items():
        shape = tuple(sizes[d] for d in dims)
        w = torch.rand(shape, generator=g, dtype=torch.float64) * 2 - 1
        out[name] = (w * k).to(dtype=dtype, device=device)
    for name, (dim, init, options) in BUFFERS.items():
        v = _BUFFER_INITS[init](sizes[dim], options)
        out[name] = torch.tensor(v, dtype=dtype, device=device)
    return out


class Layer(torch.nn.Module):
    """A trainable recurrent layer whose backward is the generated one.

    forward(inputs, state=None, t0=0): inputs (T, B, n) (a dict for several inputs);
    returns (outputs (T, B, n), final state dict)."""

    def __init__(self, sizes, seed=0, dtype=torch.float32, device=None, params=None):
        super().__init__()
        params = params if params is not None else init_params(sizes, seed, dtype, device)
        for name, value in params.items():
            value = torch.as_tensor(value, dtype=dtype, device=device)
            if name in BUFFERS:
                self.register_buffer(name, value)
            else:
                self.register_parameter(name, torch.nn.Parameter(value))

    def forward(self, inputs, state=None, t0=0):
        if not isinstance(inputs, dict):
            inputs = {INPUTS[0]: inputs}
        params = dict(self.named_parameters()) | dict(self.named_buffers())
        first = next(iter(inputs.values()))
        if state is None:
            state = {}
            for s in STATES:
                shape = (first.shape[1], params[_WIDTH_OF[s]].shape[0])
                state[s] = torch.zeros(shape, dtype=first.dtype, device=first.device)
        pnames = tuple(PARAM_SHAPES) + tuple(BUFFERS)
        leaves = [params[n] for n in pnames] + list(inputs.values()) + list(state.values())
        if not (torch.is_grad_enabled() and any(t.requires_grad for t in leaves)):
            out, final, _ = forward(params, inputs, state, t0, False)  # inference: nothing saved
            return out, final
        names = (pnames, tuple(INPUTS), tuple(STATES))
        tensors = [params[n] for n in pnames] + [inputs[n] for n in INPUTS]
        tensors += [state[s] for s in STATES]
        out, *final = SequenceFunction.apply(t0, names, *tensors)
        return out, dict(zip(STATES, final))
'''

_BUFFER_INIT_CODE = {
    "clockwork_periods": '''
def _clockwork_periods(n, options):
    modules = int(options.get("modules", 4))
    base = int(options.get("base", 2))
    return [float(base ** (k * modules // n)) for k in range(n)]
''',
    "heads": '''
def _heads(n, options):
    heads = int(options.get("heads", 4))
    return [float(k * heads // n) for k in range(n)]
''',
}


def _python(cell: Cell, target: str) -> str:
    ir = cell.ir
    body = generate(ir, target, header=False, kernels=False)  # exports stay plain torch
    doc = quoted_lines(_about(cell, target), indent="    ")
    tables = [
        "",
        "",
        "# shapes by size name, as the spec writes them",
        _table("PARAM_SHAPES", "{}", [f"{n!r}: {_dims(ir, n)!r}" for n in ir.param_names]),
        _table("BUFFERS", "{}", [f"{b!r}: ({d!r}, {bs.init!r}, {dict(bs.options)!r})"
                                 for b, d, bs in ir.buffers]),
        _table("INPUTS", "[]", [repr(n) for n, _ in ir.inputs]),
        *([_table("_SETS", "[]", [repr(n) for n, _ in ir.sets])] if ir.sets else []),
        _table("STATES", "{}", [f"{s!r}: {d!r}" for s, d in ir.states]),
    ]
    text = doc + "\n" + body + "\n".join(tables) + "\n\n\n" + readable_step(ir, target) + "\n\n"
    if target == "torch":
        inits = "".join(_BUFFER_INIT_CODE[bs.init] for _, _, bs in ir.buffers)
        width_of = [f"{s!r}: {_param_of_width(ir, d)!r}" for s, d in ir.states]
        buffer_inits = [f"{bs.init!r}: _{bs.init}" for _, _, bs in ir.buffers]
        text += "\n" + _table("_WIDTH_OF", "{}", width_of) + "\n" + inits
        text += "\n" + _table("_BUFFER_INITS", "{}", buffer_inits)
        layer = _TORCH_LAYER
        for a, b in _TORCH_LAYER_SETS if ir.sets else ():
            assert a in layer, a
            layer = layer.replace(a, b)
        text += "\n" + layer
        text = text.replace("\nimport torch\n", "\nimport math\n\nimport torch\n", 1)
    text = text.rstrip("\n") + "\n"
    audit_python(text, f"export of {ir.name} ({target})")
    return text


def _dims(ir, name):
    for w in ir.weights:
        if w.name == name:
            return (w.out_dim, w.in_dim)
    return (ir.dims[name],)


def _param_of_width(ir, dim):
    """A parameter whose first axis has size ``dim`` (to size a zero state)."""
    for name in ir.param_names:
        if _dims(ir, name)[0] == dim:
            return name
    raise LstmVerifyError(f"{ir.name}: no parameter has size {dim!r} on its first axis")


def _table(name: str, brackets: str, items: list[str]) -> str:
    """``NAME = {a, b}`` on one line if it fits in 100 columns, else one item per line."""
    line = f"{name} = {brackets[0]}{', '.join(items)}{brackets[1]}"
    if len(line) <= 100:
        return line
    return f"{name} = {brackets[0]}\n" + "".join(f"    {item},\n" for item in items) + brackets[1]


# --------------------------------------------------------------------------- C target


class _CPrinter(C99CodePrinter):
    def __init__(self, suffix, real):
        super().__init__()
        self.suffix, self.real = suffix, real

    def _print_Pow(self, expr):
        base, e = expr.as_base_exp()
        if e.is_Rational and e.q == 2 and abs(e.p) <= 17:  # base**(k/2), k odd: s, s*base, ...
            s = f"lv_sqrt{self.suffix}({self._print(base)})"
            k = abs(int(e.p))
            prod = s if k == 1 else f"({s}*{self._print(base ** ((k - 1) // 2))})"
            return prod if e > 0 else f"(1/{prod})"
        if e.is_Integer and 0 < e <= 8:
            b = self.parenthesize(base, 100)
            return "(" + "*".join([b] * int(e)) + ")"
        if e.is_Integer and -8 <= e < 0:
            return f"(1/{self._print(base ** -e)})"
        raise LstmVerifyError(f"exponent {e} cannot be exported to C")

    def _print_Float(self, expr):
        return repr(float(expr))

    def _print_Rational(self, expr):
        return f"({float(expr.p)!r}/{float(expr.q)!r})"

    def _print_Integer(self, expr):
        return f"{float(expr)!r}"

    def _print_Function(self, expr):
        f = BY_SYMPY.get(type(expr))
        if f is None:
            return super()._print_Function(expr)
        args = ", ".join(self._print(a) for a in expr.args)
        return f"lv_{f.name}{self.suffix}({args})"

    def _print_tanh(self, expr):
        return f"lv_tanh{self.suffix}({self._print(expr.args[0])})"

    def _print_exp(self, expr):
        return f"lv_exp{self.suffix}({self._print(expr.args[0])})"

    def _print_log(self, expr):
        return f"lv_log{self.suffix}({self._print(expr.args[0])})"


_C_HELPERS = {
    "sigmoid": """static {T} lv_sigmoid{S}({T} x) {{
    /* stable: never exp of a large positive number */
    {T} e = {EXP}(-{FABS}(x));
    return x >= 0 ? 1 / (1 + e) : e / (1 + e);
}}""",
    "tanh": "static {T} lv_tanh{S}({T} x) {{ return {TANH}(x); }}",
    "exp": "static {T} lv_exp{S}({T} x) {{ return {EXP}(x); }}",
    "sqrt": "static {T} lv_sqrt{S}({T} x) {{ return {SQRT}(x); }}",
    "relu": "static {T} lv_relu{S}({T} x) {{ return x > 0 ? x : 0; }}",
    "hard_sigmoid": """static {T} lv_hard_sigmoid{S}({T} x) {{
    {T} y = x / 6 + ({T})0.5;
    return y < 0 ? 0 : (y > 1 ? 1 : y);
}}""",
    "log": "static {T} lv_log{S}({T} x) {{ return {LOG}(x); }}",
    "softplus": """static {T} lv_softplus{S}({T} x) {{
    /* log(1 + exp(x)) without overflow: max(x, 0) + log1p(exp(-|x|)) */
    return (x > 0 ? x : 0) + {LOG1P}({EXP}(-{FABS}(x)));
}}""",
    "max": "static {T} lv_max{S}({T} a, {T} b) {{ return (a >= b || a != a) ? a : b; }}",
    "min": "static {T} lv_min{S}({T} a, {T} b) {{ return (a <= b || a != a) ? a : b; }}",
    "tick": "static {T} lv_tick{S}({T} t, {T} period) {{ return {FMOD}(t, period) == 0 ? 1 : 0; }}",
}


def _used_functions(ir) -> list[str]:
    names = set()
    for node in ir.nodes:
        if isinstance(node, Pointwise):
            expr = fold_constants(node.expr)
            for f in expr.atoms(sympy.Function):
                if type(f) in BY_SYMPY:
                    names.add(BY_SYMPY[type(f)].name)
            if any(e.exp.is_Rational and e.exp.q == 2 for e in expr.atoms(sympy.Pow)):
                names.add("sqrt")
    return [n for n in _C_HELPERS if n in names]


# Spec names that are struct members (parameters, buffers, sizes) keep their names: they are the
# C API. C keywords and the object-like macros of the included headers (C99/C11, POSIX and
# glibc's defaults, and gcc's predefined `unix`, `linux`) cannot be members.
_C_RESERVED = frozenset("""
auto break case char const continue default do double else enum extern float for goto if inline
int long register restrict return short signed sizeof static struct switch typedef union
unsigned void volatile while alignas alignof bool constexpr false nullptr static_assert
thread_local true typeof typeof_unqual asm
NULL EXIT_FAILURE EXIT_SUCCESS RAND_MAX MB_CUR_MAX HUGE_VAL HUGE_VALF HUGE_VALL INFINITY NAN
FP_INFINITE FP_NAN FP_NORMAL FP_SUBNORMAL FP_ZERO FP_FAST_FMA FP_FAST_FMAF FP_FAST_FMAL FP_ILOGB0
FP_ILOGBNAN MATH_ERRNO MATH_ERREXCEPT math_errhandling errno M_E M_LOG2E M_LOG10E M_LN2 M_LN10
M_PI M_PI_2 M_PI_4 M_1_PI M_2_PI M_2_SQRTPI M_SQRT2 M_SQRT1_2 MAXFLOAT HUGE WNOHANG WUNTRACED
WSTOPPED WEXITED WCONTINUED WNOWAIT NFDBITS FD_SETSIZE BYTE_ORDER BIG_ENDIAN LITTLE_ENDIAN
PDP_ENDIAN unix linux i386
""".split())


def _c_check_names(ir) -> None:
    members = list(ir.param_names) + [b for b, _, _ in ir.buffers] + list(ir.size_names)
    bad = sorted({m for m in members if m in _C_RESERVED})
    if bad:
        raise LstmVerifyError(
            f"{ir.name}: cannot export to C: {', '.join(bad)} would be C struct members but "
            "are C keywords or macros of the C library; rename them in the spec"
        )


def _c(cell: Cell) -> str:
    ir = cell.ir
    _c_check_names(ir)
    name = ir.name
    sizes = list(ir.size_names)
    sets = ", <set inputs (batch, L, n)>" if ir.sets else ""
    out = ["/*", *[(" * " + c_comment(line)).rstrip() for line in _about(cell, "c")], " *",
           " * API (row-major; batch rows of length <size>; p->W[j*in + k] is weight row j, column k):",
           f" *   {name}_step_f64(n, p, <inputs>{sets}, <states>, <new states>, batch, t)",
           f" *   {name}_sequence_f64(n, p, <input sequences (T, batch, n)>{sets}, <states, updated in place>,",
           " *                      outputs (T, batch, n) or NULL, T, batch, t0)  -> 0, or -1 if out of memory",
           " * and the same with _f32 and float. Forward inference only.",
           *_c_set_text(ir),
           " */", "", "#include <math.h>", "#include <stdlib.h>", "#include <string.h>", "",
           f"typedef struct {{ {' '.join(f'int {s};' for s in sizes)} }} {name}_sizes;", ""]  # fmt: skip
    for suffix, real, fn in (("_f64", "double", ""), ("_f32", "float", "f")):
        names = dict(T=real, S=suffix, EXP=f"exp{fn}", FABS=f"fabs{fn}", TANH=f"tanh{fn}", FMOD=f"fmod{fn}",
                     LOG=f"log{fn}", LOG1P=f"log1p{fn}", SQRT=f"sqrt{fn}")
        out += [_C_HELPERS[f].format(**names) for f in _used_functions(cell.ir)] + [""]
        out += _c_backend(cell, suffix, real)
    return "\n".join(out).rstrip() + "\n"


def _c_set_text(ir) -> list[str]:
    """What the header says of set inputs (nothing for a cell without them)."""
    if not ir.sets:
        return []
    names = ", ".join(f"{x} ({d})" for x, d in ir.sets)
    return [" * Set inputs: " + c_comment(names) + ".",
            f" * A set input is (batch, L, size) with L = n->{SET} >= 1 members, fixed over time: the",
            " * sequence passes the same array to every step. Values with the set axis are computed",
            " * member by member."]  # fmt: skip


def _c_backend(cell: Cell, suffix: str, real: str) -> list[str]:
    ir = cell.ir
    name = ir.name
    printer = _CPrinter(suffix, real)
    params = list(ir.param_names) + [b for b, _, _ in ir.buffers]
    ptype = f"{name}_params{suffix}"
    lines = ["typedef struct {", *[f"    const {real} *{p};" for p in params], f"}} {ptype};", ""]
    inputs = [n for n, _ in ir.inputs] + [n for n, _ in ir.sets]  # per-step inputs, then set inputs
    states = [s for s, _ in ir.states]
    # spec names reach C identifiers only behind an upper-case role prefix (A_ argument, N_ new
    # state, R_ batch row, V_ node, X_ next state); the generator's own locals are lower case
    args = ", ".join([f"const {real} *A_{x}" for x in inputs] + [f"const {real} *A_{s}" for s in states]
                     + [f"{real} *N_{s}" for s in states])  # fmt: skip
    if ir.sets:
        lines.append("/* One step for a batch: new states from inputs and states, (batch, size) each, and set")
        lines.append(f"   inputs, (batch, n->{SET}, size) each. */")
    else:
        lines.append("/* One step for a batch: new states from inputs and states, (batch, size) each. */")
    lines.append(f"void {name}_step{suffix}(const {name}_sizes *n, const {ptype} *p, {args}, int batch, long t)")
    lines.append("{")
    lines.append("    for (int b = 0; b < batch; ++b) {")
    ind = "        "
    # rows of the vectors some node reads (a state whose new value ignores its old one has none)
    read = {a for node in ir.nodes for a in dependencies(node)}
    for x, d in ir.inputs + ir.sets + ir.states:
        if x in read:
            rows = f"(size_t)b * n->{SET} * n->{d}" if x in ir.set_vectors else f"(size_t)b * n->{d}"
            lines.append(f"{ind}const {real} *R_{x} = A_{x} + {rows};")
    vec = {x: f"R_{x}" for x in inputs} | {s: f"R_{s}" for s in states}
    for node in ir.nodes:
        d = node.dim
        var = f"V_{node.name}"
        if isinstance(node, Reduce):
            lines += _c_reduce(ir, node, real, vec, ind)
            continue
        if node.name in ir.set_vectors:  # one row per member of the set
            lines += _c_set_node(ir, node, real, vec, printer, ind)
            continue
        if d == SCALAR:  # one number per batch row
            expr = _c_expr(ir, node, real, vec, printer)
            lines.append(f"{ind}{real} {var} = {expr};")
            continue
        lines.append(f"{ind}{real} {var}[n->{d}];")
        lines.append(f"{ind}for (int j = 0; j < n->{d}; ++j) {{")
        if isinstance(node, Affine):
            lines.append(f"{ind}    {real} acc = {f'p->{node.bias}[j]' if node.bias else '0'};")
            for w, a in node.terms:
                weight = next(x for x in ir.weights if x.name == w)
                src = vec.get(a, f"V_{a}")
                lines.append(f"{ind}    for (int k = 0; k < n->{weight.in_dim}; ++k)")
                cond = _c_mask(weight.mask)
                term = f"p->{w}[(size_t)j * n->{weight.in_dim} + k] * {src}[k]"
                lines.append(f"{ind}        " + (f"if ({cond}) acc += {term};" if cond else f"acc += {term};"))
            lines.append(f"{ind}    {var}[j] = acc;")
        else:
            lines.append(f"{ind}    {var}[j] = {_c_expr(ir, node, real, vec, printer)};")
        lines.append(f"{ind}}}")
    for s, d in ir.states:
        lines.append(f"{ind}memcpy(N_{s} + (size_t)b * n->{d}, V_{ir.new(s)}, sizeof({real}) * (size_t)n->{d});")
    lines += ["    }", "}", ""]
    # sequence
    seq_args = ", ".join([f"const {real} *A_{x}" for x in inputs] + [f"{real} *A_{s}" for s in states])
    out_dim = dict(ir.states)[ir.output]
    if ir.sets:
        lines.append(f"/* A sequence: inputs (T, batch, size); set inputs (batch, n->{SET}, size), the same at every")
        lines.append(f"   step; states updated in place; outputs (T, batch, {out_dim}) receives the output state after")
        lines.append("   every step (NULL: not kept). */")
    else:
        lines.append(f"/* A sequence: inputs (T, batch, size); states updated in place; outputs (T, batch, {out_dim})")
        lines.append("   receives the output state after every step (NULL: not kept). */")
    lines.append(f"int {name}_sequence{suffix}(const {name}_sizes *n, const {ptype} *p, {seq_args}, {real} *outputs, "
                 f"int T, int batch, long t0)")  # fmt: skip
    lines.append("{")
    for s, d in ir.states:
        lines.append(f"    {real} *X_{s} = malloc(sizeof({real}) * (size_t)batch * (size_t)n->{d});")
    lines.append("    if (" + " || ".join(f"!X_{s}" for s in states) + ") {")
    lines += [f"        free(X_{s});" for s in states] + ["        return -1;", "    }"]
    lines.append("    for (int t = 0; t < T; ++t) {")
    call = ", ".join([f"A_{x} + (size_t)t * batch * n->{d}" for x, d in ir.inputs] + [f"A_{x}" for x, _ in ir.sets]
                     + [f"A_{s}" for s in states] + [f"X_{s}" for s in states])  # fmt: skip
    lines.append(f"        {name}_step{suffix}(n, p, {call}, batch, t0 + t);")
    for s, d in ir.states:
        lines.append(f"        memcpy(A_{s}, X_{s}, sizeof({real}) * (size_t)batch * (size_t)n->{d});")
    lines.append("        if (outputs)")
    lines.append(f"            memcpy(outputs + (size_t)t * batch * n->{out_dim}, A_{ir.output}, "
                 f"sizeof({real}) * (size_t)batch * (size_t)n->{out_dim});")  # fmt: skip
    lines.append("    }")
    lines += [f"    free(X_{s});" for s in states] + ["    return 0;", "}", ""]
    return lines


def _c_value(ir, name: str, vec: dict, m: str = "m", j: str = "j") -> str:
    """The C expression of value ``name`` at unit ``j`` (and member ``m`` if it has the set axis):
    a set input's row is (members, size), a node with the set axis V_x[m][j] (V_x[m] for size 1);
    a size-1 value is one local, an input or state row R_x[j], a node V_x[j], a parameter or
    buffer p->x[j]."""
    d = ir.dims.get(name)
    if name in ir.set_vectors:
        if name in vec:  # a set input
            return f"{vec[name]}[(size_t){m} * n->{d} + {j}]"
        return f"V_{name}[{m}]" if d == SCALAR else f"V_{name}[{m}][{j}]"
    if d == SCALAR:
        return f"V_{name}"
    if name in vec:
        return f"{vec[name]}[{j}]"
    if name in ir.node_map:
        return f"V_{name}[{j}]"
    return f"p->{name}[{j}]"  # diagonal parameter or buffer


def _c_expr(ir, node, real: str, vec: dict, printer) -> str:
    """A pointwise node's value at unit ``j`` (or its one value, for a node of size 1): vectors
    are read at ``[j]``, size-1 values (reductions and nodes of size 1) as they are. In a node
    with the set axis (member ``m``), values with the axis are read at member ``m``, values
    without it as they are (broadcast over the members)."""
    subs = {}
    for sym in node.expr.free_symbols:
        n_ = sym.name
        if n_ == ir.step:
            subs[sym] = sympy.Symbol(f"(({real})t)")
        elif node.dim == SCALAR and ir.dims.get(n_) != SCALAR:
            raise LstmVerifyError(f"{ir.name}: size-1 node {display(node.name)} reads the vector "
                                  f"{display(n_)}; cannot export to C")  # fmt: skip
        else:
            subs[sym] = sympy.Symbol(_c_value(ir, n_, vec))
    return printer.doprint(fold_constants(node.expr).xreplace(subs))


def _c_set_node(ir, node, real: str, vec: dict, printer, ind: str) -> list[str]:
    """A pointwise or affine node with the set axis: ``V_x[n->set][n->size]`` (``V_x[n->set]``
    for size 1), member by member. An affine node's terms without the axis are summed once per
    unit and shared by the members; its set-input terms are added per member."""
    d, var = node.dim, f"V_{node.name}"
    if d == SCALAR:
        return [f"{ind}{real} {var}[n->{SET}];",
                f"{ind}for (int m = 0; m < n->{SET}; ++m) {{",
                f"{ind}    {var}[m] = {_c_expr(ir, node, real, vec, printer)};",
                f"{ind}}}"]  # fmt: skip
    lines = [f"{ind}{real} {var}[n->{SET}][n->{d}];"]
    if not isinstance(node, Affine):
        return lines + [f"{ind}for (int m = 0; m < n->{SET}; ++m) {{",
                        f"{ind}    for (int j = 0; j < n->{d}; ++j) {{",
                        f"{ind}        {var}[m][j] = {_c_expr(ir, node, real, vec, printer)};",
                        f"{ind}    }}", f"{ind}}}"]  # fmt: skip

    def term_lines(w, a, acc, deeper):
        weight = next(x for x in ir.weights if x.name == w)
        cond = _c_mask(weight.mask)
        term = f"p->{w}[(size_t)j * n->{weight.in_dim} + k] * {_c_value(ir, a, vec, 'm', 'k')}"
        return [f"{deeper}for (int k = 0; k < n->{weight.in_dim}; ++k)",
                f"{deeper}    " + (f"if ({cond}) {acc} += {term};" if cond else f"{acc} += {term};")]  # fmt: skip

    lines.append(f"{ind}for (int j = 0; j < n->{d}; ++j) {{")
    lines.append(f"{ind}    {real} acc = {f'p->{node.bias}[j]' if node.bias else '0'};")
    for w, a in node.terms:
        if a not in ir.set_vectors:
            lines += term_lines(w, a, "acc", ind + "    ")
    lines.append(f"{ind}    for (int m = 0; m < n->{SET}; ++m) {{")
    lines.append(f"{ind}        {real} acc_m = acc;")
    for w, a in node.terms:
        if a in ir.set_vectors:
            lines += term_lines(w, a, "acc_m", ind + "        ")
    lines += [f"{ind}        {var}[m][j] = acc_m;", f"{ind}    }}", f"{ind}}}"]
    return lines


def _c_reduce(ir, node: Reduce, real: str, vec: dict, ind: str) -> list[str]:
    """A reduction over the units of its arguments together: one number per batch row (per
    member, in a node with the set axis). ``var`` is two-pass: the mean of the squared
    deviations from its center (the mean node, already computed). ``setsum`` / ``setmax``
    reduce over the members: a value of the argument's size without the set axis."""
    if node.over_set:
        return _c_set_reduce(ir, node, real, vec, ind)
    if node.name in ir.set_vectors:  # one number per member
        var = f"V_{node.name}[m]"
        lines = [f"{ind}{real} V_{node.name}[n->{SET}];", f"{ind}for (int m = 0; m < n->{SET}; ++m) {{"]
        lines += _c_units_sum(ir, node, real, vec, ind + "    ", var, f"{var} = 0;")
        return lines + [f"{ind}}}"]
    var = f"V_{node.name}"
    return _c_units_sum(ir, node, real, vec, ind, var, f"{real} {var} = 0;")


def _c_units_sum(ir, node: Reduce, real: str, vec: dict, ind: str, var: str, first: str) -> list[str]:
    lines = [f"{ind}{first}"]
    for a in node.args:
        lines.append(f"{ind}for (int j = 0; j < n->{ir.dims[a]}; ++j) {{")
        if node.op == "var":
            lines.append(f"{ind}    {real} dev = {_c_value(ir, a, vec)} - {_c_value(ir, node.center, vec)};")
            lines.append(f"{ind}    {var} += dev * dev;")
        else:
            lines.append(f"{ind}    {var} += {_c_value(ir, a, vec)};")
        lines.append(f"{ind}}}")
    if node.op != "sum":
        count = " + ".join(f"n->{ir.dims[a]}" for a in node.args)
        lines.append(f"{ind}{var} /= ({real})({count});")
    return lines


def _c_set_reduce(ir, node: Reduce, real: str, vec: dict, ind: str) -> list[str]:
    """``setsum`` (0 plus every member in order) or ``setmax`` (member 0, then every larger
    member; NaN propagates, as numpy's max) of the one argument, at every unit."""
    (a,) = node.args
    d, var = node.dim, f"V_{node.name}"
    at = "" if d == SCALAR else "[j]"
    first = "0" if node.op == "setsum" else _c_value(ir, a, vec, "0")
    x = _c_value(ir, a, vec)
    if node.op == "setsum":
        body, start = f"{var}{at} += {x};", "0"
    else:
        body, start = f"if ({x} > {var}{at} || {x} != {x}) {var}{at} = {x};", "1"
    loop = [f"for (int m = {start}; m < n->{SET}; ++m) {{", f"    {body}", "}"]
    if d == SCALAR:
        return [f"{ind}{real} {var} = {first};", *[ind + line for line in loop]]
    return [f"{ind}{real} {var}[n->{d}];", f"{ind}for (int j = 0; j < n->{d}; ++j) {{",
            f"{ind}    {var}[j] = {first};", *[ind + "    " + line for line in loop], f"{ind}}}"]  # fmt: skip


def _c_mask(mask) -> str | None:
    if mask is None:
        return None

    def side(o):
        if o.buffer is None:
            return repr(float(o.value))
        return f"p->{o.buffer}[{'k' if o.side == 'in' else 'j'}]"

    return f"{side(mask.left)} {mask.op} {side(mask.right)}"


# --------------------------------------------------------------------------- entry points


def export(cell, target: str) -> str:
    """The exported module's text."""
    if target not in TARGETS:
        raise LstmVerifyError(f"unknown target {target!r}; choose from {', '.join(TARGETS)}")
    cell = cell if isinstance(cell, Cell) else load(cell)
    return _c(cell) if target == "c" else _python(cell, target)


def write(cell, target: str, path=None, force: bool = False) -> Path:
    """Write the export atomically; an existing file is kept unless ``force``, and only a regular
    file is ever replaced."""
    cell = cell if isinstance(cell, Cell) else load(cell)
    path = Path(path or default_path(cell, target))
    if path.is_dir():
        path = path / default_path(cell, target)
    if os.path.lexists(path) and not force:
        raise LstmVerifyError(f"{path} exists; pass --force to replace it")
    text = export(cell, target)
    # a file that appears meanwhile is never overwritten; with force only a regular file is
    # replaced (never a link, folder, FIFO or device)
    return files.write_file(path, text, force)


def c_compiler() -> str | None:
    return shutil.which("cc") or shutil.which("gcc")


__all__ = ["TARGETS", "export", "write", "default_path", "c_compiler"]
