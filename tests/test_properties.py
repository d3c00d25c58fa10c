"""Properties of the generated NumPy and torch implementations on cases drawn by
lstm_verify.strategies: invariants read off the specs, metamorphic relations, and numerics in
deep saturation.

Tolerances. Invariants that hold in floating point by construction are checked exactly (or with
a few ulps where a rounding is involved, said at each place). The metamorphic relations compare
two runs whose GEMMs see the same numbers in another order (permuted units) or another shape
(one batch row, a shorter sequence: BLAS picks other kernels and blockings), so the last bits
may differ; measured over every cell, both backends and every short regime, the differences stay
below 3 ulps of the largest output. They are checked at 450 ulps (1e-13 in float64) of the
largest output: room for a few steps of error growth, and still ~1e9 times below any real
mismatch. The long regime (200 steps) is left out of them: a last-bit difference may grow by a
factor per step in a chaotic cell, so no fixed tolerance is a property there.
"""

import warnings

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings, strategies as st
from hypothesis.extra import numpy as hnp

import lstm_verify as lv
from lstm_verify import strategies as lst

CELLS = lv.catalog()
CELL = {name: lv.load(name) for name in CELLS}  # parsing only; code is generated in the tests
BACKENDS = ["numpy", "torch"]
SHORT_REGIMES = ["ordinary", "near_zero", "saturated"]


# ----------------------------------------------------------------------------- helpers


def impl(name, backend):
    # generated lazily, inside a test, so that conftest's cache directory is in force
    return CELL[name].numpy() if backend == "numpy" else CELL[name].torch()


def to_backend(arrays, backend):
    if backend == "numpy":
        return dict(arrays)
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}


def to_numpy(a):
    return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


def forward(name, backend, params, inputs, state, t0=0, save=False):
    """(outputs, final state, run) with outputs and state as NumPy arrays."""
    run = impl(name, backend).forward(
        to_backend(params, backend), to_backend(inputs, backend), to_backend(state, backend),
        t0=t0, save=save,
    )  # fmt: skip
    return to_numpy(run.outputs), {k: to_numpy(v) for k, v in run.state.items()}, run


def saved(run):
    return {k: to_numpy(v) for k, v in run.cache["saved"].items()}


def forward_finite(name, backend, params, inputs, state, t0=0):
    """Forward for the metamorphic relations. rnn_relu grows without bound: in float32 its
    output may overflow, and an overflowed run is not compared (assume)."""
    with np.errstate(over="ignore", invalid="ignore"):
        out, final, _ = forward(name, backend, params, inputs, state, t0)
    assume(np.isfinite(out).all() and all(np.isfinite(v).all() for v in final.values()))
    return out, final


def near(actual, expected, dtype, what):
    """Equal up to 450 ulps of the largest |expected| (1e-13 in float64): see the docstring."""
    tol = 450 * np.finfo(dtype).eps
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol * scale, err_msg=what)


def short_cases(name, **kw):
    """Cases of 1 to 6 steps (or as given) in a short regime, any dtype and initialisation."""
    return st.sampled_from(SHORT_REGIMES).flatmap(lambda r: lst.cases(name, regime=r, **kw))


# ----------------------------------------------------------------------------- |h| <= 1

