"""Exact one-step Jacobians (lstm_verify.derive).

Closed forms of named cells are compared symbolically with SymPy against forms derived by hand
from each spec's equations. Every block of every catalog cell is then checked numerically at
tiny sizes against three oracles: the explicit-matrix expansion differentiated entry by entry
(``explicit_step``), the structured form evaluated from the mpmath reference's saved forward
values with NumPy weights, and, for several cells, torch autograd through the generated step.
Cells with set inputs are covered too (their set-axis factors: tests/test_set_jacobians.py).
"""

import zlib
from functools import lru_cache

import mpmath
import numpy as np
import pytest
import sympy

import lstm_verify as lv
from lstm_verify.derive import (
    ONES,
    REDUCE,
    SET_IN,
    SET_OUT,
    Term,
    block_latex,
    block_text,
    explicit_step,
    jacobian,
    jacobian_blocks,
    partials,
    spaces,
    structured_matrix,
)
from lstm_verify.errors import LstmVerifyError
from lstm_verify.functions import BY_SYMPY, max_grad
from lstm_verify.functions import step as step_function
from lstm_verify.ir import Reduce
from lstm_verify.reference import reference_forward
from lstm_verify.spec import NEW, SCALAR, SET

TOL = 1e-12
SIZES = {"input": 2, "hidden": 3, "proj": 2, "item": 2, "attn": 2, "set": 3}  # the cell's own are used
# multiplicative_lstm's explicit expansion (m = W x * W h feeding five maps) takes 20 s at hidden 3;
# attention_decoder's (every gate reads z, which reads h through all 3 members' scores) 4 s at
# hidden 2, 5.5 at 3
SMALLER = {"multiplicative_lstm": {"input": 2, "hidden": 2},
           "attention_decoder": {"input": 2, "hidden": 2, "item": 2, "attn": 2, "set": 3}}  # fmt: skip
CLOCKWORK_SIZES = {"input": 2, "hidden": 4}  # 4 modules (or heads) need at least 4 units: periods 1, 2, 4, 8


def S(name):
    """A forward value / parameter symbol exactly as the IR spells it."""
    return sympy.Symbol(name, real=True)


def new(state):
    return S(state + NEW)


sig_d = lambda s: s * (1 - s)  # noqa: E731 - sigmoid' in output form


def same(a, b) -> bool:
    return sympy.simplify(sympy.expand(a - b)) == 0


def by_weights(terms) -> dict:
    """{weights: leading diagonal} for terms whose inner diagonals are all 1."""
    out = {}
    for t in terms:
        assert all(d == 1 for d in t.diags[1:]), t
        assert t.weights not in out
        out[t.weights] = t.diags[0]
    return out


def assert_block(terms, expected: dict):
    got = by_weights(terms)
    assert set(got) == set(expected), (sorted(got), sorted(expected))
    for w, coeff in expected.items():
        assert same(got[w], coeff), (w, got[w], coeff)


# ------------------------------------------------------------------- 1. lstm: dc'/dc = diag(f)


def test_lstm_cell_carousel_is_diag_f():
    cell = lv.load("lstm")
    terms = cell.jacobian("c'", "c")
    assert len(terms) == 1
    (t,) = terms
    assert t.weights == () and t.diags == (S("f"),)
    assert block_text(terms) == "diag(f)"
    assert jacobian(cell.ir, "c_", "c") == terms.terms  # c' and c_ name the same node


def test_jacobian_object_prints_its_closed_form():
    cell = lv.load("lstm")
    j = cell.jacobian("c'", "c")
    assert str(j) == "diag(f)" and "dc'/dc = diag(f)" in repr(j)
    assert j.latex() == r"\operatorname{diag}\left(f\right)"
    assert str(j.sympy()) == "diag(f)"
    hh = cell.jacobian("h'", "h")
    assert len(hh) == 4 and not hh.is_zero
    expr = hh.sympy()  # weights do not commute: diag(...) stays left of its weight
    assert all(str(term).endswith(("W_f_h", "W_g_h", "W_i_h", "W_o_h")) for term in expr.args)
    assert str(lv.load("rnn_tanh").jacobian("h'", "h")) == "diag(1 - h'**2) · W_h_h"


