(
    'mut3: MUT3 (architecture search)\n'
    '\n'
    'Exported by lstm-verify 0.1.0 (target numpy) from spec mut3.toml,\n'
    'sha256 f9b7970d8cd482decc71fa013ea10d4163615bd91e4fc4ed6e3c038e09a64d49.\n'
    'Regenerate: lstm-verify export mut3 --target numpy -o mut3_numpy.py\n'
    '\n'
    'Sources: Jozefowicz, Zaremba & Sutskever 2015, An Empirical Exploration of Recurrent Network Architectures, MUT3\n'
    "Equations (lin = affine map: one weight per argument, plus a bias; h' = new value):\n"
    '    z = sigmoid(lin(x, tanh(h)))\n'
    '    r = sigmoid(lin(x, h))\n'
    "    h' = tanh(lin(r*h, x))*z + h*(1 - z)\n"
    '\n'
    'Inputs: x (input). State: h (hidden). Output: h.\n'
    'Parameters (weights stored (out, in), as torch stores them):\n'
    '    W_z_x: (hidden, input)\n'
    '    W_z_h: (hidden, hidden)\n'
    '    W_r_x: (hidden, input)\n'
    '    W_r_h: (hidden, hidden)\n'
    '    W_h_h: (hidden, hidden)\n'
    '    W_h_x: (hidden, input)\n'
    '    b_z: (hidden,)\n'
    '    b_r: (hidden,)\n'
    '    b_h: (hidden,)\n'
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
    v_W_z_x = params['W_z_x']
    v_W_z_h = params['W_z_h']
    v_W_r_x = params['W_r_x']
    v_W_r_h = params['W_r_h']
    v_W_h_h = params['W_h_h']
    v_W_h_x = params['W_h_x']
    v_b_z = params['b_z']
    v_b_r = params['b_r']
    v_b_h = params['b_h']
    _W_x = _cat([v_W_r_x, v_W_z_x, v_W_h_x], 0)
    _off_x = _offsets([v_W_r_x.shape[0], v_W_z_x.shape[0], v_W_h_x.shape[0]])
    _W_h = _cat([v_W_r_h], 0)
    _W_z_h_in = _cat([v_W_z_h], 0)
    _W_h_h_in = _cat([v_W_h_h], 0)
    _X_x = inputs['x']
    _T, _B = _X_x.shape[0], _X_x.shape[1]
    _b_x = _cat([v_b_r, v_b_z, v_b_h], 0)
    _G_x = (_X_x.reshape(_T * _B, _X_x.shape[2]) @ _W_x.T + _b_x).reshape(_T, _B, -1)
    _mm_h = _linear(_W_h, _B, _T)
    _mm_z_h_in = _linear(_W_z_h_in, _B, _T)
    _mm_h_h_in = _linear(_W_h_h_in, _B, _T)
    v_h = state['h']
    _out = None
    _saved = {'h_h_in': None, 'lin_h': None, 'r': None, 'z': None, 'z_h_in': None} if save else None
    for _t in range(_T):
        _z_h = _mm_h(v_h, _G_x[_t][..., _off_x[0]:_off_x[1]])
        v_lin_r = _z_h
        v_z_h_in = numpy.tanh(v_h)
        v_r = _sigmoid(v_lin_r)
        v_h_h_in = v_h*v_r
        _g_x = _G_x[_t]
        _g_z_h_in = _mm_z_h_in(v_z_h_in)
        v_lin_z = _g_x[..., _off_x[1]:_off_x[2]] + _g_z_h_in
        _g_h_h_in = _mm_h_h_in(v_h_h_in)
        v_lin_h = _g_h_h_in + _g_x[..., _off_x[2]:_off_x[3]]
        v_z = _sigmoid(v_lin_z)
        v_h_ = v_h*(1 - v_z) + v_z*numpy.tanh(v_lin_h)
        if save:
            _saved['h_h_in'] = _put(_saved['h_h_in'], _t, v_h_h_in, _T)
            _saved['lin_h'] = _put(_saved['lin_h'], _t, v_lin_h, _T)
            _saved['r'] = _put(_saved['r'], _t, v_r, _T)
            _saved['z'] = _put(_saved['z'], _t, v_z, _T)
            _saved['z_h_in'] = _put(_saved['z_h_in'], _t, v_z_h_in, _T)
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
    v_W_z_x = params['W_z_x']
    v_W_z_h = params['W_z_h']
    v_W_r_x = params['W_r_x']
    v_W_r_h = params['W_r_h']
    v_W_h_h = params['W_h_h']
    v_W_h_x = params['W_h_x']
    _W_x = _cat([v_W_r_x, v_W_z_x, v_W_h_x], 0)
    _off_x = _offsets([v_W_r_x.shape[0], v_W_z_x.shape[0], v_W_h_x.shape[0]])
    _W_h = _cat([v_W_r_h], 0)
    _W_z_h_in = _cat([v_W_z_h], 0)
    _W_h_h_in = _cat([v_W_h_h], 0)
    _X_x = cache["inputs"]['x']
    _T, _B = _X_x.shape[0], _X_x.shape[1]
    _state0 = cache["state0"]
    _S_h = cache["saved"]['h']
    _S_h_h_in = cache["saved"]['h_h_in']
    _S_lin_h = cache["saved"]['lin_h']
    _S_r = cache["saved"]['r']
    _S_z = cache["saved"]['z']
    _S_z_h_in = cache["saved"]['z_h_in']
    if d_state is None:
        d_state = {}
    _carry_h = d_state['h'] if d_state.get('h') is not None else _zeros(_state0['h'].shape, _state0['h'])
    _GBs_x = None
    _mmT_h = _linear(_W_h.T, _B, _T)
    _GBs_z_h_in = None
    _mmT_z_h_in = _linear(_W_z_h_in.T, _B, _T)
    _GBs_h_h_in = None
    _mmT_h_h_in = _linear(_W_h_h_in.T, _B, _T)
    for _t in range(_T - 1, -1, -1):
        v_h = _S_h[_t]
        v_lin_h = _S_lin_h[_t]
        v_r = _S_r[_t]
        v_z = _S_z[_t]
        v_z_h_in = _S_z_h_in[_t]
        _q0 = 1 - v_z
        _q1 = numpy.tanh(v_lin_h)
        _p0_z_h_in_h = 1 - v_z_h_in**2
        _p1_z_lin_z = _q0*v_z
        _p2_r_lin_r = v_r*(1 - v_r)
        _p3_h__h = _q0
        _p4_h__lin_h = v_z*(1 - _q1**2)
        _p5_h__z = _q1 - v_h
        _d_h_ = _carry_h
        if d_outputs is not None:
            _d_h_ = _d_h_ + d_outputs[_t]
        _d_h = _d_h_ * _p3_h__h
        _d_lin_h = _d_h_ * _p4_h__lin_h
        _d_z = _d_h_ * _p5_h__z
        _d_lin_z = _d_z * _p1_z_lin_z
        _GBs_h_h_in = _cat_put(_GBs_h_h_in, _t, [_d_lin_h], _T)
        _gb_h_h_in = _GBs_h_h_in[_t]
        _d_h_h_in = _mmT_h_h_in(_gb_h_h_in)
        _d_h = _d_h + _d_h_h_in * v_r
        _d_r = _d_h_h_in * v_h
        _d_lin_r = _d_r * _p2_r_lin_r
        _GBs_z_h_in = _cat_put(_GBs_z_h_in, _t, [_d_lin_z], _T)
        _gb_z_h_in = _GBs_z_h_in[_t]
        _d_z_h_in = _mmT_z_h_in(_gb_z_h_in)
        _d_h = _d_h + _d_z_h_in * _p0_z_h_in_h
        _GBs_x = _cat_put(_GBs_x, _t, [_d_lin_r, _d_lin_z, _d_lin_h], _T)
        _gb_x = _GBs_x[_t]
        _gb_h = _gb_x[..., _off_x[0]:_off_x[1]]
        _d_h = _d_h + _mmT_h(_gb_h)
        _carry_h = _d_h
        if trace is not None:
            trace.append({'h': _carry_h})
    grads = {}
    d_inputs = {}
    _GBs = _GBs_x
    _m = _GBs.shape[2]
    _GW = _GBs.reshape(_T * _B, _m).T @ _X_x.reshape(_T * _B, _X_x.shape[2])
    _Gb = _GBs.sum((0, 1))
    grads['W_r_x'] = _GW[_off_x[0]:_off_x[1]]
    grads['b_r'] = _Gb[..., _off_x[0]:_off_x[1]]
    grads['W_z_x'] = _GW[_off_x[1]:_off_x[2]]
    grads['b_z'] = _Gb[..., _off_x[1]:_off_x[2]]
    grads['W_h_x'] = _GW[_off_x[2]:_off_x[3]]
    d_inputs['x'] = (_GBs.reshape(_T * _B, _m) @ _W_x).reshape(_T, _B, -1)
    _GBs = _GBs_x[..., _off_x[0]:_off_x[1]]
    _m = _GBs.shape[2]
    _GW = _GBs.reshape(_T * _B, _m).T @ _S_h.reshape(_T * _B, _S_h.shape[2])
    grads['W_r_h'] = _GW
    _GBs = _GBs_z_h_in
    _m = _GBs.shape[2]
    _GW = _GBs.reshape(_T * _B, _m).T @ _S_z_h_in.reshape(_T * _B, _S_z_h_in.shape[2])
    grads['W_z_h'] = _GW
    _GBs = _GBs_h_h_in
    _m = _GBs.shape[2]
    _GW = _GBs.reshape(_T * _B, _m).T @ _S_h_h_in.reshape(_T * _B, _S_h_h_in.shape[2])
    _Gb = _GBs.sum((0, 1))
    grads['W_h_h'] = _GW
    grads['b_h'] = _Gb
    if 'x' not in d_inputs:
        d_inputs['x'] = _zeros(_X_x.shape, _X_x)
    return grads, d_inputs, {'h': _carry_h}


# shapes by size name, as the spec writes them
PARAM_SHAPES = {
    'W_z_x': ('hidden', 'input'),
    'W_z_h': ('hidden', 'hidden'),
    'W_r_x': ('hidden', 'input'),
    'W_r_h': ('hidden', 'hidden'),
    'W_h_h': ('hidden', 'hidden'),
    'W_h_x': ('hidden', 'input'),
    'b_z': ('hidden',),
    'b_r': ('hidden',),
    'b_h': ('hidden',),
}
BUFFERS = {}
INPUTS = ['x']
STATES = {'h': 'hidden'}


def step(params, x, state, t=0):
    """One step, an equation a line. x: (B, n) array for the input, or a dict for several
    inputs; returns the new state as a dict."""
    if not isinstance(x, dict):
        x = {'x': x}
    v_W_z_x = params['W_z_x']
    v_W_z_h = params['W_z_h']
    v_W_r_x = params['W_r_x']
    v_W_r_h = params['W_r_h']
    v_W_h_h = params['W_h_h']
    v_W_h_x = params['W_h_x']
    v_b_z = params['b_z']
    v_b_r = params['b_r']
    v_b_h = params['b_h']
    v_x = x['x']
    v_h = state['h']
    v_z_h_in = numpy.tanh(v_h)
    v_lin_z = v_x @ v_W_z_x.T + v_z_h_in @ v_W_z_h.T + v_b_z
    v_z = _sigmoid(v_lin_z)
    v_lin_r = v_x @ v_W_r_x.T + v_h @ v_W_r_h.T + v_b_r
    v_r = _sigmoid(v_lin_r)
    v_h_h_in = v_h*v_r
    v_lin_h = v_h_h_in @ v_W_h_h.T + v_x @ v_W_h_x.T + v_b_h
    v_h_ = v_h*(1 - v_z) + v_z*numpy.tanh(v_lin_h)
    return {'h': v_h_}
