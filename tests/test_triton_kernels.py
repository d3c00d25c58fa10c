"""The Triton kernels of the generated torch code (lstm_verify.triton_kernels), run by Triton's
interpreter on the CPU: their math against mpmath, every cell against the torch operations,
when they run, their audit, and names.

The oracle tests of every cell run on this path too in test_codegen.py (the ``path`` fixture).
"""

import re
import sys
import warnings

import numpy as np
import pytest
import torch

import lstm_verify as lv
from lstm_verify import kernels, triton_kernels
from lstm_verify.cell import catalog
from lstm_verify.hygiene import GeneratedCodeError
from mathcases import FUNCTIONS, check_float32, check_float64, check_special_values

pytest.importorskip("triton", reason="Triton is not installed (the extra 'triton'): no Triton kernels to test")


def _unary(expr):
    """The Triton kernel computing ``expr`` of x elementwise, in the interpreter."""
    seg = kernels.Segment(0, (("y", expr),), (("x", False),), ("y",), None)
    launch = kernels._interpreted(triton_kernels.load(triton_kernels.source([seg]), interpret=True).KERNELS)[0]

    def run(x, dtype):
        x = torch.from_numpy(np.ascontiguousarray(x, dtype))
        rows = max(1, x.numel() // 4096)  # rows of one tile's width: as a generated step calls it
        flat = torch.cat([x, x.new_zeros((-x.numel()) % rows)]).reshape(rows, -1)
        y = torch.empty_like(flat)
        launch(rows, flat.shape[1], 0.0, flat, flat.stride(0), y, y.stride(0))
        return y.reshape(-1)[: x.numel()].numpy()

    return {dtype: (lambda x, dtype=dtype: run(x, dtype)) for dtype in (np.float32, np.float64)}


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_float32_math_within_the_c_kernels_ulps_of_mpmath(name):
    """The same polynomials as the C kernels, the same bounds (a sixth of the random points: the
    interpreter computes a tile at a time in NumPy)."""
    check_float32(name, _unary(FUNCTIONS[name][0])[np.float32], scale=1 / 6)


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_float64_math_within_4_spacings_of_numpy(name):
    check_float64(name, _unary(FUNCTIONS[name][0])[np.float64])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_special_values_propagate(dtype):
    check_special_values(_unary, dtype)


# ----------------------------------------------------------------------------- every cell


def _inputs(cell, dtype, T=4, B=3, seed=0):
    sizes = {k: 5 if k == "input" else 6 for k in cell.ir.size_names}
    g = torch.Generator().manual_seed(seed)
    params = {k: torch.as_tensor(v, dtype=dtype) for k, v in cell.init_params(sizes=sizes, seed=seed).items()}
    xs = {n: torch.randn(*s, generator=g, dtype=dtype) for n, s in cell.ir.input_shapes(sizes, T, B).items()}
    state = {s: torch.randn(B, sizes[d], generator=g, dtype=dtype) for s, d in cell.ir.states}
    return params, xs, state


class _Launches:
    def __init__(self, module):
        self.module, self.real, self.count = module, module._KERNELS._triton_table, 0

    def __call__(self, interpret):
        fns = self.real(interpret)

        def counted(f):
            def call(*args):
                self.count += 1
                return f(*args)

            return call

        return None if fns is None else [counted(f) for f in fns]


@pytest.mark.parametrize("name", catalog())
def test_every_cell_on_triton_agrees_with_the_torch_ops(name, monkeypatch):
    """Outputs, final state, every saved value and the gradients, with t0 != 0 and a random
    initial state; one launch per block and step, and none outside ``interpreted`` (float32:
    test_codegen.py checks float64 against mpmath and autograd on this path)."""
    dtype = torch.float32
    cell = lv.load(name)
    impl = cell.torch()
    launches = _Launches(impl.module)
    monkeypatch.setattr(impl.module._KERNELS, "_triton_table", launches)
    params, xs, state = _inputs(cell, dtype)
    tol = dict(rtol=2e-5, atol=2e-6)
    with kernels.disabled():
        want = impl.forward(params, xs, state, t0=3, save=True)
        want_g = impl.backward(params, want.cache, torch.ones_like(want.outputs))
    impl.forward(params, xs, state, t0=3, save=True)
    assert launches.count == 0  # CPU tensors: C, not Triton
    with kernels.interpreted():
        run = impl.forward(params, xs, state, t0=3, save=True)
        forward = launches.count
        got_g = impl.backward(params, run.cache, torch.ones_like(run.outputs))
    assert forward >= 4  # a block a step at least
    backward_blocks = "_kt[" in impl.source[impl.source.index("def backward"):]
    assert (launches.count > forward) == backward_blocks  # (clockwork_rnn's partials have no batch axis)
    torch.testing.assert_close(run.outputs, want.outputs, **tol)
    for s in want.state:
        torch.testing.assert_close(run.state[s], want.state[s], **tol)
    assert sorted(run.cache["saved"]) == sorted(want.cache["saved"])
    for k, v in want.cache["saved"].items():
        torch.testing.assert_close(run.cache["saved"][k], v, **tol)
    for k in want_g.params:
        torch.testing.assert_close(got_g.params[k], want_g.params[k], **{k_: 20 * v for k_, v in tol.items()})


def test_blocks_wider_than_a_tile_and_strided_rows():
    """Tiles that split rows and columns (hidden 1500 > 1024, batch 5), inputs that are views with
    row strides of their own."""
    cell = lv.load("lstm")
    impl = cell.torch()
    params = {k: torch.as_tensor(v) for k, v in cell.init_params(sizes={"input": 3, "hidden": 1500}).items()}
    x = torch.randn(2, 5, 7, dtype=next(iter(params.values())).dtype)[:, :, 2:5]
    with kernels.disabled():
        want = impl.forward(params, x)
    with kernels.interpreted():
        got = impl.forward(params, x)
    torch.testing.assert_close(got.outputs, want.outputs)


# ----------------------------------------------------------------------------- text and audit

HOSTILE = '''
name = "lvt0"
title = "names of the Triton kernels' own text"
cite = ["none"]
input = "tl"
state = ["rows", "m"]
equations = [
  "triton = sigmoid(lin(tl, rows))",
  "lv_exp = tanh(lin(tl, rows))",
  "INF = triton*m + lv_exp*(1 - triton)",
  "rows' = tanh(INF) * triton",
  "m' = INF",
]
'''


def test_spec_names_never_reach_the_triton_text(tmp_path):
    path = tmp_path / "hostile.toml"
    path.write_text(HOSTILE)
    cell = lv.load(str(path))
    impl = cell.torch()
    text = impl.module._TRITON_SOURCE
    kernel_part = "\n".join(re.findall(r"^def lvt\d+.*?(?=^\S|\Z)", text, re.S | re.M))
    assert kernel_part.count("def lvt") == len(impl.module._C_ARITY) > 0
    fixed = {"def", "tl", "program_id", "arange", "None", "to", "int64", "load", "store", "mask", "other",
             "broadcast_to", "BB", "BN", "constexpr", "B", "n", "t", "b", "j", "rows", "m"}  # fmt: skip
    for ident in set(re.findall(r"(?<![\w.])[A-Za-z_][A-Za-z0-9_]*", kernel_part)) - fixed:
        assert re.fullmatch(r"(lvt\d+|lv_(sigmoid|tanh|exp)|[xlcaroq]\d+)", ident), ident
    params = {k: torch.as_tensor(v) for k, v in cell.init_params(sizes={"input": 3, "hidden": 4}).items()}
    x = torch.randn(4, 2, 3).to(next(iter(params.values())).dtype)
    with kernels.disabled():
        expected = impl.forward(params, x)
    with kernels.interpreted():
        got = impl.forward(params, x)
    torch.testing.assert_close(got.outputs, expected.outputs)


@pytest.mark.parametrize("line", [
    "import os", "from triton import jit", "x0 = open('f')", "x0 = tl.__dict__", "x0 = eval('1')",
    "x0 = tl.extra.cuda", "v_h = 1", "x0 = lambda: 1", "with tl: pass", "x0 = b'1'",
])  # fmt: skip
def test_the_audit_refuses_what_the_templates_never_write(line):
    text = triton_kernels.source([kernels.Segment(0, (("y", FUNCTIONS["exp"][0]),), (("x", False),), ("y",), None)])
    triton_kernels.audit(text)
    with pytest.raises(GeneratedCodeError):
        triton_kernels.audit(text + "\n" + line + "\n")


def test_without_triton_a_warning_and_the_torch_ops(monkeypatch):
    cell = lv.load("gru")
    impl = cell.torch()
    k = kernels.Kernels(None, impl.module._C_ARITY, None, impl.module, impl.module._TRITON_SOURCE)
    monkeypatch.setitem(sys.modules, "triton", None)  # import triton raises ImportError
    monkeypatch.setattr(kernels, "_warned", set())
    with pytest.warns(kernels.KernelWarning, match="Triton is not installed"):
        assert k._triton_table(interpret=False) is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert k._triton_table(interpret=False) is None  # once
    with pytest.raises(ImportError):
        with kernels.interpreted():
            pass


def test_tensors_on_another_device_run_the_torch_ops():
    impl = lv.load("lstm").torch()
    meta = [torch.empty(3, 4, device="meta")]
    assert impl.module._KERNELS.table(meta) is None
    assert impl.module._KERNELS.table([torch.empty(3, 4), torch.empty(3, 4, dtype=torch.float64)]) is None


@pytest.mark.parametrize("expr", ["x*zoo", "x + nan", "x + oo", "x**(1/3)", "Abs(x)", "Max(x, 1)", "floor(x)"])
def test_what_the_printer_cannot_compute_stays_in_torch(expr):
    import sympy

    seg = kernels.Segment(0, (("y", sympy.sympify(expr, locals={"x": sympy.Symbol("x")})),), (("x", False),),
                          ("y",), None)  # fmt: skip
    with pytest.raises(kernels.Unfusable, match="no Triton kernel"):
        triton_kernels.kernel_text(seg)
