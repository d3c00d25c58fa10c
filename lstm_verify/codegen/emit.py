"""Emitting the generated module: the prelude, the forward loop and the backward loop."""

from __future__ import annotations

import ast
from pathlib import Path

import sympy

from ..hygiene import quoted_lines
from ..ir import Affine, CellIR, Pointwise, Reduce, dependencies
from ..spec import SCALAR, display
from .backends import EMISSION
from .plan import Group, Plan, plan
from .printers import BACKENDS, PRINTERS, PlainTorchPrinter, _in_set, _v, fold_constants

PRELUDE_MARK = "# ---- copied into every generated module from here on ----\n"


def prelude(backend: str) -> str:
    """The helpers a generated module of ``backend`` starts with: the source of
    :mod:`lstm_verify.prelude.<backend>_step` after its marker line, read as text (importing it
    would need the backend)."""
    text = (Path(__file__).parent.parent / "prelude" / f"{backend}_step.py").read_text(encoding="utf-8")
    return text.split(PRELUDE_MARK, 1)[1]


PRELUDE = {backend: prelude(backend) for backend in ("numpy", "torch")}


# ----------------------------------------------------------------------------- emitting


class _Code:
    def __init__(self):
        self.lines: list[str] = []
        self.indent = 1

    def __call__(self, line=""):
        self.lines.append("    " * self.indent + line if line else "")

    def text(self):
        return "\n".join(self.lines)


def _cse_block(code: _Code, items: list[tuple[str, sympy.Expr]], printer, prefix: str,
               into: dict | None = None) -> set:
    """Emit ``name = expr`` lines for items (in dependency order), sharing subexpressions.
    Items named in ``into`` are computed straight into that target where the printer can;
    returns the names so written."""
    written: set[str] = set()
    if not items:
        return written
    symbols = sympy.numbered_symbols(prefix)
    replacements, reduced = sympy.cse([fold_constants(e) for _, e in items], symbols=symbols, order="none")
    pending = [(s.name, e) for s, e in replacements] + [(n, e) for (n, _), e in zip(items, reduced)]
    produced = {n for n, _ in pending}
    available: set[str] = set()
    while pending:
        for k, (name, expr) in enumerate(pending):
            if all(s.name not in produced or s.name in available for s in expr.free_symbols):
                direct = printer.into(expr, into[name]) if into and name in into else None
                code(f"{_v(name)} = {direct or printer.doprint(expr)}")
                if direct:
                    written.add(name)
                available.add(name)
                pending.pop(k)
                break
        else:  # pragma: no cover - cse output is acyclic
            raise AssertionError("cyclic CSE output")
    return written


def _constants(code: _Code, printer, at: int, like: str):
    """Define, at line ``at``, the 0-dim constants the printer named while printing the body."""
    names = getattr(printer, "constants", {})
    lines = ["    " * code.indent + f"{n} = _const({v}, {like})" for v, n in names.items()]
    code.lines[at:at] = lines
    names.clear()


def _unpack_params(code: _Code, ir: CellIR, gr: dict[str, Group]):
    for name in ir.param_names:
        code(f"{_v(name)} = params[{name!r}]")
    for b, _, _ in ir.buffers:
        code(f"{_v(b)} = params[{b!r}]")
    for w in ir.weights:
        if w.mask is not None:
            code(f"_mask_{w.name} = {_mask_text(w.mask)}")
            code(f"{_v(w.name)} = {_v(w.name)} * _mask_{w.name}")
    for g in gr.values():
        code(f"{g.var} = _cat([{', '.join(_v(w) for _, w in g.terms)}], 0)")
        if len(g.terms) > 1:
            code(f"_off_{g.arg} = _offsets([{', '.join(_v(w) + '.shape[0]' for _, w in g.terms)}])")


def _mask_text(mask) -> str:
    def side(o):
        if o.buffer is None:
            return repr(o.value)
        return f"{_v(o.buffer)}[None, :]" if o.side == "in" else f"{_v(o.buffer)}[:, None]"

    return f"({side(mask.left)} {mask.op} {side(mask.right)})"


def _block(g: Group, k: int, tensor: str, rows=False, blocked=False) -> str:
    """Block k of a stacked GEMM result (last axis; first axis if computed block-major) or of a
    stacked weight gradient (rows)."""
    if len(g.terms) == 1:
        return tensor
    if blocked:
        return f"{tensor}[{k}]"
    lead = "" if rows else "..., "
    return f"{tensor}[{lead}_off_{g.arg}[{k}]:_off_{g.arg}[{k + 1}]]"