def test_lstm_other_blocks_match_hand_derivation():
    ir = lv.load("lstm").ir
    i, f, g, o, c, cn = S("i"), S("f"), S("g"), S("o"), S("c"), new("c")
    # c' = f*c + i*g with i, f, o sigmoid and g tanh of lin(x, h)
    for src in ("h", "x"):
        assert_block(jacobian(ir, "c'", src), {
            (f"W_f_{src}",): c * sig_d(f),
            (f"W_i_{src}",): g * sig_d(i),
            (f"W_g_{src}",): i * (1 - g**2),
        })  # fmt: skip
        # h' = o*tanh(c'): the c' paths times o*(1 - tanh(c')^2), plus the o path
        dh_dc_new = o * (1 - sympy.tanh(cn) ** 2)
        assert_block(jacobian(ir, "h'", src), {
            (f"W_f_{src}",): dh_dc_new * c * sig_d(f),
            (f"W_i_{src}",): dh_dc_new * g * sig_d(i),
            (f"W_g_{src}",): dh_dc_new * i * (1 - g**2),
            (f"W_o_{src}",): sympy.tanh(cn) * sig_d(o),
        })  # fmt: skip
    assert_block(jacobian(ir, "h'", "c"), {(): o * (1 - sympy.tanh(cn) ** 2) * f})


# ------------------------------------------------------- 2. lstm_nofg and greff_nfg carousels


def test_lstm_nofg_carousel_is_exactly_identity():
    cell = lv.load("lstm_nofg")
    terms = cell.jacobian("c'", "c")
    assert len(terms) == 1
    assert terms[0].weights == () and terms[0].diags == (sympy.Integer(1),)
    assert block_text(terms) == "I" and block_latex(terms) == "I"


def test_greff_nfg_carousel_is_identity_plus_input_gate_peephole():
    ir = lv.load("greff_nfg").ir
    # the spec: i = sigmoid(lin(x, h) + p_i*c), c' = c + i*g, o sees c' (not c)
    eqs = [eq.text for eq in ir.spec.equations]
    assert "c' = c + i*g" in eqs and "i = sigmoid(lin(x, h) + p_i*c)" in eqs
    assert [p for p, _ in ir.diagonals] == ["p_i", "p_o"]
    i, g, p_i = S("i"), S("g"), S("p_i")
    # paths c -> c' directly (coefficient exactly 1) and c -> i -> c' (g * i(1-i) * p_i)
    pd = partials(ir)
    assert pd["c_"]["c"] == 1
    assert same(pd["c_"]["i"], g) and same(pd["i"]["c"], p_i * sig_d(i))
    terms = jacobian(ir, "c'", "c")
    # both paths are diagonal without weights, so the tool merges them into one diagonal term
    assert len(terms) == 1 and terms[0].weights == () and len(terms[0].diags) == 1
    coeff = terms[0].diags[0]
    assert same(coeff, 1 + g * p_i * sig_d(i))
    assert same(coeff - 1, g * i * (1 - i) * p_i)  # the peephole part ...
    assert coeff.subs(p_i, 0) == 1  # ... and without it, exactly the identity
    assert block_text(terms) == "diag(g*i*p_i*(1 - i) + 1)"


# ----------------------------------------------------------------------- 3. lstm_peephole


