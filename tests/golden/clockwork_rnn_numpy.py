(
    'clockwork_rnn: Clockwork RNN\n'
    '\n'
    'Exported by lstm-verify 0.1.0 (target numpy) from spec clockwork_rnn.toml,\n'
    'sha256 847f35468a6f8ddfd2f3d9bdc69531f654dc1473f5fdfadb22293fa07bfcf4a8.\n'
    'Regenerate: lstm-verify export clockwork_rnn --target numpy -o clockwork_rnn_numpy.py\n'
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
    _G_x = (_X_x.reshape(_T * _B, _X_x.shape[2]) @ _W_x.T + _b_x).reshape(_T, _B, -1)
    _mm_h = _linear(_W_h, _B, _T)
    v_h = state['h']
    _out = None
    _saved = {'lin_h': None} if save else None
    for _t in range(_T):
        v_t = t0 + _t
        _z_h = _mm_h(v_h, _G_x[_t])
        v_lin_h = _z_h
        _f0_0 = _tick(v_t, v_period)
        v_h_ = _f0_0*numpy.tanh(v_lin_h) + v_h*(1 - _f0_0)
        if save:
            _saved['lin_h'] = _put(_saved['lin_h'], _t, v_lin_h, _T)
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
    for _t in range(_T - 1, -1, -1):
        v_t = t0 + _t
        v_lin_h = _S_lin_h[_t]
        _q0 = _tick(v_t, v_period)
        _p0_h__h = 1 - _q0
        _p1_h__lin_h = _q0*(1 - numpy.tanh(v_lin_h)**2)
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
    v_lin_h = v_x @ v_W_h_x.T + v_h @ v_W_h_h.T + v_b_h
    v_h_ = v_h*(1 - _tick(v_t, v_period)) + numpy.tanh(v_lin_h)*_tick(v_t, v_period)
    return {'h': v_h_}
