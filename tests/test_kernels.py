"""The fused C kernels of the generated torch code (lstm_verify.kernels): their math against
mpmath, when they run and when the torch operations run instead, their cache, and names.

The oracle tests of every cell run on both paths in test_codegen.py (the ``path`` fixture).
"""

import ctypes
import os
import re

import numpy as np
import pytest
import sympy
import torch

import lstm_verify as lv
from lstm_verify import kernels
from lstm_verify.cell import Implementation, catalog
from lstm_verify.ir import Reduce
from mathcases import FUNCTIONS, X, check_float32, check_float64, check_special_values

pytestmark = pytest.mark.skipif(kernels.compiler() is None, reason="no C compiler (cc or gcc) on the PATH")


def _unary(expr):
    """A compiled kernel computing ``expr`` of x elementwise, float32 and float64."""
    seg = kernels.Segment(0, (("y", expr),), (("x", False),), ("y",), None)
    lib = kernels.library(kernels.source([seg]))
    out = {}
    for suffix, dtype in (("_f32", np.float32), ("_f64", np.float64)):
        f = getattr(lib, f"lvk0{suffix}")
        f.restype = None
        f.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_double] + [ctypes.c_void_p, ctypes.c_long] * 2

        def run(x, f=f, dtype=dtype):
            x = np.ascontiguousarray(x, dtype)
            y = np.empty_like(x)
            f(1, x.size, 0.0, x.ctypes.data, 0, y.ctypes.data, 0)
            return y

        out[dtype] = run
    return out


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_float32_math_within_stated_ulps_of_mpmath(name):
    check_float32(name, _unary(FUNCTIONS[name][0])[np.float32])


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_float64_math_is_the_c_library(name):
    check_float64(name, _unary(FUNCTIONS[name][0])[np.float64])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_special_values_propagate(dtype):
    check_special_values(_unary, dtype)


# ----------------------------------------------------------------------------- when they run


class _Counting:
    """Stands in for a module's kernels: counts the kernel calls of the tables it hands out."""

    def __init__(self, real):
        self.real, self.calls, self.refused, self.loops, self.backs = real, 0, 0, 0, 0

    def sequence(self, *args):
        out = self.real.sequence(*args)
        self.loops += out is not None
        return out

    def backward_loop(self, *args):
        out = self.real.backward_loop(*args)
        self.backs += out is not None
        return out

    def table(self, tensors):
        fns = self.real.table(tensors)
        if fns is None:
            self.refused += 1
            return None

        def counted(f):
            def call(*args):
                self.calls += 1
                return f(*args)

            return call

        return [counted(f) for f in fns]


def _problem(name="lstm", dtype=torch.float32, T=5, B=3):
    cell = lv.load(name)
    impl = cell.torch()
    params = {k: torch.as_tensor(v, dtype=dtype) for k, v in cell.init_params(input_size=4, hidden_size=6).items()}
    x = torch.randn(T, B, 4, dtype=dtype, generator=torch.Generator().manual_seed(0))
    return cell, impl, params, x


@pytest.fixture
def counting():
    made = []

    def wrap(impl):
        spy = _Counting(impl.module._KERNELS)
        impl.module._KERNELS = spy
        made.append((impl, spy.real))
        return spy

    yield wrap
    for impl, real in made:
        impl.module._KERNELS = real


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_kernels_run_forward_and_backward_and_agree_with_torch_ops(counting, dtype):
    cell, impl, params, x = _problem(dtype=dtype)
    spy = counting(impl)
    T = x.shape[0]
    run = impl.forward(params, x, save=True)
    grads = impl.backward(params, run.cache, torch.ones_like(run.outputs))
    assert (spy.loops, spy.backs, spy.calls) == (1, 1, 0)  # both loops in C
    with kernels.without_loop():  # the Python loops: a block a step forward, one backward
        run3 = impl.forward(params, x, save=True)
        grads3 = impl.backward(params, run3.cache, torch.ones_like(run3.outputs))
    assert (spy.loops, spy.backs, spy.calls) == (1, 1, 2 * T)
    with kernels.disabled():
        run2 = impl.forward(params, x, save=True)
        grads2 = impl.backward(params, run2.cache, torch.ones_like(run2.outputs))
    assert (spy.loops, spy.backs, spy.calls) == (1, 1, 2 * T)
    torch.testing.assert_close(run3.outputs, run2.outputs)
    for k in grads.params:
        torch.testing.assert_close(grads3.params[k], grads2.params[k])
    trace = []  # a trace of the carries: the Python loop
    impl.backward(params, run.cache, torch.ones_like(run.outputs), trace=trace)
    assert len(trace) == T and spy.backs == 1 and spy.calls == 3 * T
    tol = 1e-6 if dtype == torch.float32 else 1e-14
    torch.testing.assert_close(run.outputs, run2.outputs, rtol=tol, atol=tol)
    for k in grads.params:
        torch.testing.assert_close(grads.params[k], grads2.params[k], rtol=10 * tol, atol=10 * tol)