# The vector whose values a spec bounds by 1 in magnitude, read off the equations:
#   rnn_tanh                 h' = tanh(...)
#   clockwork_rnn            h' = tick*tanh(...) + (1 - tick)*h: updated to tanh or kept (|h0| <= 1)
#   greff_nog                h' = tanh(c')
#   lstm, lstm_peephole, lstm_cifg, lstm_nofg, lstm_depth_gated, greff_cifg, greff_fgr,
#   greff_nfg, greff_niaf, greff_nig, greff_np, layernorm_lstm, rmsnorm_lstm (tanh of the
#   normalised c'), attention_decoder: h' = o*tanh(c'), 0 <= o <= 1
#   lstm_proj                m = o*tanh(c') (saved in the cache); h' = W_h_m m is not bounded
#   gru, gru_cho, mgu, mgu_flax, mut1, mut2, mut3: h' a convex combination of h and a tanh
#   (|h0| <= 1)
#   multiplicative_lstm      h' = tanh(c'*o)
#   grid_lstm                hu' = tanh(o*mu'), the output sent up
# Not bounded: rnn_relu (relu), greff_noaf (h' = o*c', c' grows), lstm_proj's h (projection),
# indrnn (relu), sru (h' mixes c' and x, c' a running mean of W x), min_gru and min_lstm (h'
# mixes h and a linear candidate), the sLSTM cells (h' = o*c'/n' is a weighted mean of past
# tanh(z) only when c and n start consistent; drawn initial states need not be).
BOUNDED = {
    "rnn_tanh": "h", "clockwork_rnn": "h", "greff_nog": "h",
    "lstm": "h", "lstm_peephole": "h", "lstm_cifg": "h", "lstm_nofg": "h",
    "lstm_depth_gated": "h", "greff_cifg": "h", "greff_fgr": "h", "greff_nfg": "h",
    "greff_niaf": "h", "greff_nig": "h", "greff_np": "h", "lstm_proj": "m",
    "gru": "h", "gru_cho": "h", "mgu": "h", "mgu_flax": "h", "mut1": "h", "mut2": "h", "mut3": "h",
    "multiplicative_lstm": "h", "grid_lstm": "hu", "layernorm_lstm": "h", "rmsnorm_lstm": "h",
    "attention_decoder": "h",
}  # fmt: skip
UNBOUNDED = {"rnn_relu", "greff_noaf", "indrnn", "sru", "min_gru", "min_lstm", "slstm", "slstm_expf",
             "slstm_unstabilized"}  # fmt: skip

# Strictly below 1 in float64, for T <= 6 steps, sizes <= 5, inputs in [-2, 2], states in
# [-1, 1] and torch_default or uniform weights (|w| <= 1). Thresholds: float64 tanh rounds to 1
# beyond 18.99 (NumPy) or 19.06 (torch), sigmoid beyond 36.7. For o*tanh(c') one factor below 1
# suffices, and c' = f*c + i*g (or c + i*g, f*c + g) stays within 1 + 6 = 7, so tanh(c') < 1
# whatever o does (greff_fgr's o, fed by five lins, may round to 1; lstm_proj's m likewise).
# lstm_depth_gated's c' may reach 19 (d*l adds up to 2 a step), but its o = sigmoid(lin(x, h))
# has |lin| <= 2*5 + 5 + 1 = 16. rnn_tanh and clockwork_rnn: tanh of at most 16. greff_nog:
# tanh(c') with |c'| <= 7. Left out: greff_niaf (g is linear, so c' and p_o*c' grow until both
# factors round to 1), and the convex combinations (from h0 = 1, which the state bound allows,
# h' = 1 - (1 - z)*(1 - n) rounds to 1). float32 tanh rounds to 1 beyond 9.01 (torch) or 10.0
# (NumPy), sigmoid beyond 16.6: a large gate is exactly 1 there, so float32 only has <= 1.
# clockwork_rnn: a unit that does not tick keeps h exactly, and h0 may be exactly 1.
# multiplicative_lstm: c' = f*c + i*hhat with a linear hhat can pass 19. grid_lstm: |o*mu'| <= 3
# (mu' = f*md + i*g, md an input in [-2, 2]).
STRICT = sorted(set(BOUNDED) - {"greff_niaf", "gru", "gru_cho", "mgu", "mgu_flax", "mut1", "mut2",
                                 "mut3", "multiplicative_lstm"})  # fmt: skip


def test_every_cell_is_classified():
    assert set(BOUNDED) | UNBOUNDED == set(CELLS)
    assert not set(BOUNDED) & UNBOUNDED


def bounded_values(name, case, backend):
    out, _, run = forward(name, backend, case.params, case.inputs, case.state, case.t0, save=True)
    vec = BOUNDED[name]
    values = out if vec == CELL[name].ir.output else saved(run)[vec]
    return values, out, run


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", sorted(BOUNDED))
@settings(max_examples=10)
@given(data=st.data())
def test_bounded_outputs_stay_within_one(name, backend, data):
    case = data.draw(lst.cases(name), label="case")  # every regime, dtype and initialisation
    values, _, _ = bounded_values(name, case, backend)
    assert values.dtype == case.dtype
    assert np.abs(values).max() <= 1, f"{name}: |{BOUNDED[name]}| = {np.abs(values).max()!r}"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", STRICT)
