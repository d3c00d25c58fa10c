"""Cells whose sequence is a parallel scan, and their generated scan forward and backward.

A cell is a scan when every new state is a diagonal linear recurrence, ``s' = a*s + b``
elementwise, with ``a`` and ``b`` free of every state: its gates and candidate read only the
inputs (minGRU, minLSTM). :func:`scan_form` decides this from the IR, never from the cell's
name: it inlines the pointwise nodes that read a state into the new state's expression, and
requires that expression to be a polynomial of degree at most one in its own previous state
and to read no other state; ``a`` is its exact derivative with respect to that state and ``b``
its value at state zero. A cell whose state enters a ``lin(...)`` (a gate or candidate that
reads the state), or whose new state is not affine in its old one, gets a :class:`ScanError`
naming the state and the equation.

The generated module (:func:`generate`) has the signatures of the sequential one (see
:mod:`lstm_verify.codegen`), so :class:`ScanImplementation` is an
:class:`~lstm_verify.cell.Implementation` with the same checks, and ``cell.scan("numpy")`` or
``cell.scan("torch")`` stands in for ``cell.numpy()`` or ``cell.torch()``:

* forward: every node the new states read is computed for the whole sequence at once (one
  GEMM per argument, pointwise code over (T, B, n) arrays), then ``a`` and ``b``, then the
  states by an associative scan over the affine maps ``s -> a*s + b``;
* backward: the gradient with respect to each new state, ``lam_t = g_t + a_{t+1} * lam_{t+1}``
  (``g_t`` the output gradient at step t, the final-state gradient entering at t = T - 1),
  is the same scan run in reverse; then the exact per-step partial derivatives (those of
  :func:`lstm_verify.derive.partials` for the nodes, and of the inlined new state) carry
  ``lam`` to every node, the weights, biases, diagonal parameters and inputs for all steps at
  once. The gradient with respect to the initial state is ``a_0 * lam_0``.

The scan is Blelloch's (an up-sweep and a down-sweep of log2(T) levels each, O(T) work, in
place on copies) when no gradient is recorded, and Hillis and Steele's (log2(T) levels,
out of place, O(T log T) work) while torch autograd records the forward. Both compose the
maps as ``(a2, b2) o (a1, b1) = (a2*a1, a2*b1 + b2)``: products and sums only, never a
division. Feng et al. (2024) run their scan in log space, with cumulative sums of log a, to
keep the cumulative products of gates, which underflow over long sequences, from being
divided by; this composition never divides, so a product that underflows to zero only drops a
contribution that the sequential loop loses by underflow as well, and it makes no infinity or
NaN. (A cell with |a| > 1 overflows in either form.)
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import sympy

from . import codegen, runtime
from .derive import forward_values, partials
from .cell import Implementation
from .errors import LstmVerifyError
from .extras import require
from .hygiene import quoted_lines
from .ir import Affine, CellIR, Pointwise, dependencies
from .spec import display

BACKENDS = codegen.BACKENDS


class ScanError(LstmVerifyError, ValueError):
    """The cell's new states are not ``a*s + b`` with ``a`` and ``b`` free of every state."""


@dataclass(frozen=True)
class Recurrence:
    """One state's step as a diagonal linear recurrence: ``new = a*state + b``."""

    state: str
    a: sympy.Expr  # coefficient of the previous state, free of every state
    b: sympy.Expr  # free of every state
    new: sympy.Expr  # the new value with the state-reading pointwise nodes inlined

    def __str__(self) -> str:
        s = display(self.state)
        return f"{s}' = a*{s} + b with a = {_plain(self.a)}, b = {_plain(self.b)}"


@dataclass(frozen=True)
class ScanForm:
    recurrences: tuple[Recurrence, ...]  # in the order of the states
    nodes: tuple  # the state-free nodes the new states read, in codegen's schedule order


# ----------------------------------------------------------------------------- detection


