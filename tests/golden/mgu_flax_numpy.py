(
    "mgu_flax: Flax's minimal gated unit (flax.linen.MGUCell, reset_gate=True)\n"
    '\n'
    'Exported by lstm-verify 0.1.0 (target numpy) from spec mgu_flax.toml,\n'
    'sha256 0eed8d325d169c896c7c7e744f7ae3d2e86cb2382a914ded3a61382a4e7038ba.\n'
    'Regenerate: lstm-verify export mgu_flax --target numpy -o mgu_flax_numpy.py\n'
    '\n'
    'Sources: flax.linen.MGUCell (flax/linen/recurrent.py, class MGUCell, Flax 0.12), after Zhou, Wu, Zhang & Zhou 2016, Minimal Gated Unit for Recurrent Neural Networks\n'
    "Equations (lin = affine map: one weight per argument, plus a bias; h' = new value):\n"
    '    f = sigmoid(lin(x, h))\n'
    '    n = tanh(lin(x) + f*lin(h))\n'
    "    h' = (1 - f)*n + f*h\n"
    '\n'
    'Inputs: x (input). State: h (hidden). Output: h.\n'
    'Parameters (weights stored (out, in), as torch stores them):\n'
    '    W_f_x: (hidden, input)\n'
    '    W_f_h: (hidden, hidden)\n'
    '    W_n_x: (hidden, input)\n'
    '    W_n_h: (hidden, hidden)\n'
    '    b_f: (hidden,)\n'
    '    b_n_x: (hidden,)\n'
    '    b_n_h: (hidden,)\n'
    '\n'
    'Note: Not mgu, in two ways at once: f multiplies the hidden matmul with its own bias, f*(W_n_h\n'
    "h + b_n_h), instead of entering it as W_n_h (f*h), and the update is (1 - f)*n + f*h, mgu's\n"
    'terms swapped. Either alone is a different function, and negating f cannot repair the swap\n'
    'because f also gates n. It is the reset-after GRU with r and z tied to one gate. The\n'
    'initialisers (forget_bias_init = ones) change only where training starts.\n'
)

import numpy


def _sigmoid(x):
    # exp(-x) overflows to inf for very negative x and 1/(1 + inf) = 0 is the right limit; the
    # result is within 2 eps (relative) of the exact value wherever it is a normal float. The
    # backward never differentiates this formula (it uses s*(1 - s)), so no NaN can arise.
    with numpy.errstate(over="ignore"):
        return 1 / (1 + numpy.exp(-x))


def _step(x):
    return (x > 0).astype(x.dtype)


def _hard_sigmoid_grad(x):
    return ((x > -3) & (x < 3)).astype(x.dtype) / 6


def _tick(t, period):
    return (numpy.remainder(t, period) == 0).astype(period.dtype)


def _max_grad(a, b):
    # d max(a, b)/da: 1 where a > b, 1/2 at a tie, 0 where a < b (torch.maximum's convention)
    return ((a > b) + 0.5 * (a == b)).astype(numpy.result_type(a, b))


def _rsum(x):
    # the sum over a vector's units, kept as an axis of size 1 (a reduction's value)
    return x.sum(-1, keepdims=True)


def _bcast(x, n):
    # a reduction's gradient (size 1) spread over n units
    return numpy.broadcast_to(x, x.shape[:-1] + (n,))


def _ssum(x):
    # the sum over the set's members (axis 1 of (B, L, n))
    return x.sum(1)


def _smax(x):
    return x.max(1)


def _sbcast(x, n):
    # a (B, m) gradient spread over the n members of the set: (B, n, m)
    return numpy.broadcast_to(x[:, None], (x.shape[0], n) + x.shape[1:])


def _cat(xs, axis):
    return xs[0] if len(xs) == 1 else numpy.concatenate(xs, axis)


def _zeros(shape, like):
    return numpy.zeros(shape, dtype=like.dtype)


def _put(buf, t, value, n):
    """Write step t of a sequence buffer of n steps, allocated at the first write."""
    if buf is None:
        buf = numpy.empty((n,) + value.shape, dtype=value.dtype)
    buf[t] = value
    return buf


def _cat_put(buf, t, xs, n):
    """Concatenate xs (last axis) straight into step t of a sequence buffer of n steps."""
    if buf is None:
        shape = (n,) + xs[0].shape[:-1] + (sum(x.shape[-1] for x in xs),)
        buf = numpy.empty(shape, dtype=xs[0].dtype)
    numpy.concatenate(xs, -1, out=buf[t])
    return buf


