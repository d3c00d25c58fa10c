"""Exact one-step Jacobians through the set axis (attention_decoder: soft attention + LSTM).

The structured blocks (path products with the set factors SET_IN, a broadcast over the members,
and SET_OUT, a sum over them) are evaluated from the mpmath reference's saved forward values and
compared with torch autograd of a step written here independently of the spec machinery (torch's
own softmax over the members), at L = 3 members, batch 2; then with the explicit SymPy expansion
at 30 digits; and their printed forms are checked.
"""

from __future__ import annotations

import zlib

import mpmath
import numpy as np
import pytest
import sympy

import lstm_verify as lv
from lstm_verify.cli import main
from lstm_verify.derive import (
    ONES,
    SET_IN,
    SET_OUT,
    Term,
    attention_blocks,
    jacobian,
    jacobian_blocks,
    local_blocks,
    local_jacobian,
    shown_blocks,
    spaces,
)
from lstm_verify.reference import reference_forward
from lstm_verify.spec import NEW, SET
from tests.test_derive import _numeric_terms, evaluate, setup

torch = pytest.importorskip("torch")

NAME = "attention_decoder"
B = 2
TOL = 1e-12


def torch_step(P, y, a, h, c):
    """attention_decoder from its equations, in torch: the vectors the blocks are taken of."""
    p = a @ P["W_p_a"].T + (h @ P["W_p_h"].T)[:, None, :] + P["b_p"]  # (B, L, attn): h for every member
    e = (P["w_e"] * torch.tanh(p)).sum(-1)  # (B, L)
    alpha = torch.nn.functional.softmax(e, dim=1)  # over the members
    beta = torch.sigmoid((P["w_b"] * h + P["b_b"]).sum(-1, keepdim=True))  # (B, 1)
    z = beta * (alpha[..., None] * a).sum(1)  # (B, item)

    def lin(gate):
        return y @ P[f"W_{gate}_y"].T + h @ P[f"W_{gate}_h"].T + z @ P[f"W_{gate}_z"].T + P[f"b_{gate}"]

    i, f, o, g = torch.sigmoid(lin("i")), torch.sigmoid(lin("f")), torch.sigmoid(lin("o")), torch.tanh(lin("g"))
    c_new = f * c + i * g
    return {"h_": o * torch.tanh(c_new), "c_": c_new, "alpha": alpha, "z": z}


def problem(hidden, seed=0):
    """Sizes, parameters, sources and the reference's saved values of one step (30 digits)."""
    cell = lv.load(NAME)
    ir = cell.ir
    sizes = cell.sizes(sizes={"input": 2, "hidden": hidden, "item": 2, "attn": 2, SET: 3})
    rng = np.random.default_rng([zlib.crc32(NAME.encode()), hidden, seed])
    params = cell.init_params(sizes=sizes, init="uniform", seed=int(rng.integers(1 << 30)))
    src = {"y": rng.standard_normal((B, sizes["input"])), "a": rng.standard_normal((B, sizes[SET], sizes["item"])),
           "h": rng.standard_normal((B, hidden)), "c": rng.standard_normal((B, hidden))}  # fmt: skip
    trace: list = []
    reference_forward(ir, params, {"y": src["y"][None], "a": src["a"]}, {"h": src["h"], "c": src["c"]},
                      dps=30, trace=trace)  # fmt: skip
    return cell, ir, sizes, params, src, trace[0]


def rows(jac, out_shape, in_shape):
    """Per batch row the block (out units, in units), members then units; the blocks between
    different rows must be exactly zero."""
    j = jac.detach().numpy().reshape(out_shape[0], -1, in_shape[0], int(np.prod(in_shape[1:])))
    for b in range(B):
        for b2 in range(B):
            if b != b2:
                assert not j[b, :, b2, :].any()
    return [j[b, :, b, :] for b in range(B)]


def torch_blocks(ir, params, src):
    """torch autograd of :func:`torch_step` for every block checked: {(of, wrt): [per row]}."""
    P = {k: torch.tensor(v, dtype=torch.float64) for k, v in params.items()}
    wrts = ["h", "c", "y", "a"]
    args = tuple(torch.tensor(src[w], dtype=torch.float64) for w in wrts)
    ofs = ["h_", "c_", "alpha", "z"]

    def fn(*ts):
        out = torch_step(P, **dict(zip(wrts, ts)))
        return tuple(out[o] for o in ofs)

    jac = torch.autograd.functional.jacobian(fn, args)
    out = fn(*args)
    return {(o, w): rows(jac[a][b], out[a].shape, args[b].shape)
            for a, o in enumerate(ofs) for b, w in enumerate(wrts)}  # fmt: skip


