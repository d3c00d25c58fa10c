"""Hand-written cells with the convention bugs users hit, for the mutation score.

Each mutant is (name, claimed cell, factory, layout or None, what identification should name or
None when no catalog cell or variant explains it). The correct baselines are torch.nn's cells
and the hand-written classes below with default arguments; a mutant changes one thing.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from lstm_verify.conformance import subject


def _param(*shape):
    return nn.Parameter(torch.empty(*shape))


class HandLSTM(nn.Module):
    """An LSTM cell written the way people write one, with torch.nn.LSTMCell's tensors."""

    def __init__(self, input_size, hidden_size, order="ifgo", forget_bias=0.0, bias_twice=False,
                 state_order="hc", gate=torch.sigmoid, cand=torch.tanh, out=torch.tanh,
                 use_bias_hh=True, old_cell_out=False, clip=None, float32_inside=False,
                 detach_h=False, naive_tanh=False):  # fmt: skip
        super().__init__()
        H = hidden_size
        self.weight_ih, self.weight_hh = _param(4 * H, input_size), _param(4 * H, H)
        self.bias_ih, self.bias_hh = _param(4 * H), _param(4 * H)
        self.o = dict(order=order, forget_bias=forget_bias, bias_twice=bias_twice, state_order=state_order,
                      gate=gate, cand=cand, out=out, use_bias_hh=use_bias_hh, old_cell_out=old_cell_out,
                      clip=clip, float32_inside=float32_inside, detach_h=detach_h, naive_tanh=naive_tanh)  # fmt: skip

    def forward(self, x, state):
        o = self.o
        a, b = state
        h, c = (a, b) if o["state_order"] == "hc" else (b, a)
        dtype = x.dtype
        W_ih, W_hh, b_ih, b_hh = self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh
        if o["float32_inside"]:
            x, h, c, W_ih, W_hh, b_ih, b_hh = (t.float() for t in (x, h, c, W_ih, W_hh, b_ih, b_hh))
        if o["detach_h"]:
            h = h.detach()
        z = x @ W_ih.T + b_ih + h @ W_hh.T + (b_hh if o["use_bias_hh"] else 0)
        if o["bias_twice"]:
            z = z + b_ih
        chunks = dict(zip(o["order"], z.chunk(4, 1)))
        i = o["gate"](chunks["i"])
        f = o["gate"](chunks["f"] + o["forget_bias"])
        g = o["cand"](chunks["g"])
        out = o["gate"](chunks["o"])
        c_new = f * c + i * g
        if o["clip"] is not None:
            c_new = c_new.clamp(-o["clip"], o["clip"])
        squash = (lambda u: (torch.exp(2 * u) - 1) / (torch.exp(2 * u) + 1)) if o["naive_tanh"] else o["out"]
        h_new = out * squash(c if o["old_cell_out"] else c_new)
        h_new, c_new = h_new.to(dtype), c_new.to(dtype)
        return (h_new, c_new) if o["state_order"] == "hc" else (c_new, h_new)


class HandGRU(nn.Module):
    """A GRU cell with torch.nn.GRUCell's tensors."""

    def __init__(self, input_size, hidden_size, order="rzn", reset="after", z_keeps=True,
                 bias_n_outside=False):  # fmt: skip
        super().__init__()
        H = hidden_size
        self.weight_ih, self.weight_hh = _param(3 * H, input_size), _param(3 * H, H)
        self.bias_ih, self.bias_hh = _param(3 * H), _param(3 * H)
        self.o = dict(order=order, reset=reset, z_keeps=z_keeps, bias_n_outside=bias_n_outside)

    def forward(self, x, h):
        o = self.o
        gi = dict(zip(o["order"], (x @ self.weight_ih.T + self.bias_ih).chunk(3, 1)))
        Wh = dict(zip(o["order"], self.weight_hh.chunk(3, 0)))
        bh = dict(zip(o["order"], self.bias_hh.chunk(3, 0)))
        r = torch.sigmoid(gi["r"] + h @ Wh["r"].T + bh["r"])
        z = torch.sigmoid(gi["z"] + h @ Wh["z"].T + bh["z"])
        if o["reset"] == "before":
            n = torch.tanh(gi["n"] + (r * h) @ Wh["n"].T + bh["n"])
        elif o["bias_n_outside"]:
            n = torch.tanh(gi["n"] + r * (h @ Wh["n"].T) + bh["n"])
        else:
            n = torch.tanh(gi["n"] + r * (h @ Wh["n"].T + bh["n"]))
        return z * h + (1 - z) * n if o["z_keeps"] else (1 - z) * h + z * n


class HandRNN(nn.Module):
    def __init__(self, input_size, hidden_size, transpose_hh=False):
        super().__init__()
        self.weight_ih, self.weight_hh = _param(hidden_size, input_size), _param(hidden_size, hidden_size)
        self.bias_ih, self.bias_hh = _param(hidden_size), _param(hidden_size)
        self.transpose_hh = transpose_hh

    def forward(self, x, h):
        W = self.weight_hh if self.transpose_hh else self.weight_hh.T
        return torch.tanh(x @ self.weight_ih.T + self.bias_ih + h @ W + self.bias_hh)


def _lin(p, gate, x, h):
    return x @ p[f"W_{gate}_x"].T + h @ p[f"W_{gate}_h"].T + p[f"b_{gate}"]


