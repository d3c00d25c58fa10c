(
    'layernorm_lstm: Layer-normalised LSTM (LN-LSTM)\n'
    '\n'
    'Exported by lstm-verify 0.1.0 (target torch) from spec layernorm_lstm.toml,\n'
    'sha256 cce434ede007f30f1c64adcce7c6f1721be6c3f98b7bcd3da720c65ed26dc876.\n'
    'Regenerate: lstm-verify export layernorm_lstm --target torch -o layernorm_lstm_torch.py\n'
    '\n'
    'Sources: Ba, Kiros & Hinton 2016, Layer Normalization, eq. 20-22; ryankiros/layer-norm, layers.py lstm_layer (eps 1e-5 inside the square root)\n'
    "Equations (lin = affine map: one weight per argument, plus a bias; h' = new value):\n"
    '    ix = lin(x, bias=false)\n'
    '    fx = lin(x, bias=false)\n'
    '    gx = lin(x, bias=false)\n'
    '    ox = lin(x, bias=false)\n'
    '    ih = lin(h, bias=false)\n'
    '    fh = lin(h, bias=false)\n'
    '    gh = lin(h, bias=false)\n'
    '    oh = lin(h, bias=false)\n'
    '    mx = mean(ix, fx, gx, ox)\n'
    '    sx = sqrt(var(ix, fx, gx, ox) + 1e-5)\n'
    '    mh = mean(ih, fh, gh, oh)\n'
    '    sh = sqrt(var(ih, fh, gh, oh) + 1e-5)\n'
    '    i = sigmoid(a_ix*(ix - mx)/sx + a_ih*(ih - mh)/sh + b_i)\n'
    '    f = sigmoid(a_fx*(fx - mx)/sx + a_fh*(fh - mh)/sh + b_f)\n'
    '    g = tanh(a_gx*(gx - mx)/sx + a_gh*(gh - mh)/sh + b_g)\n'
    '    o = sigmoid(a_ox*(ox - mx)/sx + a_oh*(oh - mh)/sh + b_o)\n'
    "    c' = f*c + i*g\n"
    "    h' = o*tanh(layernorm(c', a_c, b_c, 1e-5))\n"
    '\n'
    'Inputs: x (input). State: h (hidden), c (hidden). Output: h.\n'
    'Parameters (weights stored (out, in), as torch stores them):\n'
    '    W_ix_x: (hidden, input)\n'
    '    W_fx_x: (hidden, input)\n'
    '    W_gx_x: (hidden, input)\n'
    '    W_ox_x: (hidden, input)\n'
    '    W_ih_h: (hidden, hidden)\n'
    '    W_fh_h: (hidden, hidden)\n'
    '    W_gh_h: (hidden, hidden)\n'
    '    W_oh_h: (hidden, hidden)\n'
    '    a_ix: (hidden,)\n'
    '    a_fx: (hidden,)\n'
    '    a_gx: (hidden,)\n'
    '    a_ox: (hidden,)\n'
    '    a_ih: (hidden,)\n'
    '    a_fh: (hidden,)\n'
    '    a_gh: (hidden,)\n'
    '    a_oh: (hidden,)\n'
    '    b_i: (hidden,)\n'
    '    b_f: (hidden,)\n'
    '    b_g: (hidden,)\n'
    '    b_o: (hidden,)\n'
    '    a_c: (hidden,)\n'
    '    b_c: (hidden,)\n'
    '\n'
    'Note: The input-to-hidden and the hidden-to-hidden pre-activations of all four gates are each\n'
    'normalised as one vector of 4*hidden units (mean and population variance over the four gates\n'
    'together), each unit with its own gain; the new cell is normalised over its hidden units before\n'
    "the tanh. eps = 1e-5 inside the square root, as in the paper's code and torch.nn.LayerNorm. The\n"
    "paper's two normalisation biases and the gate bias add up to one bias per gate (b_i, b_f, b_g,\n"
    'b_o): only their sum is identifiable.\n'
)

import sys
import weakref

import math

import torch


def _step(x):
    return (x > 0).to(x.dtype)


def _hard_sigmoid_grad(x):
    return ((x > -3) & (x < 3)).to(x.dtype) / 6


def _tick(t, period):
    return (torch.remainder(t, period) == 0).to(period.dtype)


def _max_grad(a, b):
    # d max(a, b)/da: 1 where a > b, 1/2 at a tie, 0 where a < b (torch.maximum's convention)
    dtype = a.dtype if torch.is_tensor(a) else b.dtype
    return (a > b).to(dtype) + 0.5 * (a == b).to(dtype)


def _rsum(x):
    # the sum over a vector's units, kept as an axis of size 1 (a reduction's value)
    return x.sum(-1, keepdim=True)


def _bcast(x, n):
    # a reduction's gradient (size 1) spread over n units
    return x.expand(*x.shape[:-1], n)


def _ssum(x):
    # the sum over the set's members (axis 1 of (B, L, n))
    return x.sum(1)


def _smax(x):
    return x.amax(1)


def _sbcast(x, n):
    # a (B, m) gradient spread over the n members of the set: (B, n, m)
    return x[:, None].expand(x.shape[0], n, *x.shape[1:])


def _cat(xs, axis):
    return xs[0] if len(xs) == 1 else torch.cat(xs, axis)


def _zeros(shape, like):
    return torch.zeros(shape, dtype=like.dtype, device=like.device)


def _empty(shape, like):
    return torch.empty(shape, dtype=like.dtype, device=like.device)


def _const(value, like):
    return torch.tensor(value, dtype=like.dtype, device=like.device)


def _put(buf, t, value, n):
    """Write step t of a sequence buffer of n steps, allocated at the first write."""
    if buf is None:
        buf = _empty((n,) + tuple(value.shape), value)
    buf[t] = value
    return buf


# Sequence buffers are kept for the next call of the same shape: the first writes to freshly
# mapped memory cost as much as the arithmetic done on it. Buffers that live within one call
# (hoisted pre-activations, stacked step gradients) return at its end; the buffers saved for
# the backward return when the forward's record is freed and nothing else holds their memory.
# CPU only (the CUDA allocator caches), only buffers made while no gradient is recorded
# (autograd may keep what it saw), at most POOL_BYTES in all (0 disables the pool).
POOL_BYTES = 64 * 2**20
_POOL = {}  # (shape, dtype) -> [buffers], oldest key first


def _scratch(shape, like):
    """A buffer from the pool or a new one; None while a gradient is recorded (out= writes
    are not differentiable)."""
    if torch.is_grad_enabled():
        return None
    free = _POOL.get((tuple(shape), like.dtype)) if like.device.type == "cpu" else None
    return free.pop() if free else _empty(shape, like)