@settings(max_examples=10)
@given(data=st.data())
def test_bounded_outputs_stay_strictly_below_one_in_float64(name, backend, data):
    regime = data.draw(st.sampled_from(["ordinary", "near_zero"]), label="regime")
    init = data.draw(st.sampled_from(["torch_default", "uniform"]), label="init")
    case = data.draw(lst.cases(name, regime=regime, init=init, dtype="float64"), label="case")
    values, out, _ = bounded_values(name, case, backend)
    strict = np.abs(values) < 1
    if name == "clockwork_rnn":  # not updated at this step: an exact copy of the previous h
        previous = np.concatenate([case.state["h"][None], out[:-1]])
        strict |= values == previous
    assert strict.all(), f"{name}: |{BOUNDED[name]}| = {np.abs(values).max()!r}"


# ----------------------------------------------------------------------------- CIFG


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ["lstm_cifg", "greff_cifg"])
@settings(max_examples=20)
@given(data=st.data())
def test_cifg_input_and_forget_gates_sum_to_one(name, backend, data):
    """i + f == 1 exactly, from the gates the forward saved for the backward. f = fl(1 - i)
    makes fl(i + f) exactly 1 for every i in [0, 1]: for i >= 1/2, 1 - i is exact (Sterbenz);
    below, fl(1 - i) is within half an ulp of [1/2, 1], so i + f is within 2^-(p+1) of 1 and
    rounds to 1 (ties to even). A forget gate computed any other way (sigmoid(-a)) would miss
    by an ulp now and then."""
    case = data.draw(lst.cases(name), label="case")
    _, _, run = forward(name, backend, case.params, case.inputs, case.state, case.t0, save=True)
    s = saved(run)
    i, f = s["i"], s["f"]
    assert i.dtype == f.dtype == case.dtype
    assert i.shape == (case.steps, case.batch, case.sizes["hidden"])
    np.testing.assert_array_equal(i + f, np.ones_like(i))
    # and that f is the gate the cell uses: c' = f*c + i*g from the saved values
    near(s["c_"], s["c"] * f + s["g"] * i, case.dtype, "c' = f*c + i*g")


# ----------------------------------------------------------------------------- GRU / MUT


# Every one of these updates is a convex combination of the previous h and a candidate, read
# off the specs (weights z or f in [0, 1]); the candidate as the cache lets us rebuild it:
#   gru      h' = (1 - z)*n + z*h                n = tanh(lin(x) + r*lin(h))     saved n
#   gru_cho  h' = z*h + (1 - z)*n                n = tanh(lin(x, r*h))            saved n
#   mgu      h' = (1 - f)*h + f*n                n = tanh(lin(x, f*h))            saved n
#   mgu_flax h' = (1 - f)*n + f*h                n = tanh(lin(x) + f*lin(h))      saved n
#   mut1     h' = tanh(lin(r*h) + tanh(x))*z + h*(1 - z)                  from saved lin_h, x
#   mut2     h' = tanh(lin(r*h, x))*z + h*(1 - z)                         from saved lin_h
#   mut3     h' = tanh(lin(r*h, x))*z + h*(1 - z)                         from saved lin_h
CANDIDATE = {
    "gru": lambda s, x: s["n"],
    "gru_cho": lambda s, x: s["n"],
    "mgu": lambda s, x: s["n"],
    "mgu_flax": lambda s, x: s["n"],
    "mut1": lambda s, x: np.tanh(s["lin_h"] + np.tanh(x["x"])),
    "mut2": lambda s, x: np.tanh(s["lin_h"]),
    "mut3": lambda s, x: np.tanh(s["lin_h"]),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", sorted(CANDIDATE))
@settings(max_examples=15)
@given(data=st.data())
def test_gated_update_lies_between_h_and_candidate(name, backend, data):
    """min(h, n) <= h' <= max(h, n) elementwise, up to 8 ulps of max(|h|, |n|): the update
    rounds 1 - z, two products and a sum, and torch's tanh may differ from NumPy's by an ulp
    in the rebuilt mut candidates."""
    case = data.draw(lst.cases(name), label="case")
    out, _, run = forward(name, backend, case.params, case.inputs, case.state, case.t0, save=True)
    s = saved(run)
    h = s["h"]  # the previous h at every step
    cand = CANDIDATE[name](s, case.inputs).astype(case.dtype)
    finfo = np.finfo(case.dtype)
    tol = 8 * finfo.eps * np.maximum(np.abs(h), np.abs(cand)) + 4 * finfo.smallest_subnormal
    low, high = np.minimum(h, cand) - tol, np.maximum(h, cand) + tol
    bad = (out < low) | (out > high)
    assert not bad.any(), (
        f"{name}: h' outside [min(h, n), max(h, n)] at {np.argwhere(bad)[:3].tolist()}: "
        f"h {h[bad][:3]}, n {cand[bad][:3]}, h' {out[bad][:3]}"
    )


# ----------------------------------------------------------------------------- dc'/dc


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ["lstm_nofg", "greff_nfg"])
@settings(max_examples=20)
@given(data=st.data())
def test_forgetless_cell_carries_error_unchanged(name, backend, data):
    """c' = c + i*g: with an error v on c' only (none on h'), one step of the generated
    backward hands exactly v to the previous c. In lstm_nofg i and g do not see c, so dc'/dc
    is exactly I. greff_nfg's input gate sees p_i*c, another path: it is closed by p_i = 0 (the
    output gate's p_o*c' path carries d_o = d_h'*tanh(c') = 0, so it stays). Exact: every
    other contribution is a product with 0, added to v."""
    case = data.draw(lst.cases(name, steps=1), label="case")
    params = dict(case.params)
    if name == "greff_nfg":
        params["p_i"] = np.zeros_like(params["p_i"])
    width = 32 if case.dtype == np.float32 else 64
    v = data.draw(
        hnp.arrays(case.dtype, case.state["c"].shape,
                   elements=st.floats(-1e3, 1e3, width=width, allow_subnormal=True)),
        label="d_c'",
    )  # fmt: skip
    _, _, run = forward(name, backend, params, case.inputs, case.state, case.t0, save=True)
    d_state = to_backend({"c": v}, backend)
    grads = impl(name, backend).backward(to_backend(params, backend), run.cache, None, d_state)
    np.testing.assert_array_equal(to_numpy(grads.state["c"]), v)


