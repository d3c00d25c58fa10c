(
    'sru: Simple Recurrent Unit\n'
    '\n'
    'Exported by lstm-verify 0.1.0 (target numpy) from spec sru.toml,\n'
    'sha256 45f1ce5263d9a88bff0cb8b0f833b0f73910686cec153818f315c4045b13ef55.\n'
    'Regenerate: lstm-verify export sru --target numpy -o sru_numpy.py\n'
    '\n'
    'Sources: Lei, Zhang, Wang, Dai & Artzi 2018, Simple Recurrent Units for Highly Parallelizable Recurrence (EMNLP), eq. 1-4; sru 2.6.0, SRUCell(rescale=False)\n'
    "Equations (lin = affine map: one weight per argument, plus a bias; h' = new value):\n"
    '    f = sigmoid(lin(x) + v_f*c)\n'
    "    c' = f*c + (1 - f)*lin(x, bias=false)\n"
    '    r = sigmoid(lin(x) + v_r*c)\n'
    "    h' = r*c' + (1 - r)*x\n"
    '\n'
    'Inputs: x (hidden). State: h (hidden), c (hidden). Output: h.\n'
    'Parameters (weights stored (out, in), as torch stores them):\n'
    '    W_f_x: (hidden, hidden)\n'
    '    W_c_x: (hidden, hidden)\n'
    '    W_r_x: (hidden, hidden)\n'
    '    b_f: (hidden,)\n'
    '    b_r: (hidden,)\n'
    '    v_f: (hidden,)\n'
    '    v_r: (hidden,)\n'
    '\n'
    'Note: The gates see the previous cell through the per-unit vectors v_f, v_r; the candidate W x\n'
    "has no bias; the highway adds x itself, so input_size = hidden_size. h' does not read h: h is a\n"
    "state only as the cell's output. The sru package's default rescale=True multiplies the highway\n"
    'x by sqrt(1 + 2 exp(highway_bias)), which no layout can express.\n'
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
    v_W_c_x = params['W_c_x']
    v_W_r_x = params['W_r_x']
    v_b_f = params['b_f']
    v_b_r = params['b_r']
    v_v_f = params['v_f']
    v_v_r = params['v_r']
    _W_x = _cat([v_W_f_x, v_W_c_x, v_W_r_x], 0)
    _off_x = _offsets([v_W_f_x.shape[0], v_W_c_x.shape[0], v_W_r_x.shape[0]])
    _X_x = inputs['x']
    _T, _B = _X_x.shape[0], _X_x.shape[1]
    _G_x = (_X_x.reshape(_T * _B, _X_x.shape[2]) @ _W_x.T).reshape(_T, _B, -1)
    v_h = state['h']
    v_c = state['c']
    _out = None
    _saved = {'c_': None, 'f': None, 'lin_c': None, 'r': None} if save else None
    for _t in range(_T):
        v_x = _X_x[_t]
        _g_x = _G_x[_t]
        v_lin_f = _g_x[..., _off_x[0]:_off_x[1]] + v_b_f
        v_lin_c = _g_x[..., _off_x[1]:_off_x[2]]
        v_lin_r = _g_x[..., _off_x[2]:_off_x[3]] + v_b_r
        v_f = _sigmoid(v_c*v_v_f + v_lin_f)
        v_c_ = v_c*v_f + v_lin_c*(1 - v_f)
        v_r = _sigmoid(v_c*v_v_r + v_lin_r)
        v_h_ = v_c_*v_r + v_x*(1 - v_r)
        if save:
            _saved['c_'] = _put(_saved['c_'], _t + 1, v_c_, _T + 1)
            _saved['f'] = _put(_saved['f'], _t, v_f, _T)
            _saved['lin_c'] = _put(_saved['lin_c'], _t, v_lin_c, _T)
            _saved['r'] = _put(_saved['r'], _t, v_r, _T)
        v_h = v_h_
        v_c = v_c_
        _out = _put(_out, _t, v_h, _T)
    cache = None
    if save:
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
    v_W_f_x = params['W_f_x']
    v_W_c_x = params['W_c_x']
    v_W_r_x = params['W_r_x']
    v_v_f = params['v_f']
    v_v_r = params['v_r']
    _W_x = _cat([v_W_f_x, v_W_c_x, v_W_r_x], 0)
    _off_x = _offsets([v_W_f_x.shape[0], v_W_c_x.shape[0], v_W_r_x.shape[0]])
    _X_x = cache["inputs"]['x']
    _T, _B = _X_x.shape[0], _X_x.shape[1]
    _state0 = cache["state0"]
    _S_c = cache["saved"]['c']
    _S_c_ = cache["saved"]['c_']
    _S_f = cache["saved"]['f']
    _S_lin_c = cache["saved"]['lin_c']
    _S_r = cache["saved"]['r']
    if d_state is None:
        d_state = {}
    _carry_h = d_state['h'] if d_state.get('h') is not None else _zeros(_state0['h'].shape, _state0['h'])
    _carry_c = d_state['c'] if d_state.get('c') is not None else _zeros(_state0['c'].shape, _state0['c'])
    _grad_v_f = _zeros(v_v_f.shape, v_v_f)
    _grad_v_r = _zeros(v_v_r.shape, v_v_r)
    _GBs_x = None
    _DX_x = None
    for _t in range(_T - 1, -1, -1):
        v_x = _X_x[_t]
        v_c = _S_c[_t]
        v_c_ = _S_c_[_t]
        v_f = _S_f[_t]
        v_lin_c = _S_lin_c[_t]
        v_r = _S_r[_t]
        _q0 = 1 - v_f
        _q1 = _q0*v_f
        _q2 = 1 - v_r
        _q3 = _q2*v_r
        _p0_f_c = _q1*v_v_f
        _p1_f_lin_f = _q1
        _p2_c__f = v_c - v_lin_c
        _p3_c__lin_c = _q0
        _p4_r_c = _q3*v_v_r
        _p5_r_lin_r = _q3
        _p6_h__r = v_c_ - v_x
        _p7_h__x = _q2
        _d_h_ = _carry_h
        if d_outputs is not None:
            _d_h_ = _d_h_ + d_outputs[_t]
        _d_c_ = _carry_c
        _d_c_ = _d_c_ + _d_h_ * v_r
        _d_r = _d_h_ * _p6_h__r
        _d_x = _d_h_ * _p7_h__x
        _d_c = _d_r * _p4_r_c
        _d_lin_r = _d_r * _p5_r_lin_r
        _d_c = _d_c + _d_c_ * v_f
        _d_f = _d_c_ * _p2_c__f
        _d_lin_c = _d_c_ * _p3_c__lin_c
        _d_c = _d_c + _d_f * _p0_f_c
        _d_lin_f = _d_f * _p1_f_lin_f
        _GBs_x = _cat_put(_GBs_x, _t, [_d_lin_f, _d_lin_c, _d_lin_r], _T)
        _carry_h = _zeros(_carry_h.shape, _carry_h)
        _carry_c = _d_c
        if trace is not None:
            trace.append({'h': _carry_h, 'c': _carry_c})
        _DX_x = _put(_DX_x, _t, _d_x, _T)
    grads = {}
    d_inputs = {}
    _GBs = _GBs_x
    _m = _GBs.shape[2]
    _GW = _GBs.reshape(_T * _B, _m).T @ _X_x.reshape(_T * _B, _X_x.shape[2])
    _Gb = _GBs.sum((0, 1))
    grads['W_f_x'] = _GW[_off_x[0]:_off_x[1]]
    grads['b_f'] = _Gb[..., _off_x[0]:_off_x[1]]
    grads['W_c_x'] = _GW[_off_x[1]:_off_x[2]]
    grads['W_r_x'] = _GW[_off_x[2]:_off_x[3]]
    grads['b_r'] = _Gb[..., _off_x[2]:_off_x[3]]
    d_inputs['x'] = (_GBs.reshape(_T * _B, _m) @ _W_x).reshape(_T, _B, -1)
    _dx = _DX_x
    d_inputs['x'] = d_inputs['x'] + _dx if 'x' in d_inputs else _dx
    if 'x' not in d_inputs:
        d_inputs['x'] = _zeros(_X_x.shape, _X_x)
    _grad_v_f = _grad_v_f + ((_GBs_x)[..., _off_x[0]:_off_x[1]] * _S_c).sum((0, 1))
    _grad_v_r = _grad_v_r + ((_GBs_x)[..., _off_x[2]:_off_x[3]] * _S_c).sum((0, 1))
    grads['v_f'] = _grad_v_f
    grads['v_r'] = _grad_v_r
    return grads, d_inputs, {'h': _carry_h, 'c': _carry_c}


# shapes by size name, as the spec writes them
PARAM_SHAPES = {
    'W_f_x': ('hidden', 'hidden'),
    'W_c_x': ('hidden', 'hidden'),
    'W_r_x': ('hidden', 'hidden'),
    'b_f': ('hidden',),
    'b_r': ('hidden',),
    'v_f': ('hidden',),
    'v_r': ('hidden',),
}
BUFFERS = {}
INPUTS = ['x']
STATES = {'h': 'hidden', 'c': 'hidden'}


def step(params, x, state, t=0):
    """One step, an equation a line. x: (B, n) array for the input, or a dict for several
    inputs; returns the new state as a dict."""
    if not isinstance(x, dict):
        x = {'x': x}
    v_W_f_x = params['W_f_x']
    v_W_c_x = params['W_c_x']
    v_W_r_x = params['W_r_x']
    v_b_f = params['b_f']
    v_b_r = params['b_r']
    v_v_f = params['v_f']
    v_v_r = params['v_r']
    v_x = x['x']
    v_c = state['c']
    v_lin_f = v_x @ v_W_f_x.T + v_b_f
    v_f = _sigmoid(v_c*v_v_f + v_lin_f)
    v_lin_c = v_x @ v_W_c_x.T
    v_c_ = v_c*v_f + v_lin_c*(1 - v_f)
    v_lin_r = v_x @ v_W_r_x.T + v_b_r
    v_r = _sigmoid(v_c*v_v_r + v_lin_r)
    v_h_ = v_c_*v_r + v_x*(1 - v_r)
    return {'h': v_h_, 'c': v_c_}