def _release(bufs, escaping=()):
    """Return buffers to the pool, unless a tensor handed back to the caller shares memory
    with one."""
    taken = {t.untyped_storage().data_ptr() for t in escaping if isinstance(t, torch.Tensor)}
    for buf in bufs:
        if buf is None or buf.device.type != "cpu" or buf.untyped_storage().data_ptr() in taken:
            continue
        size = buf.numel() * buf.element_size()
        if size > POOL_BYTES:
            continue
        total = sum(b.numel() * b.element_size() for free in _POOL.values() for b in free)
        while _POOL and total + size > POOL_BYTES:
            free = _POOL[next(iter(_POOL))]
            if free:
                total -= free[0].numel() * free[0].element_size()
                free.pop(0)
            else:
                _POOL.pop(next(iter(_POOL)))
        _POOL.setdefault((tuple(buf.shape), buf.dtype), []).append(buf)


def _storage_users(t):
    return torch._C._storage_Use_Count(t.untyped_storage()._cdata)


try:
    _ALONE = _storage_users(torch.empty(1))  # a tensor whose memory nothing else shares
except Exception:  # no such count in this torch: saved buffers are not recycled
    _ALONE = None


class _Cache(dict):
    """What the forward keeps for the backward."""

    __slots__ = ("__weakref__",)


def _recycle(cache, bufs):
    """Pool bufs once cache is freed, those whose memory nothing else then shares."""
    if POOL_BYTES and _ALONE is not None:
        weakref.finalize(cache, _recycle_now, bufs)


def _recycle_now(bufs):
    free = []
    while bufs:
        b = bufs.pop()
        # nobody else refers to this tensor (getrefcount: b and its own argument) or to its memory
        if b is not None and sys.getrefcount(b) <= 2 and _storage_users(b) <= _ALONE:
            free.append(b)
        del b
    _release(free)


def _cat_put(buf, t, xs, n):
    """Concatenate xs (last axis) straight into step t of a sequence buffer of n steps."""
    if buf is None:
        shape = (n,) + tuple(xs[0].shape[:-1]) + (sum(x.shape[-1] for x in xs),)
        buf = _scratch(shape, xs[0])
        buf = _empty(shape, xs[0]) if buf is None else buf
    if torch.is_grad_enabled() and any(x.requires_grad for x in xs):
        buf[t] = torch.cat(xs, -1)  # out= is not differentiable
    else:
        torch.cat(xs, -1, out=buf[t])
    return buf


def _packed_gemm_works():
    """Whether this build of torch has MKL's packed single-precision GEMM (the kernel behind
    torch's prepacked CPU linear layers) and it computes the product."""
    try:
        w = torch.arange(6.0).reshape(3, 2)
        a = torch.arange(8.0).reshape(4, 2)
        packed = torch.ops.mkl._mkl_reorder_linear_weight(w, 4)
        return bool(torch.equal(torch.ops.mkl._mkl_linear(a, packed, w, None, 4), a @ w.T))
    except Exception:
        return False


# None: probed at the first use; set to False to use addmm everywhere
PACKED_GEMM = None