def generate(ir: CellIR, backend: str, header: bool = True, kernels: bool = True) -> str:
    """Source text of the generated module for one backend (``header=False``: without its
    docstring, for export, which writes its own; ``kernels=False``: torch without the C of
    :mod:`lstm_verify.kernels` (blocks and loops, see :mod:`.fused`), as exported)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose from {BACKENDS}")
    p = plan(ir)
    printer = PRINTERS[backend]()
    fusion = None
    if kernels and backend == "torch":
        from .fused import Fusion

        fusion = Fusion(ir)
    if fusion is not None:
        fusion.sequence(p)
    fwd = drop_unread(_forward(ir, p, printer, fusion))
    bwd = drop_unread(_backward(ir, p, printer, fusion))
    helpers = '''

def _offsets(sizes):
    out = [0]
    for s in sizes:
        out.append(out[-1] + s)
    return out
'''
    body = PRELUDE[backend] + helpers + "\n\n" + fwd + "\n\n\n" + bwd + "\n" + (fusion.source() if fusion else "")
    return body if not header else _header(ir, backend, p) + body


_PURE_CALLS = frozenset({"_offsets", "_cat", "_rsum", "_ssum", "_smax", "_bcast", "_sbcast"})


def _pure(node: ast.AST) -> bool:
    """Whether evaluating ``node`` does nothing but compute a value: names, constants, indexing,
    attributes, arithmetic, and the generator's own pure helpers."""
    for n in ast.walk(node):
        if isinstance(n, ast.Call):
            if not (isinstance(n.func, ast.Name) and n.func.id in _PURE_CALLS):
                return False
        elif not isinstance(n, (ast.Name, ast.Constant, ast.Subscript, ast.Attribute, ast.Slice, ast.Tuple, ast.List,
                                ast.BinOp, ast.UnaryOp, ast.Load, ast.operator, ast.unaryop)):  # fmt: skip
            return False
    return True


def drop_unread(source: str) -> str:
    """``source`` (one function) without the assignments of names it never reads, where the
    assigned value is pure (:func:`_pure`): the emitters write some values every cell of a
    kind needs and this one does not (a bias the backward does not read, the offsets of a
    stacked weight used whole). To a fixpoint: a dropped line may leave another unread. A
    block keeps at least one statement."""
    lines = source.split("\n")
    while True:
        tree = ast.parse("\n".join(lines))
        read = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
        drop = []
        for parent in ast.walk(tree):
            for field in ("body", "orelse"):
                block = getattr(parent, field, None)
                if not isinstance(block, list) or not block or isinstance(parent, ast.Module):
                    continue
                unread = [st for st in block if isinstance(st, ast.Assign) and len(st.targets) == 1
                          and isinstance(st.targets[0], ast.Name) and st.targets[0].id not in read
                          and _pure(st.value)]  # fmt: skip
                drop += unread[: len(block) - 1] if len(unread) == len(block) else unread
        if not drop:
            return "\n".join(lines)
        gone = {k for st in drop for k in range(st.lineno - 1, st.end_lineno)}
        lines = [line for k, line in enumerate(lines) if k not in gone]


def readable_step(ir: CellIR, backend: str) -> str:
    """Source of ``step(params, x, state, t=0)``: one step an equation a line, in the spec's
    order, with nothing of the fast path (no stacked GEMMs, no shared subexpressions, no
    buffers): the form to read, or to paste next to the paper. It needs only the prelude's
    pointwise helpers; ``forward`` computes the same to rounding."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose from {BACKENDS}")
    printer = PlainTorchPrinter() if backend == "torch" else PRINTERS[backend]()
    code = _Code()
    code.indent = 0
    code("def step(params, x, state, t=0):")
    code.indent = 1
    code('"""One step, an equation a line. x: (B, n) array for the input, or a dict for several')
    code("inputs" + (", set inputs (B, L, n)" if ir.sets else "") + '; returns the new state as a dict."""')
    code("if not isinstance(x, dict):")
    code(f"    x = {{{ir.inputs[0][0]!r}: x}}")
    _unpack_params(code, ir, {})  # no stacked weights
    for n, _ in list(ir.inputs) + list(ir.sets):
        code(f"{_v(n)} = x[{n!r}]")
    for s, _ in ir.states:
        code(f"{_v(s)} = state[{s!r}]")
    if ir.step:
        code(f"{_v(ir.step)} = t")
    _counts(code, ir, "state")
    consts_at = len(code.lines)
    for node in ir.nodes:
        if isinstance(node, Affine):
            parts = []
            for w, arg in node.terms:  # a product without the set axis in a node with it: one per member
                spread = node.name in ir.set_vectors and arg not in ir.set_vectors
                parts.append(f"({_v(arg)} @ {_v(w)}.T)[:, None]" if spread else f"{_v(arg)} @ {_v(w)}.T")
            text = " + ".join(parts + ([_v(node.bias)] if node.bias else []))
        elif isinstance(node, Reduce):
            text = _reduce_code(ir, node)
        else:
            text = printer.doprint(_in_set(ir, node.name, fold_constants(node.expr)))
        code(f"{_v(node.name)} = {text}")
    _constants(code, printer, consts_at, _v(ir.inputs[0][0]))
    code(f"return {{{', '.join(f'{s!r}: {_v(ir.new(s))}' for s, _ in ir.states)}}}")
    return drop_unread(code.text())