def test_lstm_peephole_cell_and_output_blocks():
    ir = lv.load("lstm_peephole").ir
    eqs = [eq.text for eq in ir.spec.equations]
    assert "i = sigmoid(lin(x, h) + p_i*c)" in eqs and "f = sigmoid(lin(x, h) + p_f*c)" in eqs
    assert "o = sigmoid(lin(x, h) + p_o*c')" in eqs  # Graves/Greff: o peeks at the new cell
    i, f, g, o, c, cn = S("i"), S("f"), S("g"), S("o"), S("c"), new("c")
    p_i, p_f, p_o = S("p_i"), S("p_f"), S("p_o")
    # c' = f*c + i*g: direct f, plus c * f' * p_f through f, plus g * i' * p_i through i
    dcn_dc = f + c * sig_d(f) * p_f + g * sig_d(i) * p_i
    assert_block(jacobian(ir, "c'", "c"), {(): dcn_dc})
    # h' = o*tanh(c'), o = sigmoid(... + p_o*c'): dh'/dc' = o(1 - tanh^2 c') + tanh(c') o(1-o) p_o
    dh_dcn = o * (1 - sympy.tanh(cn) ** 2) + sympy.tanh(cn) * sig_d(o) * p_o
    assert_block(jacobian(ir, "h'", "c"), {(): dh_dcn * dcn_dc})
    assert_block(jacobian(ir, "o", "c"), {(): sig_d(o) * p_o * dcn_dc})
    # had o seen the previous cell, the o path would not carry the factor dc'/dc
    old_convention = o * (1 - sympy.tanh(cn) ** 2) * dcn_dc + sympy.tanh(cn) * sig_d(o) * p_o
    assert not same(by_weights(jacobian(ir, "h'", "c"))[()], old_convention)
    # the recurrent h path through o also sees p_o: diag(tanh(c') o(1-o)) W_o_h only, and the
    # c' paths (W_i_h, W_f_h, W_g_h) get the full dh'/dc'
    assert_block(jacobian(ir, "h'", "h"), {
        ("W_f_h",): dh_dcn * c * sig_d(f),
        ("W_i_h",): dh_dcn * g * sig_d(i),
        ("W_g_h",): dh_dcn * i * (1 - g**2),
        ("W_o_h",): sympy.tanh(cn) * sig_d(o),
    })  # fmt: skip


# ------------------------------------------------------------------------------ 4. rnn_tanh


def test_rnn_tanh_blocks():
    ir = lv.load("rnn_tanh").ir
    weights = {w.name: (w.out_dim, w.in_dim) for w in ir.weights}
    assert weights == {"W_h_h": ("hidden", "hidden"), "W_h_x": ("hidden", "input")}
    hn = new("h")
    for src, w in (("h", "W_h_h"), ("x", "W_h_x")):
        terms = jacobian(ir, "h'", src)
        assert len(terms) == 1
        (t,) = terms
        assert t.weights == (w,) and t.diags[1] == 1
        assert same(t.diags[0], 1 - hn**2)
        assert block_text(terms) == f"diag(1 - h'**2) · {w}"
    # the torch layout confirms which one is the recurrent matrix U
    tensors = {k: list(v) for k, v in ir.spec.layouts[0].tensors}
    assert tensors["weight_hh"] == ["W_h_h"] and tensors["weight_ih"] == ["W_h_x"]


# ------------------------------------------------ 5. numeric: structured == explicit == torch


def evaluate(exprs, point: dict, as_float=True) -> np.ndarray:
    """Evaluate a matrix of SymPy expressions at 30 digits; shared subtrees once. Floats, or
    with ``as_float=False`` the mpmath numbers (30 digits)."""
    memo: dict = {}

    def ev(e):
        r = memo.get(e)
        if r is not None:
            return r
        if e.is_Symbol:
            r = point[e]
        elif e.is_Rational:
            r = mpmath.mpf(e.p) / e.q
        elif e.is_Add:
            r = mpmath.fsum(ev(a) for a in e.args)
        elif e.is_Mul:
            r = mpmath.fprod(ev(a) for a in e.args)
        elif e.is_Pow:
            r = ev(e.base) ** ev(e.exp)
        elif type(e) in BY_SYMPY:
            r = BY_SYMPY[type(e)].mpmath(*[ev(a) for a in e.args])
        else:
            raise TypeError(f"cannot evaluate {e.func}")
        memo[e] = r
        return r

    with mpmath.workdps(30):
        if not as_float:
            return np.array([[+ev(sympy.sympify(e)) for e in row] for row in exprs], dtype=object)
        return np.array([[float(ev(sympy.sympify(e))) for e in row] for row in exprs], dtype=float)


