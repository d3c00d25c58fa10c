"""The helpers generated modules start with (lstm_verify/prelude), as the real modules they are:
what the generator copies, and what each helper does."""

from __future__ import annotations

import warnings

import mpmath
import numpy as np
import pytest

import lstm_verify as lv
from lstm_verify import codegen
from lstm_verify.prelude import numpy_step as nps


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_generated_modules_carry_the_prelude_source_verbatim(backend):
    source = codegen.prelude(backend)
    assert source.lstrip().startswith("import") and codegen.PRELUDE_MARK not in source
    for name in ("lstm", "attention_decoder"):
        assert source in codegen.generate(lv.load(name).ir, backend)


def test_numpy_sigmoid_is_exact_to_two_eps_and_silent_at_the_extremes():
    x = np.concatenate([np.linspace(-745, 40, 4001), [-1e308, 1e308, -np.inf, np.inf]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warning escapes
        got = nps._sigmoid(x)
    assert got[-4] == 0.0 and got[-2] == 0.0 and got[-3] == 1.0 and got[-1] == 1.0
    with mpmath.workdps(40):
        exact = np.array([float(1 / (1 + mpmath.exp(-mpmath.mpf(float(v))))) for v in x[:-4]])
    normal = exact >= np.finfo(float).tiny
    rel = np.abs(got[:-4][normal] - exact[normal]) / exact[normal]
    assert rel.max() <= 2 * np.finfo(float).eps


def test_numpy_helpers():
    a, b = np.array([1.0, 2.0, 3.0]), np.array([1.0, 3.0, 2.0])
    assert nps._max_grad(a, b).tolist() == [0.5, 0.0, 1.0]  # torch.maximum's convention at a tie
    assert nps._step(np.array([-1.0, 0.0, 2.0])).tolist() == [0.0, 0.0, 1.0]
    assert nps._hard_sigmoid_grad(np.array([-3.0, 0.0, 2.9, 3.0])).tolist() == [0.0, 1 / 6, 1 / 6, 0.0]
    x = np.arange(6.0).reshape(2, 3)
    assert nps._rsum(x).tolist() == [[3.0], [12.0]] and nps._bcast(nps._rsum(x), 3).shape == (2, 3)
    s = np.arange(24.0).reshape(2, 3, 4)  # (B, L, n)
    assert np.array_equal(nps._ssum(s), s.sum(1)) and np.array_equal(nps._smax(s), s[:, 2])
    assert nps._sbcast(x, 5).shape == (2, 5, 3)
    buf = None
    for t in range(3):
        buf = nps._put(buf, t, x + t, 3)
    assert buf.shape == (3, 2, 3) and np.array_equal(buf[2], x + 2)
    cat = nps._cat_put(None, 1, [x, x[:, :1]], 2)
    assert cat.shape == (2, 2, 4) and np.array_equal(cat[1], np.concatenate([x, x[:, :1]], -1))
    W = np.arange(12.0).reshape(4, 3)
    product = nps._linear(W, 2, 5)
    assert np.array_equal(product(x), x @ W.T) and np.array_equal(product(x, np.ones((2, 4))), 1 + x @ W.T)


@pytest.fixture()
def tps(monkeypatch):
    """The torch helpers, with an empty pool; skipped without the torch extra."""
    pytest.importorskip("torch", reason="the torch helpers need the torch extra: pip install 'lstm-verify[torch]'")
    from lstm_verify.prelude import torch_step

    monkeypatch.setattr(torch_step, "_POOL", {})
    return torch_step


@pytest.mark.parametrize("packed", [None, False])
def test_torch_linear_packed_or_not_computes_the_product(tps, monkeypatch, packed):
    torch = tps.torch
    monkeypatch.setattr(tps, "PACKED_GEMM", packed)
    g = torch.Generator().manual_seed(0)
    W, a, add = (torch.randn(s, generator=g) for s in ((12, 5), (3, 5), (3, 12)))
    with torch.no_grad():
        product = tps._linear(W, 3, 10)
        want = (a.double() @ W.double().T).float()
        torch.testing.assert_close(product(a), want, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(product(a, add.clone()), want + add, rtol=1e-5, atol=1e-5)
    # with a gradient recorded, never the packed kernel: the product is differentiable
    a.requires_grad_(True)
    tps._linear(W, 3, 10)(a).sum().backward()
    torch.testing.assert_close(a.grad, W.sum(0).expand(3, 5))


def test_torch_blocked_product_is_the_gates_blocks(tps):
    torch = tps.torch
    g = torch.Generator().manual_seed(1)
    W, a = torch.randn(8, 3, generator=g, dtype=torch.float64), torch.randn(2, 3, generator=g, dtype=torch.float64)
    z = tps._blocked(W, 4)(a)
    assert z.shape == (4, 2, 2)
    torch.testing.assert_close(torch.cat(list(z), -1), a @ W.T)


def test_torch_pool_reuses_a_released_buffer_but_not_one_handed_back(tps):
    torch = tps.torch
    like = torch.zeros(1)
    with torch.no_grad():
        a = tps._scratch((4, 4), like)
        tps._release([a])
        assert tps._scratch((4, 4), like) is a  # from the pool
        b = tps._scratch((4, 4), like)
        tps._release([b], escaping=[b[1:]])  # the caller holds a view of it
        assert tps._POOL.get(((4, 4), torch.float32)) in (None, [])
    assert tps._scratch((4, 4), like) is None  # out= writes are not differentiable


def test_torch_cat_put_keeps_the_graph_under_autograd(tps):
    torch = tps.torch
    x = torch.ones(2, 3, requires_grad=True)
    buf = tps._cat_put(None, 0, [x, 2 * x], 1)
    buf.sum().backward()
    assert torch.equal(x.grad, torch.full((2, 3), 3.0))
