(
    'lstm_nofg: LSTM without forget gate (1997)\n'
    '\n'
    'Exported by lstm-verify 0.1.0 (target numpy) from spec lstm_nofg.toml,\n'
    'sha256 626fc431e86a6d4855bf25b8ef814a0973f04155b8842fc8b0cd0748088bee99.\n'
    'Regenerate: lstm-verify export lstm_nofg --target numpy -o lstm_nofg_numpy.py\n'
    '\n'
    'Sources: Hochreiter & Schmidhuber 1997, Long Short-Term Memory; Greff et al. 2015 NFG without peepholes\n'
    "Equations (lin = affine map: one weight per argument, plus a bias; h' = new value):\n"
    '    i = sigmoid(lin(x, h))\n'
    '    g = tanh(lin(x, h))\n'
    '    o = sigmoid(lin(x, h))\n'
    "    c' = c + i*g\n"
    "    h' = o*tanh(c')\n"
    '\n'
    'Inputs: x (input). State: h (hidden), c (hidden). Output: h.\n'
    'Parameters (weights stored (out, in), as torch stores them):\n'
    '    W_i_x: (hidden, input)\n'
    '    W_i_h: (hidden, hidden)\n'
    '    W_g_x: (hidden, input)\n'
    '    W_g_h: (hidden, hidden)\n'
    '    W_o_x: (hidden, input)\n'
    '    W_o_h: (hidden, hidden)\n'
    '    b_i: (hidden,)\n'
    '    b_g: (hidden,)\n'
    '    b_o: (hidden,)\n'
    '\n'
    "Note: The constant error carousel: the cell's self-connection has weight exactly 1.\n"
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
    v_W_i_x = params['W_i_x']
    v_W_i_h = params['W_i_h']
    v_W_g_x = params['W_g_x']
    v_W_g_h = params['W_g_h']
    v_W_o_x = params['W_o_x']
    v_W_o_h = params['W_o_h']
    v_b_i = params['b_i']
    v_b_g = params['b_g']
    v_b_o = params['b_o']
    _W_x = _cat([v_W_i_x, v_W_g_x, v_W_o_x], 0)
    _W_h = _cat([v_W_i_h, v_W_g_h, v_W_o_h], 0)
    _off_h = _offsets([v_W_i_h.shape[0], v_W_g_h.shape[0], v_W_o_h.shape[0]])
    _X_x = inputs['x']
    _T, _B = _X_x.shape[0], _X_x.shape[1]
    _b_x = _cat([v_b_i, v_b_g, v_b_o], 0)
    _G_x = (_X_x.reshape(_T * _B, _X_x.shape[2]) @ _W_x.T + _b_x).reshape(_T, _B, -1)
    _mm_h = _linear(_W_h, _B, _T)
    v_h = state['h']
    v_c = state['c']
    _out = None
    _saved = {'c_': None, 'g': None, 'i': None, 'o': None} if save else None
    for _t in range(_T):
        _z_h = _mm_h(v_h, _G_x[_t])
        v_lin_i = _z_h[..., _off_h[0]:_off_h[1]]
        v_lin_g = _z_h[..., _off_h[1]:_off_h[2]]
        v_lin_o = _z_h[..., _off_h[2]:_off_h[3]]
        v_i = _sigmoid(v_lin_i)
        v_g = numpy.tanh(v_lin_g)
        v_o = _sigmoid(v_lin_o)
        v_c_ = v_c + v_g*v_i
        v_h_ = v_o*numpy.tanh(v_c_)
        if save:
            _saved['c_'] = _put(_saved['c_'], _t, v_c_, _T)
            _saved['g'] = _put(_saved['g'], _t, v_g, _T)
            _saved['i'] = _put(_saved['i'], _t, v_i, _T)
            _saved['o'] = _put(_saved['o'], _t, v_o, _T)
        v_h = v_h_
        v_c = v_c_
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
    return _out, {'h': v_h, 'c': v_c}, cache


def backward(params, cache, d_outputs=None, d_state=None, trace=None):
    """Exact BPTT through the sequence run by forward(..., save=True). A list passed as
    ``trace`` receives, for t = T-1 down to 0, the gradient with respect to each state
    entering step t."""
    v_W_i_x = params['W_i_x']
    v_W_i_h = params['W_i_h']
    v_W_g_x = params['W_g_x']
    v_W_g_h = params['W_g_h']
    v_W_o_x = params['W_o_x']
    v_W_o_h = params['W_o_h']
    _W_x = _cat([v_W_i_x, v_W_g_x, v_W_o_x], 0)
    _off_x = _offsets([v_W_i_x.shape[0], v_W_g_x.shape[0], v_W_o_x.shape[0]])
    _W_h = _cat([v_W_i_h, v_W_g_h, v_W_o_h], 0)
    _off_h = _offsets([v_W_i_h.shape[0], v_W_g_h.shape[0], v_W_o_h.shape[0]])
    _X_x = cache["inputs"]['x']
    _T, _B = _X_x.shape[0], _X_x.shape[1]
    _state0 = cache["state0"]
    _S_c_ = cache["saved"]['c_']
    _S_g = cache["saved"]['g']
    _S_h = cache["saved"]['h']
    _S_i = cache["saved"]['i']
    _S_o = cache["saved"]['o']
    if d_state is None:
        d_state = {}
    _carry_h = d_state['h'] if d_state.get('h') is not None else _zeros(_state0['h'].shape, _state0['h'])
    _carry_c = d_state['c'] if d_state.get('c') is not None else _zeros(_state0['c'].shape, _state0['c'])
    _GBs_h = None
    _mmT_h = _linear(_W_h.T, _B, _T)
    for _t in range(_T - 1, -1, -1):
        v_c_ = _S_c_[_t]
        v_g = _S_g[_t]
        v_i = _S_i[_t]
        v_o = _S_o[_t]
        _q0 = numpy.tanh(v_c_)
        _p0_i_lin_i = v_i*(1 - v_i)
        _p1_g_lin_g = 1 - v_g**2
        _p2_o_lin_o = v_o*(1 - v_o)
        _p3_h__c_ = v_o*(1 - _q0**2)
        _p4_h__o = _q0
        _d_h_ = _carry_h
        if d_outputs is not None:
            _d_h_ = _d_h_ + d_outputs[_t]
        _d_c_ = _carry_c
        _d_c_ = _d_c_ + _d_h_ * _p3_h__c_
        _d_o = _d_h_ * _p4_h__o
        _d_c = _d_c_
        _d_g = _d_c_ * v_i
        _d_i = _d_c_ * v_g
        _d_lin_o = _d_o * _p2_o_lin_o
        _d_lin_g = _d_g * _p1_g_lin_g
        _d_lin_i = _d_i * _p0_i_lin_i
        _GBs_h = _cat_put(_GBs_h, _t, [_d_lin_i, _d_lin_g, _d_lin_o], _T)
        _gb_h = _GBs_h[_t]
        _d_h = _mmT_h(_gb_h)
        _carry_h = _d_h
        _carry_c = _d_c
        if trace is not None:
            trace.append({'h': _carry_h, 'c': _carry_c})
    grads = {}
    d_inputs = {}
    _GBs = _GBs_h
    _m = _GBs.shape[2]
    _GW = _GBs.reshape(_T * _B, _m).T @ _X_x.reshape(_T * _B, _X_x.shape[2])
    _Gb = _GBs.sum((0, 1))
    grads['W_i_x'] = _GW[_off_x[0]:_off_x[1]]
    grads['b_i'] = _Gb[..., _off_x[0]:_off_x[1]]
    grads['W_g_x'] = _GW[_off_x[1]:_off_x[2]]
    grads['b_g'] = _Gb[..., _off_x[1]:_off_x[2]]
    grads['W_o_x'] = _GW[_off_x[2]:_off_x[3]]
    grads['b_o'] = _Gb[..., _off_x[2]:_off_x[3]]
    d_inputs['x'] = (_GBs.reshape(_T * _B, _m) @ _W_x).reshape(_T, _B, -1)
    _GBs = _GBs_h
    _m = _GBs.shape[2]
    _GW = _GBs.reshape(_T * _B, _m).T @ _S_h.reshape(_T * _B, _S_h.shape[2])
    grads['W_i_h'] = _GW[_off_h[0]:_off_h[1]]
    grads['W_g_h'] = _GW[_off_h[1]:_off_h[2]]
    grads['W_o_h'] = _GW[_off_h[2]:_off_h[3]]
    if 'x' not in d_inputs:
        d_inputs['x'] = _zeros(_X_x.shape, _X_x)
    return grads, d_inputs, {'h': _carry_h, 'c': _carry_c}


# shapes by size name, as the spec writes them
PARAM_SHAPES = {
    'W_i_x': ('hidden', 'input'),
    'W_i_h': ('hidden', 'hidden'),
    'W_g_x': ('hidden', 'input'),
    'W_g_h': ('hidden', 'hidden'),
    'W_o_x': ('hidden', 'input'),
    'W_o_h': ('hidden', 'hidden'),
    'b_i': ('hidden',),
    'b_g': ('hidden',),
    'b_o': ('hidden',),
}
BUFFERS = {}
INPUTS = ['x']
STATES = {'h': 'hidden', 'c': 'hidden'}


def step(params, x, state, t=0):
    """One step, an equation a line. x: (B, n) array for the input, or a dict for several
    inputs; returns the new state as a dict."""
    if not isinstance(x, dict):
        x = {'x': x}
    v_W_i_x = params['W_i_x']
    v_W_i_h = params['W_i_h']
    v_W_g_x = params['W_g_x']
    v_W_g_h = params['W_g_h']
    v_W_o_x = params['W_o_x']
    v_W_o_h = params['W_o_h']
    v_b_i = params['b_i']
    v_b_g = params['b_g']
    v_b_o = params['b_o']
    v_x = x['x']
    v_h = state['h']
    v_c = state['c']
    v_lin_i = v_x @ v_W_i_x.T + v_h @ v_W_i_h.T + v_b_i
    v_i = _sigmoid(v_lin_i)
    v_lin_g = v_x @ v_W_g_x.T + v_h @ v_W_g_h.T + v_b_g
    v_g = numpy.tanh(v_lin_g)
    v_lin_o = v_x @ v_W_o_x.T + v_h @ v_W_o_h.T + v_b_o
    v_o = _sigmoid(v_lin_o)
    v_c_ = v_c + v_g*v_i
    v_h_ = v_o*numpy.tanh(v_c_)
    return {'h': v_h_, 'c': v_c_}
