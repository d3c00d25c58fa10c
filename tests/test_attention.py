"""Set inputs and softmax: the attention decoder against torch's own softmax composed with
autograd, the mpmath reference, metamorphic properties of a set, and the errors for bad specs
and bad arrays.

The oracle is written from Xu et al. 2015 (section 4.2.1 and eq. 1-3) with
torch.nn.functional.softmax over the members and torch.autograd for every gradient; it shares
nothing with the generated code but the parameter names.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import find, given, settings, strategies as st

import lstm_verify as lv
from lstm_verify import strategies as lst
from lstm_verify.errors import ShapeError, SpecError
from lstm_verify.ir import build_ir
from lstm_verify.reference import reference_forward
from lstm_verify.regimes import peak_softmax
from lstm_verify.spec import parse_spec

torch = pytest.importorskip("torch", reason="torch is not installed: pip install 'lstm-verify[torch]'")

SIZES = {"input": 3, "hidden": 4, "item": 5, "attn": 3, "set": 6}
T, B, L = 5, 3, 6


@pytest.fixture(scope="module")
def cell():
    return lv.load("attention_decoder")


def _problem(cell, seed=0, scale=1.0, members=L):
    rng = np.random.default_rng(seed)
    p = cell.init_params(sizes=SIZES | {"set": members}, init="uniform", seed=seed, scale=scale)
    x = {"y": rng.normal(size=(T, B, SIZES["input"])), "a": rng.normal(size=(B, members, SIZES["item"]))}
    s = {"h": 0.5 * rng.normal(size=(B, SIZES["hidden"])), "c": 0.5 * rng.normal(size=(B, SIZES["hidden"]))}
    w_out = rng.normal(size=(T, B, SIZES["hidden"]))
    w_state = {k: rng.normal(size=v.shape) for k, v in s.items()}
    return p, x, s, w_out, w_state


def oracle(p, x, s, w_out, w_state, dtype=torch.float64):
    """Outputs, final state and the gradients of sum(w_out * outputs) + sum(w_state * final)."""
    P = {k: torch.tensor(v, dtype=dtype, requires_grad=True) for k, v in p.items()}
    X = {k: torch.tensor(v, dtype=dtype, requires_grad=True) for k, v in x.items()}
    S = {k: torch.tensor(v, dtype=dtype, requires_grad=True) for k, v in s.items()}
    h, c, a = S["h"], S["c"], X["a"]
    keys = a @ P["W_p_a"].T  # W_a a_i, the same at every step
    outs, alphas = [], []
    for t in range(X["y"].shape[0]):
        scores = torch.tanh(keys + (h @ P["W_p_h"].T + P["b_p"])[:, None, :]) @ P["w_e"]  # (B, L)
        alpha = torch.nn.functional.softmax(scores, dim=1)
        beta = torch.sigmoid(h @ P["w_b"] + P["b_b"].sum())[:, None]  # the gating scalar
        z = beta * torch.einsum("bl,bld->bd", alpha, a)
        pre = {g: X["y"][t] @ P[f"W_{g}_y"].T + h @ P[f"W_{g}_h"].T + z @ P[f"W_{g}_z"].T + P[f"b_{g}"] for g in "ifog"}
        c = torch.sigmoid(pre["f"]) * c + torch.sigmoid(pre["i"]) * torch.tanh(pre["g"])
        h = torch.sigmoid(pre["o"]) * torch.tanh(c)
        outs.append(h)
        alphas.append(alpha.detach())
    out = torch.stack(outs)
    loss = (out * torch.tensor(w_out, dtype=dtype)).sum()
    loss = loss + (h * torch.tensor(w_state["h"], dtype=dtype)).sum() + (c * torch.tensor(w_state["c"], dtype=dtype)).sum()
    loss.backward()
    grads = {("p", k): v.grad for k, v in P.items()} | {("x", k): v.grad for k, v in X.items()}
    grads |= {("s", k): v.grad for k, v in S.items()}
    return out.detach().numpy(), {"h": h.detach().numpy(), "c": c.detach().numpy()}, \
        {k: v.numpy() for k, v in grads.items()}, torch.stack(alphas).numpy()  # fmt: skip


def _ours(cell, backend, p, x, s, w_out, w_state):
    impl = getattr(cell, backend)()
    run = impl.forward(p, x, s, save=True)
    g = impl.backward(p, run.cache, w_out, w_state)
    np_ = lambda v: v.detach().numpy() if hasattr(v, "detach") else np.asarray(v)  # noqa: E731
    grads = {("p", k): np_(v) for k, v in g.params.items()} | {("x", k): np_(v) for k, v in g.inputs.items()}
    grads |= {("s", k): np_(v) for k, v in g.state.items()}
    return np_(run.outputs), {k: np_(v) for k, v in run.state.items()}, grads


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("scale", [1.0, 4.0])  # 4: scores spread by ~10, a peaked softmax
def test_generated_code_equals_torch_softmax_and_autograd(cell, backend, scale):
    p, x, s, w_out, w_state = _problem(cell, scale=scale)
    out, final, grads, _ = oracle(p, x, s, w_out, w_state)
    o, f, g = _ours(cell, backend, p, x, s, w_out, w_state)
    assert set(g) == set(grads)
    np.testing.assert_allclose(o, out, rtol=0, atol=1e-13)
    for k in final:
        np.testing.assert_allclose(f[k], final[k], rtol=0, atol=1e-13)
    for k, v in grads.items():
        assert g[k].shape == v.shape, k
        np.testing.assert_allclose(g[k], v, rtol=0, atol=1e-12 * max(1.0, np.abs(v).max()), err_msg=str(k))
    assert np.abs(grads[("x", "a")]).max() > 1e-3  # the set's gradient is not trivially zero


def test_float32_forward_is_within_float32_rounding(cell):
    p, x, s, w_out, w_state = _problem(cell, seed=1)
    out, _, _, _ = oracle(p, x, s, w_out, w_state)
    for backend in ("numpy", "torch"):
        impl = getattr(cell, backend)()
        f32 = lambda d: {k: v.astype(np.float32) for k, v in d.items()}  # noqa: E731
        run = impl.forward(f32(p), f32(x), f32(s))
        got = run.outputs.numpy() if hasattr(run.outputs, "numpy") else run.outputs
        assert got.dtype == np.float32
        assert np.abs(got - out).max() < 2e-6


def test_mpmath_reference_equals_the_oracle(cell):
    p, x, s, w_out, w_state = _problem(cell, seed=2)
    out, final, _, _ = oracle(p, x, s, w_out, w_state)
    ref_out, ref_state = cell.reference(p, x, s, dps=30)
    np.testing.assert_allclose(np.asarray(ref_out, dtype=float), out, rtol=0, atol=1e-14)
    for k in final:
        np.testing.assert_allclose(np.asarray(ref_state[k], dtype=float), final[k], rtol=0, atol=1e-14)


def test_the_order_of_the_members_does_not_matter(cell):
    """A set: permuting its members leaves every output alone and permutes the gradient."""
    p, x, s, w_out, w_state = _problem(cell, seed=3)
    perm = np.random.default_rng(0).permutation(L)
    o1, _, g1 = _ours(cell, "numpy", p, x, s, w_out, w_state)
    o2, _, g2 = _ours(cell, "numpy", p, {"y": x["y"], "a": x["a"][:, perm]}, s, w_out, w_state)
    np.testing.assert_allclose(o2, o1, rtol=0, atol=1e-14)
    np.testing.assert_allclose(g2[("x", "a")], g1[("x", "a")][:, perm], rtol=0, atol=1e-13)
    np.testing.assert_allclose(g2[("p", "W_p_a")], g1[("p", "W_p_a")], rtol=0, atol=1e-13)


def test_one_member_gets_all_the_attention(cell):
    """L = 1: alpha = 1 exactly, so z = beta * a_1 and a member's score does not matter."""
    p, x, s, w_out, w_state = _problem(cell, seed=4, members=1)
    run = cell.numpy().forward(p, x, s, save=True)
    saved = run.cache["saved"]
    np.testing.assert_array_equal(saved["alpha"], 1.0)
    np.testing.assert_allclose(saved["z"], saved["beta"] * x["a"][None, :, 0, :], rtol=0, atol=1e-15)
    changed = dict(p) | {"w_e": p["w_e"] + 1.0}  # every score moves: nothing else does
    np.testing.assert_array_equal(cell.numpy().forward(changed, x, s).outputs, run.outputs)