def test_torch_step_is_the_spec():
    """The independent step computes what the generated code computes (so its Jacobians are
    the cell's)."""
    cell, ir, sizes, params, src, saved = problem(3)
    P = {k: torch.tensor(v, dtype=torch.float64) for k, v in params.items()}
    mine = torch_step(P, *(torch.tensor(src[k]) for k in ("y", "a", "h", "c")))
    _, state = cell.torch().step(P, {"y": torch.tensor(src["y"]), "a": torch.tensor(src["a"])},
                                 {"h": torch.tensor(src["h"]), "c": torch.tensor(src["c"])})  # fmt: skip
    np.testing.assert_allclose(mine["h_"].numpy(), state["h"].numpy(), rtol=0, atol=1e-15)
    np.testing.assert_allclose(mine["c_"].numpy(), state["c"].numpy(), rtol=0, atol=1e-15)
    alpha = np.asarray(saved["alpha"], dtype=float)[..., 0]
    np.testing.assert_allclose(mine["alpha"].numpy(), alpha, rtol=0, atol=1e-15)
    assert alpha.min() > 0.01 and np.abs(alpha - 1 / 3).max() > 0.02  # a softmax that is neither flat nor one-hot


def structured(ir, terms, saved, params, sizes, b, as_float=True):
    return _numeric_terms(ir, terms, saved, params, 0, sizes, None, row=b, as_float=as_float)


@pytest.mark.parametrize("hidden", [2, 3])
def test_blocks_from_saved_values_equal_torch_autograd(hidden):
    """Every one-step block of the new state (with respect to h, c, y and the set a) and the
    attention's own (alpha and z with respect to each source), evaluated from saved values."""
    cell, ir, sizes, params, src, saved = problem(hidden)
    want = torch_blocks(ir, params, src)
    set_terms = worst = 0
    for (of, wrt), per_row in want.items():
        terms = jacobian(ir, of, wrt)
        set_terms += sum(SET_IN in t.weights or SET_OUT in t.weights for t in terms)
        for b in range(B):
            if not terms:
                assert not per_row[b].any(), (of, wrt)
                continue
            got = structured(ir, terms, saved, params, sizes, b)
            assert got.shape == per_row[b].shape, (of, wrt)
            assert np.abs(per_row[b]).max() > 1e-3, (of, wrt)
            worst = max(worst, np.abs(got - per_row[b]).max())
            np.testing.assert_allclose(got, per_row[b], rtol=0, atol=TOL, err_msg=f"d{of}/d{wrt} row {b}")
    assert set_terms >= 20  # paths through the attention were among those checked
    assert {(of, wrt) for of, wrt in attention_blocks(ir)} == {("alpha", "h"), ("z", "h")}


def test_a_wrong_softmax_or_attention_path_is_caught():
    """The comparison has teeth: the softmax's rank-one term dropped or with its sign flipped,
    or the attention weights taken as constants (the paths through alpha dropped), no longer
    match."""
    cell, ir, sizes, params, src, saved = problem(3)
    want = torch_blocks(ir, params, src)

    def err(terms, of, wrt):
        return max(np.abs(structured(ir, terms, saved, params, sizes, b) - want[(of, wrt)][b]).max()
                   for b in range(B))  # fmt: skip

    terms = jacobian(ir, "alpha", "h")
    assert err(terms, "alpha", "h") <= TOL
    rank_one = [t for t in terms if SET_IN in t.weights[:1]]
    assert len(rank_one) == 1 and len(terms) == 2
    assert err(tuple(t for t in terms if t not in rank_one), "alpha", "h") > 1e-3
    flipped = tuple(Term((-t.diags[0],) + t.diags[1:], t.weights, t.path) if t in rank_one else t for t in terms)
    assert err(flipped, "alpha", "h") > 1e-3
    zh = jacobian(ir, "z", "h")
    assert err(zh, "z", "h") <= TOL
    constant_alpha = tuple(t for t in zh if SET_IN not in t.weights)  # only the path through beta
    assert len(constant_alpha) == 1 and err(constant_alpha, "z", "h") > 1e-3


LOCAL = {  # the local blocks shown for the cell, each as a torch function of the one vector
    ("e", "p"): lambda P, v, s: (P["w_e"] * torch.tanh(v)).sum(-1),
    ("alpha", "e"): lambda P, v, s: torch.nn.functional.softmax(v, dim=1),
    ("z", "a"): lambda P, v, s: s["beta"] * (s["alpha"][..., None] * v).sum(1),
    ("z", "h"): lambda P, v, s: torch.sigmoid((P["w_b"] * v + P["b_b"]).sum(-1, keepdim=True)) * s["setsum_z"],
    ("z", "alpha"): lambda P, v, s: s["beta"] * (v[..., None] * s["a"]).sum(1),
}