def _blocked(W, k):
    """The product a -> a @ W.T (+ add) for a W of k equal row blocks, as a (k, rows, n)
    tensor: block j, a @ W_j.T, is contiguous (a (rows, k*n) result has strided blocks, and
    the pointwise work that follows reads each block). All k products in one batched GEMM."""
    Wk = W.reshape(k, W.shape[0] // k, W.shape[1]).transpose(1, 2).contiguous()

    def product(a, add=None):
        z = torch.bmm(a.expand(k, *a.shape), Wk)
        return z if add is None else z.add_(add.reshape(add.shape[0], k, -1).transpose(0, 1))

    return product


def _linear(W, rows, steps):
    """The product a -> a @ W.T (+ add), for `steps` uses with the same W and `rows`-row a.
    On the CPU in single precision, with no gradient being recorded, W is packed once into
    MKL's GEMM layout (a recurrent weight is reused at every step); elsewhere addmm/mm."""
    global PACKED_GEMM
    eligible = (steps > 1 and W.device.type == "cpu" and W.dtype == torch.float32
                and not torch.is_grad_enabled())
    if eligible and PACKED_GEMM is None:
        PACKED_GEMM = _packed_gemm_works()
    if eligible and PACKED_GEMM:
        Wc = W.contiguous()
        packed = torch.ops.mkl._mkl_reorder_linear_weight(Wc, rows)

        def packed_product(a, add=None):
            out = torch.ops.mkl._mkl_linear(a, packed, Wc, None, rows)
            return out if add is None else out.add_(add)

        return packed_product
    Wt = W.T

    def product(a, add=None):
        return a @ Wt if add is None else torch.addmm(add, a, Wt)

    return product


def _offsets(sizes):
    out = [0]
    for s in sizes:
        out.append(out[-1] + s)
    return out


def forward(params, inputs, state, t0=0, save=False):
    """Run the cell over a sequence; see the module header for the equations."""
    v_W_ix_x = params['W_ix_x']
    v_W_fx_x = params['W_fx_x']
    v_W_gx_x = params['W_gx_x']
    v_W_ox_x = params['W_ox_x']
    v_W_ih_h = params['W_ih_h']
    v_W_fh_h = params['W_fh_h']
    v_W_gh_h = params['W_gh_h']
    v_W_oh_h = params['W_oh_h']
    v_a_ix = params['a_ix']
    v_a_fx = params['a_fx']
    v_a_gx = params['a_gx']
    v_a_ox = params['a_ox']
    v_a_ih = params['a_ih']
    v_a_fh = params['a_fh']
    v_a_gh = params['a_gh']
    v_a_oh = params['a_oh']
    v_b_i = params['b_i']
    v_b_f = params['b_f']
    v_b_g = params['b_g']
    v_b_o = params['b_o']
    v_a_c = params['a_c']
    v_b_c = params['b_c']
    _W_x = _cat([v_W_ix_x, v_W_fx_x, v_W_gx_x, v_W_ox_x], 0)
    _off_x = _offsets([v_W_ix_x.shape[0], v_W_fx_x.shape[0], v_W_gx_x.shape[0], v_W_ox_x.shape[0]])
    _W_h = _cat([v_W_ih_h, v_W_fh_h, v_W_gh_h, v_W_oh_h], 0)
    _X_x = inputs['x']
    _T, _B = _X_x.shape[0], _X_x.shape[1]
    _G_x = (torch.mm(_X_x.reshape(_T * _B, _X_x.shape[2]), _W_x.T, out=_scratch((_T * _B, _W_x.shape[0]), _X_x))).reshape(_T, _B, -1)
    _mm_h = _blocked(_W_h, 4)
    v_h = state['h']
    v_c = state['c']
    _out = None
    _saved = {'c_': None, 'f': None, 'fh': None, 'fx': None, 'g': None, 'gh': None, 'gx': None, 'i': None, 'ih': None, 'ix': None, 'mean_h': None, 'mh': None, 'mx': None, 'o': None, 'oh': None, 'ox': None, 'sh': None, 'sx': None, 'var_h': None} if save else None
    _n_mean_mx = state['h'].shape[-1] + state['h'].shape[-1] + state['h'].shape[-1] + state['h'].shape[-1]
    _n_var_sx = state['h'].shape[-1] + state['h'].shape[-1] + state['h'].shape[-1] + state['h'].shape[-1]
    _n_mean_mh = state['h'].shape[-1] + state['h'].shape[-1] + state['h'].shape[-1] + state['h'].shape[-1]
    _n_var_sh = state['h'].shape[-1] + state['h'].shape[-1] + state['h'].shape[-1] + state['h'].shape[-1]
    _n_mean_h = state['h'].shape[-1]
    _n_var_h = state['h'].shape[-1]
    _k0 = _const(1e-05, _X_x)
    _direct = not torch.is_grad_enabled()  # out= writes are not differentiable
    _sv_c_ = _scratch((_T + 1, _B, state['h'].shape[-1]), _X_x) if save and _direct else None
    _sv_f = _scratch((_T, _B, state['h'].shape[-1]), _X_x) if save and _direct else None
    _sv_g = _scratch((_T, _B, state['h'].shape[-1]), _X_x) if save and _direct else None
    _sv_i = _scratch((_T, _B, state['h'].shape[-1]), _X_x) if save and _direct else None
    _sv_o = _scratch((_T, _B, state['h'].shape[-1]), _X_x) if save and _direct else None
    _out = _empty((_T, _B, state['h'].shape[-1]), _X_x)
    for _t in range(_T):
        _g_x = _G_x[_t]
        v_lin_ix = _g_x[..., _off_x[0]:_off_x[1]]
        v_lin_fx = _g_x[..., _off_x[1]:_off_x[2]]
        v_lin_gx = _g_x[..., _off_x[2]:_off_x[3]]
        v_lin_ox = _g_x[..., _off_x[3]:_off_x[4]]
        _g_h = _mm_h(v_h)
        v_lin_ih = _g_h[0]
        v_lin_fh = _g_h[1]
        v_lin_gh = _g_h[2]
        v_lin_oh = _g_h[3]
        v_ix = v_lin_ix
        v_fx = v_lin_fx
        v_gx = v_lin_gx
        v_ox = v_lin_ox
        v_ih = v_lin_ih
        v_fh = v_lin_fh
        v_gh = v_lin_gh
        v_oh = v_lin_oh
        v_mean_mx = (_rsum(v_ix) + _rsum(v_fx) + _rsum(v_gx) + _rsum(v_ox)) / _n_mean_mx
        v_mx = v_mean_mx
        v_var_sx = (_rsum((v_ix - v_mean_mx)*(v_ix - v_mean_mx)) + _rsum((v_fx - v_mean_mx)*(v_fx - v_mean_mx)) + _rsum((v_gx - v_mean_mx)*(v_gx - v_mean_mx)) + _rsum((v_ox - v_mean_mx)*(v_ox - v_mean_mx))) / _n_var_sx
        v_sx = torch.sqrt(v_var_sx + _k0)
        v_mean_mh = (_rsum(v_ih) + _rsum(v_fh) + _rsum(v_gh) + _rsum(v_oh)) / _n_mean_mh
        v_mh = v_mean_mh
        v_var_sh = (_rsum((v_ih - v_mean_mh)*(v_ih - v_mean_mh)) + _rsum((v_fh - v_mean_mh)*(v_fh - v_mean_mh)) + _rsum((v_gh - v_mean_mh)*(v_gh - v_mean_mh)) + _rsum((v_oh - v_mean_mh)*(v_oh - v_mean_mh))) / _n_var_sh
        _f4_1 = -v_mh
        _f4_2 = 1/v_sx
        _f4_3 = -v_mx
        v_sh = torch.sqrt(v_var_sh + _k0)
        _f4_0 = 1/v_sh
        v_i = torch.sigmoid(_f4_0*v_a_ih*(_f4_1 + v_ih) + _f4_2*v_a_ix*(_f4_3 + v_ix) + v_b_i, out=None if _sv_i is None else _sv_i[_t])
        v_f = torch.sigmoid(_f4_0*v_a_fh*(_f4_1 + v_fh) + _f4_2*v_a_fx*(_f4_3 + v_fx) + v_b_f, out=None if _sv_f is None else _sv_f[_t])
        v_g = torch.tanh(_f4_0*v_a_gh*(_f4_1 + v_gh) + _f4_2*v_a_gx*(_f4_3 + v_gx) + v_b_g, out=None if _sv_g is None else _sv_g[_t])
        v_o = torch.sigmoid(_f4_0*v_a_oh*(-v_mh + v_oh) + _f4_2*v_a_ox*(-v_mx + v_ox) + v_b_o, out=None if _sv_o is None else _sv_o[_t])
        v_c_ = torch.addcmul(v_c*v_f, v_g, v_i, out=None if _sv_c_ is None else _sv_c_[_t + 1])
        v_mean_h = (_rsum(v_c_)) / _n_mean_h
        v_var_h = (_rsum((v_c_ - v_mean_h)*(v_c_ - v_mean_h))) / _n_var_h
        v_h_ = torch.mul(v_o, torch.tanh(v_a_c*(v_c_ - v_mean_h)/torch.sqrt(v_var_h + _k0) + v_b_c), out=_out[_t] if _direct else None)
        if save:
            _saved['fh'] = _put(_saved['fh'], _t, v_fh, _T)
            _saved['fx'] = _put(_saved['fx'], _t, v_fx, _T)
            _saved['gh'] = _put(_saved['gh'], _t, v_gh, _T)
            _saved['gx'] = _put(_saved['gx'], _t, v_gx, _T)
            _saved['ih'] = _put(_saved['ih'], _t, v_ih, _T)
            _saved['ix'] = _put(_saved['ix'], _t, v_ix, _T)
            _saved['mean_h'] = _put(_saved['mean_h'], _t, v_mean_h, _T)
            _saved['mh'] = _put(_saved['mh'], _t, v_mh, _T)
            _saved['mx'] = _put(_saved['mx'], _t, v_mx, _T)
            _saved['oh'] = _put(_saved['oh'], _t, v_oh, _T)
            _saved['ox'] = _put(_saved['ox'], _t, v_ox, _T)
            _saved['sh'] = _put(_saved['sh'], _t, v_sh, _T)
            _saved['sx'] = _put(_saved['sx'], _t, v_sx, _T)
            _saved['var_h'] = _put(_saved['var_h'], _t, v_var_h, _T)
        if save and not _direct:
            _saved['c_'] = _put(_saved['c_'], _t + 1, v_c_, _T + 1)
            _saved['f'] = _put(_saved['f'], _t, v_f, _T)
            _saved['g'] = _put(_saved['g'], _t, v_g, _T)
            _saved['i'] = _put(_saved['i'], _t, v_i, _T)
            _saved['o'] = _put(_saved['o'], _t, v_o, _T)
        v_h = v_h_
        v_c = v_c_
        if not _direct:
            _out[_t] = v_h
    v_h = v_h.clone()
    cache = None
    if save:
        _saved['c_'] = _sv_c_ if _direct else _saved['c_']
        _saved['f'] = _sv_f if _direct else _saved['f']
        _saved['g'] = _sv_g if _direct else _saved['g']
        _saved['i'] = _sv_i if _direct else _saved['i']
        _saved['o'] = _sv_o if _direct else _saved['o']
        _saved['h'] = _cat([state['h'][None], _out[:-1]], 0)
        _saved['c_'][0] = state['c']
        _saved['c'] = _saved['c_'][:-1]
        _saved['c_'] = _saved['c_'][1:]
        cache = _Cache({
            "inputs": inputs,
            "state0": dict(state),
            "t0": t0,
            "saved": _saved,
        })
        if _direct:  # the saved buffers go back to the pool when the record is freed
            _recycle(cache, [_sv_c_, _sv_f, _sv_g, _sv_i, _sv_o])
    if not torch.is_grad_enabled():
        _release([_G_x], [_out, v_h, v_c] + (list(_saved.values()) if save else []))
    return _out, {'h': v_h, 'c': v_c}, cache


def backward(params, cache, d_outputs=None, d_state=None, trace=None):
    """Exact BPTT through the sequence run by forward(..., save=True). A list passed as
    ``trace`` receives, for t = T-1 down to 0, the gradient with respect to each state
    entering step t."""
    v_W_ix_x = params['W_ix_x']
    v_W_fx_x = params['W_fx_x']
    v_W_gx_x = params['W_gx_x']
    v_W_ox_x = params['W_ox_x']
    v_W_ih_h = params['W_ih_h']
    v_W_fh_h = params['W_fh_h']
    v_W_gh_h = params['W_gh_h']
    v_W_oh_h = params['W_oh_h']
    v_a_ix = params['a_ix']
    v_a_fx = params['a_fx']
    v_a_gx = params['a_gx']
    v_a_ox = params['a_ox']
    v_a_ih = params['a_ih']
    v_a_fh = params['a_fh']
    v_a_gh = params['a_gh']
    v_a_oh = params['a_oh']
    v_b_i = params['b_i']
    v_b_f = params['b_f']
    v_b_g = params['b_g']
    v_b_o = params['b_o']
    v_a_c = params['a_c']
    v_b_c = params['b_c']
    _W_x = _cat([v_W_ix_x, v_W_fx_x, v_W_gx_x, v_W_ox_x], 0)
    _off_x = _offsets([v_W_ix_x.shape[0], v_W_fx_x.shape[0], v_W_gx_x.shape[0], v_W_ox_x.shape[0]])
    _W_h = _cat([v_W_ih_h, v_W_fh_h, v_W_gh_h, v_W_oh_h], 0)
    _off_h = _offsets([v_W_ih_h.shape[0], v_W_fh_h.shape[0], v_W_gh_h.shape[0], v_W_oh_h.shape[0]])
    _X_x = cache["inputs"]['x']
    _T, _B = _X_x.shape[0], _X_x.shape[1]
    _state0 = cache["state0"]
    _S_c = cache["saved"]['c']
    _S_c_ = cache["saved"]['c_']
    _S_f = cache["saved"]['f']
    _S_fh = cache["saved"]['fh']
    _S_fx = cache["saved"]['fx']
    _S_g = cache["saved"]['g']
    _S_gh = cache["saved"]['gh']
    _S_gx = cache["saved"]['gx']
    _S_h = cache["saved"]['h']
    _S_i = cache["saved"]['i']
    _S_ih = cache["saved"]['ih']
    _S_ix = cache["saved"]['ix']
    _S_mean_h = cache["saved"]['mean_h']
    _S_mh = cache["saved"]['mh']
    _S_mx = cache["saved"]['mx']
    _S_o = cache["saved"]['o']
    _S_oh = cache["saved"]['oh']
    _S_ox = cache["saved"]['ox']
    _S_sh = cache["saved"]['sh']
    _S_sx = cache["saved"]['sx']
    _S_var_h = cache["saved"]['var_h']
    if d_state is None:
        d_state = {}
    _carry_h = d_state['h'] if d_state.get('h') is not None else _zeros(_state0['h'].shape, _state0['h'])
    _carry_c = d_state['c'] if d_state.get('c') is not None else _zeros(_state0['c'].shape, _state0['c'])
    _grad_a_ix = _zeros(v_a_ix.shape, v_a_ix)
    _grad_a_fx = _zeros(v_a_fx.shape, v_a_fx)
    _grad_a_gx = _zeros(v_a_gx.shape, v_a_gx)
    _grad_a_ox = _zeros(v_a_ox.shape, v_a_ox)
    _grad_a_ih = _zeros(v_a_ih.shape, v_a_ih)
    _grad_a_fh = _zeros(v_a_fh.shape, v_a_fh)
    _grad_a_gh = _zeros(v_a_gh.shape, v_a_gh)
    _grad_a_oh = _zeros(v_a_oh.shape, v_a_oh)
    _grad_b_i = _zeros(v_b_i.shape, v_b_i)
    _grad_b_f = _zeros(v_b_f.shape, v_b_f)
    _grad_b_g = _zeros(v_b_g.shape, v_b_g)
    _grad_b_o = _zeros(v_b_o.shape, v_b_o)
    _grad_a_c = _zeros(v_a_c.shape, v_a_c)
    _grad_b_c = _zeros(v_b_c.shape, v_b_c)
    _GBs_x = None
    _GBs_h = None
    _mmT_h = _linear(_W_h.T, _B, _T)
    _n_mean_mx = _state0['h'].shape[-1] + _state0['h'].shape[-1] + _state0['h'].shape[-1] + _state0['h'].shape[-1]
    _n_var_sx = _state0['h'].shape[-1] + _state0['h'].shape[-1] + _state0['h'].shape[-1] + _state0['h'].shape[-1]
    _n_mean_mh = _state0['h'].shape[-1] + _state0['h'].shape[-1] + _state0['h'].shape[-1] + _state0['h'].shape[-1]
    _n_var_sh = _state0['h'].shape[-1] + _state0['h'].shape[-1] + _state0['h'].shape[-1] + _state0['h'].shape[-1]
    _n_mean_h = _state0['h'].shape[-1]
    _n_var_h = _state0['h'].shape[-1]
    _k0 = _const(2, _X_x)
    _k1 = _const(1, _X_x)
    _k2 = _const(1e-05, _X_x)
    _k3 = _const(0.5, _X_x)
    for _t in range(_T - 1, -1, -1):
        v_c = _S_c[_t]
        v_c_ = _S_c_[_t]
        v_f = _S_f[_t]
        v_fh = _S_fh[_t]
        v_fx = _S_fx[_t]
        v_g = _S_g[_t]
        v_gh = _S_gh[_t]
        v_gx = _S_gx[_t]
        v_i = _S_i[_t]
        v_ih = _S_ih[_t]
        v_ix = _S_ix[_t]
        v_mean_h = _S_mean_h[_t]
        v_mh = _S_mh[_t]
        v_mx = _S_mx[_t]
        v_o = _S_o[_t]
        v_oh = _S_oh[_t]
        v_ox = _S_ox[_t]
        v_sh = _S_sh[_t]
        v_sx = _S_sx[_t]
        v_var_h = _S_var_h[_t]
        _q0 = 1/_n_mean_mx
        _q1 = 1/_n_var_sx
        _q2 = _k0*v_mx
        _q3 = -_q2
        _q4 = 1/v_sx
        _q5 = 1/_n_mean_mh
        _q6 = 1/_n_var_sh
        _q7 = _k0*v_mh
        _q8 = -_q7
        _q9 = 1/v_sh
        _q10 = -v_mh
        _q11 = _q10 + v_ih
        _q12 = v_i*(_k1 - v_i)
        _q13 = _q12*_q9
        _q14 = -v_mx
        _q15 = _q14 + v_ix
        _q16 = _q12*_q4
        _q17 = _q13*v_a_ih
        _q18 = _q16*v_a_ix
        _q19 = 1/((v_sh*v_sh))
        _q20 = 1/((v_sx*v_sx))
        _q21 = _q10 + v_fh
        _q22 = v_f*(_k1 - v_f)
        _q23 = _q22*_q9
        _q24 = _q14 + v_fx
        _q25 = _q22*_q4
        _q26 = _q23*v_a_fh
        _q27 = _q25*v_a_fx
        _q28 = _q10 + v_gh
        _q29 = _k1 - (v_g*v_g)
        _q30 = _q29*_q9
        _q31 = _q14 + v_gx
        _q32 = _q29*_q4
        _q33 = _q30*v_a_gh
        _q34 = _q32*v_a_gx
        _q35 = -v_mh + v_oh
        _q36 = v_o*(_k1 - v_o)
        _q37 = _q36*_q9
        _q38 = -v_mx + v_ox
        _q39 = _q36*_q4
        _q40 = _q37*v_a_oh
        _q41 = _q39*v_a_ox
        _q42 = v_var_h + _k2
        _q43 = 1/torch.sqrt(_q42)
        _q44 = v_c_ - v_mean_h
        _q45 = _q43*_q44
        _q46 = torch.tanh(torch.addcmul(v_b_c, _q45, v_a_c))
        _q47 = v_o*(_k1 - (_q46*_q46))
        _q48 = _q47*v_a_c
        _q49 = _q43*_q48
        _p0_mean_mx_ix = _q0
        _p1_mean_mx_fx = _q0
        _p2_mean_mx_gx = _q0
        _p3_mean_mx_ox = _q0
        _p4_var_sx_ix = _q1*(_q3 + _k0*v_ix)
        _p5_var_sx_fx = _q1*(_q3 + _k0*v_fx)
        _p6_var_sx_gx = _q1*(_q3 + _k0*v_gx)
        _p7_var_sx_ox = _q1*(-_q2 + _k0*v_ox)
        _p8_sx_var_sx = (_k3)*_q4
        _p9_mean_mh_ih = _q5
        _p10_mean_mh_fh = _q5
        _p11_mean_mh_gh = _q5
        _p12_mean_mh_oh = _q5
        _p13_var_sh_ih = _q6*(_q8 + _k0*v_ih)
        _p14_var_sh_fh = _q6*(_q8 + _k0*v_fh)
        _p15_var_sh_gh = _q6*(_q8 + _k0*v_gh)
        _p16_var_sh_oh = _q6*(-_q7 + _k0*v_oh)
        _p17_sh_var_sh = (_k3)*_q9
        _p18_i_a_ih = _q11*_q13
        _p19_i_a_ix = _q15*_q16
        _p20_i_b_i = _q12
        _p21_i_ih = _q17
        _p22_i_ix = _q18
        _p23_i_mh = -_q17
        _p24_i_mx = -_q18
        _p25_i_sh = -_q11*_q12*_q19*v_a_ih
        _p26_i_sx = -_q12*_q15*_q20*v_a_ix
        _p27_f_a_fh = _q21*_q23
        _p28_f_a_fx = _q24*_q25
        _p29_f_b_f = _q22
        _p30_f_fh = _q26
        _p31_f_fx = _q27
        _p32_f_mh = -_q26
        _p33_f_mx = -_q27
        _p34_f_sh = -_q19*_q21*_q22*v_a_fh
        _p35_f_sx = -_q20*_q22*_q24*v_a_fx
        _p36_g_a_gh = _q28*_q30
        _p37_g_a_gx = _q31*_q32
        _p38_g_b_g = _q29
        _p39_g_gh = _q33
        _p40_g_gx = _q34
        _p41_g_mh = -_q33
        _p42_g_mx = -_q34
        _p43_g_sh = -_q19*_q28*_q29*v_a_gh
        _p44_g_sx = -_q20*_q29*_q31*v_a_gx
        _p45_o_a_oh = _q35*_q37
        _p46_o_a_ox = _q38*_q39
        _p47_o_b_o = _q36
        _p48_o_mh = -_q40
        _p49_o_mx = -_q41
        _p50_o_oh = _q40
        _p51_o_ox = _q41
        _p52_o_sh = -_q19*_q35*_q36*v_a_oh
        _p53_o_sx = -_q20*_q36*_q38*v_a_ox
        _p54_mean_h_c_ = 1/_n_mean_h
        _p55_var_h_c_ = (_k0*v_c_ - _k0*v_mean_h)/_n_var_h
        _p56_h__a_c = _q45*_q47
        _p57_h__b_c = _q47
        _p58_h__c_ = _q49
        _p59_h__mean_h = -_q49
        _p60_h__o = _q46
        _p61_h__var_h = -_k3*_q44*_q48/(torch.sqrt(_q42)*_q42)
        _d_h_ = _carry_h
        if d_outputs is not None:
            _d_h_ = _d_h_ + d_outputs[_t]
        _d_c_ = _carry_c
        _grad_a_c = _grad_a_c + (_d_h_ * _p56_h__a_c).sum(0)
        _grad_b_c = _grad_b_c + (_d_h_ * _p57_h__b_c).sum(0)
        _d_c_ = torch.addcmul(_d_c_, _d_h_, _p58_h__c_)
        _d_mean_h = _rsum(_d_h_ * _p59_h__mean_h)
        _d_o = _d_h_ * _p60_h__o
        _d_var_h = _rsum(_d_h_ * _p61_h__var_h)
        _d_c_ = _d_c_ + _d_var_h * _p55_var_h_c_
        _d_c_ = _d_c_ + _bcast(_d_mean_h * _p54_mean_h_c_, _state0['h'].shape[-1])
        _d_c = _d_c_ * v_f
        _d_f = _d_c_ * v_c
        _d_g = _d_c_ * v_i
        _d_i = _d_c_ * v_g
        _grad_a_oh = _grad_a_oh + (_d_o * _p45_o_a_oh).sum(0)
        _grad_a_ox = _grad_a_ox + (_d_o * _p46_o_a_ox).sum(0)
        _grad_b_o = _grad_b_o + (_d_o * _p47_o_b_o).sum(0)
        _d_mh = _rsum(_d_o * _p48_o_mh)
        _d_mx = _rsum(_d_o * _p49_o_mx)
        _d_oh = _d_o * _p50_o_oh
        _d_ox = _d_o * _p51_o_ox
        _d_sh = _rsum(_d_o * _p52_o_sh)
        _d_sx = _rsum(_d_o * _p53_o_sx)
        _grad_a_gh = _grad_a_gh + (_d_g * _p36_g_a_gh).sum(0)
        _grad_a_gx = _grad_a_gx + (_d_g * _p37_g_a_gx).sum(0)
        _grad_b_g = _grad_b_g + (_d_g * _p38_g_b_g).sum(0)
        _d_gh = _d_g * _p39_g_gh
        _d_gx = _d_g * _p40_g_gx
        _d_mh = _d_mh + _rsum(_d_g * _p41_g_mh)
        _d_mx = _d_mx + _rsum(_d_g * _p42_g_mx)
        _d_sh = _d_sh + _rsum(_d_g * _p43_g_sh)
        _d_sx = _d_sx + _rsum(_d_g * _p44_g_sx)
        _grad_a_fh = _grad_a_fh + (_d_f * _p27_f_a_fh).sum(0)
        _grad_a_fx = _grad_a_fx + (_d_f * _p28_f_a_fx).sum(0)
        _grad_b_f = _grad_b_f + (_d_f * _p29_f_b_f).sum(0)
        _d_fh = _d_f * _p30_f_fh
        _d_fx = _d_f * _p31_f_fx
        _d_mh = _d_mh + _rsum(_d_f * _p32_f_mh)
        _d_mx = _d_mx + _rsum(_d_f * _p33_f_mx)
        _d_sh = _d_sh + _rsum(_d_f * _p34_f_sh)
        _d_sx = _d_sx + _rsum(_d_f * _p35_f_sx)
        _grad_a_ih = _grad_a_ih + (_d_i * _p18_i_a_ih).sum(0)
        _grad_a_ix = _grad_a_ix + (_d_i * _p19_i_a_ix).sum(0)
        _grad_b_i = _grad_b_i + (_d_i * _p20_i_b_i).sum(0)
        _d_ih = _d_i * _p21_i_ih
        _d_ix = _d_i * _p22_i_ix
        _d_mh = _d_mh + _rsum(_d_i * _p23_i_mh)
        _d_mx = _d_mx + _rsum(_d_i * _p24_i_mx)
        _d_sh = _d_sh + _rsum(_d_i * _p25_i_sh)
        _d_sx = _d_sx + _rsum(_d_i * _p26_i_sx)
        _d_var_sh = _d_sh * _p17_sh_var_sh
        _d_ih = _d_ih + _d_var_sh * _p13_var_sh_ih
        _d_fh = _d_fh + _d_var_sh * _p14_var_sh_fh
        _d_gh = _d_gh + _d_var_sh * _p15_var_sh_gh
        _d_oh = _d_oh + _d_var_sh * _p16_var_sh_oh
        _d_mean_mh = _d_mh
        _d_ih = _d_ih + _bcast(_d_mean_mh * _p9_mean_mh_ih, _state0['h'].shape[-1])
        _d_fh = _d_fh + _bcast(_d_mean_mh * _p10_mean_mh_fh, _state0['h'].shape[-1])
        _d_gh = _d_gh + _bcast(_d_mean_mh * _p11_mean_mh_gh, _state0['h'].shape[-1])
        _d_oh = _d_oh + _bcast(_d_mean_mh * _p12_mean_mh_oh, _state0['h'].shape[-1])
        _d_var_sx = _d_sx * _p8_sx_var_sx
        _d_ix = _d_ix + _d_var_sx * _p4_var_sx_ix
        _d_fx = _d_fx + _d_var_sx * _p5_var_sx_fx
        _d_gx = _d_gx + _d_var_sx * _p6_var_sx_gx
        _d_ox = _d_ox + _d_var_sx * _p7_var_sx_ox
        _d_mean_mx = _d_mx
        _d_ix = _d_ix + _bcast(_d_mean_mx * _p0_mean_mx_ix, _state0['h'].shape[-1])
        _d_fx = _d_fx + _bcast(_d_mean_mx * _p1_mean_mx_fx, _state0['h'].shape[-1])
        _d_gx = _d_gx + _bcast(_d_mean_mx * _p2_mean_mx_gx, _state0['h'].shape[-1])
        _d_ox = _d_ox + _bcast(_d_mean_mx * _p3_mean_mx_ox, _state0['h'].shape[-1])
        _d_lin_oh = _d_oh
        _d_lin_gh = _d_gh
        _d_lin_fh = _d_fh
        _d_lin_ih = _d_ih
        _d_lin_ox = _d_ox
        _d_lin_gx = _d_gx
        _d_lin_fx = _d_fx
        _d_lin_ix = _d_ix
        _GBs_h = _cat_put(_GBs_h, _t, [_d_lin_ih, _d_lin_fh, _d_lin_gh, _d_lin_oh], _T)
        _gb_h = _GBs_h[_t]
        _d_h = _mmT_h(_gb_h)
        _GBs_x = _cat_put(_GBs_x, _t, [_d_lin_ix, _d_lin_fx, _d_lin_gx, _d_lin_ox], _T)
        _carry_h = _d_h
        _carry_c = _d_c
        if trace is not None:
            trace.append({'h': _carry_h, 'c': _carry_c})
    grads = {}
    d_inputs = {}
    _GBs = _GBs_x
    _m = _GBs.shape[2]
    _GW = _GBs.reshape(_T * _B, _m).T @ _X_x.reshape(_T * _B, _X_x.shape[2])
    grads['W_ix_x'] = _GW[_off_x[0]:_off_x[1]]
    grads['W_fx_x'] = _GW[_off_x[1]:_off_x[2]]
    grads['W_gx_x'] = _GW[_off_x[2]:_off_x[3]]
    grads['W_ox_x'] = _GW[_off_x[3]:_off_x[4]]
    d_inputs['x'] = (_GBs.reshape(_T * _B, _m) @ _W_x).reshape(_T, _B, -1)
    _GBs = _GBs_h
    _m = _GBs.shape[2]
    _GW = _GBs.reshape(_T * _B, _m).T @ _S_h.reshape(_T * _B, _S_h.shape[2])
    grads['W_ih_h'] = _GW[_off_h[0]:_off_h[1]]
    grads['W_fh_h'] = _GW[_off_h[1]:_off_h[2]]
    grads['W_gh_h'] = _GW[_off_h[2]:_off_h[3]]
    grads['W_oh_h'] = _GW[_off_h[3]:_off_h[4]]
    if 'x' not in d_inputs:
        d_inputs['x'] = _zeros(_X_x.shape, _X_x)
    grads['a_ix'] = _grad_a_ix
    grads['a_fx'] = _grad_a_fx
    grads['a_gx'] = _grad_a_gx
    grads['a_ox'] = _grad_a_ox
    grads['a_ih'] = _grad_a_ih
    grads['a_fh'] = _grad_a_fh
    grads['a_gh'] = _grad_a_gh
    grads['a_oh'] = _grad_a_oh
    grads['b_i'] = _grad_b_i
    grads['b_f'] = _grad_b_f
    grads['b_g'] = _grad_b_g
    grads['b_o'] = _grad_b_o
    grads['a_c'] = _grad_a_c
    grads['b_c'] = _grad_b_c
    if not torch.is_grad_enabled():
        _release([_GBs_x, _GBs_h], [*grads.values(), *d_inputs.values(), _carry_h, _carry_c])
    return grads, d_inputs, {'h': _carry_h, 'c': _carry_c}


# shapes by size name, as the spec writes them
PARAM_SHAPES = {
    'W_ix_x': ('hidden', 'input'),
    'W_fx_x': ('hidden', 'input'),
    'W_gx_x': ('hidden', 'input'),
    'W_ox_x': ('hidden', 'input'),
    'W_ih_h': ('hidden', 'hidden'),
    'W_fh_h': ('hidden', 'hidden'),
    'W_gh_h': ('hidden', 'hidden'),
    'W_oh_h': ('hidden', 'hidden'),
    'a_ix': ('hidden',),
    'a_fx': ('hidden',),
    'a_gx': ('hidden',),
    'a_ox': ('hidden',),
    'a_ih': ('hidden',),
    'a_fh': ('hidden',),
    'a_gh': ('hidden',),
    'a_oh': ('hidden',),
    'b_i': ('hidden',),
    'b_f': ('hidden',),
    'b_g': ('hidden',),
    'b_o': ('hidden',),
    'a_c': ('hidden',),
    'b_c': ('hidden',),
}
BUFFERS = {}
INPUTS = ['x']
STATES = {'h': 'hidden', 'c': 'hidden'}


def step(params, x, state, t=0):
    """One step, an equation a line. x: (B, n) array for the input, or a dict for several
    inputs; returns the new state as a dict."""
    if not isinstance(x, dict):
        x = {'x': x}
    v_W_ix_x = params['W_ix_x']
    v_W_fx_x = params['W_fx_x']
    v_W_gx_x = params['W_gx_x']
    v_W_ox_x = params['W_ox_x']
    v_W_ih_h = params['W_ih_h']
    v_W_fh_h = params['W_fh_h']
    v_W_gh_h = params['W_gh_h']
    v_W_oh_h = params['W_oh_h']
    v_a_ix = params['a_ix']
    v_a_fx = params['a_fx']
    v_a_gx = params['a_gx']
    v_a_ox = params['a_ox']
    v_a_ih = params['a_ih']
    v_a_fh = params['a_fh']
    v_a_gh = params['a_gh']
    v_a_oh = params['a_oh']
    v_b_i = params['b_i']
    v_b_f = params['b_f']
    v_b_g = params['b_g']
    v_b_o = params['b_o']
    v_a_c = params['a_c']
    v_b_c = params['b_c']
    v_x = x['x']
    v_h = state['h']
    v_c = state['c']
    _n_mean_mx = state['h'].shape[-1] + state['h'].shape[-1] + state['h'].shape[-1] + state['h'].shape[-1]
    _n_var_sx = state['h'].shape[-1] + state['h'].shape[-1] + state['h'].shape[-1] + state['h'].shape[-1]
    _n_mean_mh = state['h'].shape[-1] + state['h'].shape[-1] + state['h'].shape[-1] + state['h'].shape[-1]
    _n_var_sh = state['h'].shape[-1] + state['h'].shape[-1] + state['h'].shape[-1] + state['h'].shape[-1]
    _n_mean_h = state['h'].shape[-1]
    _n_var_h = state['h'].shape[-1]
    _k0 = _const(1e-05, v_x)
    v_lin_ix = v_x @ v_W_ix_x.T
    v_ix = v_lin_ix
    v_lin_fx = v_x @ v_W_fx_x.T
    v_fx = v_lin_fx
    v_lin_gx = v_x @ v_W_gx_x.T
    v_gx = v_lin_gx
    v_lin_ox = v_x @ v_W_ox_x.T
    v_ox = v_lin_ox
    v_lin_ih = v_h @ v_W_ih_h.T
    v_ih = v_lin_ih
    v_lin_fh = v_h @ v_W_fh_h.T
    v_fh = v_lin_fh
    v_lin_gh = v_h @ v_W_gh_h.T
    v_gh = v_lin_gh
    v_lin_oh = v_h @ v_W_oh_h.T
    v_oh = v_lin_oh
    v_mean_mx = (_rsum(v_ix) + _rsum(v_fx) + _rsum(v_gx) + _rsum(v_ox)) / _n_mean_mx
    v_mx = v_mean_mx
    v_var_sx = (_rsum((v_ix - v_mean_mx)*(v_ix - v_mean_mx)) + _rsum((v_fx - v_mean_mx)*(v_fx - v_mean_mx)) + _rsum((v_gx - v_mean_mx)*(v_gx - v_mean_mx)) + _rsum((v_ox - v_mean_mx)*(v_ox - v_mean_mx))) / _n_var_sx
    v_sx = torch.sqrt(v_var_sx + _k0)
    v_mean_mh = (_rsum(v_ih) + _rsum(v_fh) + _rsum(v_gh) + _rsum(v_oh)) / _n_mean_mh
    v_mh = v_mean_mh
    v_var_sh = (_rsum((v_ih - v_mean_mh)*(v_ih - v_mean_mh)) + _rsum((v_fh - v_mean_mh)*(v_fh - v_mean_mh)) + _rsum((v_gh - v_mean_mh)*(v_gh - v_mean_mh)) + _rsum((v_oh - v_mean_mh)*(v_oh - v_mean_mh))) / _n_var_sh
    v_sh = torch.sqrt(v_var_sh + _k0)
    v_i = torch.sigmoid(v_a_ih*(v_ih - v_mh)/v_sh + v_a_ix*(v_ix - v_mx)/v_sx + v_b_i)
    v_f = torch.sigmoid(v_a_fh*(v_fh - v_mh)/v_sh + v_a_fx*(v_fx - v_mx)/v_sx + v_b_f)
    v_g = torch.tanh(v_a_gh*(v_gh - v_mh)/v_sh + v_a_gx*(v_gx - v_mx)/v_sx + v_b_g)
    v_o = torch.sigmoid(v_a_oh*(-v_mh + v_oh)/v_sh + v_a_ox*(-v_mx + v_ox)/v_sx + v_b_o)
    v_c_ = v_c*v_f + v_g*v_i
    v_mean_h = (_rsum(v_c_)) / _n_mean_h
    v_var_h = (_rsum((v_c_ - v_mean_h)*(v_c_ - v_mean_h))) / _n_var_h
    v_h_ = v_o*torch.tanh(v_a_c*(v_c_ - v_mean_h)/torch.sqrt(v_var_h + _k0) + v_b_c)
    return {'h': v_h_, 'c': v_c_}


_WIDTH_OF = {'h': 'W_ix_x', 'c': 'W_ix_x'}

_BUFFER_INITS = {}


class SequenceFunction(torch.autograd.Function):
    """The generated forward and backward as one autograd node."""

    @staticmethod
    def forward(ctx, t0, names, *tensors):
        k, m = len(names[0]), len(names[1])
        params = dict(zip(names[0], tensors[:k]))
        inputs = dict(zip(names[1], tensors[k : k + m]))
        state = dict(zip(names[2], tensors[k + m :]))
        out, final, cache = forward(params, inputs, state, t0, True)
        ctx.params, ctx.cache, ctx.names = params, cache, names
        return (out, *[final[s] for s in names[2]])

    @staticmethod
    def backward(ctx, d_out, *d_final):
        d_state = dict(zip(ctx.names[2], d_final))
        grads, d_inputs, d_state0 = backward(ctx.params, ctx.cache, d_out, d_state)
        flat = [grads.get(n) if n in PARAM_SHAPES else None for n in ctx.names[0]]
        flat += [d_inputs[n] for n in ctx.names[1]] + [d_state0[n] for n in ctx.names[2]]
        return (None, None, *flat)


def init_params(sizes, seed=0, dtype=torch.float32, device=None):
    """torch.nn's default initialisation, U(-1/sqrt(hidden), 1/sqrt(hidden)), and the buffers."""
    g = torch.Generator().manual_seed(seed)
    k = 1 / math.sqrt(sizes.get("hidden", 1))
    out = {}
    for name, dims in PARAM_SHAPES.items():
        shape = tuple(sizes[d] for d in dims)
        w = torch.rand(shape, generator=g, dtype=torch.float64) * 2 - 1
        out[name] = (w * k).to(dtype=dtype, device=device)
    for name, (dim, init, options) in BUFFERS.items():
        v = _BUFFER_INITS[init](sizes[dim], options)
        out[name] = torch.tensor(v, dtype=dtype, device=device)
    return out


class Layer(torch.nn.Module):
    """A trainable recurrent layer whose backward is the generated one.

    forward(inputs, state=None, t0=0): inputs (T, B, n) (a dict for several inputs);
    returns (outputs (T, B, n), final state dict)."""

    def __init__(self, sizes, seed=0, dtype=torch.float32, device=None, params=None):
        super().__init__()
        params = params if params is not None else init_params(sizes, seed, dtype, device)
        for name, value in params.items():
            value = torch.as_tensor(value, dtype=dtype, device=device)
            if name in BUFFERS:
                self.register_buffer(name, value)
            else:
                self.register_parameter(name, torch.nn.Parameter(value))

    def forward(self, inputs, state=None, t0=0):
        if not isinstance(inputs, dict):
            inputs = {INPUTS[0]: inputs}
        params = dict(self.named_parameters()) | dict(self.named_buffers())
        first = next(iter(inputs.values()))
        if state is None:
            state = {}
            for s in STATES:
                shape = (first.shape[1], params[_WIDTH_OF[s]].shape[0])
                state[s] = torch.zeros(shape, dtype=first.dtype, device=first.device)
        pnames = tuple(PARAM_SHAPES) + tuple(BUFFERS)
        leaves = [params[n] for n in pnames] + list(inputs.values()) + list(state.values())
        if not (torch.is_grad_enabled() and any(t.requires_grad for t in leaves)):
            out, final, _ = forward(params, inputs, state, t0, False)  # inference: nothing saved
            return out, final
        names = (pnames, tuple(INPUTS), tuple(STATES))
        tensors = [params[n] for n in pnames] + [inputs[n] for n in INPUTS]
        tensors += [state[s] for s in STATES]
        out, *final = SequenceFunction.apply(t0, names, *tensors)
        return out, dict(zip(STATES, final))
