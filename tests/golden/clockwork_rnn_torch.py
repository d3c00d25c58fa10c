(
    'clockwork_rnn: Clockwork RNN\n'
    '\n'
    'Exported by lstm-verify 0.1.0 (target torch) from spec clockwork_rnn.toml,\n'
    'sha256 847f35468a6f8ddfd2f3d9bdc69531f654dc1473f5fdfadb22293fa07bfcf4a8.\n'
    'Regenerate: lstm-verify export clockwork_rnn --target torch -o clockwork_rnn_torch.py\n'
    '\n'
    'Sources: Koutnik, Greff, Gomez & Schmidhuber 2014, A Clockwork RNN, eq. 1-3\n'
    "Equations (lin = affine map: one weight per argument, plus a bias; h' = new value):\n"
    "    h' = tick(t, period)*tanh(lin(x, h)) + (1 - tick(t, period))*h\n"
    '\n'
    'Inputs: x (input). State: h (hidden). Output: h.\n'
    'Parameters (weights stored (out, in), as torch stores them):\n'
    '    W_h_x: (hidden, input)\n'
    '    W_h_h: (hidden, hidden), structural zeros where the mask fails\n'
    '    b_h: (hidden,)\n'
    '    period: (hidden,) fixed buffer, clockwork_periods(modules=4)\n'
    '\n'
    "Note: Hidden units form 'modules' equal blocks with periods 1, 2, 4, ...; a module updates at\n"
    'steps t (0-based, counted from t0) with t mod period = 0 and keeps its value otherwise.\n'
    'Recurrent weights from faster to slower modules are zero.\n'
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
    v_W_h_x = params['W_h_x']
    v_W_h_h = params['W_h_h']
    v_b_h = params['b_h']
    v_period = params['period']
    _mask_W_h_h = (v_period[None, :] >= v_period[:, None])
    v_W_h_h = v_W_h_h * _mask_W_h_h
    _W_x = _cat([v_W_h_x], 0)
    _W_h = _cat([v_W_h_h], 0)
    _X_x = inputs['x']
    _T, _B = _X_x.shape[0], _X_x.shape[1]
    _b_x = _cat([v_b_h], 0)
    _G_x = (torch.addmm(_b_x, _X_x.reshape(_T * _B, _X_x.shape[2]), _W_x.T, out=_scratch((_T * _B, _W_x.shape[0]), _X_x))).reshape(_T, _B, -1)
    _mm_h = _linear(_W_h, _B, _T)
    v_h = state['h']
    _out = None
    _saved = {'lin_h': None} if save else None
    _k0 = _const(1, _X_x)
    _direct = not torch.is_grad_enabled()  # out= writes are not differentiable
    _out = _empty((_T, _B, state['h'].shape[-1]), _X_x)
    for _t in range(_T):
        v_t = t0 + _t
        _z_h = _mm_h(v_h, _G_x[_t])
        v_lin_h = _z_h
        _f0_0 = _tick(v_t, v_period)
        v_h_ = torch.addcmul(_f0_0*torch.tanh(v_lin_h), v_h, (_k0 - _f0_0), out=_out[_t] if _direct else None)
        if save:
            _saved['lin_h'] = _put(_saved['lin_h'], _t, v_lin_h, _T)
        v_h = v_h_
        if not _direct:
            _out[_t] = v_h
    v_h = v_h.clone()
    cache = None
    if save:
        _saved['h'] = _cat([state['h'][None], _out[:-1]], 0)
        cache = _Cache({
            "inputs": inputs,
            "state0": dict(state),
            "t0": t0,
            "saved": _saved,
        })
    if not torch.is_grad_enabled():
        _release([_G_x], [_out, v_h] + (list(_saved.values()) if save else []))
    return _out, {'h': v_h}, cache


def backward(params, cache, d_outputs=None, d_state=None, trace=None):
    """Exact BPTT through the sequence run by forward(..., save=True). A list passed as
    ``trace`` receives, for t = T-1 down to 0, the gradient with respect to each state
    entering step t."""
    v_W_h_x = params['W_h_x']
    v_W_h_h = params['W_h_h']
    v_period = params['period']
    _mask_W_h_h = (v_period[None, :] >= v_period[:, None])
    v_W_h_h = v_W_h_h * _mask_W_h_h
    _W_x = _cat([v_W_h_x], 0)
    _W_h = _cat([v_W_h_h], 0)
    _X_x = cache["inputs"]['x']
    _T, _B = _X_x.shape[0], _X_x.shape[1]
    t0 = cache["t0"]
    _state0 = cache["state0"]
    _S_h = cache["saved"]['h']
    _S_lin_h = cache["saved"]['lin_h']
    if d_state is None:
        d_state = {}
    _carry_h = d_state['h'] if d_state.get('h') is not None else _zeros(_state0['h'].shape, _state0['h'])
    _GBs_h = None
    _mmT_h = _linear(_W_h.T, _B, _T)
    _k0 = _const(1, _X_x)
    for _t in range(_T - 1, -1, -1):
        v_t = t0 + _t
        v_lin_h = _S_lin_h[_t]
        _q0 = _tick(v_t, v_period)
        _p0_h__h = _k0 - _q0
        _p1_h__lin_h = _q0*(_k0 - (torch.tanh(v_lin_h))**2)
        _d_h_ = _carry_h
        if d_outputs is not None:
            _d_h_ = _d_h_ + d_outputs[_t]
        _d_h = _d_h_ * _p0_h__h
        _d_lin_h = _d_h_ * _p1_h__lin_h
        _GBs_h = _cat_put(_GBs_h, _t, [_d_lin_h], _T)
        _gb_h = _GBs_h[_t]
        _d_h = _d_h + _mmT_h(_gb_h)
        _carry_h = _d_h
        if trace is not None:
            trace.append({'h': _carry_h})
    grads = {}
    d_inputs = {}
    _GBs = _GBs_h
    _m = _GBs.shape[2]
    _GW = _GBs.reshape(_T * _B, _m).T @ _X_x.reshape(_T * _B, _X_x.shape[2])
    _Gb = _GBs.sum((0, 1))
    grads['W_h_x'] = _GW
    grads['b_h'] = _Gb
    d_inputs['x'] = (_GBs.reshape(_T * _B, _m) @ _W_x).reshape(_T, _B, -1)
    _GBs = _GBs_h
    _m = _GBs.shape[2]
    _GW = _GBs.reshape(_T * _B, _m).T @ _S_h.reshape(_T * _B, _S_h.shape[2])
    grads['W_h_h'] = _GW * _mask_W_h_h
    if 'x' not in d_inputs:
        d_inputs['x'] = _zeros(_X_x.shape, _X_x)
    if not torch.is_grad_enabled():
        _release([_GBs_h], [*grads.values(), *d_inputs.values(), _carry_h])
    return grads, d_inputs, {'h': _carry_h}


# shapes by size name, as the spec writes them
PARAM_SHAPES = {'W_h_x': ('hidden', 'input'), 'W_h_h': ('hidden', 'hidden'), 'b_h': ('hidden',)}
BUFFERS = {'period': ('hidden', 'clockwork_periods', {'modules': 4})}
INPUTS = ['x']
STATES = {'h': 'hidden'}


def step(params, x, state, t=0):
    """One step, an equation a line. x: (B, n) array for the input, or a dict for several
    inputs; returns the new state as a dict."""
    if not isinstance(x, dict):
        x = {'x': x}
    v_W_h_x = params['W_h_x']
    v_W_h_h = params['W_h_h']
    v_b_h = params['b_h']
    v_period = params['period']
    _mask_W_h_h = (v_period[None, :] >= v_period[:, None])
    v_W_h_h = v_W_h_h * _mask_W_h_h
    v_x = x['x']
    v_h = state['h']
    v_t = t
    _k0 = _const(1, v_x)
    v_lin_h = v_x @ v_W_h_x.T + v_h @ v_W_h_h.T + v_b_h
    v_h_ = v_h*(_k0 - _tick(v_t, v_period)) + torch.tanh(v_lin_h)*_tick(v_t, v_period)
    return {'h': v_h_}


_WIDTH_OF = {'h': 'W_h_x'}

def _clockwork_periods(n, options):
    modules = int(options.get("modules", 4))
    base = int(options.get("base", 2))
    return [float(base ** (k * modules // n)) for k in range(n)]

_BUFFER_INITS = {'clockwork_periods': _clockwork_periods}


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
