(
    'multiplicative_lstm: Multiplicative LSTM (mLSTM)\n'
    '\n'
    'Exported by lstm-verify 0.1.0 (target numpy) from spec multiplicative_lstm.toml,\n'
    'sha256 cc49e63692f85e06b5836de07be2267b9731c23c34d1f21dff3b782e8f114592.\n'
    'Regenerate: lstm-verify export multiplicative_lstm --target numpy -o multiplicative_lstm_numpy.py\n'
    '\n'
    "Sources: Krause, Lu, Murray & Renals 2016, Multiplicative LSTM for sequence modelling, arXiv:1609.07959, eq. 18-22 with the LSTM's cell and output equations (check: paper text not consulted here; reconstructed from the authors' MATLAB code and ports quoting the paper)\n"
    "Equations (lin = affine map: one weight per argument, plus a bias; h' = new value):\n"
    '    m = lin(x, bias=false)*lin(h, bias=false)\n'
    '    hhat = lin(x, m)\n'
    '    i = sigmoid(lin(x, m))\n'
    '    o = sigmoid(lin(x, m))\n'
    '    f = sigmoid(lin(x, m))\n'
    "    c' = f*c + i*hhat\n"
    "    h' = tanh(c'*o)\n"
    '\n'
    'Inputs: x (input). State: h (hidden), c (hidden). Output: h.\n'
    'Parameters (weights stored (out, in), as torch stores them):\n'
    '    W_m_x: (hidden, input)\n'
    '    W_m_h: (hidden, hidden)\n'
    '    W_hhat_x: (hidden, input)\n'
    '    W_hhat_m: (hidden, hidden)\n'
    '    W_i_x: (hidden, input)\n'
    '    W_i_m: (hidden, hidden)\n'
    '    W_o_x: (hidden, input)\n'
    '    W_o_m: (hidden, hidden)\n'
    '    W_f_x: (hidden, input)\n'
    '    W_f_m: (hidden, hidden)\n'
    '    b_hhat: (hidden,)\n'
    '    b_i: (hidden,)\n'
    '    b_o: (hidden,)\n'
    '    b_f: (hidden,)\n'
    '\n'
    "Note: m = (W_mx x) (.) (W_mh h) is the multiplicative RNN's intermediate state; it replaces h\n"
    "in the candidate hhat (the paper's h^) and in every gate. hhat has no tanh and the output gate\n"
    "sits inside the tanh, h' = tanh(c' (.) o), as the authors' MATLAB code computes and as ports\n"
    'quoting the paper write it. The paper writes no biases; here m has none (two bias-free maps\n'
    'multiplied) and hhat, i, o and f have one each. Neighbouring implementations differ: the\n'
    "authors' MATLAB code has no bias on hhat and adds one inside the output tanh, h' = tanh(c' (.)\n"
    "o + b); their later Chainer code and OpenAI's sentiment-neuron code use the standard LSTM\n"
    "arrangement, tanh(hhat) and o (.) tanh(c'). Each is a different function from this one.\n"
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
    v_W_m_x = params['W_m_x']
    v_W_m_h = params['W_m_h']
    v_W_hhat_x = params['W_hhat_x']
    v_W_hhat_m = params['W_hhat_m']
    v_W_i_x = params['W_i_x']
    v_W_i_m = params['W_i_m']
    v_W_o_x = params['W_o_x']
    v_W_o_m = params['W_o_m']
    v_W_f_x = params['W_f_x']
    v_W_f_m = params['W_f_m']
    v_b_hhat = params['b_hhat']
    v_b_i = params['b_i']
    v_b_o = params['b_o']
    v_b_f = params['b_f']
    _W_x = _cat([v_W_m_x, v_W_hhat_x, v_W_i_x, v_W_o_x, v_W_f_x], 0)
    _off_x = _offsets([v_W_m_x.shape[0], v_W_hhat_x.shape[0], v_W_i_x.shape[0], v_W_o_x.shape[0], v_W_f_x.shape[0]])
    _W_h = _cat([v_W_m_h], 0)
    _W_m = _cat([v_W_hhat_m, v_W_i_m, v_W_o_m, v_W_f_m], 0)
    _off_m = _offsets([v_W_hhat_m.shape[0], v_W_i_m.shape[0], v_W_o_m.shape[0], v_W_f_m.shape[0]])
    _X_x = inputs['x']
    _T, _B = _X_x.shape[0], _X_x.shape[1]
    _G_x = (_X_x.reshape(_T * _B, _X_x.shape[2]) @ _W_x.T).reshape(_T, _B, -1)
    _mm_h = _linear(_W_h, _B, _T)
    _mm_m = _linear(_W_m, _B, _T)
    v_h = state['h']
    v_c = state['c']
    _out = None
    _saved = {'c_': None, 'f': None, 'h_': None, 'hhat': None, 'i': None, 'lin_m_h': None, 'lin_m_x': None, 'm': None, 'o': None} if save else None
    for _t in range(_T):
        _g_x = _G_x[_t]
        v_lin_m_x = _g_x[..., _off_x[0]:_off_x[1]]
        _g_h = _mm_h(v_h)
        v_lin_m_h = _g_h
        v_m = v_lin_m_h*v_lin_m_x
        _z_m = _mm_m(v_m, _G_x[_t][..., _off_x[1]:_off_x[5]])
        v_lin_hhat = _z_m[..., _off_m[0]:_off_m[1]] + v_b_hhat
        v_lin_i = _z_m[..., _off_m[1]:_off_m[2]] + v_b_i
        v_lin_o = _z_m[..., _off_m[2]:_off_m[3]] + v_b_o
        v_lin_f = _z_m[..., _off_m[3]:_off_m[4]] + v_b_f
        v_hhat = v_lin_hhat
        v_i = _sigmoid(v_lin_i)
        v_o = _sigmoid(v_lin_o)
        v_f = _sigmoid(v_lin_f)
        v_c_ = v_c*v_f + v_hhat*v_i
        v_h_ = numpy.tanh(v_c_*v_o)
        if save:
            _saved['c_'] = _put(_saved['c_'], _t + 1, v_c_, _T + 1)
            _saved['f'] = _put(_saved['f'], _t, v_f, _T)
            _saved['h_'] = _put(_saved['h_'], _t + 1, v_h_, _T + 1)
            _saved['hhat'] = _put(_saved['hhat'], _t, v_hhat, _T)
            _saved['i'] = _put(_saved['i'], _t, v_i, _T)
            _saved['lin_m_h'] = _put(_saved['lin_m_h'], _t, v_lin_m_h, _T)
            _saved['lin_m_x'] = _put(_saved['lin_m_x'], _t, v_lin_m_x, _T)
            _saved['m'] = _put(_saved['m'], _t, v_m, _T)
            _saved['o'] = _put(_saved['o'], _t, v_o, _T)
        v_h = v_h_
        v_c = v_c_
        _out = _put(_out, _t, v_h, _T)
    cache = None
    if save:
        _saved['h_'][0] = state['h']
        _saved['h'] = _saved['h_'][:-1]
        _saved['h_'] = _saved['h_'][1:]
        _saved['c_'][0] = state['c']
        _saved['c'] = _saved['c_'][:-1]
        _saved['c_'] = _saved['c_'][1:]
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
    v_W_m_x = params['W_m_x']
    v_W_m_h = params['W_m_h']
    v_W_hhat_x = params['W_hhat_x']
    v_W_hhat_m = params['W_hhat_m']
    v_W_i_x = params['W_i_x']
    v_W_i_m = params['W_i_m']
    v_W_o_x = params['W_o_x']
    v_W_o_m = params['W_o_m']
    v_W_f_x = params['W_f_x']
    v_W_f_m = params['W_f_m']
    _W_x = _cat([v_W_m_x, v_W_hhat_x, v_W_i_x, v_W_o_x, v_W_f_x], 0)
    _off_x = _offsets([v_W_m_x.shape[0], v_W_hhat_x.shape[0], v_W_i_x.shape[0], v_W_o_x.shape[0], v_W_f_x.shape[0]])
    _W_h = _cat([v_W_m_h], 0)
    _W_m = _cat([v_W_hhat_m, v_W_i_m, v_W_o_m, v_W_f_m], 0)
    _off_m = _offsets([v_W_hhat_m.shape[0], v_W_i_m.shape[0], v_W_o_m.shape[0], v_W_f_m.shape[0]])
    _X_x = cache["inputs"]['x']
    _T, _B = _X_x.shape[0], _X_x.shape[1]
    _state0 = cache["state0"]
    _S_c = cache["saved"]['c']
    _S_c_ = cache["saved"]['c_']
    _S_f = cache["saved"]['f']
    _S_h = cache["saved"]['h']
    _S_h_ = cache["saved"]['h_']
    _S_hhat = cache["saved"]['hhat']
    _S_i = cache["saved"]['i']
    _S_lin_m_h = cache["saved"]['lin_m_h']
    _S_lin_m_x = cache["saved"]['lin_m_x']
    _S_m = cache["saved"]['m']
    _S_o = cache["saved"]['o']
    if d_state is None:
        d_state = {}
    _carry_h = d_state['h'] if d_state.get('h') is not None else _zeros(_state0['h'].shape, _state0['h'])
    _carry_c = d_state['c'] if d_state.get('c') is not None else _zeros(_state0['c'].shape, _state0['c'])
    _GBs_x = None
    _GBs_h = None
    _mmT_h = _linear(_W_h.T, _B, _T)
    _GBs_m = None
    _mmT_m = _linear(_W_m.T, _B, _T)
    for _t in range(_T - 1, -1, -1):
        v_c = _S_c[_t]
        v_c_ = _S_c_[_t]
        v_f = _S_f[_t]
        v_h_ = _S_h_[_t]
        v_hhat = _S_hhat[_t]
        v_i = _S_i[_t]
        v_lin_m_h = _S_lin_m_h[_t]
        v_lin_m_x = _S_lin_m_x[_t]
        v_o = _S_o[_t]
        _q0 = 1 - v_h_**2
        _p0_i_lin_i = v_i*(1 - v_i)
        _p1_o_lin_o = v_o*(1 - v_o)
        _p2_f_lin_f = v_f*(1 - v_f)
        _p3_h__c_ = _q0*v_o
        _p4_h__o = _q0*v_c_
        _d_h_ = _carry_h
        if d_outputs is not None:
            _d_h_ = _d_h_ + d_outputs[_t]
        _d_c_ = _carry_c
        _d_c_ = _d_c_ + _d_h_ * _p3_h__c_
        _d_o = _d_h_ * _p4_h__o
        _d_c = _d_c_ * v_f
        _d_f = _d_c_ * v_c
        _d_hhat = _d_c_ * v_i
        _d_i = _d_c_ * v_hhat
        _d_lin_f = _d_f * _p2_f_lin_f
        _d_lin_o = _d_o * _p1_o_lin_o
        _d_lin_i = _d_i * _p0_i_lin_i
        _d_lin_hhat = _d_hhat
        _GBs_m = _cat_put(_GBs_m, _t, [_d_lin_hhat, _d_lin_i, _d_lin_o, _d_lin_f], _T)
        _gb_m = _GBs_m[_t]
        _d_m = _mmT_m(_gb_m)
        _d_lin_m_h = _d_m * v_lin_m_x
        _d_lin_m_x = _d_m * v_lin_m_h
        _GBs_x = _cat_put(_GBs_x, _t, [_d_lin_m_x, _d_lin_hhat, _d_lin_i, _d_lin_o, _d_lin_f], _T)
        _GBs_h = _cat_put(_GBs_h, _t, [_d_lin_m_h], _T)
        _gb_h = _GBs_h[_t]
        _d_h = _mmT_h(_gb_h)
        _carry_h = _d_h
        _carry_c = _d_c
        if trace is not None:
            trace.append({'h': _carry_h, 'c': _carry_c})
    grads = {}
    d_inputs = {}
    _GBs = _GBs_x
    _m = _GBs.shape[2]
    _GW = _GBs.reshape(_T * _B, _m).T @ _X_x.reshape(_T * _B, _X_x.shape[2])
    _Gb = _GBs.sum((0, 1))
    grads['W_m_x'] = _GW[_off_x[0]:_off_x[1]]
    grads['W_hhat_x'] = _GW[_off_x[1]:_off_x[2]]
    grads['b_hhat'] = _Gb[..., _off_x[1]:_off_x[2]]
    grads['W_i_x'] = _GW[_off_x[2]:_off_x[3]]
    grads['b_i'] = _Gb[..., _off_x[2]:_off_x[3]]
    grads['W_o_x'] = _GW[_off_x[3]:_off_x[4]]
    grads['b_o'] = _Gb[..., _off_x[3]:_off_x[4]]
    grads['W_f_x'] = _GW[_off_x[4]:_off_x[5]]
    grads['b_f'] = _Gb[..., _off_x[4]:_off_x[5]]
    d_inputs['x'] = (_GBs.reshape(_T * _B, _m) @ _W_x).reshape(_T, _B, -1)
    _GBs = _GBs_h
    _m = _GBs.shape[2]
    _GW = _GBs.reshape(_T * _B, _m).T @ _S_h.reshape(_T * _B, _S_h.shape[2])
    grads['W_m_h'] = _GW
    _GBs = _GBs_m
    _m = _GBs.shape[2]
    _GW = _GBs.reshape(_T * _B, _m).T @ _S_m.reshape(_T * _B, _S_m.shape[2])
    grads['W_hhat_m'] = _GW[_off_m[0]:_off_m[1]]
    grads['W_i_m'] = _GW[_off_m[1]:_off_m[2]]
    grads['W_o_m'] = _GW[_off_m[2]:_off_m[3]]
    grads['W_f_m'] = _GW[_off_m[3]:_off_m[4]]
    if 'x' not in d_inputs:
        d_inputs['x'] = _zeros(_X_x.shape, _X_x)
    return grads, d_inputs, {'h': _carry_h, 'c': _carry_c}


# shapes by size name, as the spec writes them
PARAM_SHAPES = {
    'W_m_x': ('hidden', 'input'),
    'W_m_h': ('hidden', 'hidden'),
    'W_hhat_x': ('hidden', 'input'),
    'W_hhat_m': ('hidden', 'hidden'),
    'W_i_x': ('hidden', 'input'),
    'W_i_m': ('hidden', 'hidden'),
    'W_o_x': ('hidden', 'input'),
    'W_o_m': ('hidden', 'hidden'),
    'W_f_x': ('hidden', 'input'),
    'W_f_m': ('hidden', 'hidden'),
    'b_hhat': ('hidden',),
    'b_i': ('hidden',),
    'b_o': ('hidden',),
    'b_f': ('hidden',),
}
BUFFERS = {}
INPUTS = ['x']
STATES = {'h': 'hidden', 'c': 'hidden'}


def step(params, x, state, t=0):
    """One step, an equation a line. x: (B, n) array for the input, or a dict for several
    inputs; returns the new state as a dict."""
    if not isinstance(x, dict):
        x = {'x': x}
    v_W_m_x = params['W_m_x']
    v_W_m_h = params['W_m_h']
    v_W_hhat_x = params['W_hhat_x']
    v_W_hhat_m = params['W_hhat_m']
    v_W_i_x = params['W_i_x']
    v_W_i_m = params['W_i_m']
    v_W_o_x = params['W_o_x']
    v_W_o_m = params['W_o_m']
    v_W_f_x = params['W_f_x']
    v_W_f_m = params['W_f_m']
    v_b_hhat = params['b_hhat']
    v_b_i = params['b_i']
    v_b_o = params['b_o']
    v_b_f = params['b_f']
    v_x = x['x']
    v_h = state['h']
    v_c = state['c']
    v_lin_m_x = v_x @ v_W_m_x.T
    v_lin_m_h = v_h @ v_W_m_h.T
    v_m = v_lin_m_h*v_lin_m_x
    v_lin_hhat = v_x @ v_W_hhat_x.T + v_m @ v_W_hhat_m.T + v_b_hhat
    v_hhat = v_lin_hhat
    v_lin_i = v_x @ v_W_i_x.T + v_m @ v_W_i_m.T + v_b_i
    v_i = _sigmoid(v_lin_i)
    v_lin_o = v_x @ v_W_o_x.T + v_m @ v_W_o_m.T + v_b_o
    v_o = _sigmoid(v_lin_o)
    v_lin_f = v_x @ v_W_f_x.T + v_m @ v_W_f_m.T + v_b_f
    v_f = _sigmoid(v_lin_f)
    v_c_ = v_c*v_f + v_hhat*v_i
    v_h_ = numpy.tanh(v_c_*v_o)
    return {'h': v_h_, 'c': v_c_}