# cells with normalisations: SymPy differentiates their explicit expansion for minutes even at
# hidden 2 (every unit reads every gate unit through the mean and variance); their structured
# blocks are checked against torch autograd of the generated step instead (test_reduction_...).
# A cell with sets (attention_decoder: a softmax over 3 members, sums over 2 units) expands in
# seconds, so it is checked both ways.
REDUCING = [n for n in lv.catalog() if lv.load(n).ir.reduces]
SLOW_EXPANSION = [n for n in REDUCING if not lv.load(n).ir.sets]
CASES = [(n, 0) for n in lv.catalog() if n != "clockwork_rnn" and n not in SLOW_EXPANSION]
CASES += [("clockwork_rnn", 0), ("clockwork_rnn", 1), ("clockwork_rnn", 2)]


@lru_cache(maxsize=None)
def setup(name, step):
    """Random point, explicit expansion, and the explicit Jacobian of every block (numeric)."""
    cell = lv.load(name)
    ir = cell.ir
    sizes = cell.sizes(sizes=CLOCKWORK_SIZES if ir.buffers else SMALLER.get(name, SIZES))
    rng = np.random.default_rng([zlib.crc32(name.encode()), step])
    params = cell.init_params(sizes=sizes, init="uniform", seed=int(rng.integers(1 << 30)))
    sources = {n: 0.7 * rng.standard_normal(sizes[d]) for n, d in list(ir.states) + list(ir.inputs)}
    # a set input: (L, n), member m's units at m*n + u when flattened, as explicit_step orders them
    sources |= {n: 0.7 * rng.standard_normal((sizes[SET], sizes[d])) for n, d in ir.sets}
    bufs = {b: params[b] for b, _, _ in ir.buffers}
    values, sym = explicit_step(ir, sizes, bufs, step)
    point = {}
    for name_, arr in list(sources.items()) + [(p, params[p]) for p in ir.param_names]:
        for entry, v in zip(sym[name_], np.asarray(arr).ravel()):
            if entry.is_Symbol:  # masked weight entries are the integer 0
                point[entry] = mpmath.mpf(float(v))
    explicit = {}
    for of, wrt in jacobian_blocks(ir):
        explicit[(of, wrt)] = evaluate(values[of].jacobian(sym[wrt]).tolist(), point)
    return cell, sizes, params, sources, values, sym, point, explicit


@pytest.mark.parametrize("name, step", CASES)
def test_structured_equals_explicit_expansion(name, step):
    cell, sizes, params, sources, values, sym, point, explicit = setup(name, step)
    ir = cell.ir
    blocks = jacobian_blocks(ir)
    assert set(blocks) == set(explicit)
    for (of, wrt), terms in blocks.items():
        expected = explicit[(of, wrt)]
        assert expected.shape == (sizes[ir.dims[of]], sizes[ir.dims[wrt]])
        # zero exactly when it has no terms, but for a piecewise branch not taken at this point
        # (slstm's dm'/dm is max_grad(log f + m, i~): 0 where the input gate wins)
        piecewise = any(t.atoms(max_grad, step_function) for term in terms for t in term.diags)
        assert (np.abs(expected).max() > 1e-3) == bool(terms) or (piecewise and not expected.any()), (of, wrt)
        got = evaluate(structured_matrix(ir, terms, values, sym, sizes, ir.dims[of], ir.dims[wrt]).tolist(), point)
        np.testing.assert_allclose(got, expected, rtol=0, atol=TOL, err_msg=f"{name} d{of}/d{wrt}")