def test_torch_ops_run_where_the_kernels_cannot(counting):
    cell, impl, params, x = _problem()
    spy = counting(impl)
    expected = impl.forward(params, x).outputs
    assert (spy.loops, spy.calls) == (1, 0)  # nothing saved: the whole loop in C
    with kernels.without_loop():
        expected_saved = impl.forward(params, x, save=True).outputs
    assert (spy.loops, spy.calls) == (1, 5)  # the Python loop, one block a step
    torch.testing.assert_close(expected_saved, expected, rtol=1e-6, atol=1e-6)
    doubles = {k: v.double() for k, v in params.items()}
    torch.testing.assert_close(impl.forward(doubles, x.double()).outputs.float(), expected, rtol=1e-6, atol=1e-6)
    assert spy.loops == 2  # float64 throughout: the float64 loop
    strided = x.transpose(1, 2).contiguous().transpose(1, 2)  # the same values, features not adjacent
    torch.testing.assert_close(impl.forward(params, strided).outputs, expected, rtol=1e-6, atol=1e-6)
    leaf = x.clone().requires_grad_(True)
    out = impl.forward(params, leaf).outputs  # autograd records: the torch operations
    with kernels.disabled():
        impl.forward(params, x)
    assert out.requires_grad and (spy.loops, spy.calls) == (2, 5)


def test_module_training_uses_the_kernels(counting):
    cell = lv.load("gru")
    layer = cell.module(sizes={"input": 4, "hidden": 5})
    spy = counting(cell.torch())
    out, _ = layer(torch.randn(6, 2, 4))
    out.sum().backward()
    assert spy.calls > 0 and all(p.grad is not None for p in layer.parameters())


# ----------------------------------------------------------------------------- building


