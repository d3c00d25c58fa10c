(
    'attention_decoder: Soft-attention LSTM decoder (Show, Attend and Tell)\n'
    '\n'
    'Exported by lstm-verify 0.1.0 (target torch) from spec attention_decoder.toml,\n'
    'sha256 d89b77c17369745dd130d6be5199c887e76122e4d82f474ced01b9b63f3361ad.\n'
    'Regenerate: lstm-verify export attention_decoder --target torch -o attention_decoder_torch.py\n'
    '\n'
    'Sources: Xu et al. 2015, Show, Attend and Tell, eq. 1-13 (deterministic soft attention, section 4.2.1); kelvinxu/arctic-captions, capgen.py lstm_cond_layer\n'
    "Equations (lin = affine map: one weight per argument, plus a bias; h' = new value):\n"
    '    p = lin(a, h)\n'
    '    e = sum(w_e*tanh(p))\n'
    '    alpha = softmax(e)\n'
    '    beta = sigmoid(sum(w_b*h + b_b))\n'
    '    z = beta*setsum(alpha*a)\n'
    '    i = sigmoid(lin(y, h, z))\n'
    '    f = sigmoid(lin(y, h, z))\n'
    '    o = sigmoid(lin(y, h, z))\n'
    '    g = tanh(lin(y, h, z))\n'
    "    c' = f*c + i*g\n"
    "    h' = o*tanh(c')\n"
    '\n'
    'Inputs: y (input). State: h (hidden), c (hidden). Output: h.\n'
    'Parameters (weights stored (out, in), as torch stores them):\n'
    '    W_p_a: (attn, item)\n'
    '    W_p_h: (attn, hidden)\n'
    '    W_i_y: (hidden, input)\n'
    '    W_i_h: (hidden, hidden)\n'
    '    W_i_z: (hidden, item)\n'
    '    W_f_y: (hidden, input)\n'
    '    W_f_h: (hidden, hidden)\n'
    '    W_f_z: (hidden, item)\n'
    '    W_o_y: (hidden, input)\n'
    '    W_o_h: (hidden, hidden)\n'
    '    W_o_z: (hidden, item)\n'
    '    W_g_y: (hidden, input)\n'
    '    W_g_h: (hidden, hidden)\n'
    '    W_g_z: (hidden, item)\n'
    '    b_p: (attn,)\n'
    '    b_i: (hidden,)\n'
    '    b_f: (hidden,)\n'
    '    b_o: (hidden,)\n'
    '    b_g: (hidden,)\n'
    '    w_e: (attn,)\n'
    '    w_b: (hidden,)\n'
    '    b_b: (hidden,)\n'
    '\n'
    'Note: Annotation vectors a (the set, B x L x item, fixed over time) are scored against the\n'
    'previous hidden state by an MLP, e = w_e^T tanh(W_a a_i + W_h h + b); alpha = softmax(e) over\n'
    'the L members; the context z = beta * sum_i alpha_i a_i with the gating scalar beta =\n'
    'sigmoid(w_b^T h + b_b), whose scalar bias b_b is written as the sum of a per-unit vector (only\n'
    "its sum is identifiable); then an LSTM reads the previous word's embedding y, h and z.\n"
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
    v_W_p_a = params['W_p_a']
    v_W_p_h = params['W_p_h']
    v_W_i_y = params['W_i_y']
    v_W_i_h = params['W_i_h']
    v_W_i_z = params['W_i_z']
    v_W_f_y = params['W_f_y']
    v_W_f_h = params['W_f_h']
    v_W_f_z = params['W_f_z']
    v_W_o_y = params['W_o_y']
    v_W_o_h = params['W_o_h']
    v_W_o_z = params['W_o_z']
    v_W_g_y = params['W_g_y']
    v_W_g_h = params['W_g_h']
    v_W_g_z = params['W_g_z']
    v_b_p = params['b_p']
    v_b_i = params['b_i']
    v_b_f = params['b_f']
    v_b_o = params['b_o']
    v_b_g = params['b_g']
    v_w_e = params['w_e']
    v_w_b = params['w_b']
    v_b_b = params['b_b']
    _W_a = _cat([v_W_p_a], 0)
    _W_h = _cat([v_W_p_h, v_W_i_h, v_W_f_h, v_W_o_h, v_W_g_h], 0)
    _off_h = _offsets([v_W_p_h.shape[0], v_W_i_h.shape[0], v_W_f_h.shape[0], v_W_o_h.shape[0], v_W_g_h.shape[0]])
    _W_y = _cat([v_W_i_y, v_W_f_y, v_W_o_y, v_W_g_y], 0)
    _off_y = _offsets([v_W_i_y.shape[0], v_W_f_y.shape[0], v_W_o_y.shape[0], v_W_g_y.shape[0]])
    _W_z = _cat([v_W_i_z, v_W_f_z, v_W_o_z, v_W_g_z], 0)
    _X_y = inputs['y']
    _T, _B = _X_y.shape[0], _X_y.shape[1]
    v_a = inputs['a']
    _G_a = v_a @ _W_a.T
    _b_y = _cat([v_b_i, v_b_f, v_b_o, v_b_g], 0)
    _G_y = (torch.addmm(_b_y, _X_y.reshape(_T * _B, _X_y.shape[2]), _W_y.T, out=_scratch((_T * _B, _W_y.shape[0]), _X_y))).reshape(_T, _B, -1)
    _mm_h = _linear(_W_h, _B, _T)
    _mm_z = _blocked(_W_z, 4)
    v_h = state['h']
    v_c = state['c']
    _out = None
    _saved = {'alpha': None, 'beta': None, 'c_': None, 'f': None, 'g': None, 'i': None, 'o': None, 'p': None, 'setsum_alpha': None, 'setsum_alpha_in0': None, 'setsum_z': None, 'z': None} if save else None
    _direct = not torch.is_grad_enabled()  # out= writes are not differentiable
    _sv_c_ = _scratch((_T + 1, _B, state['h'].shape[-1]), _X_y) if save and _direct else None
    _sv_f = _scratch((_T, _B, state['h'].shape[-1]), _X_y) if save and _direct else None
    _sv_g = _scratch((_T, _B, state['h'].shape[-1]), _X_y) if save and _direct else None
    _sv_i = _scratch((_T, _B, state['h'].shape[-1]), _X_y) if save and _direct else None
    _sv_o = _scratch((_T, _B, state['h'].shape[-1]), _X_y) if save and _direct else None
    _sv_z = _scratch((_T, _B, v_W_p_a.shape[1]), _X_y) if save and _direct else None
    _out = _empty((_T, _B, state['h'].shape[-1]), _X_y)
    for _t in range(_T):
        _g_a = _G_a
        _g_h = _mm_h(v_h)
        v_lin_p = _g_a + _g_h[..., _off_h[0]:_off_h[1]][:, None] + v_b_p
        v_p = v_lin_p
        v_sum_e_in0 = v_w_e*torch.tanh(v_p)
        v_sum_e = _rsum(v_sum_e_in0)
        v_e = v_sum_e
        v_setmax_alpha = _smax(v_e)
        v_setsum_alpha_in0 = torch.exp(v_e - v_setmax_alpha[:, None])
        v_setsum_alpha = _ssum(v_setsum_alpha_in0)
        v_alpha = v_setsum_alpha_in0/v_setsum_alpha[:, None]
        v_sum_beta_in0 = torch.addcmul(v_b_b, v_h, v_w_b)
        v_sum_beta = _rsum(v_sum_beta_in0)
        v_beta = torch.sigmoid(v_sum_beta)
        v_setsum_z_in0 = v_a*v_alpha
        v_setsum_z = _ssum(v_setsum_z_in0)
        v_z = torch.mul(v_beta, v_setsum_z, out=None if _sv_z is None else _sv_z[_t])
        _g_y = _G_y[_t]
        _g_z = _mm_z(v_z)
        v_lin_i = _g_y[..., _off_y[0]:_off_y[1]] + _g_h[..., _off_h[1]:_off_h[2]] + _g_z[0]
        v_lin_f = _g_y[..., _off_y[1]:_off_y[2]] + _g_h[..., _off_h[2]:_off_h[3]] + _g_z[1]
        v_lin_o = _g_y[..., _off_y[2]:_off_y[3]] + _g_h[..., _off_h[3]:_off_h[4]] + _g_z[2]
        v_lin_g = _g_y[..., _off_y[3]:_off_y[4]] + _g_h[..., _off_h[4]:_off_h[5]] + _g_z[3]
        v_i = torch.sigmoid(v_lin_i, out=None if _sv_i is None else _sv_i[_t])
        v_f = torch.sigmoid(v_lin_f, out=None if _sv_f is None else _sv_f[_t])
        v_o = torch.sigmoid(v_lin_o, out=None if _sv_o is None else _sv_o[_t])
        v_g = torch.tanh(v_lin_g, out=None if _sv_g is None else _sv_g[_t])
        v_c_ = torch.addcmul(v_c*v_f, v_g, v_i, out=None if _sv_c_ is None else _sv_c_[_t + 1])
        v_h_ = torch.mul(v_o, torch.tanh(v_c_), out=_out[_t] if _direct else None)
        if save:
            _saved['alpha'] = _put(_saved['alpha'], _t, v_alpha, _T)
            _saved['beta'] = _put(_saved['beta'], _t, v_beta, _T)
            _saved['p'] = _put(_saved['p'], _t, v_p, _T)
            _saved['setsum_alpha'] = _put(_saved['setsum_alpha'], _t, v_setsum_alpha, _T)
            _saved['setsum_alpha_in0'] = _put(_saved['setsum_alpha_in0'], _t, v_setsum_alpha_in0, _T)
            _saved['setsum_z'] = _put(_saved['setsum_z'], _t, v_setsum_z, _T)
        if save and not _direct:
            _saved['c_'] = _put(_saved['c_'], _t + 1, v_c_, _T + 1)
            _saved['f'] = _put(_saved['f'], _t, v_f, _T)
            _saved['g'] = _put(_saved['g'], _t, v_g, _T)
            _saved['i'] = _put(_saved['i'], _t, v_i, _T)
            _saved['o'] = _put(_saved['o'], _t, v_o, _T)
            _saved['z'] = _put(_saved['z'], _t, v_z, _T)
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
        _saved['z'] = _sv_z if _direct else _saved['z']
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
            _recycle(cache, [_sv_c_, _sv_f, _sv_g, _sv_i, _sv_o, _sv_z])
    if not torch.is_grad_enabled():
        _release([_G_y], [_out, v_h, v_c] + (list(_saved.values()) if save else []))
    return _out, {'h': v_h, 'c': v_c}, cache


def backward(params, cache, d_outputs=None, d_state=None, trace=None):
    """Exact BPTT through the sequence run by forward(..., save=True). A list passed as
    ``trace`` receives, for t = T-1 down to 0, the gradient with respect to each state
    entering step t."""
    v_W_p_a = params['W_p_a']
    v_W_p_h = params['W_p_h']
    v_W_i_y = params['W_i_y']
    v_W_i_h = params['W_i_h']
    v_W_i_z = params['W_i_z']
    v_W_f_y = params['W_f_y']
    v_W_f_h = params['W_f_h']
    v_W_f_z = params['W_f_z']
    v_W_o_y = params['W_o_y']
    v_W_o_h = params['W_o_h']
    v_W_o_z = params['W_o_z']
    v_W_g_y = params['W_g_y']
    v_W_g_h = params['W_g_h']
    v_W_g_z = params['W_g_z']
    v_w_e = params['w_e']
    v_w_b = params['w_b']
    v_b_b = params['b_b']
    _W_a = _cat([v_W_p_a], 0)
    _W_h = _cat([v_W_p_h, v_W_i_h, v_W_f_h, v_W_o_h, v_W_g_h], 0)
    _off_h = _offsets([v_W_p_h.shape[0], v_W_i_h.shape[0], v_W_f_h.shape[0], v_W_o_h.shape[0], v_W_g_h.shape[0]])
    _W_y = _cat([v_W_i_y, v_W_f_y, v_W_o_y, v_W_g_y], 0)
    _off_y = _offsets([v_W_i_y.shape[0], v_W_f_y.shape[0], v_W_o_y.shape[0], v_W_g_y.shape[0]])
    _W_z = _cat([v_W_i_z, v_W_f_z, v_W_o_z, v_W_g_z], 0)
    _off_z = _offsets([v_W_i_z.shape[0], v_W_f_z.shape[0], v_W_o_z.shape[0], v_W_g_z.shape[0]])
    _X_y = cache["inputs"]['y']
    _T, _B = _X_y.shape[0], _X_y.shape[1]
    _X_a = cache["inputs"]['a']
    v_a = _X_a
    _DX_a = None
    _L = _X_a.shape[1]
    _state0 = cache["state0"]
    _S_alpha = cache["saved"]['alpha']
    _S_beta = cache["saved"]['beta']
    _S_c = cache["saved"]['c']
    _S_c_ = cache["saved"]['c_']
    _S_f = cache["saved"]['f']
    _S_g = cache["saved"]['g']
    _S_h = cache["saved"]['h']
    _S_i = cache["saved"]['i']
    _S_o = cache["saved"]['o']
    _S_p = cache["saved"]['p']
    _S_setsum_alpha = cache["saved"]['setsum_alpha']
    _S_setsum_alpha_in0 = cache["saved"]['setsum_alpha_in0']
    _S_setsum_z = cache["saved"]['setsum_z']
    _S_z = cache["saved"]['z']
    if d_state is None:
        d_state = {}
    _carry_h = d_state['h'] if d_state.get('h') is not None else _zeros(_state0['h'].shape, _state0['h'])
    _carry_c = d_state['c'] if d_state.get('c') is not None else _zeros(_state0['c'].shape, _state0['c'])
    _grad_w_e = _zeros(v_w_e.shape, v_w_e)
    _grad_w_b = _zeros(v_w_b.shape, v_w_b)
    _grad_b_b = _zeros(v_b_b.shape, v_b_b)
    _GBs_a = None
    _GBs_h = None
    _mmT_h = _linear(_W_h.T, _B, _T)
    _GBs_z = None
    _mmT_z = _linear(_W_z.T, _B, _T)
    _k0 = _const(1, _X_y)
    for _t in range(_T - 1, -1, -1):
        v_alpha = _S_alpha[_t]
        v_beta = _S_beta[_t]
        v_c = _S_c[_t]
        v_c_ = _S_c_[_t]
        v_f = _S_f[_t]
        v_g = _S_g[_t]
        v_h = _S_h[_t]
        v_i = _S_i[_t]
        v_o = _S_o[_t]
        v_p = _S_p[_t]
        v_setsum_alpha = _S_setsum_alpha[_t]
        v_setsum_alpha_in0 = _S_setsum_alpha_in0[_t]
        v_setsum_z = _S_setsum_z[_t]
        _q0 = torch.tanh(v_p)
        _q1 = v_setsum_alpha[:, None]
        _q2 = torch.tanh(v_c_)
        _p0_sum_e_in0_p = v_w_e*(_k0 - (_q0*_q0))
        _p1_sum_e_in0_w_e = _q0
        _p3_alpha_setsum_alpha = -v_setsum_alpha_in0/(_q1*_q1)
        _p4_alpha_setsum_alpha_in0 = 1/_q1
        _p5_beta_sum_beta = v_beta*(_k0 - v_beta)
        _p6_i_lin_i = v_i*(_k0 - v_i)
        _p7_f_lin_f = v_f*(_k0 - v_f)
        _p8_o_lin_o = v_o*(_k0 - v_o)
        _p9_g_lin_g = _k0 - (v_g*v_g)
        _p10_h__c_ = v_o*(_k0 - (_q2*_q2))
        _p11_h__o = _q2
        _d_h_ = _carry_h
        if d_outputs is not None:
            _d_h_ = _d_h_ + d_outputs[_t]
        _d_c_ = _carry_c
        _d_c_ = torch.addcmul(_d_c_, _d_h_, _p10_h__c_)
        _d_o = _d_h_ * _p11_h__o
        _d_c = _d_c_ * v_f
        _d_f = _d_c_ * v_c
        _d_g = _d_c_ * v_i
        _d_i = _d_c_ * v_g
        _d_lin_g = _d_g * _p9_g_lin_g
        _d_lin_o = _d_o * _p8_o_lin_o
        _d_lin_f = _d_f * _p7_f_lin_f
        _d_lin_i = _d_i * _p6_i_lin_i
        _GBs_z = _cat_put(_GBs_z, _t, [_d_lin_i, _d_lin_f, _d_lin_o, _d_lin_g], _T)
        _gb_z = _GBs_z[_t]
        _d_z = _mmT_z(_gb_z)
        _d_beta = _rsum(_d_z * v_setsum_z)
        _d_setsum_z = _d_z * v_beta
        _d_setsum_z_in0 = _sbcast(_d_setsum_z, _L)
        _d_a = _d_setsum_z_in0 * v_alpha
        _d_alpha = _rsum(_d_setsum_z_in0 * v_a)
        _d_sum_beta = _d_beta * _p5_beta_sum_beta
        _d_sum_beta_in0 = _bcast(_d_sum_beta, _state0['h'].shape[-1])
        _grad_b_b = _grad_b_b + (_d_sum_beta_in0).sum(0)
        _d_h = _d_sum_beta_in0 * v_w_b
        _grad_w_b = _grad_w_b + (_d_sum_beta_in0 * v_h).sum(0)
        _d_setsum_alpha = _ssum(_d_alpha * _p3_alpha_setsum_alpha)
        _d_setsum_alpha_in0 = _d_alpha * _p4_alpha_setsum_alpha_in0
        _d_setsum_alpha_in0 = _d_setsum_alpha_in0 + _sbcast(_d_setsum_alpha, _L)
        _d_e = _d_setsum_alpha_in0 * v_setsum_alpha_in0
        _d_sum_e = _d_e
        _d_sum_e_in0 = _bcast(_d_sum_e, v_W_p_a.shape[0])
        _d_p = _d_sum_e_in0 * _p0_sum_e_in0_p
        _grad_w_e = _grad_w_e + (_d_sum_e_in0 * _p1_sum_e_in0_w_e).sum((0, 1))
        _d_lin_p = _d_p
        _GBs_h = _cat_put(_GBs_h, _t, [_ssum(_d_lin_p), _d_lin_i, _d_lin_f, _d_lin_o, _d_lin_g], _T)
        _gb_h = _GBs_h[_t]
        _d_h = _d_h + _mmT_h(_gb_h)
        _GBs_a = _cat([_d_lin_p], -1) if _GBs_a is None else _GBs_a + _cat([_d_lin_p], -1)
        _carry_h = _d_h
        _carry_c = _d_c
        if trace is not None:
            trace.append({'h': _carry_h, 'c': _carry_c})
        _DX_a = _d_a if _DX_a is None else _DX_a + _d_a
    grads = {}
    d_inputs = {}
    _GBs = _GBs_a
    _m = _GBs.shape[2]
    _GW = _GBs.reshape(_B * _L, _m).T @ _X_a.reshape(_B * _L, _X_a.shape[2])
    _Gb = _GBs.sum((0, 1))
    grads['W_p_a'] = _GW
    grads['b_p'] = _Gb
    d_inputs['a'] = _GBs @ _W_a
    _GBs = _GBs_h
    _m = _GBs.shape[2]
    _GW = _GBs.reshape(_T * _B, _m).T @ _S_h.reshape(_T * _B, _S_h.shape[2])
    grads['W_p_h'] = _GW[_off_h[0]:_off_h[1]]
    grads['W_i_h'] = _GW[_off_h[1]:_off_h[2]]
    grads['W_f_h'] = _GW[_off_h[2]:_off_h[3]]
    grads['W_o_h'] = _GW[_off_h[3]:_off_h[4]]
    grads['W_g_h'] = _GW[_off_h[4]:_off_h[5]]
    _GBs = _GBs_z
    _m = _GBs.shape[2]
    _GW = _GBs.reshape(_T * _B, _m).T @ _X_y.reshape(_T * _B, _X_y.shape[2])
    _Gb = _GBs.sum((0, 1))
    grads['W_i_y'] = _GW[_off_y[0]:_off_y[1]]
    grads['b_i'] = _Gb[..., _off_y[0]:_off_y[1]]
    grads['W_f_y'] = _GW[_off_y[1]:_off_y[2]]
    grads['b_f'] = _Gb[..., _off_y[1]:_off_y[2]]
    grads['W_o_y'] = _GW[_off_y[2]:_off_y[3]]
    grads['b_o'] = _Gb[..., _off_y[2]:_off_y[3]]
    grads['W_g_y'] = _GW[_off_y[3]:_off_y[4]]
    grads['b_g'] = _Gb[..., _off_y[3]:_off_y[4]]
    d_inputs['y'] = (_GBs.reshape(_T * _B, _m) @ _W_y).reshape(_T, _B, -1)
    _GBs = _GBs_z
    _m = _GBs.shape[2]
    _GW = _GBs.reshape(_T * _B, _m).T @ _S_z.reshape(_T * _B, _S_z.shape[2])
    grads['W_i_z'] = _GW[_off_z[0]:_off_z[1]]
    grads['W_f_z'] = _GW[_off_z[1]:_off_z[2]]
    grads['W_o_z'] = _GW[_off_z[2]:_off_z[3]]
    grads['W_g_z'] = _GW[_off_z[3]:_off_z[4]]
    _dx = _DX_a
    d_inputs['a'] = d_inputs['a'] + _dx if 'a' in d_inputs else _dx
    if 'y' not in d_inputs:
        d_inputs['y'] = _zeros(_X_y.shape, _X_y)
    if 'a' not in d_inputs:
        d_inputs['a'] = _zeros(_X_a.shape, _X_a)
    grads['w_e'] = _grad_w_e
    grads['w_b'] = _grad_w_b
    grads['b_b'] = _grad_b_b
    if not torch.is_grad_enabled():
        _release([_GBs_h, _GBs_z], [*grads.values(), *d_inputs.values(), _carry_h, _carry_c])
    return grads, d_inputs, {'h': _carry_h, 'c': _carry_c}


# shapes by size name, as the spec writes them
PARAM_SHAPES = {
    'W_p_a': ('attn', 'item'),
    'W_p_h': ('attn', 'hidden'),
    'W_i_y': ('hidden', 'input'),
    'W_i_h': ('hidden', 'hidden'),
    'W_i_z': ('hidden', 'item'),
    'W_f_y': ('hidden', 'input'),
    'W_f_h': ('hidden', 'hidden'),
    'W_f_z': ('hidden', 'item'),
    'W_o_y': ('hidden', 'input'),
    'W_o_h': ('hidden', 'hidden'),
    'W_o_z': ('hidden', 'item'),
    'W_g_y': ('hidden', 'input'),
    'W_g_h': ('hidden', 'hidden'),
    'W_g_z': ('hidden', 'item'),
    'b_p': ('attn',),
    'b_i': ('hidden',),
    'b_f': ('hidden',),
    'b_o': ('hidden',),
    'b_g': ('hidden',),
    'w_e': ('attn',),
    'w_b': ('hidden',),
    'b_b': ('hidden',),
}
BUFFERS = {}
INPUTS = ['y']
_SETS = ['a']
STATES = {'h': 'hidden', 'c': 'hidden'}


def step(params, x, state, t=0):
    """One step, an equation a line. x: (B, n) array for the input, or a dict for several
    inputs, set inputs (B, L, n); returns the new state as a dict."""
    if not isinstance(x, dict):
        x = {'y': x}
    v_W_p_a = params['W_p_a']
    v_W_p_h = params['W_p_h']
    v_W_i_y = params['W_i_y']
    v_W_i_h = params['W_i_h']
    v_W_i_z = params['W_i_z']
    v_W_f_y = params['W_f_y']
    v_W_f_h = params['W_f_h']
    v_W_f_z = params['W_f_z']
    v_W_o_y = params['W_o_y']
    v_W_o_h = params['W_o_h']
    v_W_o_z = params['W_o_z']
    v_W_g_y = params['W_g_y']
    v_W_g_h = params['W_g_h']
    v_W_g_z = params['W_g_z']
    v_b_p = params['b_p']
    v_b_i = params['b_i']
    v_b_f = params['b_f']
    v_b_o = params['b_o']
    v_b_g = params['b_g']
    v_w_e = params['w_e']
    v_w_b = params['w_b']
    v_b_b = params['b_b']
    v_y = x['y']
    v_a = x['a']
    v_h = state['h']
    v_c = state['c']
    v_lin_p = v_a @ v_W_p_a.T + (v_h @ v_W_p_h.T)[:, None] + v_b_p
    v_p = v_lin_p
    v_sum_e_in0 = v_w_e*torch.tanh(v_p)
    v_sum_e = _rsum(v_sum_e_in0)
    v_e = v_sum_e
    v_setmax_alpha = _smax(v_e)
    v_setsum_alpha_in0 = torch.exp(v_e - v_setmax_alpha[:, None])
    v_setsum_alpha = _ssum(v_setsum_alpha_in0)
    v_alpha = v_setsum_alpha_in0/v_setsum_alpha[:, None]
    v_sum_beta_in0 = v_b_b + v_h*v_w_b
    v_sum_beta = _rsum(v_sum_beta_in0)
    v_beta = torch.sigmoid(v_sum_beta)
    v_setsum_z_in0 = v_a*v_alpha
    v_setsum_z = _ssum(v_setsum_z_in0)
    v_z = v_beta*v_setsum_z
    v_lin_i = v_y @ v_W_i_y.T + v_h @ v_W_i_h.T + v_z @ v_W_i_z.T + v_b_i
    v_i = torch.sigmoid(v_lin_i)
    v_lin_f = v_y @ v_W_f_y.T + v_h @ v_W_f_h.T + v_z @ v_W_f_z.T + v_b_f
    v_f = torch.sigmoid(v_lin_f)
    v_lin_o = v_y @ v_W_o_y.T + v_h @ v_W_o_h.T + v_z @ v_W_o_z.T + v_b_o
    v_o = torch.sigmoid(v_lin_o)
    v_lin_g = v_y @ v_W_g_y.T + v_h @ v_W_g_h.T + v_z @ v_W_g_z.T + v_b_g
    v_g = torch.tanh(v_lin_g)
    v_c_ = v_c*v_f + v_g*v_i
    v_h_ = v_o*torch.tanh(v_c_)
    return {'h': v_h_, 'c': v_c_}


_WIDTH_OF = {'h': 'W_i_y', 'c': 'W_i_y'}

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

    forward(inputs, state=None, t0=0): inputs (T, B, n) (a dict for several inputs; set
    inputs (B, L, n), fixed over time);
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
        first = inputs[INPUTS[0]]
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
        names = (pnames, tuple(INPUTS) + tuple(_SETS), tuple(STATES))
        tensors = [params[n] for n in pnames] + [inputs[n] for n in INPUTS + _SETS]
        tensors += [state[s] for s in STATES]
        out, *final = SequenceFunction.apply(t0, names, *tensors)
        return out, dict(zip(STATES, final))