def peephole(old_cell_for_o=False):
    """lstm_peephole as a function of the spec's named parameters (torch tensors)."""

    def fn(p, x, state):
        h, c = state
        i = torch.sigmoid(_lin(p, "i", x, h) + p["p_i"] * c)
        f = torch.sigmoid(_lin(p, "f", x, h) + p["p_f"] * c)
        g = torch.tanh(_lin(p, "g", x, h))
        c_new = f * c + i * g
        o = torch.sigmoid(_lin(p, "o", x, h) + p["p_o"] * (c if old_cell_for_o else c_new))
        return o * torch.tanh(c_new), c_new

    return lambda **sizes: fn


def mgu(swap=False):
    def fn(p, x, state):
        (h,) = state if isinstance(state, tuple) else (state,)
        f = torch.sigmoid(_lin(p, "f", x, h))
        n = torch.tanh(x @ p["W_n_x"].T + (f * h) @ p["W_n_h"].T + p["b_n"])
        return (f * h + (1 - f) * n,) if swap else ((1 - f) * h + f * n,)

    return lambda **sizes: fn


def clockwork(shift=0):
    def fn(p, x, h, t):
        period = p["period"]
        mask = (period[None, :] >= period[:, None]).to(h.dtype)  # W[out, in] kept where period_in >= period_out
        active = (torch.remainder(torch.as_tensor(t + shift, dtype=h.dtype), period) == 0).to(h.dtype)
        new = torch.tanh(x @ p["W_h_x"].T + h @ (p["W_h_h"] * mask).T + p["b_h"])
        return (active * new + (1 - active) * h,)

    return lambda **sizes: fn


def _naive_sigmoid(u):
    return torch.exp(u) / (1 + torch.exp(u))


def _hard(u):
    return torch.nn.functional.hardsigmoid(u)


# (name, claimed cell, factory, options for subject(), expected identification or None)
CORRECT = [
    ("torch.nn.RNNCell", "rnn_tanh", nn.RNNCell, {}, None),
    ("torch.nn.LSTMCell", "lstm", nn.LSTMCell, {}, None),
    ("torch.nn.GRUCell", "gru", nn.GRUCell, {}, None),
    ("HandLSTM", "lstm", HandLSTM, {}, None),
    ("HandGRU", "gru", HandGRU, {}, None),
    ("peephole function", "lstm_peephole", peephole(), {"backend": "torch"}, None),
    ("mgu function", "mgu", mgu(), {"backend": "torch"}, None),
    ("clockwork function", "clockwork_rnn", clockwork(), {"backend": "torch"}, None),
]

MUTANTS = [
    # conventions that differ between libraries (cells.md)
    ("LSTM gate order i,g,f,o", "lstm", partial(HandLSTM, order="igfo"), {}, "gate blocks in the order i, g, f, o"),
    ("LSTM gate order ONNX i,o,f,c", "lstm", partial(HandLSTM, order="iofg"), {}, "gate blocks in the order"),
    ("GRU gate order z,r,n (Keras)", "gru", partial(HandGRU, order="zrn"), {}, "gate blocks in the order z, r"),
    ("GRU reset before the matmul", "gru", partial(HandGRU, reset="before"), {}, "`gru_cho`"),
    ("GRU reset after, claimed as Cho's", "gru_cho", nn.GRUCell, {}, "`gru`"),
    ("GRU z and 1-z exchanged", "gru", partial(HandGRU, z_keeps=False), {}, "z and 1 - z exchanged"),
    ("bias counted twice", "lstm", partial(HandLSTM, bias_twice=True), {}, None),
    ("forget bias +1 at run time", "lstm", partial(HandLSTM, forget_bias=1.0), {}, "constant 1 added to f"),
    ("state order (c, h)", "lstm", partial(HandLSTM, state_order="ch"), {}, "state passed as (c, h)"),
    ("output peephole sees the old cell", "lstm_peephole", peephole(old_cell_for_o=True), {"backend": "torch"},
     "o reads c where the spec has c'"),
    ("MGU f and 1-f swapped", "mgu", mgu(swap=True), {"backend": "torch"}, "f and 1 - f exchanged"),
    ("sigmoid replaced by hard sigmoid", "lstm", partial(HandLSTM, gate=_hard), {}, "hard_sigmoid"),
    ("clockwork period off by one step", "clockwork_rnn", clockwork(shift=1), {"backend": "torch"},
     "step counter shifted by +1"),
    # more
    ("candidate uses sigmoid", "lstm", partial(HandLSTM, cand=torch.sigmoid), {}, None),
    ("no tanh on the cell output", "lstm", partial(HandLSTM, out=lambda u: u), {}, None),
    ("output reads the old cell", "lstm", partial(HandLSTM, old_cell_out=True), {}, None),
    ("recurrent bias ignored", "lstm", partial(HandLSTM, use_bias_hh=False), {}, None),
    ("recurrent weight transposed", "rnn_tanh", partial(HandRNN, transpose_hh=True), {}, None),
    ("cell state clipped to [-3, 3]", "lstm", partial(HandLSTM, clip=3.0), {}, None),
    ("tanh as (e^2u - 1)/(e^2u + 1)", "lstm", partial(HandLSTM, naive_tanh=True), {}, None),
    ("sigmoid as e^u/(1 + e^u)", "lstm", partial(HandLSTM, gate=_naive_sigmoid), {}, None),
    ("h detached each step", "lstm", partial(HandLSTM, detach_h=True), {}, None),
    ("GRU hidden n-bias outside r", "gru", partial(HandGRU, bias_n_outside=True), {}, None),
    ("sigmoid gates as tanh", "lstm", partial(HandLSTM, gate=torch.tanh), {}, None),
]


def as_subject(name, factory, options):
    return subject(factory, label=name, **options)