def _linear(W, rows, steps):
    """The product a -> a @ W.T (+ add), for repeated use with the same W."""
    Wt = W.T

    def product(a, add=None):
        return a @ Wt if add is None else add + a @ Wt

    return product


def _offsets(sizes):
    out = [0]
    for s in sizes:
        out.append(out[-1] + s)
    return out


def forward(params, inputs, state, t0=0, save=False):
    """Run the cell over a sequence; see the module header for the equations."""
    v_W_f_x = params['W_f_x']
    v_W_f_h = params['W_f_h']
    v_W_n_x = params['W_n_x']
    v_W_n_h = params['W_n_h']
    v_b_f = params['b_f']
    v_b_n_x = params['b_n_x']
    v_b_n_h = params['b_n_h']
    _W_x = _cat([v_W_f_x, v_W_n_x], 0)
    _off_x = _offsets([v_W_f_x.shape[0], v_W_n_x.shape[0]])
    _W_h = _cat([v_W_f_h, v_W_n_h], 0)
    _off_h = _offsets([v_W_f_h.shape[0], v_W_n_h.shape[0]])
    _X_x = inputs['x']
    _T, _B = _X_x.shape[0], _X_x.shape[1]
    _b_x = _cat([v_b_f, v_b_n_x], 0)
    _G_x = (_X_x.reshape(_T * _B, _X_x.shape[2]) @ _W_x.T + _b_x).reshape(_T, _B, -1)
    _mm_h = _linear(_W_h, _B, _T)
    v_h = state['h']
    _out = None
    _saved = {'f': None, 'lin_n_h': None, 'n': None} if save else None
    for _t in range(_T):
        _g_x = _G_x[_t]
        _g_h = _mm_h(v_h)
        v_lin_f = _g_x[..., _off_x[0]:_off_x[1]] + _g_h[..., _off_h[0]:_off_h[1]]
        v_lin_n_x = _g_x[..., _off_x[1]:_off_x[2]]
        v_lin_n_h = _g_h[..., _off_h[1]:_off_h[2]] + v_b_n_h
        v_f = _sigmoid(v_lin_f)
        v_n = numpy.tanh(v_f*v_lin_n_h + v_lin_n_x)
        v_h_ = v_f*v_h + v_n*(1 - v_f)
        if save:
            _saved['f'] = _put(_saved['f'], _t, v_f, _T)
            _saved['lin_n_h'] = _put(_saved['lin_n_h'], _t, v_lin_n_h, _T)
            _saved['n'] = _put(_saved['n'], _t, v_n, _T)
        v_h = v_h_
        _out = _put(_out, _t, v_h, _T)
    cache = None
    if save:
        _saved['h'] = _cat([state['h'][None], _out[:-1]], 0)
        cache = {
            "inputs": inputs,
            "state0": dict(state),
            "t0": t0,
            "saved": _saved,
        }
    return _out, {'h': v_h}, cache