@lru_cache(maxsize=64)
def scan_form(ir: CellIR) -> ScanForm:
    """The cell's step as one :class:`Recurrence` per state; :class:`ScanError` if it is not a
    scan, naming the state and the equation that make it so."""
    states = [s for s, _ in ir.states]
    reads: dict[str, set[str]] = {}  # node -> the previous states it depends on
    for node in ir.nodes:
        r = set()
        for d in dependencies(node):
            r |= {d} if d in states else reads.get(d, set())
        reads[node.name] = r
        if isinstance(node, Affine) and r:
            first = next(arg for _, arg in node.terms if arg in states or reads.get(arg))
            s = first if first in states else next(x for x in states if x in reads[first])
            raise ScanError(
                f"{ir.name} cannot run as a scan: its state {display(s)} enters lin(...) in "
                f"{node.equation!r}, so a gate or candidate reads the state and the step is not "
                f"{display(s)}' = a*{display(s)} + b with a and b free of the states"
            )
    inline = {n.name: n.expr for n in ir.nodes if isinstance(n, Pointwise) and reads[n.name]}
    recurrences = []
    for s in states:
        node = ir.node_map[ir.new(s)]
        new = _inline(node.expr, inline)
        sym = sympy.Symbol(s, real=True)
        others = sorted(x.name for x in new.free_symbols if x.name in states and x.name != s)
        if others:
            raise ScanError(
                f"{ir.name} cannot run as a scan: the new value of {display(s)} reads the state "
                f"{display(others[0])} ({node.equation!r}); a scan takes each new state from its "
                "own previous value only"
            )
        if new.is_polynomial(sym) is not True or sympy.degree(new, sym) > 1:
            raise ScanError(
                f"{ir.name} cannot run as a scan: its state {display(s)} reads itself through "
                f"{_plain(new)} ({node.equation!r}), which is not a*{display(s)} + b with a and b "
                "free of the states"
            )
        a = sympy.diff(new, sym)
        b = new.xreplace({sym: sympy.Integer(0)})
        recurrences.append(Recurrence(s, a, b, new))
    wanted: set[str] = set()
    todo = [x.name for r in recurrences for x in r.new.free_symbols]
    while todo:
        name = todo.pop()
        if name in ir.node_map and name not in wanted:
            wanted.add(name)
            todo.extend(dependencies(ir.node_map[name]))
    nodes = tuple(n for n in codegen.schedule(ir) if n.name in wanted)
    return ScanForm(tuple(recurrences), nodes)


def is_scan(ir: CellIR) -> bool:
    """Whether :func:`scan_form` accepts the cell."""
    try:
        scan_form(ir)
    except ScanError:
        return False
    return True


def _inline(expr, inline: dict) -> sympy.Expr:
    """expr with every symbol of a state-reading pointwise node replaced by its expression."""
    while True:
        hit = {s: inline[s.name] for s in expr.free_symbols if s.name in inline}
        if not hit:
            return expr
        expr = expr.xreplace(hit)


def _plain(expr) -> str:
    return sympy.sstr(expr.xreplace({s: sympy.Symbol(display(s.name)) for s in expr.free_symbols}))


# ----------------------------------------------------------------------------- the scan

SCAN_PRELUDE = {
    "numpy": '''

def _copy(_x):
    return _x.astype(_x.dtype)


def _steps(_t0, _T, _like):
    """The step counter t0 + t of every step, shaped (T, 1, 1)."""
    return (numpy.arange(_T) + _t0).astype(_like.dtype).reshape(_T, 1, 1)


def _scan(_a, _b, _s0, _reverse):
    """s_t = a_t*s_(t-1) + b_t (reverse: a_t*s_(t+1) + b_t) along axis 0, s0 entering first."""
    return _blelloch(_copy(_a), _copy(_b), _s0, _reverse)
''',
    "torch": '''

def _copy(_x):
    return _x.clone()


def _steps(_t0, _T, _like):
    """The step counter t0 + t of every step, shaped (T, 1, 1)."""
    return (torch.arange(_T, dtype=_like.dtype, device=_like.device) + _t0).reshape(_T, 1, 1)


def _scan(_a, _b, _s0, _reverse):
    """s_t = a_t*s_(t-1) + b_t (reverse: a_t*s_(t+1) + b_t) along axis 0, s0 entering first."""
    if torch.is_grad_enabled() and (_a.requires_grad or _b.requires_grad or _s0.requires_grad):
        return _hillis_steele(_a, _b, _s0, _reverse)
    return _blelloch(_a.clone(), _b.clone(), _s0, _reverse)


def _hillis_steele(_a, _b, _s0, _reverse):
    """The scan out of place, as autograd can record it: log2(T) levels of O(T) work."""
    _T = _a.shape[0]
    if _reverse:
        _b = torch.cat([_b[:-1], _a[-1:] * _s0 + _b[-1:]], 0)
    else:
        _b = torch.cat([_a[:1] * _s0 + _b[:1], _b[1:]], 0)
    _d = 1
    while _d < _T:
        if _reverse:
            _b = torch.cat([_a[:-_d] * _b[_d:] + _b[:-_d], _b[-_d:]], 0)
            _a = torch.cat([_a[:-_d] * _a[_d:], _a[-_d:]], 0)
        else:
            _b = torch.cat([_b[:_d], _a[_d:] * _b[:-_d] + _b[_d:]], 0)
            _a = torch.cat([_a[:_d], _a[_d:] * _a[:-_d]], 0)
        _d = 2 * _d
    return _b
''',
}