def _header(ir: CellIR, backend: str, p: Plan) -> str:
    """The module docstring: the spec's text only as ``repr()`` literals (see hygiene)."""
    spec = ir.spec
    lines = [
        f"Generated by lstm-verify for cell {spec.name}, backend {backend}.",
        f"Title: {spec.title}",
        f"Spec sha256 {spec.sha256}.",
        *[f"Source: {c}" for c in spec.cite],
        "Equations:",
        *[f"    {e.text}" for e in spec.equations],
        f"Saved for the backward: {', '.join(display(s) for s in p.saved) or 'nothing'}.",
        "Do not edit: regenerate from the spec.",
    ]
    return quoted_lines(lines) + "\n"


def _folded_biases(ir: CellIR, p: Plan) -> dict[str, list[str]]:
    """Hoisted groups whose nodes all have a bias: the biases ride along in the one GEMM for
    the whole sequence instead of being added at every step."""
    out = {}
    taken: set[str] = set()
    for g in p.groups.values():
        nodes = [ir.node_map[n] for n, _ in g.terms]
        if g.hoisted and all(n.bias and n.name not in taken for n in nodes):
            out[g.arg] = [n.bias for n in nodes]
            taken |= {n.name for n in nodes}
    return out


def _width(ir: CellIR, name: str) -> str | None:
    """Code for the number of features of a node's values, read off a state or a weight of that
    size (None if neither has it)."""
    return _dim_width(ir, ir.dims.get(name), "state")


def _dim_width(ir: CellIR, dim: str | None, state: str) -> str | None:
    for s, d in ir.states:
        if d == dim:
            return f"{state}[{s!r}].shape[-1]"
    for w in ir.weights:
        if w.out_dim == dim:
            return f"{_v(w.name)}.shape[0]"
        if w.in_dim == dim:
            return f"{_v(w.name)}.shape[1]"
    return None




def _size_code(ir: CellIR, dim: str, state: str) -> str:
    """Code for a size: :func:`_dim_width` (a state in the dict named ``state``, a weight), else
    a bias, a diagonal parameter or an input of that size."""
    if dim == SCALAR:
        return "1"
    found = _dim_width(ir, dim, state)
    if found:
        return found
    for p, d in list(ir.biases) + list(ir.diagonals):
        if d == dim:
            return f"{_v(p)}.shape[0]"
    for n, d in ir.inputs:
        if d == dim:
            return f"_X_{n}.shape[-1]"
    raise AssertionError(f"no tensor has size {dim!r}")  # pragma: no cover - every size is some vector's


def _counts(code: _Code, ir: CellIR, state: str):
    """``_n_<node>``: how many units each reduction sums over."""
    for n in ir.nodes:
        if isinstance(n, Reduce) and not n.over_set:
            code(f"_n_{n.name} = {' + '.join(_size_code(ir, ir.dims[a], state) for a in n.args)}")


def _reduce_code(ir: CellIR, node: Reduce) -> str:
    if node.over_set:
        return f"_ssum({_v(node.args[0])})" if node.op == "setsum" else f"_smax({_v(node.args[0])})"

    def v(a):  # an argument without the set axis in a reduction with it: one per member
        return _v(a) + ("[:, None]" if node.name in ir.set_vectors and a not in ir.set_vectors else "")

    if node.op == "var":
        c = _v(node.center)
        parts = [f"_rsum(({v(a)} - {c})*({v(a)} - {c}))" for a in node.args]
    else:
        parts = [f"_rsum({v(a)})" for a in node.args]
    total = " + ".join(parts)
    return total if node.op == "sum" else f"({total}) / _n_{node.name}"


def _paired(ir: CellIR, p: Plan) -> dict[str, tuple[str, int, int]]:
    """Per-step group -> (hoisted group, first, last + 1) where the per-step group's nodes are
    the hoisted group's nodes first..last in the same order, each the sum of exactly those two
    terms: their sums are one fused multiply-add per step (the LSTM's x W_x^T + h W_h^T for all
    four gates at once; the depth-gated LSTM's four gates of its five x-blocks)."""
    out = {}
    taken = set()
    for r in p.groups.values():
        if r.hoisted or r.const:
            continue
        rec = [n for n, _ in r.terms]
        for g in p.groups.values():
            hoist = [n for n, _ in g.terms]
            starts = [k for k in range(len(hoist) - len(rec) + 1) if hoist[k : k + len(rec)] == rec]
            if g.hoisted and starts and g.arg not in taken and all(
                sorted(a for _, a in ir.node_map[n].terms) == sorted([g.arg, r.arg]) for n in rec
            ):
                out[r.arg] = (g.arg, starts[0], starts[0] + len(rec))
                taken.add(g.arg)
                break
    return out


