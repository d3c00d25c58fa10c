"""The fused C of a generated torch module (:mod:`lstm_verify.kernels`): which pointwise blocks
become kernels, and the forward and backward loops in C where a cell allows them."""

from __future__ import annotations

import sympy

from ..ir import Affine, CellIR, Pointwise, Reduce, dependencies
from ..spec import SCALAR
from .emit import _Code, _size_code, _unpack_params, drop_unread
from .plan import Plan, _batched
from .printers import _v, fold_constants


class Fusion:
    """The C of one generated torch module (:mod:`lstm_verify.kernels`). Each pointwise block
    that the kernels can compute is emitted twice, as a kernel call when the module's kernels
    accept the call's tensors (``_kt``) and as torch operations otherwise (:meth:`call`,
    :meth:`preamble`); :meth:`sequence` and :meth:`backward` plan the forward and backward
    loops in C; :meth:`source` is the module's ``_C_SOURCE`` and what goes with it."""

    def __init__(self, ir: CellIR):
        self.ir = ir
        self.batched = _batched(ir)
        self.segments: list = []
        self.widths: dict[str, str] = {}
        self.loop = None
        self.bloop = None
        self.stacks: list[tuple] = []  # per-step groups multiplied as one (see sequence)
        self.lead: dict[str, str] = {}

    def width(self, dim: str) -> str:
        if dim == SCALAR:
            return "1"
        return self.widths.setdefault(dim, f"_w{len(self.widths)}")

    def call(self, code: _Code, seg, dim: str, into: dict, like: str):
        """Allocate the segment's outputs (or take them from ``into``: name -> (buffer, slot),
        the slot used when the buffer is not None) and call its kernel."""
        for name in seg.outputs:
            new = f"_empty((_B, {self.width(dim)}), {like})"
            if name in into:
                buf, slot = into[name]
                new = slot if buf is None else f"{new} if {buf} is None else {slot}"
            code(f"{_v(name)} = {new}")
        args = ["_B", self.width(dim), _v(seg.step) if seg.step else "0"]
        for name, _ in seg.operands:
            args += [_v(name), f"{_v(name)}.stride(0)" if name in self.batched else "0"]
        for name in seg.outputs:
            args += [_v(name), f"{_v(name)}.stride(0)"]
        code(f"_kt[{seg.index}]({', '.join(args)})")

    def preamble(self, code: _Code, at: int, state: str, tensors: str):
        """At line ``at``: the widths the calls use and ``_kt``, the kernels for these tensors."""
        lines = [f"{n} = {_size_code(self.ir, d, state)}" for d, n in self.widths.items()]
        lines.append(f"_kt = None if _KERNELS is None else _KERNELS.table({tensors})")
        code.lines[at:at] = ["    " * code.indent + line for line in lines]
        self.widths = {}

    def plan(self, items, dim: str, outputs, extra=None):
        """The segment for ``items``, or None where the kernels cannot compute them."""
        from .. import kernels, triton_kernels

        try:
            seg = kernels.plan_segment(len(self.segments), items, self.ir, self.batched, dim, outputs, extra)
            for suffix, real in (("_f32", "float"), ("_f64", "double")):
                kernels.kernel_text(seg, suffix, real)
            triton_kernels.kernel_text(seg)  # a block is fused where both print it
        except kernels.Unfusable:
            return None
        self.segments.append(seg)
        return seg

    def sequence(self, p: Plan) -> None:
        """Plan the whole forward loop in C (``lvseq``; it also saves what the backward reads): its GEMMs through
        the BLAS that torch carries, its pointwise blocks through the block kernels. An affine
        value read only by pointwise blocks is never stored: each block that reads it adds up
        its GEMM blocks and bias itself; every other value has a buffer of its own. Cells with
        reductions, set inputs or a block the kernels cannot compute keep the loop in Python
        (``self.loop`` stays None)."""
        ir = self.ir
        if ir.sets or any(isinstance(n, Reduce) for n in ir.nodes):
            return
        readers: dict[str, list] = {}
        for m in ir.nodes:
            for d in dependencies(m):
                readers.setdefault(d, []).append(m)
        new_values = {ir.new(s) for s, _ in ir.states}
        folded = {n.name: n for n in ir.nodes if isinstance(n, Affine) and n.name not in new_values
                  and n.name not in p.saved and all(isinstance(r, Pointwise) for r in readers.get(n.name, []))}  # fmt: skip
        steps = []  # ("gemm", group) | ("stack", args) | ("affine", node) | ("block", segment, dim)
        run: list = []
        done: set[str] = set()
        # per-step groups feeding the same affine maps in the same order (greff_fgr's h, i, f, o):
        # their arguments side by side, one GEMM with the weights side by side
        same: dict[tuple, list] = {}
        for g in p.groups.values():
            if not g.hoisted and not g.const:
                same.setdefault(tuple(a for a, _ in g.terms), []).append(g.arg)
        self.stacks = [tuple(args) for args in same.values() if len(args) > 1]
        self.lead = {a: st[0] for st in self.stacks for a in st}

        def parts(node):
            args = list(dict.fromkeys(self.lead.get(arg, arg) for _, arg in node.terms))
            out = [sympy.Symbol(f"part:{arg}:{node.name}") for arg in args]
            return out + ([sympy.Symbol(node.bias)] if node.bias else [])

        def flush():
            start = 0
            for k in range(1, len(run) + 1):
                if k == len(run) or ir.dims[run[k].name] != ir.dims[run[start].name]:
                    part = run[start:k]
                    dim = ir.dims[part[0].name]
                    items, extra = [], {}
                    for n in part:
                        expr = fold_constants(n.expr)
                        sums = {sym: sympy.Add(*parts(folded[sym.name])) for sym in expr.free_symbols
                                if sym.name in folded}  # fmt: skip
                        for total in sums.values():
                            extra.update({x.name: ir.dims[x.name.split(":")[2]] for x in total.free_symbols
                                          if x.name.startswith("part:")})  # fmt: skip
                        items.append((n.name, expr.xreplace(sums)))
                    seg = self.plan(items, dim, [n.name for n in part], extra)
                    if seg is None:
                        raise NoLoop
                    steps.append(("block", seg, dim))
                    start = k
            run.clear()

        try:
            for node in p.order:
                if isinstance(node, Pointwise):
                    run.append(node)
                    continue
                flush()
                for _, arg in node.terms:
                    g = p.groups[arg]
                    if not g.hoisted and arg not in done:
                        stack = next((st for st in self.stacks if arg in st), None)
                        done.update(stack or (arg,))
                        steps.append(("stack", stack) if stack else ("gemm", g))
                if node.name not in folded:
                    steps.append(("affine", node))
            flush()
        except NoLoop:
            return
        self.loop = (p, steps)

    def _loop_text(self, suffix: str, real: str) -> list[str]:
        ir = self.ir
        p, steps = self.loop
        dims = self.loop_dims()
        n = {d: ("1" if d == SCALAR else f"n[{k}]") for k, d in enumerate(dims)}
        inputs = [x for x, _ in ir.inputs]
        states = [s for s, _ in ir.states]
        pnames = self.loop_params()
        groups = list(p.groups.values())
        out_dim = {w.name: w.out_dim for w in ir.weights}
        width = {g.arg: " + ".join(n[out_dim[w]] for _, w in g.terms) for g in groups}
        offset = {}
        for g in groups:
            acc = []
            for node, w in g.terms:
                offset[(g.arg, node)] = " + ".join(acc) or "0"
                acc.append(n[out_dim[w]])
        nodes = [node.name for node in ir.nodes]
        gi = {g.arg: k for k, g in enumerate(groups)}

        def block(arg, node, row="b"):
            """Where the GEMM block of ``arg`` for affine ``node`` starts, at batch row ``row``."""
            rows = f"((size_t)t * B + {row})" if p.groups[arg].hoisted else f"(size_t){row}"
            return f"G{gi[arg]} + {rows} * ({width[arg]}) + {offset[(arg, node)]}"

        def ptr(name):
            if name.startswith("part:"):
                _, arg, node = name.split(":")
                return f"({block(arg, node, '0')})"
            if name in ir.node_map:
                return f"V{nodes.index(name)}"
            if name in states:
                return f"C{states.index(name)}"
            if name in inputs:
                return f"(X[{inputs.index(name)}] + (size_t)t * B * {n[ir.dims[name]]})"
            return f"P[{pnames.index(name)}]"

        def stride(name):
            if name.startswith("part:"):
                return f"({width[name.split(':')[1]]})"
            return "0" if name in pnames else n[ir.dims[name]]

        packed = real == "float"  # MKL's packed GEMM for the recurrent weights, where torch has it
        L = [f"int lvseq{suffix}(long T, long B, double t0, void *const *blas, const {real} *const *W, "
             f"const {real} *const *P, const {real} *const *X, const {real} *const *S0, {real} *const *SF, "
             f"{real} *out, {real} *const *saved, const long *n)",  # fmt: skip
             "{",
             f"    lv_gemm{suffix} gemm = (lv_gemm{suffix})blas[0];",
             f"    const {real} one = 1, zero = 0;",
             "    int rc = 0;"]
        if packed:
            L += ["    lv_pack_size pack_size = (lv_pack_size)blas[1];",
                  "    lv_pack pack = (lv_pack)blas[2];",
                  "    lv_compute compute = (lv_compute)blas[3];"]  # fmt: skip
        bufs = []
        for g in groups:
            if self.lead.get(g.arg, g.arg) != g.arg:  # a stack's product is in its first group's
                continue
            rows = "(size_t)T * B" if g.hoisted else "(size_t)B"
            L.append(f"    {real} *G{gi[g.arg]} = malloc(sizeof({real}) * {rows} * ({width[g.arg]}));")
            bufs.append(f"G{gi[g.arg]}")
        stored = [k for k, name in enumerate(nodes) if any(
            (st[0] == "affine" and st[1].name == name) or (st[0] == "block" and name in st[1].outputs) for st in steps)]
        for k in stored:
            L.append(f"    {real} *V{k} = malloc(sizeof({real}) * (size_t)B * {n[ir.dims[nodes[k]]]});")
            bufs.append(f"V{k}")
        for k, s_ in enumerate(states):
            for pre in ("C", "N"):
                L.append(f"    {real} *{pre}{k} = malloc(sizeof({real}) * (size_t)B * {n[ir.dims[s_]]});")
                bufs.append(f"{pre}{k}")
        stacked = {a for st in self.stacks for a in st}
        recurrent = [g for g in groups if not g.hoisted and g.arg not in stacked]
        ksum = [" + ".join(f"({n[ir.dims[a]]})" for a in st) for st in self.stacks]
        for k, st in enumerate(self.stacks):
            L.append(f"    {real} *A{k} = malloc(sizeof({real}) * (size_t)B * ({ksum[k]}));")
            bufs.append(f"A{k}")
        if packed:
            L += [f"    {real} *Q{gi[g.arg]} = NULL;" for g in recurrent]
            L += [f"    {real} *QS{k} = NULL;" for k in range(len(self.stacks))]
        L.append(f"    if ({' || '.join('!' + b for b in bufs)}) {{ rc = -1; goto done; }}")
        for g in groups:  # GEMM sizes are int: larger problems run in Python
            rows = "(double)T * B" if g.hoisted else "(double)B"
            L.append(f"    if ({rows} * ({width[g.arg]}) > 2147483647.0) {{ rc = -2; goto done; }}")
        packs = [(f"Q{gi[g.arg]}", width[g.arg], n[ir.dims[g.arg]], f"W[{gi[g.arg]}]") for g in recurrent]
        packs += [(f"QS{k}", width[st[0]], ksum[k], f"W[{len(groups) + k}]") for k, st in enumerate(self.stacks)]
        for q, R, K, w in packs if packed else ():
            L += ["    if (compute) {",
                  f"        size_t size = (pack_size(162, B, {R}, {K}) + 63) / 64 * 64;",
                  f"        {q} = aligned_alloc(64, size);",
                  f"        if (!{q}) {{ rc = -1; goto done; }}",
                  f"        pack(101, 162, 112, B, {R}, {K}, 1.0f, {w}, {K}, {q});",
                  "    }"]  # fmt: skip
        for k, s_ in enumerate(states):
            L.append(f"    memcpy(C{k}, S0[{k}], sizeof({real}) * (size_t)B * {n[ir.dims[s_]]});")
        for g in groups:
            if g.hoisted:
                K = n[ir.dims[g.arg]]
                L += _product(width[g.arg], K, f"W[{gi[g.arg]}]", f"X[{inputs.index(g.arg)}]", K, f"G{gi[g.arg]}",
                              rows="T * B", indent=1)
        L.append("    for (long t = 0; t < T; ++t) {")
        L.append("        const double tt = t0 + t;")
        L.append("        (void)tt;")
        for step in steps:
            if step[0] in ("gemm", "stack"):
                if step[0] == "gemm":
                    g = step[1]
                    K, a, w, q = n[ir.dims[g.arg]], ptr(g.arg), f"W[{gi[g.arg]}]", f"Q{gi[g.arg]}"
                    out = f"G{gi[g.arg]}"
                else:  # the arguments side by side in A<k>, one GEMM
                    k = self.stacks.index(step[1])
                    K, a, w, q, out = ksum[k], f"A{k}", f"W[{len(groups) + k}]", f"QS{k}", f"G{gi[step[1][0]]}"
                    at = []
                    for arg in step[1]:
                        wa = n[ir.dims[arg]]
                        L += ["        for (long b = 0; b < B; ++b)",
                              f"            memcpy(A{k} + (size_t)b * ({K}) + {' + '.join(at) or '0'}, "
                              f"{ptr(arg)} + (size_t)b * {wa}, sizeof({real}) * {wa});"]  # fmt: skip
                        at.append(f"({wa})")
                m = width[step[1].arg if step[0] == "gemm" else step[1][0]]
                L += _product(m, K, w, a, K, out, packed=q if packed else None)
            elif step[0] == "affine":
                node = step[1]
                w = n[node.dim]
                args = list(dict.fromkeys(self.lead.get(arg, arg) for _, arg in node.terms))
                terms = [f"({block(arg, node.name)})[j]" for arg in args]
                if node.bias:
                    terms.append(f"P[{pnames.index(node.bias)}][j]")
                L += ["        for (long b = 0; b < B; ++b)",
                      f"            for (long j = 0; j < {w}; ++j)",
                      f"                V{nodes.index(node.name)}[(size_t)b * {w} + j] = {' + '.join(terms)};"]  # fmt: skip
            else:
                seg, dim = step[1], step[2]
                args = ["B", n[dim], "tt"]
                for name, _ in seg.operands:
                    args += [ptr(name), stride(name)]
                for name in seg.outputs:
                    args += [ptr(name), n[dim]]
                L.append(f"        lvk{seg.index}{suffix}({', '.join(args)});")
        L.append("        if (saved) {  /* the values the backward reads, step by step */")
        for k, name in enumerate(p.saved):
            w = n[ir.dims[name]]
            L.append(f"            memcpy(saved[{k}] + (size_t)t * B * {w}, {ptr(name)}, sizeof({real}) * (size_t)B * {w});")
        L.append("        }")
        for k, s_ in enumerate(states):  # all new values first: a state may take another's
            L.append(f"        memcpy(N{k}, {ptr(ir.new(s_))}, sizeof({real}) * (size_t)B * {n[ir.dims[s_]]});")
        for k, s_ in enumerate(states):
            L.append(f"        memcpy(C{k}, N{k}, sizeof({real}) * (size_t)B * {n[ir.dims[s_]]});")
        o = states.index(ir.output)
        w_out = n[ir.dims[ir.output]]
        L.append(f"        memcpy(out + (size_t)t * B * {w_out}, C{o}, sizeof({real}) * (size_t)B * {w_out});")
        L.append("    }")
        for k, s_ in enumerate(states):
            L.append(f"    memcpy(SF[{k}], C{k}, sizeof({real}) * (size_t)B * {n[ir.dims[s_]]});")
        return L + _done(bufs, packs if packed else [])

    def backward(self, p: Plan, events, items, item_dims, pointwise_inputs, owners) -> bool:
        """Plan the backward loop in C (``lvbwd``) from what one step of the Python loop does
        (``events``, in its order): its partials through block kernels, each gradient in a buffer
        of its own, the stacked gradient blocks of each GEMM group written where the Python loop
        writes them (``owners``; the other groups read inside them), the recurrent products
        through the same BLAS as the forward loop. Only where the forward loop runs in C and
        every step is elementwise (no reductions, sets or sizes of 1); returns whether."""
        ir = self.ir
        if not self.loop or any(e[0] == "other" for e in events) or SCALAR in ir.dims.values():
            return False
        segs = []
        by_dim: dict[str, list] = {}
        for key, expr in items:
            by_dim.setdefault(item_dims[key], []).append((key, fold_constants(expr)))
        for dim, group in by_dim.items():
            seg = self.plan(group, dim, [k for k, _ in group])
            if seg is None:
                return False
            segs.append((seg, dim))
        self.bloop = (p, events, segs, pointwise_inputs, owners, item_dims)
        return True

    def _backward_text(self, suffix: str, real: str) -> list[str]:
        ir = self.ir
        p, events, segs, pw_inputs, owners, item_dims = self.bloop
        dims = self.loop_dims()
        n = {d: ("1" if d == SCALAR else f"n[{k}]") for k, d in enumerate(dims)}
        inputs = [x for x, _ in ir.inputs]
        states = [s for s, _ in ir.states]
        pnames = self.loop_params()
        groups = list(p.groups.values())
        gi = {g.arg: k for k, g in enumerate(groups)}
        out_dim = {w.name: w.out_dim for w in ir.weights}
        width = {g.arg: " + ".join(n[out_dim[w]] for _, w in g.terms) for g in groups}
        offsets = {g.arg: [" + ".join(n[out_dim[w]] for _, w in g.terms[:k]) or "0" for k in range(len(g.terms) + 1)]
                   for g in groups}  # fmt: skip
        saved = list(p.saved)
        vectors = [x.name for x in ir.nodes] + states + inputs
        D = {v: f"D{k}" for k, v in enumerate(vectors)}
        partial = {seg_key: f"Q{k}" for k, seg_key in enumerate(k_ for seg, _ in segs for k_, _ in seg.items)}

        def w_of(name):
            return n[item_dims[name] if name in partial else ir.dims[name]]

        def operand(name):
            """(pointer, stride) of a value the partials read at step t."""
            if name in partial:
                return partial[name], w_of(name)
            if name in saved:
                return f"(S[{saved.index(name)}] + (size_t)t * B * {w_of(name)})", w_of(name)
            if name in inputs:
                return f"(X[{inputs.index(name)}] + (size_t)t * B * {w_of(name)})", w_of(name)
            return f"P[{pnames.index(name)}]", "0"

        def factor(f):
            if f == 1:
                return ""
            if f.is_Number:
                return f" * ({float(f)!r})"
            ptr_, st = operand(f.name)
            return f" * {ptr_}[(size_t)b * {st} + j]"

        def size(v):
            return n[ir.dims[v]]

        packed = real == "float"
        # a stack of the forward loop is one product here too where its groups' stacked blocks
        # are one and the same (each a whole view of one owner): TS<k> = blocks @ [W_a W_b ...]
        flushes = {e[1]: e for e in events if e[0] == "flush"}
        stacks = [st for st in self.stacks
                  if len({flushes[a][2] for a in st}) == 1 and all(flushes[a][3] == 0 for a in st)
                  and all(len(p.groups[a].terms) == len(p.groups[flushes[a][2]].terms) for a in st)]  # fmt: skip
        in_stack = {a: k for k, st in enumerate(stacks) for a in st}
        ksum = [" + ".join(f"({size(a)})" for a in st) for st in stacks]
        kat = {a: " + ".join(f"({size(x)})" for x in st[: st.index(a)]) or "0" for st in stacks for a in st}
        recurrent = [g for g in groups if not g.hoisted and g.arg not in in_stack]
        L = [f"int lvbwd{suffix}(long T, long B, double t0, void *const *blas, const {real} *const *W, "
             f"const {real} *const *P, const {real} *const *X, const {real} *const *S, const {real} *dout, "
             f"const {real} *const *carry_in, {real} *const *stacks, {real} *const *gdiag, {real} *const *dx, "
             f"{real} *const *carry_out, const long *n)",  # fmt: skip
             "{",
             f"    lv_gemm{suffix} gemm = (lv_gemm{suffix})blas[0];",
             f"    const {real} one = 1, zero = 0;",
             "    (void)zero;",
             "    int rc = 0;"]
        if packed:
            L += ["    lv_pack_size pack_size = (lv_pack_size)blas[1];",
                  "    lv_pack pack = (lv_pack)blas[2];",
                  "    lv_compute compute = (lv_compute)blas[3];"]  # fmt: skip
        bufs = []
        for v in vectors:
            L.append(f"    {real} *{D[v]} = malloc(sizeof({real}) * (size_t)B * {size(v)});")
            bufs.append(D[v])
        for key, q in partial.items():
            L.append(f"    {real} *{q} = malloc(sizeof({real}) * (size_t)B * {w_of(key)});")
            bufs.append(q)
        for k, s_ in enumerate(states):
            L.append(f"    {real} *CR{k} = malloc(sizeof({real}) * (size_t)B * {size(s_)});")
            bufs.append(f"CR{k}")
        for k in range(len(stacks)):
            L.append(f"    {real} *TS{k} = malloc(sizeof({real}) * (size_t)B * ({ksum[k]}));")
            bufs.append(f"TS{k}")
        packs = [(f"QW{gi[g.arg]}", size(g.arg), width[g.arg], f"W[{gi[g.arg]}]") for g in recurrent]
        packs += [(f"QT{k}", ksum[k], width[st[0]], f"W[{len(groups) + self.stacks.index(st)}]")
                  for k, st in enumerate(stacks)]  # fmt: skip
        if packed:
            L += [f"    {real} *{q} = NULL;" for q, _, _, _ in packs]
        L.append(f"    if ({' || '.join('!' + b for b in bufs)}) {{ rc = -1; goto done; }}")
        for g in groups:
            L.append(f"    if ((double)T * B * ({width[g.arg]}) > 2147483647.0) {{ rc = -2; goto done; }}")
        for q, K, R, w in packs if packed else ():
            L += ["    if (compute) {",
                  f"        size_t size = (pack_size(162, B, {K}, {R}) + 63) / 64 * 64;",
                  f"        {q} = aligned_alloc(64, size);",
                  f"        if (!{q}) {{ rc = -1; goto done; }}",
                  f"        pack(101, 162, 111, B, {K}, {R}, 1.0f, {w}, {K}, {q});",
                  "    }"]  # fmt: skip
        for k, s_ in enumerate(states):
            L.append(f"    memcpy(CR{k}, carry_in[{k}], sizeof({real}) * (size_t)B * {size(s_)});")
        L.append("    for (long t = T - 1; t >= 0; --t) {")
        L.append("        const double tt = t0 + t;")
        L.append("        (void)tt;")
        for v in vectors:
            L.append(f"        memset({D[v]}, 0, sizeof({real}) * (size_t)B * {size(v)});")
        for k, s_ in enumerate(states):  # the gradients reaching this step's new states
            w = size(s_)
            extra = f" + (dout ? dout[((size_t)t * B + b) * {w} + j] : 0)" if s_ == ir.output else ""
            L += ["        for (long b = 0; b < B; ++b)",
                  f"            for (long j = 0; j < {w}; ++j)",
                  f"                {D[ir.new(s_)]}[(size_t)b * {w} + j] += CR{k}[(size_t)b * {w} + j]{extra};"]  # fmt: skip
        for seg, dim in segs:
            args = ["B", n[dim], "tt"]
            for name, _ in seg.operands:
                args += list(operand(name))
            for name in seg.outputs:
                args += [partial[name], n[dim]]
            L.append(f"        lvk{seg.index}{suffix}({', '.join(args)});")
        for e in events:
            if e[0] == "flush":
                _, arg, owner, k0 = e
                og = p.groups[owner]
                row = f"stacks[{owners.index(owner)}] + (size_t)t * B * ({width[owner]})"
                if owner == arg:
                    for k, (aff, _) in enumerate(og.terms):
                        w = size(aff)
                        L += ["        for (long b = 0; b < B; ++b)",
                              f"            memcpy({row} + (size_t)b * ({width[owner]}) + {offsets[owner][k]}, "
                              f"{D[aff]} + (size_t)b * {w}, sizeof({real}) * {w});"]  # fmt: skip
                g = p.groups[arg]
                if g.hoisted:
                    continue
                if arg in in_stack:
                    k = in_stack[arg]
                    st = stacks[k]
                    if arg == min(st, key=lambda x: events.index(flushes[x])):  # the stack's first flush
                        L += _product(ksum[k], width[arg], f"W[{len(groups) + self.stacks.index(st)}]", row,
                                      width[owner], f"TS{k}", transposed=False, packed=f"QT{k}" if packed else None)
                    w = size(arg)
                    L += ["        for (long b = 0; b < B; ++b)",
                          f"            for (long j = 0; j < {w}; ++j)",
                          f"                {D[arg]}[(size_t)b * {w} + j] += TS{k}[(size_t)b * ({ksum[k]}) + {kat[arg]} + j];"]  # fmt: skip
                    continue
                L += _product(size(arg), width[arg], f"W[{gi[arg]}]", f"{row} + {offsets[owner][k0]}", width[owner],
                              D[arg], transposed=False, accumulate=True, packed=f"QW{gi[arg]}" if packed else None)
            elif e[0] == "add":
                _, node, s_, f = e
                w = size(node)
                L += ["        for (long b = 0; b < B; ++b)",
                      f"            for (long j = 0; j < {w}; ++j)",
                      f"                {D[s_]}[(size_t)b * {w} + j] += {D[node]}[(size_t)b * {w} + j]{factor(f)};"]  # fmt: skip
            else:  # a diagonal parameter: summed over the batch
                _, node, s_, f = e
                w = size(node)
                L += ["        for (long b = 0; b < B; ++b)",
                      f"            for (long j = 0; j < {w}; ++j)",
                      f"                gdiag[{[d for d, _ in ir.diagonals].index(s_)}][j] += "
                      f"{D[node]}[(size_t)b * {w} + j]{factor(f)};"]  # fmt: skip
        for k, s_ in enumerate(states):
            L.append(f"        memcpy(CR{k}, {D[s_]}, sizeof({real}) * (size_t)B * {size(s_)});")
        for k, x in enumerate(pw_inputs):
            L.append(f"        memcpy(dx[{k}] + (size_t)t * B * {size(x)}, {D[x]}, sizeof({real}) * (size_t)B * {size(x)});")
        L.append("    }")
        for k, s_ in enumerate(states):
            L.append(f"    memcpy(carry_out[{k}], CR{k}, sizeof({real}) * (size_t)B * {size(s_)});")
        return L + _done(bufs, packs if packed else [])

    def loop_dims(self) -> list[str]:
        ir = self.ir
        names = [x for x, _ in ir.inputs] + [s for s, _ in ir.states] + [n.name for n in ir.nodes]
        out = []
        for d in [ir.dims[x] for x in names] + [w.out_dim for w in ir.weights] + [w.in_dim for w in ir.weights]:
            if d != SCALAR and d not in out:
                out.append(d)
        return out

    def loop_params(self) -> list[str]:
        weights = {w.name for w in self.ir.weights}
        return [x for x in self.ir.param_names if x not in weights] + [b for b, _, _ in self.ir.buffers]

    def loop_args(self) -> str:
        """``_sequence_args(params, inputs, state)``: the stacked weights, the other parameters
        and the sizes the C loop takes, in its order."""
        p, _ = self.loop
        code = _Code()
        code.indent = 0
        code("def _sequence_args(params, inputs, state):")
        code.indent = 1
        _unpack_params(code, self.ir, p.groups)
        for x, _ in self.ir.inputs:
            code(f"_X_{x} = inputs[{x!r}]")
        weights = ", ".join([g.var for g in p.groups.values()] +
                            [f"_cat([{', '.join(p.groups[a].var for a in st)}], 1)" for st in self.stacks])
        others = ", ".join(_v(x) for x in self.loop_params())
        sizes = ", ".join(_size_code(self.ir, d, "state") for d in self.loop_dims())
        saved = ", ".join(_size_code(self.ir, self.ir.dims[x], "state") for x in p.saved)
        code(f"return [{weights}], [{others}], [{sizes}], [{saved}]")
        return drop_unread(code.text())

    def source(self) -> str:
        """The module's kernel text and arities (nothing when no block is fused)."""
        from .. import kernels, triton_kernels

        if not self.segments:
            return ""
        text = kernels.source(self.segments)
        loop = ""
        if self.loop:
            text += "\n" + "\n".join(self._loop_text("_f64", "double") + [""] + self._loop_text("_f32", "float")) + "\n"
            names = (tuple(x for x, _ in self.ir.inputs), tuple(s for s, _ in self.ir.states), self.ir.output,
                     tuple(self.loop[0].saved))
            loop = f"_C_LOOP = {names!r}\n\n\n" + self.loop_args() + "\n"
        if self.bloop:
            text += "\n" + "\n".join(self._backward_text("_f64", "double") + [""] + self._backward_text("_f32", "float"))
            text += "\n"
        return ("\n\n# set by lstm_verify.kernels.attach: the compiled kernels of _C_SOURCE (and, on CUDA, of\n"
                "# _TRITON_SOURCE)\n_KERNELS = None\n"
                f"_C_SOURCE = {text!r}\n_C_ARITY = {tuple(seg.arity for seg in self.segments)!r}\n"
                f"_TRITON_SOURCE = {triton_kernels.source(self.segments)!r}\n" + loop)  # fmt: skip