def test_library_is_cached_and_checked(tmp_path, monkeypatch):
    monkeypatch.setenv("LSTM_VERIFY_CACHE", str(tmp_path))
    seg = kernels.Segment(0, (("y", sympy.tanh(X) * 3),), (("x", False),), ("y",), None)
    text = kernels.source([seg])
    compiled = []
    real = kernels._compile
    monkeypatch.setattr(kernels, "_compile", lambda *a: compiled.append(a) or real(*a))
    kernels._libraries.clear()
    kernels.library(text)
    assert len(compiled) == 1
    (so,) = [p for p in tmp_path.iterdir() if p.suffix == ".so"]
    assert (tmp_path / (so.name + ".mac")).exists() and so.stat().st_mode & 0o077 == 0
    kernels._libraries.clear()
    kernels.library(text)  # from the cache: no compiler
    assert len(compiled) == 1
    data = bytearray(so.read_bytes())  # a changed library does not verify: compiled again
    data[len(data) // 2] ^= 0xFF
    so.write_bytes(bytes(data))
    kernels._libraries.clear()
    lib = kernels.library(text)
    assert len(compiled) == 2 and hasattr(lib, "lvk0_f32")
    monkeypatch.setenv("LSTM_VERIFY_CACHE", "0")  # no cache folder: a private temporary one
    kernels._libraries.clear()
    assert hasattr(kernels.library(text), "lvk0_f64") and len(compiled) == 3


def test_without_a_compiler_a_warning_and_the_torch_ops(monkeypatch):
    cell, _, params, x = _problem(name="mgu")
    monkeypatch.setattr(kernels, "compiler", lambda: None)
    monkeypatch.setattr(kernels, "_warned", set())
    monkeypatch.setattr(kernels, "_libraries", {})
    with pytest.warns(kernels.KernelWarning, match="no C compiler"):
        impl = Implementation(cell, "torch")
    assert "no C compiler" in impl.kernels
    # no C on the CPU (the Triton kernels, for CUDA tensors, remain)
    assert impl.module._KERNELS.table([x]) is None and not impl.module._KERNELS.loops
    with kernels.disabled():
        expected = cell.torch().forward(params, x).outputs
    torch.testing.assert_close(impl.forward(params, x).outputs, expected)


HOSTILE = '''
name = "lvk0_f32"
title = "names of the kernels' own C text"
cite = ["none"]
input = "j"
state = ["b", "n"]
equations = [
  "x0 = sigmoid(lin(j, b))",
  "l0 = tanh(lin(j, b))",
  "c0 = x0*n + l0*(1 - x0)",
  "b' = tanh(c0) * x0",
  "n' = c0",
]
'''


def test_spec_names_never_reach_the_c_text(tmp_path):
    path = tmp_path / "hostile.toml"
    path.write_text(HOSTILE)
    cell = lv.load(str(path))
    impl = cell.torch()
    assert impl.kernels is None
    text = impl.module._C_SOURCE
    kernel_part = "\n".join(re.findall(r"^void lvk.*?^}$", text, re.S | re.M))
    assert kernel_part.count("void lvk") == 2 * len(impl.module._C_ARITY)
    allowed = {"void", "long", "double", "float", "const", "restrict", "for", "if", "pragma", "omp", "simd", "parallel", "B", "n",
               "t", "b", "j"} | {f"lv_{f}_f{w}" for f in ("sigmoid", "tanh", "exp") for w in (32, 64)}  # fmt: skip
    for ident in set(re.findall(r"(?<![\w.])[A-Za-z_][A-Za-z0-9_]*", kernel_part)) - allowed:
        assert re.fullmatch(r"(lvk\d+_f(32|64)|[axylcorq]\d+)", ident), ident
    params = {k: torch.as_tensor(v) for k, v in cell.init_params(sizes={"input": 3, "hidden": 4}).items()}
    x = torch.randn(4, 2, 3, dtype=params["b_x0"].dtype if "b_x0" in params else torch.float64)
    x = x.to(next(iter(params.values())).dtype)
    with kernels.disabled():
        expected = impl.forward(params, x)
    got = impl.forward(params, x)
    torch.testing.assert_close(got.outputs, expected.outputs)
    assert os.path.basename(cell.name) == "lvk0_f32"


# ----------------------------------------------------------------------------- the C loop

LOOPED = [n for n in catalog() if not lv.load(n).ir.sets and not any(
    isinstance(node, Reduce) for node in lv.load(n).ir.nodes)]  # fmt: skip


def _inputs(cell, dtype, T=7, B=3, seed=0):
    sizes = {k: 5 if k == "input" else 6 for k in cell.ir.size_names}
    g = torch.Generator().manual_seed(seed)
    params = {k: torch.as_tensor(v, dtype=dtype) for k, v in cell.init_params(sizes=sizes, seed=seed).items()}
    xs = {n: torch.randn(*s, generator=g, dtype=dtype) for n, s in cell.ir.input_shapes(sizes, T, B).items()}
    state = {s: torch.randn(B, params_width, generator=g, dtype=dtype)
             for s, params_width in ((s, sizes[d]) for s, d in cell.ir.states)}  # fmt: skip
    return params, xs, state


@pytest.mark.parametrize("name", catalog())
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_every_path_of_every_cell_agrees_with_the_torch_ops(name, dtype):
    """Loop in C, loop in Python with C blocks, and torch operations: the same outputs, final
    state, saved values and (from the saved values) gradients."""
    cell = lv.load(name)
    impl = cell.torch()
    assert impl.kernels is None
    assert bool(impl.module._KERNELS.loops) == (name in LOOPED)
    params, xs, state = _inputs(cell, dtype)
    tol = dict(rtol=2e-5, atol=2e-6) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-13)
    with kernels.disabled():
        want = impl.forward(params, xs, state, t0=3, save=True)
        want_g = impl.backward(params, want.cache, torch.ones_like(want.outputs))
    loop = impl.forward(params, xs, state, t0=3, save=True)
    with kernels.without_loop():
        blocks = impl.forward(params, xs, state, t0=3, save=True)
    assert sorted(loop.cache["saved"]) == sorted(blocks.cache["saved"]) == sorted(want.cache["saved"])
    for run in (loop, blocks):
        torch.testing.assert_close(run.outputs, want.outputs, **tol)
        for s in want.state:
            torch.testing.assert_close(run.state[s], want.state[s], **tol)
        for k, v in want.cache["saved"].items():
            torch.testing.assert_close(run.cache["saved"][k], v, **tol)
        got_g = impl.backward(params, run.cache, torch.ones_like(run.outputs))
        for k in want_g.params:
            torch.testing.assert_close(got_g.params[k], want_g.params[k], **{k_: 20 * v for k_, v in tol.items()})
    torch.testing.assert_close(impl.forward(params, xs, state, t0=3).outputs, want.outputs, **tol)