def _forward(ir: CellIR, p: Plan, printer, fusion=None) -> str:
    emission = EMISSION[printer.backend]
    code = _Code()
    code.indent = 0
    code("def forward(params, inputs, state, t0=0, save=False):")
    code.indent = 1
    code('"""Run the cell over a sequence; see the module header for the equations."""')
    if fusion is not None and fusion.loop:
        code("if _KERNELS is not None:  # the whole loop in C, where it can run")
        code("    _r = _KERNELS.sequence(_sequence_args, params, inputs, state, t0, save)")
        code("    if _r is not None:")
        code("        return _r")
    _unpack_params(code, ir, p.groups)
    first = ir.inputs[0][0]
    for n, _ in ir.inputs:
        code(f"_X_{n} = inputs[{n!r}]")
    code(f"_T, _B = _X_{first}.shape[0], _X_{first}.shape[1]")
    for n, _ in ir.sets:  # fixed over time
        code(f"{_v(n)} = inputs[{n!r}]")
    for g in p.groups.values():
        if g.const:  # one GEMM for every step: (B, L, out)
            code(f"_G_{g.arg} = {_v(g.arg)} @ {g.var}.T")
    folded = _folded_biases(ir, p)
    folded_nodes = {ir.node_map[n].name for a in folded for n, _ in p.groups[a].terms}
    paired = _paired(ir, p)
    for g in p.groups.values():
        if g.hoisted:
            flat = f"_X_{g.arg}.reshape(_T * _B, _X_{g.arg}.shape[2])"
            product = f"{flat} @ {g.var}.T"
            if g.arg in folded:
                code(f"_b_{g.arg} = _cat([{', '.join(map(_v, folded[g.arg]))}], 0)")
                product = f"{product} + _b_{g.arg}"
            product = emission.hoisted_product(g, flat, product, g.arg in folded)
            code(f"_G_{g.arg} = ({product}).reshape(_T, _B, -1)")
    blocked = emission.blocked_groups(ir, p)
    for g in p.groups.values():
        if g.arg in blocked:
            code(f"_mm_{g.arg} = _blocked({g.var}, {len(g.terms)})")
        elif not g.hoisted and not g.const:
            code(f"_mm_{g.arg} = _linear({g.var}, _B, _T)")
    for s, _ in ir.states:
        code(f"{_v(s)} = state[{s!r}]")
    code("_out = None")
    # a state's old values are the new values one step earlier: the buffer of the saved new
    # values gets one more row in front, the initial state, and both are views of it; the old
    # output state is copied from the outputs after the loop (the caller owns the outputs and
    # may change them in place)
    rebuilt = {}
    for s, _ in ir.states:
        if s in p.saved:
            if ir.new(s) in p.saved:
                rebuilt[s] = f"_saved[{ir.new(s)!r}]"
            elif s == ir.output:
                rebuilt[s] = "_out"
    saved = [x for x in p.saved if x not in rebuilt]
    code(f"_saved = {{{', '.join(repr(x) + ': None' for x in saved)}}} if save else None")
    shifted = {ir.new(s) for s, src in rebuilt.items() if src != "_out"}
    # values the backend computes straight into their sequence buffers (torch: with a batch axis
    # and a known width, saved or output)
    targets = emission.direct_targets(ir, saved, shifted)
    _counts(code, ir, "state")
    consts_at = len(code.lines)
    code("for _t in range(_T):")
    code.indent = 2
    if ir.step:
        code(f"{_v(ir.step)} = t0 + _t")
    read = {s.name for n in ir.nodes if isinstance(n, Pointwise) for s in n.expr.free_symbols}
    read |= {d for n in ir.nodes if isinstance(n, Reduce) for d in dependencies(n)}
    for n, _ in ir.inputs:
        if n in read:  # inputs that only enter affine maps are in the hoisted GEMM
            code(f"{_v(n)} = _X_{n}[_t]")
    done_groups = set()
    run: list = []
    cse_prefix = iter(range(10**6))

    written: set[str] = set()
    readers: dict[str, set] = {}
    for m in ir.nodes:
        for d in dependencies(m):
            readers.setdefault(d, set()).add(m.name)
    kept = set(p.saved) | {ir.new(s) for s, _ in ir.states}

    def emit_block(nodes):
        items = [(n.name, _in_set(ir, n.name, n.expr)) for n in nodes]
        into = {k: t for k, (t, _) in targets.items()}
        names = {n.name for n in nodes}
        outputs = [n for n in names if n in kept or readers.get(n, set()) - names]
        seg = fusion.plan([(k, fold_constants(e)) for k, e in items], ir.dims[nodes[0].name],
                          sorted(outputs)) if fusion else None  # fmt: skip
        if seg is None:
            written.update(_cse_block(code, items, printer, f"_f{next(cse_prefix)}_", into))
            return
        code("if _kt is None:")
        code.indent += 1
        direct = _cse_block(code, items, printer, f"_f{next(cse_prefix)}_", into)
        code.indent -= 1
        code("else:")
        code.indent += 1
        slots = {x: (f"_sv_{x}", f"_sv_{x}[_t + 1]" if x in shifted else f"_sv_{x}[_t]") for x in direct if x in saved}
        slots.update({x: (None, "_out[_t]") for x in direct if x not in saved})
        fusion.call(code, seg, ir.dims[nodes[0].name], slots, f"_X_{first}")
        code.indent -= 1
        written.update(direct)

    def flush():
        if not run:
            return
        if fusion is None:
            emit_block(run)
        else:  # a kernel runs over the units of one size: a block per run of nodes of one size
            start = 0
            for k in range(1, len(run) + 1):
                if k == len(run) or ir.dims[run[k].name] != ir.dims[run[start].name]:
                    emit_block(run[start:k])
                    start = k
        run.clear()

    for node in p.order:
        if isinstance(node, Pointwise):
            run.append(node)
            continue
        flush()
        if isinstance(node, Reduce):
            code(f"{_v(node.name)} = {_reduce_code(ir, node)}")
            continue
        pair = next((paired[a] for _, a in node.terms if a in paired), None)
        if pair is not None:  # both terms in one fused multiply-add for the whole stack
            rec = next(a for _, a in node.terms if a in paired)
            g = p.groups[rec]
            if rec not in done_groups:
                done_groups.add(rec)
                hoisted, lo, hi = pair
                part = "" if (lo, hi) == (0, len(p.groups[hoisted].terms)) else \
                    f"[..., _off_{hoisted}[{lo}]:_off_{hoisted}[{hi}]]"
                code(f"_z_{rec} = _mm_{rec}({_v(rec)}, _G_{hoisted}[_t]{part})")
            k = [a for a, _ in g.terms].index(node.name)
            parts = [_block(g, k, f"_z_{rec}", blocked=rec in blocked)]
        else:
            for _, arg in node.terms:
                g = p.groups[arg]
                if arg not in done_groups:
                    done_groups.add(arg)
                    code(f"_g_{arg} = _G_{arg}[_t]" if g.hoisted else f"_g_{arg} = _G_{arg}" if g.const
                         else f"_g_{arg} = _mm_{arg}({_v(arg)})")  # fmt: skip
            parts = []
            for _, arg in node.terms:
                g = p.groups[arg]
                k = [a for a, _ in g.terms].index(node.name)
                block = _block(g, k, f"_g_{arg}", blocked=arg in blocked)
                spread = node.name in ir.set_vectors and arg not in ir.set_vectors
                parts.append(f"{block}[:, None]" if spread else block)
        if node.bias and node.name not in folded_nodes:
            parts.append(_v(node.bias))
        code(f"{_v(node.name)} = {' + '.join(parts)}")
    flush()

    def put(name, value):
        target = f"_saved[{name!r}]"
        step = "_t + 1, {}, _T + 1" if name in shifted else "_t, {}, _T"
        return f"{target} = _put({target}, {step.format(value)})"

    if set(saved) - written:
        code("if save:")
        for s in saved:
            if s not in written:
                code("    " + put(s, _v(s)))
    if set(saved) & written:  # out= is not differentiable: while autograd records, copies
        code("if save and not _direct:")
        for s in saved:
            if s in written:
                code("    " + put(s, _v(s)))
    for s, _ in ir.states:
        code(f"{_v(s)} = {_v(ir.new(s))}")
    direct_out = ir.new(ir.output) in written and ir.new(ir.output) not in saved
    if direct_out:
        code("if not _direct:")
        code(f"    _out[_t] = {_v(ir.output)}")
    else:
        code(f"_out = _put(_out, _t, {_v(ir.output)}, _T)")
    code.indent = 1
    if written:
        code.lines[consts_at:consts_at] = emission.direct_preamble(
            first, saved, written, shifted, targets, targets[ir.new(ir.output)][1] if direct_out else None)
    if direct_out:  # the final state is the caller's own tensor, not a view of the outputs
        code(f"{_v(ir.output)} = {_v(ir.output)}.clone()")
    if fusion is not None and fusion.segments:
        fusion.preamble(code, consts_at, "state", "[*params.values(), *inputs.values(), *state.values()]")
    _constants(code, printer, consts_at, f"_X_{first}")
    code("cache = None")
    code("if save:")
    for x in saved:
        if x in written:
            code(f"    _saved[{x!r}] = _sv_{x} if _direct else _saved[{x!r}]")
    for s_, src in rebuilt.items():
        if ir.new(s_) in shifted:
            code(f"    {src}[0] = state[{s_!r}]")
            code(f"    _saved[{s_!r}] = {src}[:-1]")
            code(f"    {src} = {src}[1:]")
        else:
            code(f"    _saved[{s_!r}] = _cat([state[{s_!r}][None], {src}[:-1]], 0)")
    opening, closing = emission.cache_brackets()
    code("    cache = " + opening)
    code('        "inputs": inputs,')
    code('        "state0": dict(state),')
    code('        "t0": t0,')
    code('        "saved": _saved,')
    code("    " + closing)
    emission.after_cache(code, [f"_sv_{x}" for x in saved if x in written])
    states = ", ".join(f"{s!r}: {_v(s)}" for s, _ in ir.states)
    hoisted = [f"_G_{g.arg}" for g in p.groups.values() if g.hoisted]
    emission.release_forward(code, hoisted, ", ".join(["_out"] + [_v(s) for s, _ in ir.states]))
    code(f"return _out, {{{states}}}, cache")
    return code.text()