def _numeric_terms(ir, terms, trace, params, step, sizes, out_dim, row=0, as_float=True):
    """The structured form evaluated the way a backward pass would: diagonals from saved
    forward values (the mpmath reference's trace, batch row ``row``), dense NumPy weights with
    masks applied. On the set axis a space is the members' units one after the other (member
    m's unit u at m*n + u): a factor W there is kron(I_L, W), a column or row of ones one per
    member, SET_IN kron(1_L, I_n) (the members read the same vector), SET_OUT kron(1_Lᵀ, I_n)
    (a sum over the members). ``as_float=False`` keeps the mpmath numbers."""
    weights = {w.name: w for w in ir.weights}
    L = sizes.get(SET, 1)

    def units(dim):
        return 1 if dim == SCALAR else sizes[dim]

    # a reduction's unit count, from the sizes of what it reads (per member on the set axis)
    counts = {f"_n_{n.name}": sum(units(ir.dims[a]) for a in n.args)
              for n in ir.nodes if isinstance(n, Reduce) and not n.over_set}  # fmt: skip

    def factor(w, left, right):  # the matrix of weights[k] between spaces k and k + 1
        if w in (SET_IN, SET_OUT):
            ones = np.ones((L, 1)) if w == SET_IN else np.ones((1, L))
            return np.kron(ones, np.eye(units(right[0])))
        if w not in weights:  # a column or row of ones
            block = np.ones((units(left[0]), units(right[0])))
        else:
            block = params[w]
            mask = weights[w].mask
            if mask is not None:
                block = np.where(mask.evaluate({b: params[b] for b, _, _ in ir.buffers}), block, 0.0)
        return np.kron(np.eye(L), block) if left[1] else block

    total = 0
    for t in terms:
        sp = spaces(ir, t)
        prod = None
        for k, d in enumerate(t.diags):
            dim, on_set = sp[k]
            entries = []
            for m in range(L) if on_set else [None]:
                for u in range(units(dim)):
                    pt = {}
                    for s in d.free_symbols:
                        if s.name == ir.step:
                            pt[s] = mpmath.mpf(step)
                        elif s.name in counts:
                            pt[s] = mpmath.mpf(counts[s.name])
                        elif s.name in trace:
                            v = trace[s.name][row]
                            if s.name in ir.set_vectors:
                                v = v[m]  # fails for a member-less space: a wrong term
                            pt[s] = v[u if len(v) > 1 else 0]
                        else:
                            pt[s] = mpmath.mpf(float(params[s.name][u]))
                    entries.append(evaluate([[d]], pt, as_float)[0, 0])
            diag = np.diag(np.array(entries, dtype=float if as_float else object))
            prod = diag if prod is None else prod @ diag
            if k < len(t.weights):
                prod = prod @ factor(t.weights[k], sp[k], sp[k + 1])
        total = total + prod
    return total


@pytest.mark.parametrize("name, step", CASES)
def test_structured_from_saved_forward_values_equals_explicit(name, step):
    cell, sizes, params, sources, values, sym, point, explicit = setup(name, step)
    ir = cell.ir
    inputs = {n: sources[n][None, None, :] for n, _ in ir.inputs} | {n: sources[n][None] for n, _ in ir.sets}
    state = {n: sources[n][None, :] for n, _ in ir.states}
    trace: list = []
    reference_forward(ir, params, inputs, state, t0=step, dps=30, trace=trace)
    for (of, wrt), terms in jacobian_blocks(ir).items():
        got = _numeric_terms(ir, terms, trace[0], params, step, sizes, ir.dims[of])
        np.testing.assert_allclose(got, explicit[(of, wrt)], rtol=0, atol=TOL, err_msg=f"{name} d{of}/d{wrt}")


def test_clockwork_steps_differ_as_the_modules_say():
    """Periods 1, 2, 4, 8: all modules tick at step 0, only module 0 at step 1, 0 and 1 at step 2."""
    active = {0: [0, 1, 2, 3], 1: [0], 2: [0, 1]}
    for step, on in active.items():
        cell, sizes, params, *_, explicit = setup("clockwork_rnn", step)
        assert list(params["period"]) == [1, 2, 4, 8]
        dh, dx = explicit[("h_", "h")], explicit[("h_", "x")]
        for u in range(4):
            if u in on:
                assert np.abs(dx[u]).max() > 1e-3
                # the mask: a unit only reads units at least as slow as itself
                for v in range(4):
                    if params["period"][v] < params["period"][u]:
                        assert dh[u, v] == 0
            else:  # an idle module keeps its value: identity row, no input
                np.testing.assert_array_equal(dh[u], np.eye(4)[u])
                np.testing.assert_array_equal(dx[u], 0)
    assert not np.allclose(setup("clockwork_rnn", 0)[-1][("h_", "h")], setup("clockwork_rnn", 1)[-1][("h_", "h")])