COMMON = '''

def _pairs(_T, _d, _first, _reverse):
    """Positions combined at one level, every 2d from _first (counted from the far end when
    _reverse), and their partners d steps nearer to the sequence's start: (r0, r1, p0, p1)."""
    if _reverse:
        _r0 = (_T - 1 - _first) % (2 * _d)
        return _r0, _T - _first, _r0 + _d, _T - _first + _d
    return _first, _T, _first - _d, _T - _d


def _blelloch(_A, _S, _s0, _reverse):
    """Work-efficient scan in place on _A and _S (Blelloch 1990): the up-sweep leaves at every
    position whose distance from the start is a multiple of 2^k the composite map of the 2^k
    steps that end there; the down-sweep composes the remaining positions with their prefix.
    Maps compose as (a2*a1, a2*b1 + b2): no division."""
    _T = _A.shape[0]
    _e = _T - 1 if _reverse else 0
    _S[_e] += _A[_e] * _s0
    _levels = []
    _d = 1
    while 2 * _d <= _T:
        _levels.append(_d)
        _r0, _r1, _p0, _p1 = _pairs(_T, _d, 2 * _d - 1, _reverse)
        _k = 2 * _d
        _S[_r0:_r1:_k] += _A[_r0:_r1:_k] * _S[_p0:_p1:_k]
        if 4 * _d <= _T:  # the top level's products are never read
            _A[_r0:_r1:_k] *= _A[_p0:_p1:_k]
        _d = 2 * _d
    for _d in _levels[::-1]:
        if 3 * _d <= _T:
            _r0, _r1, _p0, _p1 = _pairs(_T, _d, 3 * _d - 1, _reverse)
            _k = 2 * _d
            _S[_r0:_r1:_k] += _A[_r0:_r1:_k] * _S[_p0:_p1:_k]
    return _S


def _shifted(_a):
    """a_(t+1) at step t, and 1 at the last step: the coefficients of the reverse scan."""
    return _cat([_a[1:], _zeros(_a[:1].shape, _a) + 1], 0)


def _offsets(sizes):
    out = [0]
    for s in sizes:
        out.append(out[-1] + s)
    return out
'''


# ----------------------------------------------------------------------------- generation


def _groups(ir: CellIR, form: ScanForm) -> dict[str, codegen.Group]:
    """Affine terms sharing an argument: one GEMM over every step (all are hoisted here)."""
    terms: dict[str, list] = {}
    for n in form.nodes:
        if isinstance(n, Affine):
            for w, arg in n.terms:
                terms.setdefault(arg, []).append((n.name, w))
    return {a: codegen.Group(a, tuple(t), True) for a, t in terms.items()}


def _batched(ir: CellIR) -> set[str]:
    """Vectors with T and batch axes: the inputs and whatever reads them."""
    out = {n for n, _ in ir.inputs}
    for n in ir.nodes:
        if any(d in out for d in dependencies(n)):
            out.add(n.name)
    return out


def _new_partials(ir: CellIR, form: ScanForm) -> dict[str, dict[str, sympy.Expr]]:
    """d(new state)/d(symbol) for every node, input or diagonal parameter the inlined new state
    reads (not its own previous value: the reverse scan carries that), in forward values."""
    states = {s for s, _ in ir.states}
    inputs = {n for n, _ in ir.inputs}
    free = {n.name for n in form.nodes} | inputs | {d for d, _ in ir.diagonals}
    values = {e: s for e, s in forward_values(ir).items() if s.name in {n.name for n in form.nodes}}
    out = {}
    for r in form.recurrences:
        out[r.state] = {}
        for sym in sorted(r.new.free_symbols, key=lambda x: x.name):
            if sym.name in free and sym.name not in states:
                out[r.state][sym.name] = sympy.diff(r.new, sym).xreplace(values)
    return out