def test_local_blocks_equal_torch_autograd_of_each_equation():
    """dα/de is the softmax's Jacobian diag(α) − α αᵀ; de/dp, dz/da, dz/dα and dz/dh (through
    beta, α fixed) are the equations' own, each checked against torch on that equation."""
    cell, ir, sizes, params, src, saved = problem(3)
    assert set(local_blocks(ir)) == set(LOCAL)
    P = {k: torch.tensor(v, dtype=torch.float64) for k, v in params.items()}

    def value(name):  # e and alpha (one number per member) as (B, L), as torch_step has them
        v = np.asarray(saved[name], dtype=float)
        return torch.tensor(v[..., 0] if name in ("e", "alpha") else v)

    fixed = {n: value(n) for n in ("alpha", "beta", "setsum_z", "a")}  # beta (B, 1), setsum_z (B, item)
    for (of, wrt), fn in LOCAL.items():
        v = value(wrt)
        out = fn(P, v, fixed)
        want = rows(torch.autograd.functional.jacobian(lambda x: fn(P, x, fixed), v), out.shape, v.shape)
        terms = local_jacobian(ir, of, wrt).terms
        for b in range(B):
            got = structured(ir, terms, saved, params, sizes, b)
            np.testing.assert_allclose(got, want[b], rtol=0, atol=TOL, err_msg=f"local d{of}/d{wrt}")
    # the softmax block is diag(α) − α αᵀ per batch row, in so many words
    for b in range(B):
        a = value("alpha").numpy()[b]
        got = structured(ir, local_jacobian(ir, "alpha", "e").terms, saved, params, sizes, b)
        np.testing.assert_allclose(got, np.diag(a) - np.outer(a, a), rtol=0, atol=1e-15)


def test_softmax_taken_apart_equals_taken_whole():
    """With respect to its own parts (exp(e - m), their setsum) the softmax is differentiated
    path by path through SET_IN and SET_OUT; chained with d in0/de = diag(in0) that equals the
    whole-softmax form."""
    cell, ir, sizes, params, src, saved = problem(2)
    part = local_jacobian(ir, "alpha", "setsum_alpha_in0").terms
    assert any(t.weights == (SET_IN, SET_OUT) for t in part) and len(part) == 2
    whole = local_jacobian(ir, "alpha", "e").terms
    for b in range(B):
        in0 = np.diag(np.asarray(saved["setsum_alpha_in0"][b, :, 0], dtype=float))
        np.testing.assert_allclose(structured(ir, part, saved, params, sizes, b) @ in0,
                                   structured(ir, whole, saved, params, sizes, b), rtol=0, atol=1e-15)  # fmt: skip


def test_closed_forms_at_30_digits():
    """dz/dh and dα/dh through the attention, from saved values at 30 digits, equal the
    explicit expansion differentiated by SymPy at 30 digits to 25 digits."""
    cell, sizes, params, sources, values, sym, point, explicit = setup(NAME, 0)
    ir = cell.ir
    inputs = {n: sources[n][None, None, :] for n, _ in ir.inputs} | {n: sources[n][None] for n, _ in ir.sets}
    trace: list = []
    reference_forward(ir, params, inputs, {n: sources[n][None, :] for n, _ in ir.states}, dps=40, trace=trace)
    for of in ("z", "alpha", "c_"):
        want = evaluate(values[of].jacobian(sym["h"]).tolist(), point, as_float=False)
        with mpmath.workdps(30):  # the products of the factors too
            got = _numeric_terms(ir, jacobian(ir, of, "h"), trace[0], params, 0, sizes, None, as_float=False)
            diff = max(abs(x - y) for x, y in zip(got.ravel(), want.ravel()))
            assert diff < mpmath.mpf("1e-25") and max(abs(x) for x in want.ravel()) > 1e-3, (of, diff)


def test_spaces_enter_and_leave_the_set_axis_in_turn():
    """Along every path the set axis is entered only from outside it and left only from inside
    it; weights join spaces of their sizes; the ends are the vectors' own."""
    ir = lv.load(NAME).ir
    weights = {w.name: w for w in ir.weights}
    blocks = {(s + NEW, src): None for s, _ in ir.states for src in ("h", "c", "y", "a")}
    blocks |= {("alpha", "h"): None, ("e", "h"): None, ("p", "a"): None}
    for of, wrt in blocks:
        for t in jacobian(ir, of, wrt):
            sp = spaces(ir, t)
            assert sp[0] == (ir.dims[of], of in ir.set_vectors) and sp[-1] == (ir.dims[wrt], wrt in ir.set_vectors)
            for k, w in enumerate(t.weights):
                if w == SET_IN:
                    assert sp[k][1] and not sp[k + 1][1] and sp[k][0] == sp[k + 1][0]
                elif w == SET_OUT:
                    assert not sp[k][1] and sp[k + 1][1] and sp[k][0] == sp[k + 1][0]
                else:
                    assert sp[k][1] == sp[k + 1][1]
                    if w in weights:
                        assert (sp[k][0], sp[k + 1][0]) == (weights[w].out_dim, weights[w].in_dim)