def test_numeric_check_catches_a_wrong_closed_form():
    """The comparison has teeth: plausible mistakes in a closed form are detected."""
    cell, sizes, params, sources, values, sym, point, explicit = setup("lstm", 0)
    ir = cell.ir

    def err(terms, of, wrt):
        m = structured_matrix(ir, terms, values, sym, sizes, ir.dims[of], ir.dims[wrt])
        return np.abs(evaluate(m.tolist(), point) - explicit[(of, wrt)]).max()

    assert err(jacobian(ir, "c'", "c"), "c_", "c") <= TOL
    assert err((Term((sympy.Integer(1),), (), ("c_", "c")),), "c_", "c") > 1e-3  # I for diag(f)
    assert err(jacobian(ir, "h'", "h")[:-1], "h_", "h") > 1e-3  # one path dropped
    assert err(jacobian(ir, "c'", "x"), "c_", "x") <= TOL
    swapped = tuple(Term((t.diags[0].subs(S("f"), S("i")),) + t.diags[1:], t.weights, t.path)
                    for t in jacobian(ir, "c'", "h"))  # fmt: skip
    assert err(swapped, "c_", "h") > 1e-3  # f' written where i' belongs
    rename = {"W_i_h": "W_f_h", "W_f_h": "W_i_h"}
    crossed = tuple(Term(t.diags, tuple(rename.get(w, w) for w in t.weights), t.path)
                    for t in jacobian(ir, "c'", "h"))  # fmt: skip
    assert err(crossed, "c_", "h") > 1e-3  # gate weights crossed


TORCH_CASES = [
    ("lstm", 0),
    ("lstm_peephole", 0),
    ("greff_nfg", 0),
    ("rnn_tanh", 0),
    ("gru", 0),
    ("lstm_proj", 0),
    ("lstm_depth_gated", 0),
    ("clockwork_rnn", 1),
]


@pytest.mark.parametrize("name, step", TORCH_CASES)
def test_explicit_expansion_equals_torch_autograd(name, step):
    import torch

    cell, sizes, params, sources, values, sym, point, explicit = setup(name, step)
    ir = cell.ir
    tp = {k: torch.tensor(v, dtype=torch.float64) for k, v in params.items()}
    states = [n for n, _ in ir.states]
    inputs = [n for n, _ in ir.inputs]
    srcs = states + inputs
    impl = cell.torch()

    def step_fn(*ts):
        d = dict(zip(srcs, ts))
        _, new_state = impl.step(tp, {n: d[n] for n in inputs}, {n: d[n] for n in states}, t=step)
        return tuple(new_state[s] for s in states)

    args = tuple(torch.tensor(sources[n][None, :], dtype=torch.float64) for n in srcs)
    jac = torch.autograd.functional.jacobian(step_fn, args)
    for a, s in enumerate(states):
        for b, src in enumerate(srcs):
            got = jac[a][b][0, :, 0, :].numpy()
            np.testing.assert_allclose(got, explicit[(s + NEW, src)], rtol=0, atol=TOL,
                                       err_msg=f"{name} d{s}'/d{src}")  # fmt: skip