def backward(params, cache, d_outputs=None, d_state=None, trace=None):
    """Exact BPTT through the sequence run by forward(..., save=True). A list passed as
    ``trace`` receives, for t = T-1 down to 0, the gradient with respect to each state
    entering step t."""
    v_W_f_x = params['W_f_x']
    v_W_f_h = params['W_f_h']
    v_W_n_x = params['W_n_x']
    v_W_n_h = params['W_n_h']
    _W_x = _cat([v_W_f_x, v_W_n_x], 0)
    _off_x = _offsets([v_W_f_x.shape[0], v_W_n_x.shape[0]])
    _W_h = _cat([v_W_f_h, v_W_n_h], 0)
    _off_h = _offsets([v_W_f_h.shape[0], v_W_n_h.shape[0]])
    _X_x = cache["inputs"]['x']
    _T, _B = _X_x.shape[0], _X_x.shape[1]
    _state0 = cache["state0"]
    _S_f = cache["saved"]['f']
    _S_h = cache["saved"]['h']
    _S_lin_n_h = cache["saved"]['lin_n_h']
    _S_n = cache["saved"]['n']
    if d_state is None:
        d_state = {}
    _carry_h = d_state['h'] if d_state.get('h') is not None else _zeros(_state0['h'].shape, _state0['h'])
    _GBs_x = None
    _GBs_h = None
    _mmT_h = _linear(_W_h.T, _B, _T)
    for _t in range(_T - 1, -1, -1):
        v_f = _S_f[_t]
        v_h = _S_h[_t]
        v_lin_n_h = _S_lin_n_h[_t]
        v_n = _S_n[_t]
        _q0 = 1 - v_f
        _q1 = 1 - v_n**2
        _p0_f_lin_f = _q0*v_f
        _p1_n_f = _q1*v_lin_n_h
        _p2_n_lin_n_h = _q1*v_f
        _p3_n_lin_n_x = _q1
        _p4_h__f = v_h - v_n
        _p5_h__n = _q0
        _d_h_ = _carry_h
        if d_outputs is not None:
            _d_h_ = _d_h_ + d_outputs[_t]
        _d_f = _d_h_ * _p4_h__f
        _d_h = _d_h_ * v_f
        _d_n = _d_h_ * _p5_h__n
        _d_f = _d_f + _d_n * _p1_n_f
        _d_lin_n_h = _d_n * _p2_n_lin_n_h
        _d_lin_n_x = _d_n * _p3_n_lin_n_x
        _d_lin_f = _d_f * _p0_f_lin_f
        _GBs_h = _cat_put(_GBs_h, _t, [_d_lin_f, _d_lin_n_h], _T)
        _gb_h = _GBs_h[_t]
        _d_h = _d_h + _mmT_h(_gb_h)
        _GBs_x = _cat_put(_GBs_x, _t, [_d_lin_f, _d_lin_n_x], _T)
        _carry_h = _d_h
        if trace is not None:
            trace.append({'h': _carry_h})
    grads = {}
    d_inputs = {}
    _GBs = _GBs_x
    _m = _GBs.shape[2]
    _GW = _GBs.reshape(_T * _B, _m).T @ _X_x.reshape(_T * _B, _X_x.shape[2])
    _Gb = _GBs.sum((0, 1))
    grads['W_f_x'] = _GW[_off_x[0]:_off_x[1]]
    grads['b_f'] = _Gb[..., _off_x[0]:_off_x[1]]
    grads['W_n_x'] = _GW[_off_x[1]:_off_x[2]]
    grads['b_n_x'] = _Gb[..., _off_x[1]:_off_x[2]]
    d_inputs['x'] = (_GBs.reshape(_T * _B, _m) @ _W_x).reshape(_T, _B, -1)
    _GBs = _GBs_h
    _m = _GBs.shape[2]
    _GW = _GBs.reshape(_T * _B, _m).T @ _S_h.reshape(_T * _B, _S_h.shape[2])
    _Gb = _GBs.sum((0, 1))
    grads['W_f_h'] = _GW[_off_h[0]:_off_h[1]]
    grads['W_n_h'] = _GW[_off_h[1]:_off_h[2]]
    grads['b_n_h'] = _Gb[..., _off_h[1]:_off_h[2]]
    if 'x' not in d_inputs:
        d_inputs['x'] = _zeros(_X_x.shape, _X_x)
    return grads, d_inputs, {'h': _carry_h}


# shapes by size name, as the spec writes them
PARAM_SHAPES = {
    'W_f_x': ('hidden', 'input'),
    'W_f_h': ('hidden', 'hidden'),
    'W_n_x': ('hidden', 'input'),
    'W_n_h': ('hidden', 'hidden'),
    'b_f': ('hidden',),
    'b_n_x': ('hidden',),
    'b_n_h': ('hidden',),
}
BUFFERS = {}
INPUTS = ['x']
STATES = {'h': 'hidden'}


def step(params, x, state, t=0):
    """One step, an equation a line. x: (B, n) array for the input, or a dict for several
    inputs; returns the new state as a dict."""
    if not isinstance(x, dict):
        x = {'x': x}
    v_W_f_x = params['W_f_x']
    v_W_f_h = params['W_f_h']
    v_W_n_x = params['W_n_x']
    v_W_n_h = params['W_n_h']
    v_b_f = params['b_f']
    v_b_n_x = params['b_n_x']
    v_b_n_h = params['b_n_h']
    v_x = x['x']
    v_h = state['h']
    v_lin_f = v_x @ v_W_f_x.T + v_h @ v_W_f_h.T + v_b_f
    v_f = _sigmoid(v_lin_f)
    v_lin_n_x = v_x @ v_W_n_x.T + v_b_n_x
    v_lin_n_h = v_h @ v_W_n_h.T + v_b_n_h
    v_n = numpy.tanh(v_f*v_lin_n_h + v_lin_n_x)
    v_h_ = v_f*v_h + v_n*(1 - v_f)
    return {'h': v_h_}
