(
    'greff_fgr: Greff FGR: full gate recurrence\n'
    '\n'
    'Exported by lstm-verify 0.1.0 (target torch) from spec greff_fgr.toml,\n'
    'sha256 8f02a8e937b8db7249fa3c7ac92a487fe2df53ad591e532cec9314bd25f92263.\n'
    'Regenerate: lstm-verify export greff_fgr --target torch -o greff_fgr_torch.py\n'
    '\n'
    'Sources: Greff, Srivastava, Koutnik, Steunebrink & Schmidhuber 2015, LSTM: A Search Space Odyssey, section 3 (FGR)\n'
    "Equations (lin = affine map: one weight per argument, plus a bias; h' = new value):\n"
    "    i' = sigmoid(lin(x, h, i, f, o) + p_i*c)\n"
    "    f' = sigmoid(lin(x, h, i, f, o) + p_f*c)\n"
    '    g = tanh(lin(x, h))\n'
    "    c' = f'*c + i'*g\n"
    "    o' = sigmoid(lin(x, h, i, f, o) + p_o*c')\n"
    "    h' = o'*tanh(c')\n"
    '\n'
    'Inputs: x (input). State: h (hidden), c (hidden), i (hidden), f (hidden), o (hidden). Output: h.\n'
    'Parameters (weights stored (out, in), as torch stores them):\n'
    '    W_i_x: (hidden, input)\n'
    '    W_i_h: (hidden, hidden)\n'
    '    W_i_i: (hidden, hidden)\n'
    '    W_i_f: (hidden, hidden)\n'
    '    W_i_o: (hidden, hidden)\n'
    '    W_f_x: (hidden, input)\n'
    '    W_f_h: (hidden, hidden)\n'
    '    W_f_i: (hidden, hidden)\n'
    '    W_f_f: (hidden, hidden)\n'
    '    W_f_o: (hidden, hidden)\n'
    '    W_g_x: (hidden, input)\n'
    '    W_g_h: (hidden, hidden)\n'
    '    W_o_x: (hidden, input)\n'
    '    W_o_h: (hidden, hidden)\n'
    '    W_o_i: (hidden, hidden)\n'
    '    W_o_f: (hidden, hidden)\n'
    '    W_o_o: (hidden, hidden)\n'
    '    b_i: (hidden,)\n'
    '    b_f: (hidden,)\n'
    '    b_g: (hidden,)\n'
    '    b_o: (hidden,)\n'
    '    p_i: (hidden,)\n'
    '    p_f: (hidden,)\n'
    '    p_o: (hidden,)\n'
    '\n'
    "Note: Each gate also sees the previous step's gate values through full matrices; the gates\n"
    'therefore become state (zero at the start).\n'
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
    v_W_i_x = params['W_i_x']
    v_W_i_h = params['W_i_h']
    v_W_i_i = params['W_i_i']
    v_W_i_f = params['W_i_f']
    v_W_i_o = params['W_i_o']
    v_W_f_x = params['W_f_x']
    v_W_f_h = params['W_f_h']
    v_W_f_i = params['W_f_i']
    v_W_f_f = params['W_f_f']
    v_W_f_o = params['W_f_o']
    v_W_g_x = params['W_g_x']
    v_W_g_h = params['W_g_h']
    v_W_o_x = params['W_o_x']
    v_W_o_h = params['W_o_h']
    v_W_o_i = params['W_o_i']
    v_W_o_f = params['W_o_f']
    v_W_o_o = params['W_o_o']
    v_b_i = params['b_i']
    v_b_f = params['b_f']
    v_b_g = params['b_g']
    v_b_o = params['b_o']
    v_p_i = params['p_i']
    v_p_f = params['p_f']
    v_p_o = params['p_o']
    _W_x = _cat([v_W_i_x, v_W_f_x, v_W_g_x, v_W_o_x], 0)
    _off_x = _offsets([v_W_i_x.shape[0], v_W_f_x.shape[0], v_W_g_x.shape[0], v_W_o_x.shape[0]])
    _W_h = _cat([v_W_i_h, v_W_f_h, v_W_g_h, v_W_o_h], 0)
    _W_i = _cat([v_W_i_i, v_W_f_i, v_W_o_i], 0)
    _W_f = _cat([v_W_i_f, v_W_f_f, v_W_o_f], 0)
    _W_o = _cat([v_W_i_o, v_W_f_o, v_W_o_o], 0)
    _X_x = inputs['x']
    _T, _B = _X_x.shape[0], _X_x.shape[1]
    _b_x = _cat([v_b_i, v_b_f, v_b_g, v_b_o], 0)
    _G_x = (torch.addmm(_b_x, _X_x.reshape(_T * _B, _X_x.shape[2]), _W_x.T, out=_scratch((_T * _B, _W_x.shape[0]), _X_x))).reshape(_T, _B, -1)
    _mm_h = _blocked(_W_h, 4)
    _mm_i = _blocked(_W_i, 3)
    _mm_f = _blocked(_W_f, 3)
    _mm_o = _blocked(_W_o, 3)
    v_h = state['h']
    v_c = state['c']
    v_i = state['i']
    v_f = state['f']
    v_o = state['o']
    _out = None
    _saved = {'c_': None, 'f_': None, 'g': None, 'i_': None, 'o_': None} if save else None
    _direct = not torch.is_grad_enabled()  # out= writes are not differentiable
    _sv_c_ = _scratch((_T + 1, _B, state['h'].shape[-1]), _X_x) if save and _direct else None
    _sv_f_ = _scratch((_T + 1, _B, state['h'].shape[-1]), _X_x) if save and _direct else None
    _sv_g = _scratch((_T, _B, state['h'].shape[-1]), _X_x) if save and _direct else None
    _sv_i_ = _scratch((_T + 1, _B, state['h'].shape[-1]), _X_x) if save and _direct else None
    _sv_o_ = _scratch((_T + 1, _B, state['h'].shape[-1]), _X_x) if save and _direct else None
    _out = _empty((_T, _B, state['h'].shape[-1]), _X_x)
    for _t in range(_T):
        _g_x = _G_x[_t]
        _g_h = _mm_h(v_h)
        _g_i = _mm_i(v_i)
        _g_f = _mm_f(v_f)
        _g_o = _mm_o(v_o)
        v_lin_i = _g_x[..., _off_x[0]:_off_x[1]] + _g_h[0] + _g_i[0] + _g_f[0] + _g_o[0]
        v_lin_f = _g_x[..., _off_x[1]:_off_x[2]] + _g_h[1] + _g_i[1] + _g_f[1] + _g_o[1]
        v_lin_g = _g_x[..., _off_x[2]:_off_x[3]] + _g_h[2]
        v_lin_o = _g_x[..., _off_x[3]:_off_x[4]] + _g_h[3] + _g_i[2] + _g_f[2] + _g_o[2]
        v_i_ = torch.sigmoid(torch.addcmul(v_lin_i, v_c, v_p_i), out=None if _sv_i_ is None else _sv_i_[_t + 1])
        v_f_ = torch.sigmoid(torch.addcmul(v_lin_f, v_c, v_p_f), out=None if _sv_f_ is None else _sv_f_[_t + 1])
        v_g = torch.tanh(v_lin_g, out=None if _sv_g is None else _sv_g[_t])
        v_c_ = torch.addcmul(v_c*v_f_, v_g, v_i_, out=None if _sv_c_ is None else _sv_c_[_t + 1])
        v_o_ = torch.sigmoid(torch.addcmul(v_lin_o, v_c_, v_p_o), out=None if _sv_o_ is None else _sv_o_[_t + 1])
        v_h_ = torch.mul(v_o_, torch.tanh(v_c_), out=_out[_t] if _direct else None)
        if save and not _direct:
            _saved['c_'] = _put(_saved['c_'], _t + 1, v_c_, _T + 1)
            _saved['f_'] = _put(_saved['f_'], _t + 1, v_f_, _T + 1)
            _saved['g'] = _put(_saved['g'], _t, v_g, _T)
            _saved['i_'] = _put(_saved['i_'], _t + 1, v_i_, _T + 1)
            _saved['o_'] = _put(_saved['o_'], _t + 1, v_o_, _T + 1)
        v_h = v_h_
        v_c = v_c_
        v_i = v_i_
        v_f = v_f_
        v_o = v_o_
        if not _direct:
            _out[_t] = v_h
    v_h = v_h.clone()
    cache = None
    if save:
        _saved['c_'] = _sv_c_ if _direct else _saved['c_']
        _saved['f_'] = _sv_f_ if _direct else _saved['f_']
        _saved['g'] = _sv_g if _direct else _saved['g']
        _saved['i_'] = _sv_i_ if _direct else _saved['i_']
        _saved['o_'] = _sv_o_ if _direct else _saved['o_']
        _saved['h'] = _cat([state['h'][None], _out[:-1]], 0)
        _saved['c_'][0] = state['c']
        _saved['c'] = _saved['c_'][:-1]
        _saved['c_'] = _saved['c_'][1:]
        _saved['i_'][0] = state['i']
        _saved['i'] = _saved['i_'][:-1]
        _saved['i_'] = _saved['i_'][1:]
        _saved['f_'][0] = state['f']
        _saved['f'] = _saved['f_'][:-1]
        _saved['f_'] = _saved['f_'][1:]
        _saved['o_'][0] = state['o']
        _saved['o'] = _saved['o_'][:-1]
        _saved['o_'] = _saved['o_'][1:]
        cache = _Cache({
            "inputs": inputs,
            "state0": dict(state),
            "t0": t0,
            "saved": _saved,
        })
        if _direct:  # the saved buffers go back to the pool when the record is freed
            _recycle(cache, [_sv_c_, _sv_f_, _sv_g, _sv_i_, _sv_o_])
    if not torch.is_grad_enabled():
        _release([_G_x], [_out, v_h, v_c, v_i, v_f, v_o] + (list(_saved.values()) if save else []))
    return _out, {'h': v_h, 'c': v_c, 'i': v_i, 'f': v_f, 'o': v_o}, cache


def backward(params, cache, d_outputs=None, d_state=None, trace=None):
    """Exact BPTT through the sequence run by forward(..., save=True). A list passed as
    ``trace`` receives, for t = T-1 down to 0, the gradient with respect to each state
    entering step t."""
    v_W_i_x = params['W_i_x']
    v_W_i_h = params['W_i_h']
    v_W_i_i = params['W_i_i']
    v_W_i_f = params['W_i_f']
    v_W_i_o = params['W_i_o']
    v_W_f_x = params['W_f_x']
    v_W_f_h = params['W_f_h']
    v_W_f_i = params['W_f_i']
    v_W_f_f = params['W_f_f']
    v_W_f_o = params['W_f_o']
    v_W_g_x = params['W_g_x']
    v_W_g_h = params['W_g_h']
    v_W_o_x = params['W_o_x']
    v_W_o_h = params['W_o_h']
    v_W_o_i = params['W_o_i']
    v_W_o_f = params['W_o_f']
    v_W_o_o = params['W_o_o']
    v_p_i = params['p_i']
    v_p_f = params['p_f']
    v_p_o = params['p_o']
    _W_x = _cat([v_W_i_x, v_W_f_x, v_W_g_x, v_W_o_x], 0)
    _off_x = _offsets([v_W_i_x.shape[0], v_W_f_x.shape[0], v_W_g_x.shape[0], v_W_o_x.shape[0]])
    _W_h = _cat([v_W_i_h, v_W_f_h, v_W_g_h, v_W_o_h], 0)
    _off_h = _offsets([v_W_i_h.shape[0], v_W_f_h.shape[0], v_W_g_h.shape[0], v_W_o_h.shape[0]])
    _W_i = _cat([v_W_i_i, v_W_f_i, v_W_o_i], 0)
    _off_i = _offsets([v_W_i_i.shape[0], v_W_f_i.shape[0], v_W_o_i.shape[0]])
    _W_f = _cat([v_W_i_f, v_W_f_f, v_W_o_f], 0)
    _off_f = _offsets([v_W_i_f.shape[0], v_W_f_f.shape[0], v_W_o_f.shape[0]])
    _W_o = _cat([v_W_i_o, v_W_f_o, v_W_o_o], 0)
    _off_o = _offsets([v_W_i_o.shape[0], v_W_f_o.shape[0], v_W_o_o.shape[0]])
    _X_x = cache["inputs"]['x']
    _T, _B = _X_x.shape[0], _X_x.shape[1]
    _state0 = cache["state0"]
    _S_c = cache["saved"]['c']
    _S_c_ = cache["saved"]['c_']
    _S_f = cache["saved"]['f']
    _S_f_ = cache["saved"]['f_']
    _S_g = cache["saved"]['g']
    _S_h = cache["saved"]['h']
    _S_i = cache["saved"]['i']
    _S_i_ = cache["saved"]['i_']
    _S_o = cache["saved"]['o']
    _S_o_ = cache["saved"]['o_']
    if d_state is None:
        d_state = {}
    _carry_h = d_state['h'] if d_state.get('h') is not None else _zeros(_state0['h'].shape, _state0['h'])
    _carry_c = d_state['c'] if d_state.get('c') is not None else _zeros(_state0['c'].shape, _state0['c'])
    _carry_i = d_state['i'] if d_state.get('i') is not None else _zeros(_state0['i'].shape, _state0['i'])
    _carry_f = d_state['f'] if d_state.get('f') is not None else _zeros(_state0['f'].shape, _state0['f'])
    _carry_o = d_state['o'] if d_state.get('o') is not None else _zeros(_state0['o'].shape, _state0['o'])
    _grad_p_i = _zeros(v_p_i.shape, v_p_i)
    _grad_p_f = _zeros(v_p_f.shape, v_p_f)
    _grad_p_o = _zeros(v_p_o.shape, v_p_o)
    _GBs_h = None
    _mmT_h = _linear(_W_h.T, _B, _T)
    _GBs_i = None
    _mmT_i = _linear(_W_i.T, _B, _T)
    _mmT_f = _linear(_W_f.T, _B, _T)
    _mmT_o = _linear(_W_o.T, _B, _T)
    _k0 = _const(1, _X_x)
    for _t in range(_T - 1, -1, -1):
        v_c = _S_c[_t]
        v_c_ = _S_c_[_t]
        v_f_ = _S_f_[_t]
        v_g = _S_g[_t]
        v_i_ = _S_i_[_t]
        v_o_ = _S_o_[_t]
        _q0 = v_i_*(_k0 - v_i_)
        _q1 = v_f_*(_k0 - v_f_)
        _q2 = v_o_*(_k0 - v_o_)
        _q3 = torch.tanh(v_c_)
        _p0_i__c = _q0*v_p_i
        _p1_i__lin_i = _q0
        _p2_f__c = _q1*v_p_f
        _p3_f__lin_f = _q1
        _p4_g_lin_g = _k0 - (v_g*v_g)
        _p5_o__c_ = _q2*v_p_o
        _p6_o__lin_o = _q2
        _p7_h__c_ = v_o_*(_k0 - (_q3*_q3))
        _p8_h__o_ = _q3
        _d_h_ = _carry_h
        if d_outputs is not None:
            _d_h_ = _d_h_ + d_outputs[_t]
        _d_c_ = _carry_c
        _d_i_ = _carry_i
        _d_f_ = _carry_f
        _d_o_ = _carry_o
        _d_c_ = torch.addcmul(_d_c_, _d_h_, _p7_h__c_)
        _d_o_ = torch.addcmul(_d_o_, _d_h_, _p8_h__o_)
        _d_c_ = torch.addcmul(_d_c_, _d_o_, _p5_o__c_)
        _d_lin_o = _d_o_ * _p6_o__lin_o
        _d_c = _d_c_ * v_f_
        _d_f_ = torch.addcmul(_d_f_, _d_c_, v_c)
        _d_g = _d_c_ * v_i_
        _d_i_ = torch.addcmul(_d_i_, _d_c_, v_g)
        _d_lin_g = _d_g * _p4_g_lin_g
        _d_c = torch.addcmul(_d_c, _d_f_, _p2_f__c)
        _d_lin_f = _d_f_ * _p3_f__lin_f
        _d_c = torch.addcmul(_d_c, _d_i_, _p0_i__c)
        _d_lin_i = _d_i_ * _p1_i__lin_i
        _GBs_h = _cat_put(_GBs_h, _t, [_d_lin_i, _d_lin_f, _d_lin_g, _d_lin_o], _T)
        _gb_h = _GBs_h[_t]
        _d_h = _mmT_h(_gb_h)
        _GBs_i = _cat_put(_GBs_i, _t, [_d_lin_i, _d_lin_f, _d_lin_o], _T)
        _gb_i = _GBs_i[_t]
        _d_i = _mmT_i(_gb_i)
        _gb_f = _gb_i
        _d_f = _mmT_f(_gb_f)
        _gb_o = _gb_i
        _d_o = _mmT_o(_gb_o)
        _carry_h = _d_h
        _carry_c = _d_c
        _carry_i = _d_i
        _carry_f = _d_f
        _carry_o = _d_o
        if trace is not None:
            trace.append({'h': _carry_h, 'c': _carry_c, 'i': _carry_i, 'f': _carry_f, 'o': _carry_o})
    grads = {}
    d_inputs = {}
    _GBs = _GBs_h
    _m = _GBs.shape[2]
    _GW = _GBs.reshape(_T * _B, _m).T @ _X_x.reshape(_T * _B, _X_x.shape[2])
    _Gb = _GBs.sum((0, 1))
    grads['W_i_x'] = _GW[_off_x[0]:_off_x[1]]
    grads['b_i'] = _Gb[..., _off_x[0]:_off_x[1]]
    grads['W_f_x'] = _GW[_off_x[1]:_off_x[2]]
    grads['b_f'] = _Gb[..., _off_x[1]:_off_x[2]]
    grads['W_g_x'] = _GW[_off_x[2]:_off_x[3]]
    grads['b_g'] = _Gb[..., _off_x[2]:_off_x[3]]
    grads['W_o_x'] = _GW[_off_x[3]:_off_x[4]]
    grads['b_o'] = _Gb[..., _off_x[3]:_off_x[4]]
    d_inputs['x'] = (_GBs.reshape(_T * _B, _m) @ _W_x).reshape(_T, _B, -1)
    _GBs = _GBs_h
    _m = _GBs.shape[2]
    _GW = _GBs.reshape(_T * _B, _m).T @ _S_h.reshape(_T * _B, _S_h.shape[2])
    grads['W_i_h'] = _GW[_off_h[0]:_off_h[1]]
    grads['W_f_h'] = _GW[_off_h[1]:_off_h[2]]
    grads['W_g_h'] = _GW[_off_h[2]:_off_h[3]]
    grads['W_o_h'] = _GW[_off_h[3]:_off_h[4]]
    _GBs = _GBs_i
    _m = _GBs.shape[2]
    _GW = _GBs.reshape(_T * _B, _m).T @ _S_i.reshape(_T * _B, _S_i.shape[2])
    grads['W_i_i'] = _GW[_off_i[0]:_off_i[1]]
    grads['W_f_i'] = _GW[_off_i[1]:_off_i[2]]
    grads['W_o_i'] = _GW[_off_i[2]:_off_i[3]]
    _GBs = _GBs_i
    _m = _GBs.shape[2]
    _GW = _GBs.reshape(_T * _B, _m).T @ _S_f.reshape(_T * _B, _S_f.shape[2])
    grads['W_i_f'] = _GW[_off_f[0]:_off_f[1]]
    grads['W_f_f'] = _GW[_off_f[1]:_off_f[2]]
    grads['W_o_f'] = _GW[_off_f[2]:_off_f[3]]
    _GBs = _GBs_i
    _m = _GBs.shape[2]
    _GW = _GBs.reshape(_T * _B, _m).T @ _S_o.reshape(_T * _B, _S_o.shape[2])
    grads['W_i_o'] = _GW[_off_o[0]:_off_o[1]]
    grads['W_f_o'] = _GW[_off_o[1]:_off_o[2]]
    grads['W_o_o'] = _GW[_off_o[2]:_off_o[3]]
    if 'x' not in d_inputs:
        d_inputs['x'] = _zeros(_X_x.shape, _X_x)
    _grad_p_i = _grad_p_i + ((_GBs_h)[..., _off_x[0]:_off_x[1]] * _S_c).sum((0, 1))
    _grad_p_f = _grad_p_f + ((_GBs_h)[..., _off_x[1]:_off_x[2]] * _S_c).sum((0, 1))
    _grad_p_o = _grad_p_o + ((_GBs_h)[..., _off_x[3]:_off_x[4]] * _S_c_).sum((0, 1))
    grads['p_i'] = _grad_p_i
    grads['p_f'] = _grad_p_f
    grads['p_o'] = _grad_p_o
    if not torch.is_grad_enabled():
        _release([_GBs_h, _GBs_i], [*grads.values(), *d_inputs.values(), _carry_h, _carry_c, _carry_i, _carry_f, _carry_o])
    return grads, d_inputs, {'h': _carry_h, 'c': _carry_c, 'i': _carry_i, 'f': _carry_f, 'o': _carry_o}


# shapes by size name, as the spec writes them
PARAM_SHAPES = {
    'W_i_x': ('hidden', 'input'),
    'W_i_h': ('hidden', 'hidden'),
    'W_i_i': ('hidden', 'hidden'),
    'W_i_f': ('hidden', 'hidden'),
    'W_i_o': ('hidden', 'hidden'),
    'W_f_x': ('hidden', 'input'),
    'W_f_h': ('hidden', 'hidden'),
    'W_f_i': ('hidden', 'hidden'),
    'W_f_f': ('hidden', 'hidden'),
    'W_f_o': ('hidden', 'hidden'),
    'W_g_x': ('hidden', 'input'),
    'W_g_h': ('hidden', 'hidden'),
    'W_o_x': ('hidden', 'input'),
    'W_o_h': ('hidden', 'hidden'),
    'W_o_i': ('hidden', 'hidden'),
    'W_o_f': ('hidden', 'hidden'),
    'W_o_o': ('hidden', 'hidden'),
    'b_i': ('hidden',),
    'b_f': ('hidden',),
    'b_g': ('hidden',),
    'b_o': ('hidden',),
    'p_i': ('hidden',),
    'p_f': ('hidden',),
    'p_o': ('hidden',),
}
BUFFERS = {}
INPUTS = ['x']
STATES = {'h': 'hidden', 'c': 'hidden', 'i': 'hidden', 'f': 'hidden', 'o': 'hidden'}


def step(params, x, state, t=0):
    """One step, an equation a line. x: (B, n) array for the input, or a dict for several
    inputs; returns the new state as a dict."""
    if not isinstance(x, dict):
        x = {'x': x}
    v_W_i_x = params['W_i_x']
    v_W_i_h = params['W_i_h']
    v_W_i_i = params['W_i_i']
    v_W_i_f = params['W_i_f']
    v_W_i_o = params['W_i_o']
    v_W_f_x = params['W_f_x']
    v_W_f_h = params['W_f_h']
    v_W_f_i = params['W_f_i']
    v_W_f_f = params['W_f_f']
    v_W_f_o = params['W_f_o']
    v_W_g_x = params['W_g_x']
    v_W_g_h = params['W_g_h']
    v_W_o_x = params['W_o_x']
    v_W_o_h = params['W_o_h']
    v_W_o_i = params['W_o_i']
    v_W_o_f = params['W_o_f']
    v_W_o_o = params['W_o_o']
    v_b_i = params['b_i']
    v_b_f = params['b_f']
    v_b_g = params['b_g']
    v_b_o = params['b_o']
    v_p_i = params['p_i']
    v_p_f = params['p_f']
    v_p_o = params['p_o']
    v_x = x['x']
    v_h = state['h']
    v_c = state['c']
    v_i = state['i']
    v_f = state['f']
    v_o = state['o']
    v_lin_i = v_x @ v_W_i_x.T + v_h @ v_W_i_h.T + v_i @ v_W_i_i.T + v_f @ v_W_i_f.T + v_o @ v_W_i_o.T + v_b_i
    v_i_ = torch.sigmoid(v_c*v_p_i + v_lin_i)
    v_lin_f = v_x @ v_W_f_x.T + v_h @ v_W_f_h.T + v_i @ v_W_f_i.T + v_f @ v_W_f_f.T + v_o @ v_W_f_o.T + v_b_f
    v_f_ = torch.sigmoid(v_c*v_p_f + v_lin_f)
    v_lin_g = v_x @ v_W_g_x.T + v_h @ v_W_g_h.T + v_b_g
    v_g = torch.tanh(v_lin_g)
    v_c_ = v_c*v_f_ + v_g*v_i_
    v_lin_o = v_x @ v_W_o_x.T + v_h @ v_W_o_h.T + v_i @ v_W_o_i.T + v_f @ v_W_o_f.T + v_o @ v_W_o_o.T + v_b_o
    v_o_ = torch.sigmoid(v_c_*v_p_o + v_lin_o)
    v_h_ = v_o_*torch.tanh(v_c_)
    return {'h': v_h_, 'c': v_c_, 'i': v_i_, 'f': v_f_, 'o': v_o_}


_WIDTH_OF = {'h': 'W_i_x', 'c': 'W_i_x', 'i': 'W_i_x', 'f': 'W_i_x', 'o': 'W_i_x'}

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