class NoLoop(Exception):
    """The forward loop of this cell stays in Python."""


def _done(bufs, packs) -> list[str]:
    """The end of a C loop: every buffer freed (the packed weights too), then the return code."""
    return ["done:", *[f"    free({b});" for b in bufs], *[f"    free({q});" for q, _, _, _ in packs],
            "    return rc;", "}"]  # fmt: skip


def _product(m, k, w, a, lda, out, rows="B", transposed=True, accumulate=False, packed=None, indent=2) -> list[str]:
    """C for ``out (rows x m) = a (rows x k, row stride lda) @ W`` (``+ out`` when accumulating),
    all row-major, where W is the (m x k) weight ``w`` transposed, or a (k x m) one as it is.
    Through MKL's packed copy of the weight (the C variable ``packed``) where there is one,
    else the Fortran GEMM."""
    ldw = "k" if transposed else "m"
    beta = "one" if accumulate else "zero"
    call = (f'gemm("{"T" if transposed else "N"}", "N", &m, &rows, &k, &one, {w}, &{ldw}, {a}, &lda, &{beta}, '
            f"{out}, &m);")  # fmt: skip
    if packed:
        call = (f"if ({packed}) compute(101, 111, 151, rows, m, k, {a}, lda, {packed}, {ldw}, "
                f"{'1.0f' if accumulate else '0.0f'}, {out}, m); else {call}")  # fmt: skip
    pad = "    " * indent
    return [f"{pad}{{", f"{pad}    int m = {m}, rows = {rows}, k = {k}, lda = {lda};", f"{pad}    {call}", f"{pad}}}"]