def _deferred_diagonals(ir: CellIR, p: Plan) -> dict:
    """(node, diagonal w) -> (affine a, vector u) where d node/d w = u * d node/d a exactly and
    the node is a's only reader (i = sigmoid(lin_i + p_i*c): d i/d p_i = c * d i/d lin_i). Then
    dL/dw = sum over steps and rows of dL/da * u, one reduction after the loop over the stored
    dL/da and the saved u, instead of a product and a reduction at every step."""
    diagonals = {d for d, _ in ir.diagonals}
    sequences = set(p.saved) | {n for n, _ in ir.inputs}
    readers: dict[str, int] = {}
    for d in p.partials.values():
        for s in d:
            readers[s] = readers.get(s, 0) + 1
    out = {}
    for node, d in p.partials.items():
        if node in ir.set_vectors:  # (B, L, n) per step: reduced over the members at every step
            continue
        for w, expr in d.items():
            if w not in diagonals or expr == 0:
                continue
            for a, via in d.items():
                if not isinstance(ir.node_map.get(a), Affine) or readers[a] != 1 or via == 0:
                    continue
                u = sympy.cancel(expr / via)
                if u.is_Symbol and u.name in sequences:
                    out[(node, w)] = (a, u.name)
                    break
    return out


def _backward(ir: CellIR, p: Plan, printer, fusion=None) -> str:
    emission = EMISSION[printer.backend]
    code = _Code()
    code.indent = 0
    code("def backward(params, cache, d_outputs=None, d_state=None, trace=None):")
    code.indent = 1
    code('"""Exact BPTT through the sequence run by forward(..., save=True). A list passed as')
    code("``trace`` receives, for t = T-1 down to 0, the gradient with respect to each state")
    code('entering step t."""')
    _unpack_params(code, ir, p.groups)
    inputs = [n for n, _ in ir.inputs]
    states = [n for n, _ in ir.states]
    diagonals = [d for d, _ in ir.diagonals]  # in spec order: the source must not depend on hashing
    for n in inputs:
        code(f'_X_{n} = cache["inputs"][{n!r}]')
    code(f"_T, _B = _X_{inputs[0]}.shape[0], _X_{inputs[0]}.shape[1]")
    sets = [n for n, _ in ir.sets]
    for n in sets:  # fixed over time; their gradients are summed over the steps
        code(f'_X_{n} = cache["inputs"][{n!r}]')
        code(f"{_v(n)} = _X_{n}")
        code(f"_DX_{n} = None")
    if sets:
        code(f"_L = _X_{sets[0]}.shape[1]")
    code('t0 = cache["t0"]')
    code('_state0 = cache["state0"]')
    for s in p.saved:
        code(f'_S_{s} = cache["saved"][{s!r}]')
    code("if d_state is None:")
    code("    d_state = {}")
    for s in states:
        code(f"_carry_{s} = d_state[{s!r}] if d_state.get({s!r}) is not None else _zeros(_state0[{s!r}].shape, _state0[{s!r}])")
    for d in diagonals:
        code(f"_grad_{d} = _zeros({_v(d)}.shape, {_v(d)})")
    for g in p.groups.values():
        code(f"_GBs_{g.arg} = None")
        if not g.hoisted and not g.const:
            code(f"_mmT_{g.arg} = _linear({g.var}.T, _B, _T)")
    pointwise_inputs = [n for n in inputs if any(n in d for d in p.partials.values())]
    for n in pointwise_inputs:
        code(f"_DX_{n} = None")
    _counts(code, ir, "_state0")
    consts_at = len(code.lines)
    code("for _t in range(_T - 1, -1, -1):")
    code.indent = 2
    if ir.step:
        code(f"{_v(ir.step)} = t0 + _t")
    read = {s.name for d in p.partials.values() for e in d.values() for s in e.free_symbols}
    for n in inputs:
        if n in pointwise_inputs or n in read:
            code(f"{_v(n)} = _X_{n}[_t]")
    for s in p.saved:
        code(f"{_v(s)} = _S_{s}[_t]")
    # partial derivatives, all CSE'd together
    deferred = _deferred_diagonals(ir, p)
    items, names, item_dims = [], {}, {}
    for node, d in p.partials.items():
        for s, expr in d.items():
            if (node, s) in deferred:
                continue
            if expr.is_Atom:
                names[(node, s)] = fold_constants(expr)
            else:
                key = f"_p{len(items)}_{node}_{s}"  # numbered: node_s alone could collide
                items.append((key, _in_set(ir, node, expr)))
                names[(node, s)] = sympy.Symbol(key)
                # a partial has its node's size; a reduction's, its argument's
                item_dims[key] = ir.dims[s] if isinstance(ir.node_map[node], Reduce) else ir.dims[node]
    fused = []
    if fusion is not None:  # one kernel per size over the partials of that size
        dims: dict[str, list] = {}
        for key, expr in items:
            dims.setdefault(item_dims[key], []).append((key, fold_constants(expr)))
        for dim, group in dims.items():
            seg = fusion.plan(group, dim, [k for k, _ in group])
            if seg is not None:
                fused.append((seg, dim))
    if fused:
        done = {k for seg, _ in fused for k, _ in seg.items}
        code("if _kt is None:")
        code.indent += 1
        _cse_block(code, items, printer, "_q")
        code.indent -= 1
        code("else:")
        code.indent += 1
        for seg, dim in fused:
            fusion.call(code, seg, dim, {}, f"_X_{inputs[0]}")
        _cse_block(code, [(k, e) for k, e in items if k not in done], printer, "_r")
        code.indent -= 1
    else:
        _cse_block(code, items, printer, "_q")
    bars: set[str] = set()

    def add(target, text):
        """Accumulate into _d_target; text is code or a (vector, factor) product."""
        if isinstance(text, tuple) and target in bars and emission.accumulate(code, target, *text):
            return
        if isinstance(text, tuple):
            text = " * ".join(text)
        if target in bars:
            code(f"_d_{target} = _d_{target} + {text}")
        else:
            code(f"_d_{target} = {text}")
            bars.add(target)

    out_new = ir.new(ir.output)
    code(f"_d_{out_new} = _carry_{ir.output}")
    code("if d_outputs is not None:")
    code(f"    _d_{out_new} = _d_{out_new} + d_outputs[_t]")
    bars.add(out_new)
    for s in states:
        if s != ir.output:
            add(ir.new(s), f"_carry_{s}")
    flushed = set()
    stacked: dict[tuple, str] = {}  # stacked gradient blocks -> the argument that owns them
    alias: dict[str, str] = {}  # argument -> code for its gradient stack inside another's
    events: list = []  # what one step does, in order, for the same loop in C (see fused.Fusion.backward)

    def flush_group(arg):
        if arg in flushed or arg not in p.groups:
            return
        flushed.add(arg)
        g = p.groups[arg]
        parts = []
        for aff, w in g.terms:
            if aff in bars and aff in ir.set_vectors and not g.const:  # summed over the members
                parts.append(f"_ssum(_d_{aff})")
            elif aff in bars:
                parts.append(f"_d_{aff}")
            else:
                parts.append(f"_zeros((_B, {'_L, ' if g.const else ''}{_v(w)}.shape[0]), {_v(w)})")
        if g.const:  # a set input's blocks, summed over the steps
            block = f"_cat([{', '.join(parts)}], -1)"
            code(f"_GBs_{arg} = {block} if _GBs_{arg} is None else _GBs_{arg} + {block}")
            return
        # another argument feeds the same affine maps, or a run of its maps: the per-step
        # values are kept once, and this stack is (a view of) that one
        for other, owner in stacked.items():
            k = next((k for k in range(len(other) - len(parts) + 1) if list(other[k : k + len(parts)]) == parts), None)
            if k is not None:
                cut = "" if len(parts) == len(other) else f"[..., _off_{owner}[{k}]:_off_{owner}[{k + len(parts)}]]"
                code(f"_gb_{arg} = _gb_{owner}{cut}")
                alias[arg] = f"_GBs_{owner}{cut}"
                events.append(("flush", arg, owner, k))
                break
        else:
            code(f"_GBs_{arg} = _cat_put(_GBs_{arg}, _t, [{', '.join(parts)}], _T)")
            code(f"_gb_{arg} = _GBs_{arg}[_t]")
            stacked[tuple(parts)] = arg
            events.append(("flush", arg, arg, 0))
        if not g.hoisted:
            add(arg, f"_mmT_{arg}(_gb_{arg})")

    for node in reversed(p.order):
        flush_group(node.name)
        if isinstance(node, Affine) or node.name not in bars:
            continue
        for s, expr in p.partials[node.name].items():
            if (node.name, s) in deferred:
                continue
            factor = names[(node.name, s)]
            if factor == 0:
                continue
            if factor == 1:
                term = f"_d_{node.name}"
            else:
                term = (f"_d_{node.name}", printer.doprint(factor))
            text = " * ".join(term) if isinstance(term, tuple) else term
            members = node.name in ir.set_vectors
            simple = not members and not isinstance(node, Reduce) and ir.dims.get(s) == node.dim != SCALAR
            events.append(("diag" if s in diagonals else "add" if simple else "other", node.name, s, factor))
            if s in diagonals:
                code(f"_grad_{s} = _grad_{s} + ({text}).sum({'(0, 1)' if members else '0'})")
                continue
            if isinstance(node, Reduce) and node.over_set:  # spread over the members
                term = f"_sbcast({text}, _L)"
            elif isinstance(node, Reduce):  # a size-1 gradient spread over the argument's units
                if all(ir.dims.get(x.name, SCALAR) == SCALAR for x in expr.free_symbols):
                    text = f"_bcast({text}, {_size_code(ir, ir.dims[s], '_state0')})"
                term = text
            elif ir.dims.get(s) == SCALAR and node.dim != SCALAR:  # a broadcast value: summed back
                term = f"_rsum({text})"
            if members and s not in ir.set_vectors:  # read by every member: summed over them
                term = f"_ssum({' * '.join(term) if isinstance(term, tuple) else term})"
            add(s, term)
    # wider stacks first, so that a narrower one can be a view of a wider one
    for src in sorted(states + inputs + sets, key=lambda a: -len(p.groups[a].terms) if a in p.groups else 0):
        flush_group(src)
    for s in states:
        code(f"_carry_{s} = _d_{s}" if s in bars else f"_carry_{s} = _zeros(_carry_{s}.shape, _carry_{s})")
    code("if trace is not None:")
    code("    trace.append({" + ", ".join(f"{s!r}: _carry_{s}" for s in states) + "})")
    for n in pointwise_inputs:
        code(f"_DX_{n} = _put(_DX_{n}, _t, _d_{n}, _T)" if n in bars else
             f"_DX_{n} = _put(_DX_{n}, _t, _zeros({_v(n)}.shape, {_v(n)}), _T)")  # fmt: skip
    for n in sets:
        if n in bars:
            code(f"_DX_{n} = _d_{n} if _DX_{n} is None else _DX_{n} + _d_{n}")
    code.indent = 1
    owners = [e[1] for e in events if e[0] == "flush" and e[1] == e[2]]
    if fusion is not None and fusion.backward(p, events, items, item_dims, pointwise_inputs, owners):
        loop = code.lines[consts_at:]
        del code.lines[consts_at:]
        carries = ", ".join(f"_carry_{s}" for s in states)
        widths = ", ".join(" + ".join(_v(w) + ".shape[0]" for _, w in p.groups[a].terms) for a in owners)
        dx = ", ".join(_size_code(ir, ir.dims[n], "_state0") for n in pointwise_inputs)
        code("_c = None")
        code("if trace is None and _KERNELS is not None:  # the whole loop in C, where it can run")
        code(f"    _c = _KERNELS.backward_loop(_sequence_args, params, cache, d_outputs, [{carries}], "
             f"[{', '.join(f'_grad_{d}' for d in diagonals)}], [{widths}], [{dx}])")  # fmt: skip
        code("if _c is not None:")
        code(f"    [{', '.join(f'_GBs_{a}' for a in owners)}], [{', '.join(f'_DX_{n}' for n in pointwise_inputs)}], "
             f"[{carries}] = _c")  # fmt: skip
        code("else:")
        code.lines += ["    " + line if line else line for line in loop]
    if fused:
        fusion.preamble(code, consts_at, "_state0", '[*params.values(), *cache["inputs"].values(), *_state0.values()]')
    _constants(code, printer, consts_at, f"_X_{inputs[0]}")
    code("grads = {}")
    code("d_inputs = {}")
    for g in p.groups.values():
        code(f"_GBs = {alias.get(g.arg, f'_GBs_{g.arg}')}")
        src = f"_X_{g.arg}" if g.hoisted or g.const else f"_S_{g.arg}"
        code("_m = _GBs.shape[2]")
        rows = "_B * _L" if g.const else "_T * _B"  # a set input's blocks: (B, L, m) over all steps
        code(f"_GW = _GBs.reshape({rows}, _m).T @ {src}.reshape({rows}, {src}.shape[2])")
        if any(ir.node_map[aff].bias and ir.node_map[aff].terms[0][1] == g.arg for aff, _ in g.terms):
            code("_Gb = _GBs.sum((0, 1))")
        for k, (aff, w) in enumerate(g.terms):
            block = _block(g, k, "_GW", rows=True)
            mask = next(x.mask for x in ir.weights if x.name == w)
            code(f"grads[{w!r}] = {block}" + (f" * _mask_{w}" if mask is not None else ""))
            node = ir.node_map[aff]
            if node.bias and node.terms[0][1] == g.arg:
                code(f"grads[{node.bias!r}] = {_block(g, k, '_Gb')}")
        if g.hoisted:
            code(f"d_inputs[{g.arg!r}] = (_GBs.reshape(_T * _B, _m) @ {g.var}).reshape(_T, _B, -1)")
        if g.const:
            code(f"d_inputs[{g.arg!r}] = _GBs @ {g.var}")
    for n in pointwise_inputs + [n for n in sets if n in bars]:
        code(f"_dx = _DX_{n}")
        code(f"d_inputs[{n!r}] = d_inputs[{n!r}] + _dx if {n!r} in d_inputs else _dx")
    for n in inputs + sets:
        code(f"if {n!r} not in d_inputs:")
        code(f"    d_inputs[{n!r}] = _zeros(_X_{n}.shape, _X_{n})")
    for (_, w), (a, u) in deferred.items():
        g = next(g for g in p.groups.values() if a in [n for n, _ in g.terms])
        block = _block(g, [n for n, _ in g.terms].index(a), f"({alias.get(g.arg, f'_GBs_{g.arg}')})")
        seq = f"_X_{u}" if u in inputs else f"_S_{u}"
        code(f"_grad_{w} = _grad_{w} + ({block} * {seq}).sum((0, 1))")
    for d in diagonals:
        code(f"grads[{d!r}] = _grad_{d}")
    states_map = ", ".join(f"{s!r}: _carry_{s}" for s in states)
    owned = [f"_GBs_{a}" for a, g in p.groups.items() if a not in alias and not g.const]
    emission.release_backward(code, owned, ", ".join(f"_carry_{s}" for s in states))
    code(f"return grads, d_inputs, {{{states_map}}}")
    return code.text()