def test_saturated_softmax_gradients_match_the_oracle(cell):
    """One member's score 80 above the others': its weight is 1 to within 5e-35 and the others
    are ~e^-80; the gradient through the softmax (alpha * (g - sum(alpha * g))) stays exact.
    Built so: W_a reads only feature 0, with the sign of w_e per unit and magnitude 50, and
    feature 0 of the chosen member is +1, of every other -1, so that tanh(p) is +-sign(w_e) and
    the scores are +-sum|w_e| = +-40."""
    p, x, s, w_out, w_state = _problem(cell, seed=5)
    rng = np.random.default_rng(5)
    p["w_e"] = p["w_e"] * 40.0 / np.abs(p["w_e"]).sum()
    p["W_p_a"] = np.zeros_like(p["W_p_a"])
    p["W_p_a"][:, 0] = 50.0 * np.sign(p["w_e"])
    chosen = rng.integers(0, L, B)
    x["a"][:, :, 0] = -1.0
    x["a"][np.arange(B), chosen, 0] = 1.0
    out, _, grads, alphas = oracle(p, x, s, w_out, w_state)
    ordered = np.sort(alphas, axis=2)
    assert (ordered[..., -1] == 1.0).all() and ordered[..., -2].max() < 1e-30  # one weight is 1
    assert (alphas.argmax(axis=2) == chosen).all()
    o, _, g = _ours(cell, "numpy", p, x, s, w_out, w_state)
    np.testing.assert_allclose(o, out, rtol=0, atol=1e-13)
    for k, v in grads.items():
        np.testing.assert_allclose(g[k], v, rtol=0, atol=1e-12 * max(1.0, np.abs(v).max()), err_msg=str(k))


