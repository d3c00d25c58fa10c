(
    'min_gru: Minimal GRU (minGRU), sequential mode\n'
    '\n'
    'Exported by lstm-verify 0.1.0 (target numpy) from spec min_gru.toml,\n'
    'sha256 cb38dc08b5ead33d5c13245b74b660551c8ba35ea3250e6b779601dedd5eb3a3.\n'
    'Regenerate: lstm-verify export min_gru --target numpy -o min_gru_numpy.py\n'
    '\n'
    'Sources: Feng, Tung, Ahmed, Bengio & Hajimirsadeghi 2024, Were RNNs All We Needed?, Section 3 (minGRU)\n'
    "Equations (lin = affine map: one weight per argument, plus a bias; h' = new value):\n"
    '    z = sigmoid(lin(x))\n'
    '    h_tilde = lin(x)\n'
    "    h' = (1 - z)*h + z*h_tilde\n"
    '\n'
    'Inputs: x (input). State: h (hidden). Output: h.\n'
    'Parameters (weights stored (out, in), as torch stores them):\n'
    '    W_z_x: (hidden, input)\n'
    '    W_h_tilde_x: (hidden, input)\n'
    '    b_z: (hidden,)\n'
    '    b_h_tilde: (hidden,)\n'
    '\n'
    'Note: The GRU with the state taken out of the update gate and the candidate, and the\n'
    "candidate's tanh dropped: z and h_tilde read only x, so h' = (1 - z)*h + z*h_tilde is a\n"
    'diagonal linear recurrence in h and the sequence is a parallel scan (cell.scan()). Sequential\n'
    "mode as the paper's Section 3 writes it. The paper's log-space parallel mode also passes\n"
    'h_tilde through g(v) = v + 1/2 for v >= 0, sigmoid(v) for v < 0, to keep it positive: that\n'
    'variant is a different function and is not this cell. Parameters: W_z_x, b_z, W_h_tilde_x,\n'
    'b_h_tilde.\n'
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
    v_W_h_tilde_x = params['W_h_tilde_x']
    v_b_z = params['b_z']
    v_b_h_tilde = params['b_h_tilde']
    _W_x = _cat([v_W_z_x, v_W_h_tilde_x], 0)
    _off_x = _offsets([v_W_z_x.shape[0], v_W_h_tilde_x.shape[0]])
    _X_x = inputs['x']
    _T, _B = _X_x.shape[0], _X_x.shape[1]
    _b_x = _cat([v_b_z, v_b_h_tilde], 0)
    _G_x = (_X_x.reshape(_T * _B, _X_x.shape[2]) @ _W_x.T + _b_x).reshape(_T, _B, -1)
    v_h = state['h']
    _out = None
    _saved = {'h_tilde': None, 'z': None} if save else None
    for _t in range(_T):
        _g_x = _G_x[_t]
        v_lin_z = _g_x[..., _off_x[0]:_off_x[1]]
        v_lin_h_tilde = _g_x[..., _off_x[1]:_off_x[2]]
        v_z = _sigmoid(v_lin_z)
        v_h_tilde = v_lin_h_tilde
        v_h_ = v_h*(1 - v_z) + v_h_tilde*v_z
        if save:
            _saved['h_tilde'] = _put(_saved['h_tilde'], _t, v_h_tilde, _T)
            _saved['z'] = _put(_saved['z'], _t, v_z, _T)
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
    v_W_h_tilde_x = params['W_h_tilde_x']
    _W_x = _cat([v_W_z_x, v_W_h_tilde_x], 0)
    _off_x = _offsets([v_W_z_x.shape[0], v_W_h_tilde_x.shape[0]])
    _X_x = cache["inputs"]['x']
    _T, _B = _X_x.shape[0], _X_x.shape[1]
    _state0 = cache["state0"]
    _S_h = cache["saved"]['h']
    _S_h_tilde = cache["saved"]['h_tilde']
    _S_z = cache["saved"]['z']
    if d_state is None:
        d_state = {}
    _carry_h = d_state['h'] if d_state.get('h') is not None else _zeros(_state0['h'].shape, _state0['h'])
    _GBs_x = None
    for _t in range(_T - 1, -1, -1):
        v_h = _S_h[_t]
        v_h_tilde = _S_h_tilde[_t]
        v_z = _S_z[_t]
        _q0 = 1 - v_z
        _p0_z_lin_z = _q0*v_z
        _p1_h__h = _q0
        _p2_h__z = -v_h + v_h_tilde
        _d_h_ = _carry_h
        if d_outputs is not None:
            _d_h_ = _d_h_ + d_outputs[_t]
        _d_h = _d_h_ * _p1_h__h
        _d_h_tilde = _d_h_ * v_z
        _d_z = _d_h_ * _p2_h__z
        _d_lin_h_tilde = _d_h_tilde
        _d_lin_z = _d_z * _p0_z_lin_z
        _GBs_x = _cat_put(_GBs_x, _t, [_d_lin_z, _d_lin_h_tilde], _T)
        _carry_h = _d_h
        if trace is not None:
            trace.append({'h': _carry_h})
    grads = {}
    d_inputs = {}
    _GBs = _GBs_x
    _m = _GBs.shape[2]
    _GW = _GBs.reshape(_T * _B, _m).T @ _X_x.reshape(_T * _B, _X_x.shape[2])
    _Gb = _GBs.sum((0, 1))
    grads['W_z_x'] = _GW[_off_x[0]:_off_x[1]]
    grads['b_z'] = _Gb[..., _off_x[0]:_off_x[1]]
    grads['W_h_tilde_x'] = _GW[_off_x[1]:_off_x[2]]
    grads['b_h_tilde'] = _Gb[..., _off_x[1]:_off_x[2]]
    d_inputs['x'] = (_GBs.reshape(_T * _B, _m) @ _W_x).reshape(_T, _B, -1)
    if 'x' not in d_inputs:
        d_inputs['x'] = _zeros(_X_x.shape, _X_x)
    return grads, d_inputs, {'h': _carry_h}


# shapes by size name, as the spec writes them
PARAM_SHAPES = {
    'W_z_x': ('hidden', 'input'),
    'W_h_tilde_x': ('hidden', 'input'),
    'b_z': ('hidden',),
    'b_h_tilde': ('hidden',),
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
    v_W_h_tilde_x = params['W_h_tilde_x']
    v_b_z = params['b_z']
    v_b_h_tilde = params['b_h_tilde']
    v_x = x['x']
    v_h = state['h']
    v_lin_z = v_x @ v_W_z_x.T + v_b_z
    v_z = _sigmoid(v_lin_z)
    v_lin_h_tilde = v_x @ v_W_h_tilde_x.T + v_b_h_tilde
    v_h_tilde = v_lin_h_tilde
    v_h_ = v_h*(1 - v_z) + v_h_tilde*v_z
    return {'h': v_h_}