# ----------------------------------------------------------------------------- metamorphic


def relabel(ir, case, perms):
    """Parameters, inputs and state with the units of every size relabelled by perms[size]:
    rows of weights by their out size, columns by their in size, biases, diagonals and buffers
    (clockwork periods, from which its mask is computed) by their size."""
    params = {}
    for w in ir.weights:
        params[w.name] = case.params[w.name][np.ix_(perms[w.out_dim], perms[w.in_dim])]
    for name, dim in [*ir.biases, *ir.diagonals, *[(b, d) for b, d, _ in ir.buffers]]:
        params[name] = case.params[name][perms[dim]]
    assert set(params) == set(case.params)
    inputs = {n: case.inputs[n][..., perms[d]] for n, d in ir.inputs}
    # a set's members relabelled too: a set has no order, so nothing else moves with them
    inputs |= {n: case.inputs[n][:, perms["set"]][..., perms[d]] for n, d in ir.sets}
    state = {s: case.state[s][..., perms[d]] for s, d in ir.states}
    return params, inputs, state


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", CELLS)
@settings(max_examples=8)
@given(data=st.data())
def test_relabelling_units_permutes_outputs(name, backend, data):
    """Every size's units relabelled at once (hidden, and input, proj where the cell has
    them; mut1/mut2's x has the hidden size and moves with it): outputs and final state are
    the same values, relabelled. Includes clockwork_rnn, whose periods move with its units:
    the block-triangular mask is computed from the periods, so it moves along."""
    ir = CELL[name].ir
    case = data.draw(short_cases(name), label="case")
    perms = {
        k: np.array(data.draw(st.permutations(range(n)), label=f"perm of {k}"))
        for k, n in sorted(case.sizes.items())
    }
    out, final = forward_finite(name, backend, case.params, case.inputs, case.state, case.t0)
    p2, x2, s2 = relabel(ir, case, perms)
    out2, final2 = forward_finite(name, backend, p2, x2, s2, case.t0)
    dims = dict(ir.states)
    near(out2, out[..., perms[dims[ir.output]]], case.dtype, "outputs")
    for s, d in ir.states:
        near(final2[s], final[s][..., perms[d]], case.dtype, f"final {s}")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", CELLS)
@settings(max_examples=8)
@given(data=st.data())
def test_batch_rows_are_independent(name, backend, data):
    B = data.draw(st.integers(2, 3), label="batch")
    case = data.draw(short_cases(name, batch=B), label="case")
    out, final = forward_finite(name, backend, case.params, case.inputs, case.state, case.t0)
    for b in range(B):
        sets = {n for n, _ in CELL[name].ir.sets}  # (B, L, n): the batch is the first axis
        row_x = {k: v[b : b + 1] if k in sets else v[:, b : b + 1] for k, v in case.inputs.items()}
        row_s = {k: v[b : b + 1] for k, v in case.state.items()}
        out_b, final_b = forward_finite(name, backend, case.params, row_x, row_s, case.t0)
        near(out_b, out[:, b : b + 1], case.dtype, f"row {b} outputs")
        for s in final:
            near(final_b[s], final[s][b : b + 1], case.dtype, f"row {b} final {s}")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", CELLS)