def generate(ir: CellIR, backend: str) -> str:
    """Source of the scan module for one backend: ``forward`` and ``backward`` with the
    signatures of :mod:`lstm_verify.codegen`'s. :class:`ScanError` if the cell is not a scan."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose from {BACKENDS}")
    form = scan_form(ir)
    gr = _groups(ir, form)
    printer = codegen.PRINTERS[backend]()
    fwd, saved = _forward(ir, form, gr, printer)
    bwd = _backward(ir, form, gr, saved, printer)
    body = codegen.PRELUDE[backend] + SCAN_PRELUDE[backend] + COMMON + "\n\n" + fwd + "\n\n\n" + bwd + "\n"
    return _header(ir, form, backend, saved) + body


def _header(ir: CellIR, form: ScanForm, backend: str, saved) -> str:
    spec = ir.spec
    lines = [
        f"Generated by lstm-verify for cell {spec.name}, backend {backend}: the sequence as an",
        "associative scan (see lstm_verify.scan).",
        f"Title: {spec.title}",
        f"Spec sha256 {spec.sha256}.",
        *[f"Source: {c}" for c in spec.cite],
        "Equations:",
        *[f"    {e.text}" for e in spec.equations],
        "Recurrences:",
        *[f"    {r}" for r in form.recurrences],
        f"Saved for the backward: {', '.join(display(s) for s in saved) or 'nothing'}.",
        "Do not edit: regenerate from the spec.",
    ]
    return quoted_lines(lines) + "\n"


def _flat(src: str) -> str:
    return f"{src}.reshape(_T * _B, {src}.shape[2])"


def _forward(ir: CellIR, form: ScanForm, gr: dict, printer) -> tuple[str, tuple[str, ...]]:
    v = codegen._v
    code = codegen._Code()
    code.indent = 0
    code("def forward(params, inputs, state, t0=0, save=False):")
    code.indent = 1
    code('"""Run the cell over a sequence as a scan; see the module header for the equations."""')
    codegen._unpack_params(code, ir, gr)
    inputs = [n for n, _ in ir.inputs]
    first = inputs[0]
    for n in inputs:
        code(f"_X_{n} = inputs[{n!r}]")
    code(f"_T, _B = _X_{first}.shape[0], _X_{first}.shape[1]")
    consts_at = len(code.lines)
    if ir.step:
        code(f"{v(ir.step)} = _steps(t0, _T, _X_{first})")
    read = {s.name for n in form.nodes if isinstance(n, Pointwise) for s in n.expr.free_symbols}
    read |= {s.name for r in form.recurrences for s in (r.a.free_symbols | r.b.free_symbols)}
    for n in inputs:
        if n in read:
            code(f"{v(n)} = _X_{n}")
    folded: dict[str, str] = {}  # affine node -> the group whose GEMM adds its bias
    for g in gr.values():  # biases ride along in a GEMM when every node of its group has one
        nodes = [ir.node_map[a] for a, _ in g.terms]
        if all(n.bias and n.name not in folded for n in nodes):
            folded |= {n.name: g.arg for n in nodes}
    done: set[str] = set()
    run: list = []
    prefix = iter(range(10**6))

    def flush():
        if run:
            codegen._cse_block(code, run, printer, f"_f{next(prefix)}_")
            run.clear()

    for node in form.nodes:
        if isinstance(node, Pointwise):
            run.append((node.name, node.expr))
            continue
        flush()
        parts = []
        for _, arg in node.terms:
            g = gr[arg]
            if arg not in done:
                done.add(arg)
                src = f"_X_{arg}" if arg in inputs else v(arg)
                product = f"{_flat(src)} @ {g.var}.T"
                if all(folded.get(a) == arg for a, _ in g.terms):
                    code(f"_bias_{arg} = _cat([{', '.join(v(ir.node_map[a].bias) for a, _ in g.terms)}], 0)")
                    product += f" + _bias_{arg}"
                code(f"_G_{arg} = ({product}).reshape(_T, _B, -1)")
            k = [a for a, _ in g.terms].index(node.name)
            parts.append(codegen._block(g, k, f"_G_{arg}"))
        if node.bias and node.name not in folded:
            parts.append(v(node.bias))
        code(f"{v(node.name)} = {' + '.join(parts)}")
    batched = _batched(ir)
    for r in form.recurrences:
        run += [(f"_ca_{r.state}", r.a), (f"_cb_{r.state}", r.b)]
    flush()
    for r in form.recurrences:
        for c in "ab":
            expr = getattr(r, c)
            if not any(s.name in batched for s in expr.free_symbols):  # broadcast to (T, B, n)
                code(f"_c{c}_{r.state} = _zeros((_T, _B, state[{r.state!r}].shape[-1]), _X_{first}) + _c{c}_{r.state}")
    for r in form.recurrences:
        code(f"_S_{r.state} = _scan(_ca_{r.state}, _cb_{r.state}, state[{r.state!r}], False)")
    # what the backward reads: the values in the partial derivatives and the GEMMs' arguments
    states = {s for s, _ in ir.states}
    names = {n.name for n in form.nodes}
    needed = set()
    for d in list(_node_partials(ir, form).values()) + list(_new_partials(ir, form).values()):
        for e in d.values():
            needed |= {s.name for s in e.free_symbols}
    needed |= {a for a in gr if a in names}
    saved = tuple(sorted(n for n in needed if n in names | states))
    code("cache = None")
    code("if save:")
    code("    _saved = {")
    for s in saved:
        if s in states:  # previous values: the initial state, then the new values but the last
            code(f"        {s!r}: _cat([state[{s!r}][None], _S_{s}[:-1]], 0),")
        else:
            code(f"        {s!r}: {v(s)},")
    for r in form.recurrences:
        code(f"        {'_a_' + r.state!r}: _ca_{r.state},")
    code("    }")
    code('    cache = {"inputs": inputs, "state0": dict(state), "t0": t0, "saved": _saved}')
    finals = ", ".join(f"{s!r}: _copy(_S_{s}[_T - 1])" for s, _ in ir.states)
    code(f"return _S_{ir.output}, {{{finals}}}, cache")
    codegen._constants(code, printer, consts_at, f"_X_{first}")
    return code.text(), saved


def _node_partials(ir: CellIR, form: ScanForm) -> dict[str, dict[str, sympy.Expr]]:
    """The exact per-step partials of the state-free pointwise nodes (derive.partials)."""
    pd = partials(ir)
    return {n.name: pd[n.name] for n in form.nodes if isinstance(n, Pointwise)}


def _backward(ir: CellIR, form: ScanForm, gr: dict, saved, printer) -> str:
    v = codegen._v
    code = codegen._Code()
    code.indent = 0
    code("def backward(params, cache, d_outputs=None, d_state=None, trace=None):")
    code.indent = 1
    code('"""Exact gradients through the sequence run by forward(..., save=True): the gradient')
    code("with respect to each new state by a reverse scan, then every step's partial derivatives")
    code("at once. A list passed as ``trace`` receives, for t = T-1 down to 0, the gradient with")
    code('respect to each state entering step t through that step."""')
    codegen._unpack_params(code, ir, gr)
    inputs = [n for n, _ in ir.inputs]
    states = [s for s, _ in ir.states]
    diagonals = {d for d, _ in ir.diagonals}
    first = inputs[0]
    for n in inputs:
        code(f'_X_{n} = cache["inputs"][{n!r}]')
    code(f"_T, _B = _X_{first}.shape[0], _X_{first}.shape[1]")
    code('t0 = cache["t0"]')
    code('_state0 = cache["state0"]')
    code('_saved = cache["saved"]')
    code("if d_state is None:")
    code("    d_state = {}")
    consts_at = len(code.lines)
    if ir.step:
        code(f"{v(ir.step)} = _steps(t0, _T, _X_{first})")
    node_pd = _node_partials(ir, form)
    new_pd = _new_partials(ir, form)
    read = {s.name for d in list(node_pd.values()) + list(new_pd.values()) for e in d.values()
            for s in e.free_symbols}  # fmt: skip
    for n in inputs:
        if n in read:
            code(f"{v(n)} = _X_{n}")
    for s in saved:
        code(f"{v(s)} = _saved[{s!r}]")
    # the gradient with respect to every new state: a reverse scan
    for s in states:
        code(f"_A_{s} = _saved[{'_a_' + s!r}]")
        g = "d_outputs if d_outputs is not None else " if s == ir.output else ""
        code(f"_g_{s} = {g}_zeros(_A_{s}.shape, _A_{s})")
        code(f"_e_{s} = d_state[{s!r}] if d_state.get({s!r}) is not None else _zeros(_state0[{s!r}].shape, _state0[{s!r}])")
        code(f"_L_{s} = _scan(_shifted(_A_{s}), _g_{s}, _e_{s}, True)")
    code("if trace is not None:")
    for s in states:
        code(f"    _M_{s} = _A_{s} * _L_{s}")
    code("    for _t in range(_T - 1, -1, -1):")
    code("        trace.append({" + ", ".join(f"{s!r}: _M_{s}[_t]" for s in states) + "})")
    # partial derivatives of every step at once, CSE'd together
    names = {}
    items = []
    for owner, d in [(f"_L_{s}", new_pd[s]) for s in states] + [(n, d) for n, d in node_pd.items()]:
        for sym, expr in d.items():
            if expr.is_Atom:
                names[(owner, sym)] = codegen.fold_constants(expr)
            else:
                key = f"_p{len(items)}"
                items.append((key, expr))
                names[(owner, sym)] = sympy.Symbol(key)
    codegen._cse_block(code, items, printer, "_q")
    bars: set[str] = set()
    grads_diag: set[str] = set()

    def add(target, text):
        if target in diagonals:
            total = f"({text}).sum((0, 1))"
            code(f"_grad_{target} = _grad_{target} + {total}" if target in grads_diag else
                 f"_grad_{target} = {total}")  # fmt: skip
            grads_diag.add(target)
        elif target in bars:
            code(f"_d_{target} = _d_{target} + {text}")
        else:
            code(f"_d_{target} = {text}")
            bars.add(target)

    def pull(adjoint, owner, d):
        for sym, _ in d.items():
            factor = names[(owner, sym)]
            if factor == 0:
                continue
            add(sym, adjoint if factor == 1 else f"{adjoint} * {printer.doprint(factor)}")

    for s in states:
        pull(f"_L_{s}", f"_L_{s}", new_pd[s])
    code("grads = {}")
    code("d_inputs = {}")

    def flush_group(arg):
        g = gr.get(arg)
        if g is None:
            return
        parts = [f"_d_{a}" if a in bars else f"_zeros((_T, _B, {v(w)}.shape[0]), _X_{first})" for a, w in g.terms]
        code(f"_GBs = _cat([{', '.join(parts)}], 2).reshape(_T * _B, -1)")
        src = f"_X_{arg}" if arg in inputs else v(arg)
        code(f"_GW = _GBs.T @ {_flat(src)}")
        for k, (a, w) in enumerate(g.terms):
            mask = next(x.mask for x in ir.weights if x.name == w)
            code(f"grads[{w!r}] = {codegen._block(g, k, '_GW', rows=True)}" + (f" * _mask_{w}" if mask is not None else ""))
        add(arg, f"(_GBs @ {g.var}).reshape(_T, _B, -1)")

    for node in reversed(form.nodes):
        flush_group(node.name)
        if node.name not in bars:
            continue
        if isinstance(node, Affine):
            if node.bias:
                code(f"grads[{node.bias!r}] = _d_{node.name}.sum((0, 1))")
            continue
        pull(f"_d_{node.name}", node.name, node_pd[node.name])
    for n in inputs:
        flush_group(n)
        code(f"d_inputs[{n!r}] = " + (f"_d_{n}" if n in bars else f"_zeros(_X_{n}.shape, _X_{n})"))
    for d, _ in ir.diagonals:  # in spec order: the source must not depend on hashing
        if d in grads_diag:
            code(f"grads[{d!r}] = _grad_{d}")
    code("for _name in " + repr(list(ir.param_names)) + ":")
    code("    if _name not in grads:")
    code("        grads[_name] = _zeros(params[_name].shape, params[_name])")
    code("grads = {_name: grads[_name] for _name in " + repr(list(ir.param_names)) + "}")
    d0 = ", ".join(f"{s!r}: _A_{s}[0] * _L_{s}[0]" for s in states)
    code(f"return grads, d_inputs, {{{d0}}}")
    codegen._constants(code, printer, consts_at, f"_X_{first}")
    return code.text()


# ----------------------------------------------------------------------------- the API


class ScanImplementation(Implementation):
    """The generated scan forward and backward of a cell for one backend, with the methods,
    checks and conversions of :class:`~lstm_verify.cell.Implementation` (``forward``,
    ``backward``, ``step``, ``prepare``). ``form`` is the cell's :class:`ScanForm`."""

    def __init__(self, cell, backend: str):
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; choose from {BACKENDS}")
        if backend == "torch":
            require("torch", "cell.scan('torch')")
        self.cell = cell
        self.backend = backend
        self.form = scan_form(cell.ir)
        self.source = generate(cell.ir, backend)
        self.module = runtime.load(self.source, f"{cell.name}_{backend}_scan")

    def __repr__(self):
        return f"<{self.backend} scan implementation of {self.cell.name}>"