@pytest.mark.parametrize("name", REDUCING)
def test_reduction_blocks_from_saved_values_equal_torch_autograd(name):
    """Every one-step block of a cell with reductions, its diagonal and rank-one terms evaluated
    from the mpmath reference's saved values, equals torch autograd of the generated step."""
    import torch

    cell = lv.load(name)
    ir = cell.ir
    sizes = cell.sizes(sizes={"input": 3, "hidden": 4, "item": 2, "attn": 3, "set": 3})
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    params = cell.init_params(sizes=sizes, init="uniform", seed=int(rng.integers(1 << 30)))
    states = [n for n, _ in ir.states]
    inputs = [n for n, _ in ir.inputs]
    srcs = states + inputs
    sources = {n: 0.7 * rng.standard_normal(sizes[ir.dims[n]]) for n in srcs}
    sets = {n: 0.7 * rng.standard_normal((1, sizes[SET], sizes[d])) for n, d in ir.sets}  # fixed here
    trace: list = []
    reference_forward(ir, params, {n: sources[n][None, None, :] for n in inputs} | sets,
                      {n: sources[n][None, :] for n in states}, dps=30, trace=trace)  # fmt: skip
    tp = {k: torch.tensor(v, dtype=torch.float64) for k, v in params.items()}
    impl = cell.torch()

    def step_fn(*ts):
        d = dict(zip(srcs, ts))
        given = {n: d[n] for n in inputs} | {n: torch.tensor(v) for n, v in sets.items()}
        _, new_state = impl.step(tp, given, {n: d[n] for n in states}, t=0)
        return tuple(new_state[s] for s in states)

    jac = torch.autograd.functional.jacobian(step_fn, tuple(torch.tensor(sources[n][None, :]) for n in srcs))
    rank_one = 0
    for (of, wrt), terms in jacobian_blocks(ir).items():
        rank_one += sum(ONES in t.weights or SET_IN in t.weights for t in terms)
        got = _numeric_terms(ir, terms, trace[0], params, 0, sizes, ir.dims[of])
        want = jac[states.index(of[:-1])][srcs.index(wrt)][0, :, 0, :].numpy()
        np.testing.assert_allclose(np.asarray(got, dtype=float), want, rtol=0, atol=1e-12,
                                   err_msg=f"{name} d{of}/d{wrt}")  # fmt: skip
    assert rank_one > 0  # the normalisations' (or the softmax's) rank-one terms were among those checked


# ------------------------------------------------------------------ 6. blocks and rendering


@pytest.mark.parametrize("name", lv.catalog())
def test_jacobian_blocks_cover_every_pair(name):
    cell = lv.load(name)
    ir = cell.ir
    states = [n for n, _ in ir.states]
    sources = states + [n for n, _ in ir.inputs]
    blocks = cell.jacobian_blocks()
    assert list(blocks) == [(s + NEW, src) for s in states for src in sources]
    for (of, wrt), terms in blocks.items():
        assert terms == jacobian(ir, of[:-1] + "'", wrt)
        for t in terms:
            assert len(t.diags) == len(t.weights) + 1 and t.path[0] == of and t.path[-1] == wrt
            tokens = {x.name for x in ir.weights} | {ONES, SET_IN, SET_OUT}
            assert all(w in tokens or w.startswith(REDUCE) for w in t.weights)


def test_bad_names_are_errors():
    ir = lv.load("lstm").ir
    with pytest.raises(LstmVerifyError, match="not a node"):
        jacobian(ir, "z'", "c")
    with pytest.raises(LstmVerifyError, match="previous state or input"):
        jacobian(ir, "c'", "i")


def test_empty_block_renders_as_zero():
    assert block_text(()) == "0" and block_latex(()) == "0"


@pytest.mark.parametrize("name", ["lstm", "greff_nfg", "lstm_peephole", "lstm_proj", "clockwork_rnn", "gru"])
def test_block_latex_looks_like_latex(name):
    cell = lv.load(name)
    for (of, wrt), terms in cell.jacobian_blocks().items():
        tex = block_latex(terms)
        assert tex.count("{") == tex.count("}") and tex.count(r"\left") == tex.count(r"\right")
        assert "**" not in tex and "·" not in tex
        assert not any(f"{n}_{{" in tex or f"{n}_ " in tex for n, _ in cell.ir.states)  # c', not c_
        for t in terms:
            if any(d != 1 for d in t.diags):
                assert r"\operatorname{diag}\left(" in tex
            for w in t.weights:  # W_i_h is typeset W_{i,h}
                head, _, rest = w.partition("_")
                assert f"{head}_{{{rest.replace('_', ',')}}}" in tex
    if name == "lstm":
        assert block_latex(cell.jacobian("c'", "c")) == r"\operatorname{diag}\left(f\right)"
        assert r"\tanh^{2}{\left(c' \right)}" in block_latex(cell.jacobian("h'", "c"))
