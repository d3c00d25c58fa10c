(
    'grid_lstm: 2-D Grid LSTM block along time, depth as input and output\n'
    '\n'
    'Exported by lstm-verify 0.1.0 (target torch) from spec grid_lstm.toml,\n'
    'sha256 989b879d13402ea5fb5152038c7e18f5f999e59283e22d115661b9b82d1f0067.\n'
    'Regenerate: lstm-verify export grid_lstm --target torch -o grid_lstm_torch.py\n'
    '\n'
    'Sources: Kalchbrenner, Danihelka & Graves 2015, Grid Long Short-Term Memory, arXiv:1507.01526, eq. 1-2 (LSTM transform) and sec. 3.1 (N-dimensional block), N = 2 (check: paper text not available here; eq. 1 as secondary sources quote it)\n'
    "Equations (lin = affine map: one weight per argument, plus a bias; h' = new value):\n"
    '    u1 = sigmoid(lin(h, hd))\n'
    '    f1 = sigmoid(lin(h, hd))\n'
    '    o1 = sigmoid(lin(h, hd))\n'
    '    c1 = tanh(lin(h, hd))\n'
    "    m' = f1*m + u1*c1\n"
    "    h' = tanh(o1*m')\n"
    '    u2 = sigmoid(lin(h, hd))\n'
    '    f2 = sigmoid(lin(h, hd))\n'
    '    o2 = sigmoid(lin(h, hd))\n'
    '    c2 = tanh(lin(h, hd))\n'
    "    mu' = f2*md + u2*c2\n"
    "    hu' = tanh(o2*mu')\n"
    '\n'
    'Inputs: hd (hidden), md (hidden). State: h (hidden), m (hidden), hu (hidden), mu (hidden). Output: hu.\n'
    'Parameters (weights stored (out, in), as torch stores them):\n'
    '    W_u1_h: (hidden, hidden)\n'
    '    W_u1_hd: (hidden, hidden)\n'
    '    W_f1_h: (hidden, hidden)\n'
    '    W_f1_hd: (hidden, hidden)\n'
    '    W_o1_h: (hidden, hidden)\n'
    '    W_o1_hd: (hidden, hidden)\n'
    '    W_c1_h: (hidden, hidden)\n'
    '    W_c1_hd: (hidden, hidden)\n'
    '    W_u2_h: (hidden, hidden)\n'
    '    W_u2_hd: (hidden, hidden)\n'
    '    W_f2_h: (hidden, hidden)\n'
    '    W_f2_hd: (hidden, hidden)\n'
    '    W_o2_h: (hidden, hidden)\n'
    '    W_o2_hd: (hidden, hidden)\n'
    '    W_c2_h: (hidden, hidden)\n'
    '    W_c2_hd: (hidden, hidden)\n'
    '    b_u1: (hidden,)\n'
    '    b_f1: (hidden,)\n'
    '    b_o1: (hidden,)\n'
    '    b_c1: (hidden,)\n'
    '    b_u2: (hidden,)\n'
    '    b_f2: (hidden,)\n'
    '    b_o2: (hidden,)\n'
    '    b_c2: (hidden,)\n'
    '\n'
    'Note: Dimension 1 is time, dimension 2 depth. The block reads H = [h; hd] (the time hidden\n'
    'vector and the hidden vector arriving from the block below) and applies one LSTM transform per\n'
    "dimension, each with its own weights: (h', m') = LSTM(H, m, W_1) along time, (hu', mu') =\n"
    'LSTM(H, md, W_2) along depth. h and m carry the time direction from step to step; hu and mu go\n'
    'up to the next block (they do not read their old values); the output is hu, what a stack passes\n'
    "up. As the paper writes it, h' = tanh(g^o (.) m'): the output gate is inside the tanh\n"
    "(TensorFlow's grid_rnn and GridLSTMCell use o (.) tanh(m')). The paper writes no biases; each\n"
    'gate here has one. Left out: grids of N > 2 dimensions, priority dimensions (a dimension whose\n'
    "transform reads the others' new hidden vectors), non-LSTM dimensions (identity or ReLU\n"
    "transforms), weight tying across depth (the paper's tied Grid LSTM uses one block's weights at\n"
    'every depth), and the input projection and output layer around the grid.\n'
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
    v_W_u1_h = params['W_u1_h']
    v_W_u1_hd = params['W_u1_hd']
    v_W_f1_h = params['W_f1_h']
    v_W_f1_hd = params['W_f1_hd']
    v_W_o1_h = params['W_o1_h']
    v_W_o1_hd = params['W_o1_hd']
    v_W_c1_h = params['W_c1_h']
    v_W_c1_hd = params['W_c1_hd']
    v_W_u2_h = params['W_u2_h']
    v_W_u2_hd = params['W_u2_hd']
    v_W_f2_h = params['W_f2_h']
    v_W_f2_hd = params['W_f2_hd']
    v_W_o2_h = params['W_o2_h']
    v_W_o2_hd = params['W_o2_hd']
    v_W_c2_h = params['W_c2_h']
    v_W_c2_hd = params['W_c2_hd']
    v_b_u1 = params['b_u1']
    v_b_f1 = params['b_f1']
    v_b_o1 = params['b_o1']
    v_b_c1 = params['b_c1']
    v_b_u2 = params['b_u2']
    v_b_f2 = params['b_f2']
    v_b_o2 = params['b_o2']
    v_b_c2 = params['b_c2']
    _W_h = _cat([v_W_u1_h, v_W_f1_h, v_W_o1_h, v_W_c1_h, v_W_u2_h, v_W_f2_h, v_W_o2_h, v_W_c2_h], 0)
    _W_hd = _cat([v_W_u1_hd, v_W_f1_hd, v_W_o1_hd, v_W_c1_hd, v_W_u2_hd, v_W_f2_hd, v_W_o2_hd, v_W_c2_hd], 0)
    _X_hd = inputs['hd']
    _X_md = inputs['md']
    _T, _B = _X_hd.shape[0], _X_hd.shape[1]
    _b_hd = _cat([v_b_u1, v_b_f1, v_b_o1, v_b_c1, v_b_u2, v_b_f2, v_b_o2, v_b_c2], 0)
    _G_hd = (torch.addmm(_b_hd, _X_hd.reshape(_T * _B, _X_hd.shape[2]), _W_hd.T, out=_scratch((_T * _B, _W_hd.shape[0]), _X_hd))).reshape(_T, _B, -1)
    _mm_h = _blocked(_W_h, 8)
    v_h = state['h']
    v_m = state['m']
    v_hu = state['hu']
    v_mu = state['mu']
    _out = None
    _saved = {'c1': None, 'c2': None, 'f1': None, 'f2': None, 'h_': None, 'hu_': None, 'm_': None, 'mu_': None, 'o1': None, 'o2': None, 'u1': None, 'u2': None} if save else None
    _direct = not torch.is_grad_enabled()  # out= writes are not differentiable
    _sv_c1 = _scratch((_T, _B, state['h'].shape[-1]), _X_hd) if save and _direct else None
    _sv_c2 = _scratch((_T, _B, state['h'].shape[-1]), _X_hd) if save and _direct else None
    _sv_f1 = _scratch((_T, _B, state['h'].shape[-1]), _X_hd) if save and _direct else None
    _sv_f2 = _scratch((_T, _B, state['h'].shape[-1]), _X_hd) if save and _direct else None
    _sv_h_ = _scratch((_T + 1, _B, state['h'].shape[-1]), _X_hd) if save and _direct else None
    _sv_hu_ = _scratch((_T, _B, state['h'].shape[-1]), _X_hd) if save and _direct else None
    _sv_m_ = _scratch((_T + 1, _B, state['h'].shape[-1]), _X_hd) if save and _direct else None
    _sv_mu_ = _scratch((_T, _B, state['h'].shape[-1]), _X_hd) if save and _direct else None
    _sv_o1 = _scratch((_T, _B, state['h'].shape[-1]), _X_hd) if save and _direct else None
    _sv_o2 = _scratch((_T, _B, state['h'].shape[-1]), _X_hd) if save and _direct else None
    _sv_u1 = _scratch((_T, _B, state['h'].shape[-1]), _X_hd) if save and _direct else None
    _sv_u2 = _scratch((_T, _B, state['h'].shape[-1]), _X_hd) if save and _direct else None
    for _t in range(_T):
        v_md = _X_md[_t]
        _z_h = _mm_h(v_h, _G_hd[_t])
        v_lin_u1 = _z_h[0]
        v_lin_f1 = _z_h[1]
        v_lin_o1 = _z_h[2]
        v_lin_c1 = _z_h[3]
        v_lin_u2 = _z_h[4]
        v_lin_f2 = _z_h[5]
        v_lin_o2 = _z_h[6]
        v_lin_c2 = _z_h[7]
        v_u1 = torch.sigmoid(v_lin_u1, out=None if _sv_u1 is None else _sv_u1[_t])
        v_f1 = torch.sigmoid(v_lin_f1, out=None if _sv_f1 is None else _sv_f1[_t])
        v_o1 = torch.sigmoid(v_lin_o1, out=None if _sv_o1 is None else _sv_o1[_t])
        v_c1 = torch.tanh(v_lin_c1, out=None if _sv_c1 is None else _sv_c1[_t])
        v_m_ = torch.addcmul(v_c1*v_u1, v_f1, v_m, out=None if _sv_m_ is None else _sv_m_[_t + 1])
        v_h_ = torch.tanh(v_m_*v_o1, out=None if _sv_h_ is None else _sv_h_[_t + 1])
        v_u2 = torch.sigmoid(v_lin_u2, out=None if _sv_u2 is None else _sv_u2[_t])
        v_f2 = torch.sigmoid(v_lin_f2, out=None if _sv_f2 is None else _sv_f2[_t])
        v_o2 = torch.sigmoid(v_lin_o2, out=None if _sv_o2 is None else _sv_o2[_t])
        v_c2 = torch.tanh(v_lin_c2, out=None if _sv_c2 is None else _sv_c2[_t])
        v_mu_ = torch.addcmul(v_c2*v_u2, v_f2, v_md, out=None if _sv_mu_ is None else _sv_mu_[_t])
        v_hu_ = torch.tanh(v_mu_*v_o2, out=None if _sv_hu_ is None else _sv_hu_[_t])
        if save and not _direct:
            _saved['c1'] = _put(_saved['c1'], _t, v_c1, _T)
            _saved['c2'] = _put(_saved['c2'], _t, v_c2, _T)
            _saved['f1'] = _put(_saved['f1'], _t, v_f1, _T)
            _saved['f2'] = _put(_saved['f2'], _t, v_f2, _T)
            _saved['h_'] = _put(_saved['h_'], _t + 1, v_h_, _T + 1)
            _saved['hu_'] = _put(_saved['hu_'], _t, v_hu_, _T)
            _saved['m_'] = _put(_saved['m_'], _t + 1, v_m_, _T + 1)
            _saved['mu_'] = _put(_saved['mu_'], _t, v_mu_, _T)
            _saved['o1'] = _put(_saved['o1'], _t, v_o1, _T)
            _saved['o2'] = _put(_saved['o2'], _t, v_o2, _T)
            _saved['u1'] = _put(_saved['u1'], _t, v_u1, _T)
            _saved['u2'] = _put(_saved['u2'], _t, v_u2, _T)
        v_h = v_h_
        v_m = v_m_
        v_hu = v_hu_
        v_mu = v_mu_
        _out = _put(_out, _t, v_hu, _T)
    cache = None
    if save:
        _saved['c1'] = _sv_c1 if _direct else _saved['c1']
        _saved['c2'] = _sv_c2 if _direct else _saved['c2']
        _saved['f1'] = _sv_f1 if _direct else _saved['f1']
        _saved['f2'] = _sv_f2 if _direct else _saved['f2']
        _saved['h_'] = _sv_h_ if _direct else _saved['h_']
        _saved['hu_'] = _sv_hu_ if _direct else _saved['hu_']
        _saved['m_'] = _sv_m_ if _direct else _saved['m_']
        _saved['mu_'] = _sv_mu_ if _direct else _saved['mu_']
        _saved['o1'] = _sv_o1 if _direct else _saved['o1']
        _saved['o2'] = _sv_o2 if _direct else _saved['o2']
        _saved['u1'] = _sv_u1 if _direct else _saved['u1']
        _saved['u2'] = _sv_u2 if _direct else _saved['u2']
        _saved['h_'][0] = state['h']
        _saved['h'] = _saved['h_'][:-1]
        _saved['h_'] = _saved['h_'][1:]
        _saved['m_'][0] = state['m']
        _saved['m'] = _saved['m_'][:-1]
        _saved['m_'] = _saved['m_'][1:]
        cache = _Cache({
            "inputs": inputs,
            "state0": dict(state),
            "t0": t0,
            "saved": _saved,
        })
        if _direct:  # the saved buffers go back to the pool when the record is freed
            _recycle(cache, [_sv_c1, _sv_c2, _sv_f1, _sv_f2, _sv_h_, _sv_hu_, _sv_m_, _sv_mu_, _sv_o1, _sv_o2, _sv_u1, _sv_u2])
    if not torch.is_grad_enabled():
        _release([_G_hd], [_out, v_h, v_m, v_hu, v_mu] + (list(_saved.values()) if save else []))
    return _out, {'h': v_h, 'm': v_m, 'hu': v_hu, 'mu': v_mu}, cache


def backward(params, cache, d_outputs=None, d_state=None, trace=None):
    """Exact BPTT through the sequence run by forward(..., save=True). A list passed as
    ``trace`` receives, for t = T-1 down to 0, the gradient with respect to each state
    entering step t."""
    v_W_u1_h = params['W_u1_h']
    v_W_u1_hd = params['W_u1_hd']
    v_W_f1_h = params['W_f1_h']
    v_W_f1_hd = params['W_f1_hd']
    v_W_o1_h = params['W_o1_h']
    v_W_o1_hd = params['W_o1_hd']
    v_W_c1_h = params['W_c1_h']
    v_W_c1_hd = params['W_c1_hd']
    v_W_u2_h = params['W_u2_h']
    v_W_u2_hd = params['W_u2_hd']
    v_W_f2_h = params['W_f2_h']
    v_W_f2_hd = params['W_f2_hd']
    v_W_o2_h = params['W_o2_h']
    v_W_o2_hd = params['W_o2_hd']
    v_W_c2_h = params['W_c2_h']
    v_W_c2_hd = params['W_c2_hd']
    _W_h = _cat([v_W_u1_h, v_W_f1_h, v_W_o1_h, v_W_c1_h, v_W_u2_h, v_W_f2_h, v_W_o2_h, v_W_c2_h], 0)
    _off_h = _offsets([v_W_u1_h.shape[0], v_W_f1_h.shape[0], v_W_o1_h.shape[0], v_W_c1_h.shape[0], v_W_u2_h.shape[0], v_W_f2_h.shape[0], v_W_o2_h.shape[0], v_W_c2_h.shape[0]])
    _W_hd = _cat([v_W_u1_hd, v_W_f1_hd, v_W_o1_hd, v_W_c1_hd, v_W_u2_hd, v_W_f2_hd, v_W_o2_hd, v_W_c2_hd], 0)
    _off_hd = _offsets([v_W_u1_hd.shape[0], v_W_f1_hd.shape[0], v_W_o1_hd.shape[0], v_W_c1_hd.shape[0], v_W_u2_hd.shape[0], v_W_f2_hd.shape[0], v_W_o2_hd.shape[0], v_W_c2_hd.shape[0]])
    _X_hd = cache["inputs"]['hd']
    _X_md = cache["inputs"]['md']
    _T, _B = _X_hd.shape[0], _X_hd.shape[1]
    _state0 = cache["state0"]
    _S_c1 = cache["saved"]['c1']
    _S_c2 = cache["saved"]['c2']
    _S_f1 = cache["saved"]['f1']
    _S_f2 = cache["saved"]['f2']
    _S_h = cache["saved"]['h']
    _S_h_ = cache["saved"]['h_']
    _S_hu_ = cache["saved"]['hu_']
    _S_m = cache["saved"]['m']
    _S_m_ = cache["saved"]['m_']
    _S_mu_ = cache["saved"]['mu_']
    _S_o1 = cache["saved"]['o1']
    _S_o2 = cache["saved"]['o2']
    _S_u1 = cache["saved"]['u1']
    _S_u2 = cache["saved"]['u2']
    if d_state is None:
        d_state = {}
    _carry_h = d_state['h'] if d_state.get('h') is not None else _zeros(_state0['h'].shape, _state0['h'])
    _carry_m = d_state['m'] if d_state.get('m') is not None else _zeros(_state0['m'].shape, _state0['m'])
    _carry_hu = d_state['hu'] if d_state.get('hu') is not None else _zeros(_state0['hu'].shape, _state0['hu'])
    _carry_mu = d_state['mu'] if d_state.get('mu') is not None else _zeros(_state0['mu'].shape, _state0['mu'])
    _GBs_h = None
    _mmT_h = _linear(_W_h.T, _B, _T)
    _DX_md = None
    _k0 = _const(1, _X_hd)
    for _t in range(_T - 1, -1, -1):
        v_md = _X_md[_t]
        v_c1 = _S_c1[_t]
        v_c2 = _S_c2[_t]
        v_f1 = _S_f1[_t]
        v_f2 = _S_f2[_t]
        v_h_ = _S_h_[_t]
        v_hu_ = _S_hu_[_t]
        v_m = _S_m[_t]
        v_m_ = _S_m_[_t]
        v_mu_ = _S_mu_[_t]
        v_o1 = _S_o1[_t]
        v_o2 = _S_o2[_t]
        v_u1 = _S_u1[_t]
        v_u2 = _S_u2[_t]
        _q0 = _k0 - (v_h_*v_h_)
        _q1 = _k0 - (v_hu_*v_hu_)
        _p0_u1_lin_u1 = v_u1*(_k0 - v_u1)
        _p1_f1_lin_f1 = v_f1*(_k0 - v_f1)
        _p2_o1_lin_o1 = v_o1*(_k0 - v_o1)
        _p3_c1_lin_c1 = _k0 - (v_c1*v_c1)
        _p4_h__m_ = _q0*v_o1
        _p5_h__o1 = _q0*v_m_
        _p6_u2_lin_u2 = v_u2*(_k0 - v_u2)
        _p7_f2_lin_f2 = v_f2*(_k0 - v_f2)
        _p8_o2_lin_o2 = v_o2*(_k0 - v_o2)
        _p9_c2_lin_c2 = _k0 - (v_c2*v_c2)
        _p10_hu__mu_ = _q1*v_o2
        _p11_hu__o2 = _q1*v_mu_
        _d_hu_ = _carry_hu
        if d_outputs is not None:
            _d_hu_ = _d_hu_ + d_outputs[_t]
        _d_h_ = _carry_h
        _d_m_ = _carry_m
        _d_mu_ = _carry_mu
        _d_mu_ = torch.addcmul(_d_mu_, _d_hu_, _p10_hu__mu_)
        _d_o2 = _d_hu_ * _p11_hu__o2
        _d_c2 = _d_mu_ * v_u2
        _d_f2 = _d_mu_ * v_md
        _d_md = _d_mu_ * v_f2
        _d_u2 = _d_mu_ * v_c2
        _d_lin_c2 = _d_c2 * _p9_c2_lin_c2
        _d_lin_o2 = _d_o2 * _p8_o2_lin_o2
        _d_lin_f2 = _d_f2 * _p7_f2_lin_f2
        _d_lin_u2 = _d_u2 * _p6_u2_lin_u2
        _d_m_ = torch.addcmul(_d_m_, _d_h_, _p4_h__m_)
        _d_o1 = _d_h_ * _p5_h__o1
        _d_c1 = _d_m_ * v_u1
        _d_f1 = _d_m_ * v_m
        _d_m = _d_m_ * v_f1
        _d_u1 = _d_m_ * v_c1
        _d_lin_c1 = _d_c1 * _p3_c1_lin_c1
        _d_lin_o1 = _d_o1 * _p2_o1_lin_o1
        _d_lin_f1 = _d_f1 * _p1_f1_lin_f1
        _d_lin_u1 = _d_u1 * _p0_u1_lin_u1
        _GBs_h = _cat_put(_GBs_h, _t, [_d_lin_u1, _d_lin_f1, _d_lin_o1, _d_lin_c1, _d_lin_u2, _d_lin_f2, _d_lin_o2, _d_lin_c2], _T)
        _gb_h = _GBs_h[_t]
        _d_h = _mmT_h(_gb_h)
        _carry_h = _d_h
        _carry_m = _d_m
        _carry_hu = _zeros(_carry_hu.shape, _carry_hu)
        _carry_mu = _zeros(_carry_mu.shape, _carry_mu)
        if trace is not None:
            trace.append({'h': _carry_h, 'm': _carry_m, 'hu': _carry_hu, 'mu': _carry_mu})
        _DX_md = _put(_DX_md, _t, _d_md, _T)
    grads = {}
    d_inputs = {}
    _GBs = _GBs_h
    _m = _GBs.shape[2]
    _GW = _GBs.reshape(_T * _B, _m).T @ _S_h.reshape(_T * _B, _S_h.shape[2])
    _Gb = _GBs.sum((0, 1))
    grads['W_u1_h'] = _GW[_off_h[0]:_off_h[1]]
    grads['b_u1'] = _Gb[..., _off_h[0]:_off_h[1]]
    grads['W_f1_h'] = _GW[_off_h[1]:_off_h[2]]
    grads['b_f1'] = _Gb[..., _off_h[1]:_off_h[2]]
    grads['W_o1_h'] = _GW[_off_h[2]:_off_h[3]]
    grads['b_o1'] = _Gb[..., _off_h[2]:_off_h[3]]
    grads['W_c1_h'] = _GW[_off_h[3]:_off_h[4]]
    grads['b_c1'] = _Gb[..., _off_h[3]:_off_h[4]]
    grads['W_u2_h'] = _GW[_off_h[4]:_off_h[5]]
    grads['b_u2'] = _Gb[..., _off_h[4]:_off_h[5]]
    grads['W_f2_h'] = _GW[_off_h[5]:_off_h[6]]
    grads['b_f2'] = _Gb[..., _off_h[5]:_off_h[6]]
    grads['W_o2_h'] = _GW[_off_h[6]:_off_h[7]]
    grads['b_o2'] = _Gb[..., _off_h[6]:_off_h[7]]
    grads['W_c2_h'] = _GW[_off_h[7]:_off_h[8]]
    grads['b_c2'] = _Gb[..., _off_h[7]:_off_h[8]]
    _GBs = _GBs_h
    _m = _GBs.shape[2]
    _GW = _GBs.reshape(_T * _B, _m).T @ _X_hd.reshape(_T * _B, _X_hd.shape[2])
    grads['W_u1_hd'] = _GW[_off_hd[0]:_off_hd[1]]
    grads['W_f1_hd'] = _GW[_off_hd[1]:_off_hd[2]]
    grads['W_o1_hd'] = _GW[_off_hd[2]:_off_hd[3]]
    grads['W_c1_hd'] = _GW[_off_hd[3]:_off_hd[4]]
    grads['W_u2_hd'] = _GW[_off_hd[4]:_off_hd[5]]
    grads['W_f2_hd'] = _GW[_off_hd[5]:_off_hd[6]]
    grads['W_o2_hd'] = _GW[_off_hd[6]:_off_hd[7]]
    grads['W_c2_hd'] = _GW[_off_hd[7]:_off_hd[8]]
    d_inputs['hd'] = (_GBs.reshape(_T * _B, _m) @ _W_hd).reshape(_T, _B, -1)
    _dx = _DX_md
    d_inputs['md'] = d_inputs['md'] + _dx if 'md' in d_inputs else _dx
    if 'hd' not in d_inputs:
        d_inputs['hd'] = _zeros(_X_hd.shape, _X_hd)
    if 'md' not in d_inputs:
        d_inputs['md'] = _zeros(_X_md.shape, _X_md)
    if not torch.is_grad_enabled():
        _release([_GBs_h], [*grads.values(), *d_inputs.values(), _carry_h, _carry_m, _carry_hu, _carry_mu])
    return grads, d_inputs, {'h': _carry_h, 'm': _carry_m, 'hu': _carry_hu, 'mu': _carry_mu}


# shapes by size name, as the spec writes them
PARAM_SHAPES = {
    'W_u1_h': ('hidden', 'hidden'),
    'W_u1_hd': ('hidden', 'hidden'),
    'W_f1_h': ('hidden', 'hidden'),
    'W_f1_hd': ('hidden', 'hidden'),
    'W_o1_h': ('hidden', 'hidden'),
    'W_o1_hd': ('hidden', 'hidden'),
    'W_c1_h': ('hidden', 'hidden'),
    'W_c1_hd': ('hidden', 'hidden'),
    'W_u2_h': ('hidden', 'hidden'),
    'W_u2_hd': ('hidden', 'hidden'),
    'W_f2_h': ('hidden', 'hidden'),
    'W_f2_hd': ('hidden', 'hidden'),
    'W_o2_h': ('hidden', 'hidden'),
    'W_o2_hd': ('hidden', 'hidden'),
    'W_c2_h': ('hidden', 'hidden'),
    'W_c2_hd': ('hidden', 'hidden'),
    'b_u1': ('hidden',),
    'b_f1': ('hidden',),
    'b_o1': ('hidden',),
    'b_c1': ('hidden',),
    'b_u2': ('hidden',),
    'b_f2': ('hidden',),
    'b_o2': ('hidden',),
    'b_c2': ('hidden',),
}
BUFFERS = {}
INPUTS = ['hd', 'md']
STATES = {'h': 'hidden', 'm': 'hidden', 'hu': 'hidden', 'mu': 'hidden'}


def step(params, x, state, t=0):
    """One step, an equation a line. x: (B, n) array for the input, or a dict for several
    inputs; returns the new state as a dict."""
    if not isinstance(x, dict):
        x = {'hd': x}
    v_W_u1_h = params['W_u1_h']
    v_W_u1_hd = params['W_u1_hd']
    v_W_f1_h = params['W_f1_h']
    v_W_f1_hd = params['W_f1_hd']
    v_W_o1_h = params['W_o1_h']
    v_W_o1_hd = params['W_o1_hd']
    v_W_c1_h = params['W_c1_h']
    v_W_c1_hd = params['W_c1_hd']
    v_W_u2_h = params['W_u2_h']
    v_W_u2_hd = params['W_u2_hd']
    v_W_f2_h = params['W_f2_h']
    v_W_f2_hd = params['W_f2_hd']
    v_W_o2_h = params['W_o2_h']
    v_W_o2_hd = params['W_o2_hd']
    v_W_c2_h = params['W_c2_h']
    v_W_c2_hd = params['W_c2_hd']
    v_b_u1 = params['b_u1']
    v_b_f1 = params['b_f1']
    v_b_o1 = params['b_o1']
    v_b_c1 = params['b_c1']
    v_b_u2 = params['b_u2']
    v_b_f2 = params['b_f2']
    v_b_o2 = params['b_o2']
    v_b_c2 = params['b_c2']
    v_hd = x['hd']
    v_md = x['md']
    v_h = state['h']
    v_m = state['m']
    v_lin_u1 = v_h @ v_W_u1_h.T + v_hd @ v_W_u1_hd.T + v_b_u1
    v_u1 = torch.sigmoid(v_lin_u1)
    v_lin_f1 = v_h @ v_W_f1_h.T + v_hd @ v_W_f1_hd.T + v_b_f1
    v_f1 = torch.sigmoid(v_lin_f1)
    v_lin_o1 = v_h @ v_W_o1_h.T + v_hd @ v_W_o1_hd.T + v_b_o1
    v_o1 = torch.sigmoid(v_lin_o1)
    v_lin_c1 = v_h @ v_W_c1_h.T + v_hd @ v_W_c1_hd.T + v_b_c1
    v_c1 = torch.tanh(v_lin_c1)
    v_m_ = v_c1*v_u1 + v_f1*v_m
    v_h_ = torch.tanh(v_m_*v_o1)
    v_lin_u2 = v_h @ v_W_u2_h.T + v_hd @ v_W_u2_hd.T + v_b_u2
    v_u2 = torch.sigmoid(v_lin_u2)
    v_lin_f2 = v_h @ v_W_f2_h.T + v_hd @ v_W_f2_hd.T + v_b_f2
    v_f2 = torch.sigmoid(v_lin_f2)
    v_lin_o2 = v_h @ v_W_o2_h.T + v_hd @ v_W_o2_hd.T + v_b_o2
    v_o2 = torch.sigmoid(v_lin_o2)
    v_lin_c2 = v_h @ v_W_c2_h.T + v_hd @ v_W_c2_hd.T + v_b_c2
    v_c2 = torch.tanh(v_lin_c2)
    v_mu_ = v_c2*v_u2 + v_f2*v_md
    v_hu_ = torch.tanh(v_mu_*v_o2)
    return {'h': v_h_, 'm': v_m_, 'hu': v_hu_, 'mu': v_mu_}


_WIDTH_OF = {'h': 'W_u1_h', 'm': 'W_u1_h', 'hu': 'W_u1_h', 'mu': 'W_u1_h'}

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