def test_the_loop_runs_where_it_can_and_leaves_the_callers_tensors_alone(monkeypatch):
    cell = lv.load("gru")
    impl = cell.torch()
    params, xs, state = _inputs(cell, torch.float32)
    calls = []
    real = impl.module._KERNELS.sequence
    monkeypatch.setattr(impl.module._KERNELS, "sequence", lambda *a: calls.append(real(*a)) or calls[-1])
    kept = {k: v.clone() for k, v in state.items()}
    expanded = {k: v[:1].expand_as(v) for k, v in state.items()}  # stride 0 rows: copied for the loop
    run = impl.forward(params, xs, expanded)
    assert calls[-1] is not None
    with kernels.disabled():
        want = impl.forward(params, xs, {k: v.contiguous() for k, v in expanded.items()})
    torch.testing.assert_close(run.outputs, want.outputs)
    impl.forward(params, xs, state)
    assert all(torch.equal(state[k], kept[k]) for k in state)
    final = run.state["h"].clone()
    run.outputs.add_(1)  # the outputs and the final state are separate tensors
    assert torch.equal(run.state["h"], final)
    n = len(calls)
    with kernels.without_loop():
        impl.forward(params, xs, state, save=True)  # the Python loop
    assert len(calls) == n + 1 and calls[-1] is None
    leaf = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    impl.forward(leaf, xs, state)  # autograd records: refused
    assert len(calls) == n + 2 and calls[-1] is None


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_blocks_wide_enough_to_share_torchs_threads_agree(name):
    """B * n >= kernels.PARALLEL: the batch rows of each block run on torch's OpenMP threads."""
    cell = lv.load(name)
    impl = cell.torch()
    sizes = {"input": 16, "hidden": 256}
    assert 20 * 256 >= kernels.PARALLEL
    g = torch.Generator().manual_seed(1)
    params = {k: torch.as_tensor(v) for k, v in cell.init_params(sizes=sizes).items()}
    x = torch.randn(6, 20, 16, generator=g, dtype=next(iter(params.values())).dtype)
    d = torch.randn(6, 20, 256, generator=g, dtype=x.dtype)
    run = impl.forward(params, x, save=True)
    grads = impl.backward(params, run.cache, d)
    with kernels.disabled():
        want = impl.forward(params, x, save=True)
        want_g = impl.backward(params, want.cache, d)
    torch.testing.assert_close(run.outputs, want.outputs, rtol=1e-12, atol=1e-13)
    for k in grads.params:
        torch.testing.assert_close(grads.params[k], want_g.params[k], rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("name", ["rnn_tanh", "lstm_peephole"])
@pytest.mark.parametrize("strided", ["weights", "vectors"])
def test_parameters_that_are_strided_views_run_right(name, strided, counting):
    """Weights whose rows are a slice of a wider matrix (unit stride along the features, but not
    contiguous: the C loops take contiguous copies), or biases and diagonals that are every
    other element of a vector (the torch operations run): the same results either way."""
    cell = lv.load(name)
    impl = cell.torch()
    spy = counting(impl)
    params, xs, state = _inputs(cell, torch.float64)
    views = dict(params)
    for k, v in params.items():
        if strided == "weights" and v.dim() == 2:
            views[k] = torch.cat([v, torch.full_like(v, float("nan"))], 1)[:, : v.shape[1]]
        elif strided == "vectors" and v.dim() == 1:
            views[k] = torch.stack([v, torch.full_like(v, float("nan"))], 1)[:, 0]
        assert torch.equal(views[k], v)
    assert any(not v.is_contiguous() for v in views.values())
    run = impl.forward(views, xs, state, save=True)
    grads = impl.backward(views, run.cache, torch.ones_like(run.outputs))
    assert (spy.loops, spy.backs) == ((1, 1) if strided == "weights" else (0, 0))
    with kernels.disabled():
        want = impl.forward(params, xs, state, save=True)
        want_g = impl.backward(params, want.cache, torch.ones_like(want.outputs))
    torch.testing.assert_close(run.outputs, want.outputs, rtol=1e-12, atol=1e-13)
    for k in want_g.params:
        torch.testing.assert_close(grads.params[k], want_g.params[k], rtol=1e-11, atol=1e-12)