# --------------------------------------------------------------------------------- printing


def test_softmax_block_prints_as_diag_alpha_minus_alpha_alpha_t():
    ir = lv.load(NAME).ir
    j = local_jacobian(ir, "alpha", "e")
    assert [t.weights for t in j] == [(), (SET_IN, SET_OUT)]
    alpha = sympy.Symbol("alpha", real=True)
    assert [t.diags for t in j] == [(alpha,), (-alpha, 1, alpha)]
    assert str(j) == "δᵢₖ · (alphaᵢ) + (-alphaᵢ) · (alphaₖ)"
    assert j.latex() == r"\delta_{ik} \left(\alpha_{i}\right) + \left(- \alpha_{i}\right) \left(\alpha_{k}\right)"
    assert repr(j).startswith("<Jacobian dalphaᵢ/deₖ = ")


def test_attention_blocks_print_sums_over_members():
    cell = lv.load(NAME)
    zh = cell.jacobian("z", "h")
    text = str(zh)
    assert text == ("[setsum_z] · (beta*(1 - beta)) · [w_b]ᵀ"
                    " + diag(beta) · Σₘ([aₘ] · (alphaₘ) · [w_e*(1 - tanh(pₘ)**2)]ᵀ) · W_p_h"
                    " + diag(beta) · Σₘ([aₘ] · (-alphaₘ)) · Σₘ((alphaₘ) · [w_e*(1 - tanh(pₘ)**2)]ᵀ) · W_p_h")  # fmt: skip
    tex = zh.latex()
    assert tex.count(r"\sum_{m}") == 3 and tex.count("{") == tex.count("}")
    assert tex.count(r"\left") == tex.count(r"\right")
    assert r"a_{m}" in tex and r"\alpha_{m}" in tex and "ₘ" not in tex and "·" not in tex
    # a source with the set axis: member k's column of blocks
    assert "[aₖ] · (alphaₖ) · [w_e*(1 - tanh(pₖ)**2)]ᵀ · W_p_a" in str(cell.jacobian("h'", "a"))
    assert str(local_jacobian(cell.ir, "z", "alpha")) == "diag(beta) · [aₖ]"
    # the same terms printed without the cell: no member indices (the tokens' plain reading)
    assert "Σₘ" not in zh.terms[1].text() and "Σₘ" in zh.terms[1].text(cell.ir)


def test_show_prints_the_attention(capsys):
    assert main(["show", NAME]) == 0
    out = capsys.readouterr().out
    assert "set input: a (set, item)" in out and "Σₘ(...) a sum over the members m" in out
    assert "  dalphaᵢ/deₖ = δᵢₖ · (alphaᵢ) + (-alphaᵢ) · (alphaₖ)\n" in out
    assert "  dz/dalphaₖ = diag(beta) · [aₖ]\n" in out
    assert "  deᵢ/dpₖ = δᵢₖ · [w_e*(1 - tanh(pᵢ)**2)]ᵀ\n" in out
    one_step = out.split("one-step Jacobian blocks:")[1]
    assert "dalphaᵢ/dh = (alphaᵢ) · [w_e*(1 - tanh(pᵢ)**2)]ᵀ · W_p_h + (-alphaᵢ) · Σₘ(" in one_step
    assert "dh'/dh = 16 path terms" in one_step and "dc'/dc = diag(f)" in one_step
    assert main(["show", NAME, "--latex"]) == 0
    assert r"\frac{\partial alphaᵢ}{\partial eₖ} = \delta_{ik}" in capsys.readouterr().out
    rows = shown_blocks(lv.load(NAME).ir)
    local = [r[1:3] for r in rows if r[0]]
    assert local == [("eᵢ", "pₖ"), ("alphaᵢ", "eₖ"), ("z", "aₖ"), ("z", "h"), ("z", "alphaₖ")]


def test_cells_without_sets_print_as_before():
    """The set-aware printing leaves other cells' terms alone, the cell given or not."""
    for name in ("lstm", "layernorm_lstm"):
        ir = lv.load(name).ir
        for terms in jacobian_blocks(ir).values():
            for t in terms:
                assert t.text(ir) == t.text() and t.latex(ir) == t.latex()
                assert SET_IN not in t.weights and SET_OUT not in t.weights
    assert ONES in {w for t in jacobian(lv.load("layernorm_lstm").ir, "h'", "c") for w in t.weights}