# --------------------------------------------------------------------------- errors

HEAD = 'name = "t"\ncite = ["test"]\ninput = "x"\nsets = ["a"]\nstate = ["h"]\ndiagonal = ["w"]\n'


def spec(*equations, head=HEAD, extra=""):
    return head + extra + "equations = [" + ", ".join(f'"{e}"' for e in equations) + "]\n"


@pytest.mark.parametrize("text, message", [
    (spec("k = lin(h)", "e = sum(w*tanh(k))", "al = softmax(e)", "h' = tanh(lin(x, h) + al)"),
     "softmax() reduces over the set axis, but its argument reads no set input"),
    (spec("p = lin(a, h)", "h' = tanh(w*p)", extra='sizes = { a = "hidden" }\n'), "the new value of 'h' has the set axis"),
    (spec("p = tanh(w*a)", "q = lin(p)", "h' = tanh(lin(x, h) + setsum(q))", extra='sizes = { a = "hidden" }\n'),
     "lin() reads a vector with the set axis"),
    (spec("h' = tanh(lin(x, h) + setsum(a, a))", extra='sizes = { a = "hidden" }\n'), "setsum() takes one positional argument"),
    (spec("z = setsum(a)", "h' = tanh(lin(x, h) + z)"), "size mismatch: setsum() gives a vector of size 'item'"),
    (spec("h' = tanh(lin(x, h))", extra='sizes = { h = "set" }\n'), "'set' is reserved"),
    (HEAD.replace('sets = ["a"]', 'sets = ["x"]') + 'equations = ["h\' = tanh(lin(x, h))"]\n', "share a name"),
])  # fmt: skip
def test_bad_set_specs_are_spec_errors(text, message):
    with pytest.raises(SpecError, match=message.replace("(", r"\(").replace(")", r"\)")):
        build_ir(parse_spec(text))


@pytest.mark.parametrize("name", ["setsum", "softmax", "setmax"])
def test_set_function_names_are_reserved(name):
    with pytest.raises(SpecError, match="reserved"):
        parse_spec(spec(f"{name} = lin(h)", f"h' = tanh({name})"))