@settings(max_examples=8)
@given(data=st.data())
def test_running_in_two_pieces_equals_running_at_once(name, backend, data):
    """T steps = k steps, then T - k steps from the carried state with t0 advanced by k
    (clockwork_rnn's ticks count from t0)."""
    T = data.draw(st.integers(2, 8), label="steps")
    k = data.draw(st.integers(1, T - 1), label="split")
    case = data.draw(short_cases(name, steps=T), label="case")
    out, final = forward_finite(name, backend, case.params, case.inputs, case.state, case.t0)
    sets = {n for n, _ in CELL[name].ir.sets}  # fixed over time: both pieces read all of it
    first = {n: v if n in sets else v[:k] for n, v in case.inputs.items()}
    rest = {n: v if n in sets else v[k:] for n, v in case.inputs.items()}
    out1, mid = forward_finite(name, backend, case.params, first, case.state, case.t0)
    out2, final2 = forward_finite(name, backend, case.params, rest, mid, case.t0 + k)
    near(np.concatenate([out1, out2]), out, case.dtype, "outputs")
    for s in final:
        near(final2[s], final[s], case.dtype, f"final {s}")


# ----------------------------------------------------------------------------- saturation

SATURATION = [pytest.param(800.0, "float64", id="800-float64"),
              pytest.param(90.0, "float32", id="90-float32")]  # fmt: skip


@pytest.mark.parametrize("saturation, dtype", SATURATION)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", CELLS)
@settings(max_examples=5)
@given(data=st.data())
def test_saturated_forward_and_backward_are_finite_and_silent(
    name, backend, saturation, dtype, data
):
    """Every gate driven |z| >= 800 (float64) or 90 (float32) from its switching point: no
    NaN or infinity anywhere in forward or backward, no warning from NumPy or torch, and no
    overflow, invalid operation or division by zero in NumPy. Underflow is allowed, and
    happens: exp(-800) is 3.7e-348, below float64's least subnormal, so 0 is its correctly
    rounded value (and exp(-90) is subnormal in float32); the gate derivatives s*(1-s) and
    1 - tanh^2 are then exactly 0, which is right (see test_saturated_numpy_underflows)."""
    case = data.draw(lst.cases(name, regime="saturated", saturation=saturation, dtype=dtype),
                     label="case")  # fmt: skip
    ir = CELL[name].ir
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(over="raise", invalid="raise", divide="raise", under="ignore"):
            out, final, run = forward(name, backend, case.params, case.inputs, case.state,
                                      case.t0, save=True)  # fmt: skip
            ones = to_backend({s: np.ones_like(case.state[s]) for s, _ in ir.states}, backend)
            d_out = torch.ones_like(run.outputs) if backend == "torch" else np.ones_like(out)
            grads = impl(name, backend).backward(to_backend(case.params, backend), run.cache,
                                                 d_out, ones)  # fmt: skip
    arrays = {"outputs": out, **{f"final {k}": v for k, v in final.items()}}
    arrays |= {f"d {k}": to_numpy(v) for k, v in grads.params.items()}
    arrays |= {f"d input {k}": to_numpy(v) for k, v in grads.inputs.items()}
    arrays |= {f"d state {k}": to_numpy(v) for k, v in grads.state.items()}
    assert set(grads.params) == set(ir.param_names)
    for what, a in arrays.items():
        assert a.dtype == case.dtype, what
        assert np.isfinite(a).all(), f"{name} {backend}: {what} is not finite"


def test_saturated_numpy_underflows():
    """Why the test above allows underflow: a saturated sigmoid gate underflows in exp."""
    found = []

    @settings(max_examples=1, database=None, derandomize=True)
    @given(lst.cases("lstm", regime="saturated", saturation=800.0, dtype="float64"))
    def collect(case):
        found.append(case)

    collect()
    case = found[0]
    with np.errstate(under="raise"), pytest.raises(FloatingPointError, match="underflow"):
        forward("lstm", "numpy", case.params, case.inputs, case.state)
