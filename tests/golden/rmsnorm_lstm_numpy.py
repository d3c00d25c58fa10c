(
    'rmsnorm_lstm: RMS-normalised LSTM\n'
    '\n'
    'Exported by lstm-verify 0.1.0 (target numpy) from spec rmsnorm_lstm.toml,\n'
    'sha256 0a1b2bfdcb6eca0e763eec8f760205799bf8c853f3f3fd0981653bb3e8e08eba.\n'
    'Regenerate: lstm-verify export rmsnorm_lstm --target numpy -o rmsnorm_lstm_numpy.py\n'
    '\n'
    'Sources: Zhang & Sennrich 2019, Root Mean Square Layer Normalization, eq. 4 (RMSNorm in place of LayerNorm); Ba, Kiros & Hinton 2016, Layer Normalization, eq. 20-22 (where the LSTM is normalised)\n'
    "Equations (lin = affine map: one weight per argument, plus a bias; h' = new value):\n"
    '    ix = lin(x, bias=false)\n'
    '    fx = lin(x, bias=false)\n'
    '    gx = lin(x, bias=false)\n'
    '    ox = lin(x, bias=false)\n'
    '    ih = lin(h, bias=false)\n'
    '    fh = lin(h, bias=false)\n'
    '    gh = lin(h, bias=false)\n'
    '    oh = lin(h, bias=false)\n'
    '    rx = sqrt(mean(ix**2, fx**2, gx**2, ox**2) + 1e-5)\n'
    '    rh = sqrt(mean(ih**2, fh**2, gh**2, oh**2) + 1e-5)\n'
    '    i = sigmoid(a_ix*ix/rx + a_ih*ih/rh + b_i)\n'
    '    f = sigmoid(a_fx*fx/rx + a_fh*fh/rh + b_f)\n'
    '    g = tanh(a_gx*gx/rx + a_gh*gh/rh + b_g)\n'
    '    o = sigmoid(a_ox*ox/rx + a_oh*oh/rh + b_o)\n'
    "    c' = f*c + i*g\n"
    "    h' = o*tanh(rmsnorm(c', a_c, 1e-5))\n"
    '\n'
    'Inputs: x (input). State: h (hidden), c (hidden). Output: h.\n'
    'Parameters (weights stored (out, in), as torch stores them):\n'
    '    W_ix_x: (hidden, input)\n'
    '    W_fx_x: (hidden, input)\n'
    '    W_gx_x: (hidden, input)\n'
    '    W_ox_x: (hidden, input)\n'
    '    W_ih_h: (hidden, hidden)\n'
    '    W_fh_h: (hidden, hidden)\n'
    '    W_gh_h: (hidden, hidden)\n'
    '    W_oh_h: (hidden, hidden)\n'
    '    a_ix: (hidden,)\n'
    '    a_fx: (hidden,)\n'
    '    a_gx: (hidden,)\n'
    '    a_ox: (hidden,)\n'
    '    a_ih: (hidden,)\n'
    '    a_fh: (hidden,)\n'
    '    a_gh: (hidden,)\n'
    '    a_oh: (hidden,)\n'
    '    b_i: (hidden,)\n'
    '    b_f: (hidden,)\n'
    '    b_g: (hidden,)\n'
    '    b_o: (hidden,)\n'
    '    a_c: (hidden,)\n'
    '\n'
    'Note: Layer normalisation of layernorm_lstm with RMSNorm in its place: no centring,\n'
    'x/sqrt(mean(x**2) + eps), each unit with its own gain. The input-to-hidden and hidden-to-hidden\n'
    'pre-activations of all four gates are each normalised as one vector of 4*hidden units; the new\n'
    'cell over its hidden units. eps = 1e-5 inside the square root.\n'
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
    v_W_ix_x = params['W_ix_x']
    v_W_fx_x = params['W_fx_x']
    v_W_gx_x = params['W_gx_x']
    v_W_ox_x = params['W_ox_x']
    v_W_ih_h = params['W_ih_h']
    v_W_fh_h = params['W_fh_h']
    v_W_gh_h = params['W_gh_h']
    v_W_oh_h = params['W_oh_h']
    v_a_ix = params['a_ix']
    v_a_fx = params['a_fx']
    v_a_gx = params['a_gx']
    v_a_ox = params['a_ox']
    v_a_ih = params['a_ih']
    v_a_fh = params['a_fh']
    v_a_gh = params['a_gh']
    v_a_oh = params['a_oh']
    v_b_i = params['b_i']
    v_b_f = params['b_f']
    v_b_g = params['b_g']
    v_b_o = params['b_o']
    v_a_c = params['a_c']
    _W_x = _cat([v_W_ix_x, v_W_fx_x, v_W_gx_x, v_W_ox_x], 0)
    _off_x = _offsets([v_W_ix_x.shape[0], v_W_fx_x.shape[0], v_W_gx_x.shape[0], v_W_ox_x.shape[0]])
    _W_h = _cat([v_W_ih_h, v_W_fh_h, v_W_gh_h, v_W_oh_h], 0)
    _off_h = _offsets([v_W_ih_h.shape[0], v_W_fh_h.shape[0], v_W_gh_h.shape[0], v_W_oh_h.shape[0]])
    _X_x = inputs['x']
    _T, _B = _X_x.shape[0], _X_x.shape[1]
    _G_x = (_X_x.reshape(_T * _B, _X_x.shape[2]) @ _W_x.T).reshape(_T, _B, -1)
    _mm_h = _linear(_W_h, _B, _T)
    v_h = state['h']
    v_c = state['c']
    _out = None
    _saved = {'c_': None, 'f': None, 'fh': None, 'fx': None, 'g': None, 'gh': None, 'gx': None, 'i': None, 'ih': None, 'ix': None, 'mean_h': None, 'o': None, 'oh': None, 'ox': None, 'rh': None, 'rx': None} if save else None
    _n_mean_rx = state['h'].shape[-1] + state['h'].shape[-1] + state['h'].shape[-1] + state['h'].shape[-1]
    _n_mean_rh = state['h'].shape[-1] + state['h'].shape[-1] + state['h'].shape[-1] + state['h'].shape[-1]
    _n_mean_h = state['h'].shape[-1]
    for _t in range(_T):
        _g_x = _G_x[_t]
        v_lin_ix = _g_x[..., _off_x[0]:_off_x[1]]
        v_lin_fx = _g_x[..., _off_x[1]:_off_x[2]]
        v_lin_gx = _g_x[..., _off_x[2]:_off_x[3]]
        v_lin_ox = _g_x[..., _off_x[3]:_off_x[4]]
        _g_h = _mm_h(v_h)
        v_lin_ih = _g_h[..., _off_h[0]:_off_h[1]]
        v_lin_fh = _g_h[..., _off_h[1]:_off_h[2]]
        v_lin_gh = _g_h[..., _off_h[2]:_off_h[3]]
        v_lin_oh = _g_h[..., _off_h[3]:_off_h[4]]
        v_ix = v_lin_ix
        v_fx = v_lin_fx
        v_gx = v_lin_gx
        v_ox = v_lin_ox
        v_ih = v_lin_ih
        v_fh = v_lin_fh
        v_gh = v_lin_gh
        v_oh = v_lin_oh
        v_mean_rx_in0 = v_ix**2
        v_mean_rx_in1 = v_fx**2
        v_mean_rx_in2 = v_gx**2
        v_mean_rx_in3 = v_ox**2
        v_mean_rx = (_rsum(v_mean_rx_in0) + _rsum(v_mean_rx_in1) + _rsum(v_mean_rx_in2) + _rsum(v_mean_rx_in3)) / _n_mean_rx
        v_rx = numpy.sqrt(v_mean_rx + 1/100000)
        v_mean_rh_in0 = v_ih**2
        v_mean_rh_in1 = v_fh**2
        v_mean_rh_in2 = v_gh**2
        v_mean_rh_in3 = v_oh**2
        v_mean_rh = (_rsum(v_mean_rh_in0) + _rsum(v_mean_rh_in1) + _rsum(v_mean_rh_in2) + _rsum(v_mean_rh_in3)) / _n_mean_rh
        _f2_1 = 1/v_rx
        v_rh = numpy.sqrt(v_mean_rh + 1/100000)
        _f2_0 = 1/v_rh
        v_i = _sigmoid(_f2_0*v_a_ih*v_ih + _f2_1*v_a_ix*v_ix + v_b_i)
        v_f = _sigmoid(_f2_0*v_a_fh*v_fh + _f2_1*v_a_fx*v_fx + v_b_f)
        v_g = numpy.tanh(_f2_0*v_a_gh*v_gh + _f2_1*v_a_gx*v_gx + v_b_g)
        v_o = _sigmoid(_f2_0*v_a_oh*v_oh + _f2_1*v_a_ox*v_ox + v_b_o)
        v_c_ = v_c*v_f + v_g*v_i
        v_mean_h_in0 = v_c_**2
        v_mean_h = (_rsum(v_mean_h_in0)) / _n_mean_h
        v_h_ = v_o*numpy.tanh(v_a_c*v_c_/numpy.sqrt(v_mean_h + 1/100000))
        if save:
            _saved['c_'] = _put(_saved['c_'], _t + 1, v_c_, _T + 1)
            _saved['f'] = _put(_saved['f'], _t, v_f, _T)
            _saved['fh'] = _put(_saved['fh'], _t, v_fh, _T)
            _saved['fx'] = _put(_saved['fx'], _t, v_fx, _T)
            _saved['g'] = _put(_saved['g'], _t, v_g, _T)
            _saved['gh'] = _put(_saved['gh'], _t, v_gh, _T)
            _saved['gx'] = _put(_saved['gx'], _t, v_gx, _T)
            _saved['i'] = _put(_saved['i'], _t, v_i, _T)
            _saved['ih'] = _put(_saved['ih'], _t, v_ih, _T)
            _saved['ix'] = _put(_saved['ix'], _t, v_ix, _T)
            _saved['mean_h'] = _put(_saved['mean_h'], _t, v_mean_h, _T)
            _saved['o'] = _put(_saved['o'], _t, v_o, _T)
            _saved['oh'] = _put(_saved['oh'], _t, v_oh, _T)
            _saved['ox'] = _put(_saved['ox'], _t, v_ox, _T)
            _saved['rh'] = _put(_saved['rh'], _t, v_rh, _T)
            _saved['rx'] = _put(_saved['rx'], _t, v_rx, _T)
        v_h = v_h_
        v_c = v_c_
        _out = _put(_out, _t, v_h, _T)
    cache = None
    if save:
        _saved['h'] = _cat([state['h'][None], _out[:-1]], 0)
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
    v_W_ix_x = params['W_ix_x']
    v_W_fx_x = params['W_fx_x']
    v_W_gx_x = params['W_gx_x']
    v_W_ox_x = params['W_ox_x']
    v_W_ih_h = params['W_ih_h']
    v_W_fh_h = params['W_fh_h']
    v_W_gh_h = params['W_gh_h']
    v_W_oh_h = params['W_oh_h']
    v_a_ix = params['a_ix']
    v_a_fx = params['a_fx']
    v_a_gx = params['a_gx']
    v_a_ox = params['a_ox']
    v_a_ih = params['a_ih']
    v_a_fh = params['a_fh']
    v_a_gh = params['a_gh']
    v_a_oh = params['a_oh']
    v_b_i = params['b_i']
    v_b_f = params['b_f']
    v_b_g = params['b_g']
    v_b_o = params['b_o']
    v_a_c = params['a_c']
    _W_x = _cat([v_W_ix_x, v_W_fx_x, v_W_gx_x, v_W_ox_x], 0)
    _off_x = _offsets([v_W_ix_x.shape[0], v_W_fx_x.shape[0], v_W_gx_x.shape[0], v_W_ox_x.shape[0]])
    _W_h = _cat([v_W_ih_h, v_W_fh_h, v_W_gh_h, v_W_oh_h], 0)
    _off_h = _offsets([v_W_ih_h.shape[0], v_W_fh_h.shape[0], v_W_gh_h.shape[0], v_W_oh_h.shape[0]])
    _X_x = cache["inputs"]['x']
    _T, _B = _X_x.shape[0], _X_x.shape[1]
    _state0 = cache["state0"]
    _S_c = cache["saved"]['c']
    _S_c_ = cache["saved"]['c_']
    _S_f = cache["saved"]['f']
    _S_fh = cache["saved"]['fh']
    _S_fx = cache["saved"]['fx']
    _S_g = cache["saved"]['g']
    _S_gh = cache["saved"]['gh']
    _S_gx = cache["saved"]['gx']
    _S_h = cache["saved"]['h']
    _S_i = cache["saved"]['i']
    _S_ih = cache["saved"]['ih']
    _S_ix = cache["saved"]['ix']
    _S_mean_h = cache["saved"]['mean_h']
    _S_o = cache["saved"]['o']
    _S_oh = cache["saved"]['oh']
    _S_ox = cache["saved"]['ox']
    _S_rh = cache["saved"]['rh']
    _S_rx = cache["saved"]['rx']
    if d_state is None:
        d_state = {}
    _carry_h = d_state['h'] if d_state.get('h') is not None else _zeros(_state0['h'].shape, _state0['h'])
    _carry_c = d_state['c'] if d_state.get('c') is not None else _zeros(_state0['c'].shape, _state0['c'])
    _grad_a_ix = _zeros(v_a_ix.shape, v_a_ix)
    _grad_a_fx = _zeros(v_a_fx.shape, v_a_fx)
    _grad_a_gx = _zeros(v_a_gx.shape, v_a_gx)
    _grad_a_ox = _zeros(v_a_ox.shape, v_a_ox)
    _grad_a_ih = _zeros(v_a_ih.shape, v_a_ih)
    _grad_a_fh = _zeros(v_a_fh.shape, v_a_fh)
    _grad_a_gh = _zeros(v_a_gh.shape, v_a_gh)
    _grad_a_oh = _zeros(v_a_oh.shape, v_a_oh)
    _grad_b_i = _zeros(v_b_i.shape, v_b_i)
    _grad_b_f = _zeros(v_b_f.shape, v_b_f)
    _grad_b_g = _zeros(v_b_g.shape, v_b_g)
    _grad_b_o = _zeros(v_b_o.shape, v_b_o)
    _grad_a_c = _zeros(v_a_c.shape, v_a_c)
    _GBs_x = None
    _GBs_h = None
    _mmT_h = _linear(_W_h.T, _B, _T)
    _n_mean_rx = _state0['h'].shape[-1] + _state0['h'].shape[-1] + _state0['h'].shape[-1] + _state0['h'].shape[-1]
    _n_mean_rh = _state0['h'].shape[-1] + _state0['h'].shape[-1] + _state0['h'].shape[-1] + _state0['h'].shape[-1]
    _n_mean_h = _state0['h'].shape[-1]
    for _t in range(_T - 1, -1, -1):
        v_c = _S_c[_t]
        v_c_ = _S_c_[_t]
        v_f = _S_f[_t]
        v_fh = _S_fh[_t]
        v_fx = _S_fx[_t]
        v_g = _S_g[_t]
        v_gh = _S_gh[_t]
        v_gx = _S_gx[_t]
        v_i = _S_i[_t]
        v_ih = _S_ih[_t]
        v_ix = _S_ix[_t]
        v_mean_h = _S_mean_h[_t]
        v_o = _S_o[_t]
        v_oh = _S_oh[_t]
        v_ox = _S_ox[_t]
        v_rh = _S_rh[_t]
        v_rx = _S_rx[_t]
        _q0 = 1/_n_mean_rx
        _q1 = 1/v_rx
        _q2 = 1/_n_mean_rh
        _q3 = 1/v_rh
        _q4 = v_i*(1 - v_i)
        _q5 = _q3*_q4
        _q6 = _q1*_q4
        _q7 = 1/(v_rh**2)
        _q8 = 1/(v_rx**2)
        _q9 = v_f*(1 - v_f)
        _q10 = _q3*_q9
        _q11 = _q1*_q9
        _q12 = 1 - v_g**2
        _q13 = _q12*_q3
        _q14 = _q1*_q12
        _q15 = v_o*(1 - v_o)
        _q16 = _q15*_q3
        _q17 = _q1*_q15
        _q18 = v_mean_h + 1/100000
        _q19 = 1/numpy.sqrt(_q18)
        _q20 = _q19*v_c_
        _q21 = numpy.tanh(_q20*v_a_c)
        _q22 = v_o*(1 - _q21**2)
        _q23 = _q22*v_a_c
        _p0_mean_rx_in0_ix = 2*v_ix
        _p1_mean_rx_in1_fx = 2*v_fx
        _p2_mean_rx_in2_gx = 2*v_gx
        _p3_mean_rx_in3_ox = 2*v_ox
        _p4_mean_rx_mean_rx_in0 = _q0
        _p5_mean_rx_mean_rx_in1 = _q0
        _p6_mean_rx_mean_rx_in2 = _q0
        _p7_mean_rx_mean_rx_in3 = _q0
        _p8_rx_mean_rx = (1/2)*_q1
        _p9_mean_rh_in0_ih = 2*v_ih
        _p10_mean_rh_in1_fh = 2*v_fh
        _p11_mean_rh_in2_gh = 2*v_gh
        _p12_mean_rh_in3_oh = 2*v_oh
        _p13_mean_rh_mean_rh_in0 = _q2
        _p14_mean_rh_mean_rh_in1 = _q2
        _p15_mean_rh_mean_rh_in2 = _q2
        _p16_mean_rh_mean_rh_in3 = _q2
        _p17_rh_mean_rh = (1/2)*_q3
        _p18_i_a_ih = _q5*v_ih
        _p19_i_a_ix = _q6*v_ix
        _p20_i_b_i = _q4
        _p21_i_ih = _q5*v_a_ih
        _p22_i_ix = _q6*v_a_ix
        _p23_i_rh = -_q4*_q7*v_a_ih*v_ih
        _p24_i_rx = -_q4*_q8*v_a_ix*v_ix
        _p25_f_a_fh = _q10*v_fh
        _p26_f_a_fx = _q11*v_fx
        _p27_f_b_f = _q9
        _p28_f_fh = _q10*v_a_fh
        _p29_f_fx = _q11*v_a_fx
        _p30_f_rh = -_q7*_q9*v_a_fh*v_fh
        _p31_f_rx = -_q8*_q9*v_a_fx*v_fx
        _p32_g_a_gh = _q13*v_gh
        _p33_g_a_gx = _q14*v_gx
        _p34_g_b_g = _q12
        _p35_g_gh = _q13*v_a_gh
        _p36_g_gx = _q14*v_a_gx
        _p37_g_rh = -_q12*_q7*v_a_gh*v_gh
        _p38_g_rx = -_q12*_q8*v_a_gx*v_gx
        _p39_o_a_oh = _q16*v_oh
        _p40_o_a_ox = _q17*v_ox
        _p41_o_b_o = _q15
        _p42_o_oh = _q16*v_a_oh
        _p43_o_ox = _q17*v_a_ox
        _p44_o_rh = -_q15*_q7*v_a_oh*v_oh
        _p45_o_rx = -_q15*_q8*v_a_ox*v_ox
        _p46_mean_h_in0_c_ = 2*v_c_
        _p47_mean_h_mean_h_in0 = 1/_n_mean_h
        _p48_h__a_c = _q20*_q22
        _p49_h__c_ = _q19*_q23
        _p50_h__mean_h = -1/2*_q23*v_c_/(numpy.sqrt(_q18)*_q18)
        _p51_h__o = _q21
        _d_h_ = _carry_h
        if d_outputs is not None:
            _d_h_ = _d_h_ + d_outputs[_t]
        _d_c_ = _carry_c
        _grad_a_c = _grad_a_c + (_d_h_ * _p48_h__a_c).sum(0)
        _d_c_ = _d_c_ + _d_h_ * _p49_h__c_
        _d_mean_h = _rsum(_d_h_ * _p50_h__mean_h)
        _d_o = _d_h_ * _p51_h__o
        _d_mean_h_in0 = _bcast(_d_mean_h * _p47_mean_h_mean_h_in0, _state0['h'].shape[-1])
        _d_c_ = _d_c_ + _d_mean_h_in0 * _p46_mean_h_in0_c_
        _d_c = _d_c_ * v_f
        _d_f = _d_c_ * v_c
        _d_g = _d_c_ * v_i
        _d_i = _d_c_ * v_g
        _grad_a_oh = _grad_a_oh + (_d_o * _p39_o_a_oh).sum(0)
        _grad_a_ox = _grad_a_ox + (_d_o * _p40_o_a_ox).sum(0)
        _grad_b_o = _grad_b_o + (_d_o * _p41_o_b_o).sum(0)
        _d_oh = _d_o * _p42_o_oh
        _d_ox = _d_o * _p43_o_ox
        _d_rh = _rsum(_d_o * _p44_o_rh)
        _d_rx = _rsum(_d_o * _p45_o_rx)
        _grad_a_gh = _grad_a_gh + (_d_g * _p32_g_a_gh).sum(0)
        _grad_a_gx = _grad_a_gx + (_d_g * _p33_g_a_gx).sum(0)
        _grad_b_g = _grad_b_g + (_d_g * _p34_g_b_g).sum(0)
        _d_gh = _d_g * _p35_g_gh
        _d_gx = _d_g * _p36_g_gx
        _d_rh = _d_rh + _rsum(_d_g * _p37_g_rh)
        _d_rx = _d_rx + _rsum(_d_g * _p38_g_rx)
        _grad_a_fh = _grad_a_fh + (_d_f * _p25_f_a_fh).sum(0)
        _grad_a_fx = _grad_a_fx + (_d_f * _p26_f_a_fx).sum(0)
        _grad_b_f = _grad_b_f + (_d_f * _p27_f_b_f).sum(0)
        _d_fh = _d_f * _p28_f_fh
        _d_fx = _d_f * _p29_f_fx
        _d_rh = _d_rh + _rsum(_d_f * _p30_f_rh)
        _d_rx = _d_rx + _rsum(_d_f * _p31_f_rx)
        _grad_a_ih = _grad_a_ih + (_d_i * _p18_i_a_ih).sum(0)
        _grad_a_ix = _grad_a_ix + (_d_i * _p19_i_a_ix).sum(0)
        _grad_b_i = _grad_b_i + (_d_i * _p20_i_b_i).sum(0)
        _d_ih = _d_i * _p21_i_ih
        _d_ix = _d_i * _p22_i_ix
        _d_rh = _d_rh + _rsum(_d_i * _p23_i_rh)
        _d_rx = _d_rx + _rsum(_d_i * _p24_i_rx)
        _d_mean_rh = _d_rh * _p17_rh_mean_rh
        _d_mean_rh_in0 = _bcast(_d_mean_rh * _p13_mean_rh_mean_rh_in0, _state0['h'].shape[-1])
        _d_mean_rh_in1 = _bcast(_d_mean_rh * _p14_mean_rh_mean_rh_in1, _state0['h'].shape[-1])
        _d_mean_rh_in2 = _bcast(_d_mean_rh * _p15_mean_rh_mean_rh_in2, _state0['h'].shape[-1])
        _d_mean_rh_in3 = _bcast(_d_mean_rh * _p16_mean_rh_mean_rh_in3, _state0['h'].shape[-1])
        _d_oh = _d_oh + _d_mean_rh_in3 * _p12_mean_rh_in3_oh
        _d_gh = _d_gh + _d_mean_rh_in2 * _p11_mean_rh_in2_gh
        _d_fh = _d_fh + _d_mean_rh_in1 * _p10_mean_rh_in1_fh
        _d_ih = _d_ih + _d_mean_rh_in0 * _p9_mean_rh_in0_ih
        _d_mean_rx = _d_rx * _p8_rx_mean_rx
        _d_mean_rx_in0 = _bcast(_d_mean_rx * _p4_mean_rx_mean_rx_in0, _state0['h'].shape[-1])
        _d_mean_rx_in1 = _bcast(_d_mean_rx * _p5_mean_rx_mean_rx_in1, _state0['h'].shape[-1])
        _d_mean_rx_in2 = _bcast(_d_mean_rx * _p6_mean_rx_mean_rx_in2, _state0['h'].shape[-1])
        _d_mean_rx_in3 = _bcast(_d_mean_rx * _p7_mean_rx_mean_rx_in3, _state0['h'].shape[-1])
        _d_ox = _d_ox + _d_mean_rx_in3 * _p3_mean_rx_in3_ox
        _d_gx = _d_gx + _d_mean_rx_in2 * _p2_mean_rx_in2_gx
        _d_fx = _d_fx + _d_mean_rx_in1 * _p1_mean_rx_in1_fx
        _d_ix = _d_ix + _d_mean_rx_in0 * _p0_mean_rx_in0_ix
        _d_lin_oh = _d_oh
        _d_lin_gh = _d_gh
        _d_lin_fh = _d_fh
        _d_lin_ih = _d_ih
        _d_lin_ox = _d_ox
        _d_lin_gx = _d_gx
        _d_lin_fx = _d_fx
        _d_lin_ix = _d_ix
        _GBs_h = _cat_put(_GBs_h, _t, [_d_lin_ih, _d_lin_fh, _d_lin_gh, _d_lin_oh], _T)
        _gb_h = _GBs_h[_t]
        _d_h = _mmT_h(_gb_h)
        _GBs_x = _cat_put(_GBs_x, _t, [_d_lin_ix, _d_lin_fx, _d_lin_gx, _d_lin_ox], _T)
        _carry_h = _d_h
        _carry_c = _d_c
        if trace is not None:
            trace.append({'h': _carry_h, 'c': _carry_c})
    grads = {}
    d_inputs = {}
    _GBs = _GBs_x
    _m = _GBs.shape[2]
    _GW = _GBs.reshape(_T * _B, _m).T @ _X_x.reshape(_T * _B, _X_x.shape[2])
    grads['W_ix_x'] = _GW[_off_x[0]:_off_x[1]]
    grads['W_fx_x'] = _GW[_off_x[1]:_off_x[2]]
    grads['W_gx_x'] = _GW[_off_x[2]:_off_x[3]]
    grads['W_ox_x'] = _GW[_off_x[3]:_off_x[4]]
    d_inputs['x'] = (_GBs.reshape(_T * _B, _m) @ _W_x).reshape(_T, _B, -1)
    _GBs = _GBs_h
    _m = _GBs.shape[2]
    _GW = _GBs.reshape(_T * _B, _m).T @ _S_h.reshape(_T * _B, _S_h.shape[2])
    grads['W_ih_h'] = _GW[_off_h[0]:_off_h[1]]
    grads['W_fh_h'] = _GW[_off_h[1]:_off_h[2]]
    grads['W_gh_h'] = _GW[_off_h[2]:_off_h[3]]
    grads['W_oh_h'] = _GW[_off_h[3]:_off_h[4]]
    if 'x' not in d_inputs:
        d_inputs['x'] = _zeros(_X_x.shape, _X_x)
    grads['a_ix'] = _grad_a_ix
    grads['a_fx'] = _grad_a_fx
    grads['a_gx'] = _grad_a_gx
    grads['a_ox'] = _grad_a_ox
    grads['a_ih'] = _grad_a_ih
    grads['a_fh'] = _grad_a_fh
    grads['a_gh'] = _grad_a_gh
    grads['a_oh'] = _grad_a_oh
    grads['b_i'] = _grad_b_i
    grads['b_f'] = _grad_b_f
    grads['b_g'] = _grad_b_g
    grads['b_o'] = _grad_b_o
    grads['a_c'] = _grad_a_c
    return grads, d_inputs, {'h': _carry_h, 'c': _carry_c}


# shapes by size name, as the spec writes them
PARAM_SHAPES = {
    'W_ix_x': ('hidden', 'input'),
    'W_fx_x': ('hidden', 'input'),
    'W_gx_x': ('hidden', 'input'),
    'W_ox_x': ('hidden', 'input'),
    'W_ih_h': ('hidden', 'hidden'),
    'W_fh_h': ('hidden', 'hidden'),
    'W_gh_h': ('hidden', 'hidden'),
    'W_oh_h': ('hidden', 'hidden'),
    'a_ix': ('hidden',),
    'a_fx': ('hidden',),
    'a_gx': ('hidden',),
    'a_ox': ('hidden',),
    'a_ih': ('hidden',),
    'a_fh': ('hidden',),
    'a_gh': ('hidden',),
    'a_oh': ('hidden',),
    'b_i': ('hidden',),
    'b_f': ('hidden',),
    'b_g': ('hidden',),
    'b_o': ('hidden',),
    'a_c': ('hidden',),
}
BUFFERS = {}
INPUTS = ['x']
STATES = {'h': 'hidden', 'c': 'hidden'}


def step(params, x, state, t=0):
    """One step, an equation a line. x: (B, n) array for the input, or a dict for several
    inputs; returns the new state as a dict."""
    if not isinstance(x, dict):
        x = {'x': x}
    v_W_ix_x = params['W_ix_x']
    v_W_fx_x = params['W_fx_x']
    v_W_gx_x = params['W_gx_x']
    v_W_ox_x = params['W_ox_x']
    v_W_ih_h = params['W_ih_h']
    v_W_fh_h = params['W_fh_h']
    v_W_gh_h = params['W_gh_h']
    v_W_oh_h = params['W_oh_h']
    v_a_ix = params['a_ix']
    v_a_fx = params['a_fx']
    v_a_gx = params['a_gx']
    v_a_ox = params['a_ox']
    v_a_ih = params['a_ih']
    v_a_fh = params['a_fh']
    v_a_gh = params['a_gh']
    v_a_oh = params['a_oh']
    v_b_i = params['b_i']
    v_b_f = params['b_f']
    v_b_g = params['b_g']
    v_b_o = params['b_o']
    v_a_c = params['a_c']
    v_x = x['x']
    v_h = state['h']
    v_c = state['c']
    _n_mean_rx = state['h'].shape[-1] + state['h'].shape[-1] + state['h'].shape[-1] + state['h'].shape[-1]
    _n_mean_rh = state['h'].shape[-1] + state['h'].shape[-1] + state['h'].shape[-1] + state['h'].shape[-1]
    _n_mean_h = state['h'].shape[-1]
    v_lin_ix = v_x @ v_W_ix_x.T
    v_ix = v_lin_ix
    v_lin_fx = v_x @ v_W_fx_x.T
    v_fx = v_lin_fx
    v_lin_gx = v_x @ v_W_gx_x.T
    v_gx = v_lin_gx
    v_lin_ox = v_x @ v_W_ox_x.T
    v_ox = v_lin_ox
    v_lin_ih = v_h @ v_W_ih_h.T
    v_ih = v_lin_ih
    v_lin_fh = v_h @ v_W_fh_h.T
    v_fh = v_lin_fh
    v_lin_gh = v_h @ v_W_gh_h.T
    v_gh = v_lin_gh
    v_lin_oh = v_h @ v_W_oh_h.T
    v_oh = v_lin_oh
    v_mean_rx_in0 = v_ix**2
    v_mean_rx_in1 = v_fx**2
    v_mean_rx_in2 = v_gx**2
    v_mean_rx_in3 = v_ox**2
    v_mean_rx = (_rsum(v_mean_rx_in0) + _rsum(v_mean_rx_in1) + _rsum(v_mean_rx_in2) + _rsum(v_mean_rx_in3)) / _n_mean_rx
    v_rx = numpy.sqrt(v_mean_rx + 1/100000)
    v_mean_rh_in0 = v_ih**2
    v_mean_rh_in1 = v_fh**2
    v_mean_rh_in2 = v_gh**2
    v_mean_rh_in3 = v_oh**2
    v_mean_rh = (_rsum(v_mean_rh_in0) + _rsum(v_mean_rh_in1) + _rsum(v_mean_rh_in2) + _rsum(v_mean_rh_in3)) / _n_mean_rh
    v_rh = numpy.sqrt(v_mean_rh + 1/100000)
    v_i = _sigmoid(v_a_ih*v_ih/v_rh + v_a_ix*v_ix/v_rx + v_b_i)
    v_f = _sigmoid(v_a_fh*v_fh/v_rh + v_a_fx*v_fx/v_rx + v_b_f)
    v_g = numpy.tanh(v_a_gh*v_gh/v_rh + v_a_gx*v_gx/v_rx + v_b_g)
    v_o = _sigmoid(v_a_oh*v_oh/v_rh + v_a_ox*v_ox/v_rx + v_b_o)
    v_c_ = v_c*v_f + v_g*v_i
    v_mean_h_in0 = v_c_**2
    v_mean_h = (_rsum(v_mean_h_in0)) / _n_mean_h
    v_h_ = v_o*numpy.tanh(v_a_c*v_c_/numpy.sqrt(v_mean_h + 1/100000))
    return {'h': v_h_, 'c': v_c_}