def test_set_inputs_of_the_wrong_shape_are_named(cell):
    p, x, s, _, _ = _problem(cell)
    impl = cell.numpy()
    with pytest.raises(ShapeError, match="set input 'a' must be"):
        impl.forward(p, {"y": x["y"], "a": x["a"][:, :, 0]}, s)  # no feature axis
    with pytest.raises(ShapeError, match="set input 'a' must be"):
        impl.forward(p, {"y": x["y"], "a": x["a"][:2]}, s)  # another batch
    with pytest.raises(ShapeError, match="set input 'a' must be"):
        impl.forward(p, {"y": x["y"], "a": x["a"][:, :0]}, s)  # no members
    with pytest.raises(ShapeError, match="features"):
        impl.forward(p, {"y": x["y"], "a": x["a"][:, :, :2]}, s)
    with pytest.raises(ShapeError, match="takes inputs"):
        impl.forward(p, {"y": x["y"]}, s)
    with pytest.raises(ShapeError, match="NaN"):
        impl.forward(p, {"y": x["y"], "a": np.where(x["a"] > 1, np.nan, x["a"])}, s)


def test_step_takes_the_set_without_a_step_axis(cell):
    p, x, s, _, _ = _problem(cell)
    out, state = cell.numpy().step(p, {"y": x["y"][0], "a": x["a"]}, s)
    run = cell.numpy().forward(p, {"y": x["y"][:1], "a": x["a"]}, s)
    np.testing.assert_array_equal(out, run.outputs[0])


# --------------------------------------------------------------------------- the peaked regime


@settings(max_examples=6)
@given(data=st.data())
def test_peaked_regime_puts_one_weight_near_1_and_the_code_matches_the_reference(data):
    """The regime's promise checked on the mpmath trace (1/setsum is the largest weight), and
    the generated forward equal to the reference there."""
    cell = lv.load("attention_decoder")
    case = data.draw(lst.cases(cell, regime="peaked", max_size=3), label="case")
    trace = []
    ref, _ = reference_forward(cell.ir, case.params, case.inputs, case.state, case.t0, dps=30, trace=trace)
    peak = min(float(1 / v) for step in trace for v in np.ravel(step["setsum_alpha"]))
    assert peak >= lst.PEAK_WEIGHT * (1 - 1e-9)  # float32 rounding of the inputs moves it by ~1e-7 of 1e-6
    tol = 1e-13 if case.dtype == np.float64 else 2e-6
    for backend in ("numpy", "torch"):
        run = getattr(cell, backend)().forward(case.params, case.inputs, case.state, t0=case.t0)
        got = np.asarray(run.outputs.numpy() if hasattr(run.outputs, "numpy") else run.outputs, dtype=float)
        np.testing.assert_allclose(got, np.asarray(ref, dtype=float), rtol=0, atol=tol)


def test_peaked_regime_leaves_cells_without_softmax_alone():
    case = find(lst.cases("lstm", regime="peaked", dtype="float64", init="uniform"), lambda c: True)
    assert np.abs(case.params["W_i_x"]).max() <= 1.0  # not scaled


def test_report_attention_statistics(cell):
    """The report's attention table: scores all 0 spread the weight evenly (largest weight 1/L,
    entropy log L); a peaked softmax puts it on one member."""
    pytest.importorskip("matplotlib", reason="the report needs matplotlib: pip install 'lstm-verify[report]'")
    from lstm_verify.report import _attention

    p, x, s, _, _ = _problem(cell, seed=6)
    flat = _attention(cell, dict(p) | {"w_e": np.zeros_like(p["w_e"])}, x, s)["alpha"]
    assert flat["members"] == L
    assert flat["mean_max_weight"] == pytest.approx(1 / L, abs=1e-4) and flat["entropy_over_log_L"] == pytest.approx(1.0, abs=1e-4)
    peaked = _attention(cell, peak_softmax(cell, p, x, s), x, s)["alpha"]
    assert peaked["mean_max_weight"] > 1 - 1e-5 and peaked["entropy_over_log_L"] < 1e-3
