"""Speed of the generated cells against their peers, measured in one run on the same inputs.

Peers: torch.nn.LSTM / torch.nn.GRU (fused oneDNN or cuDNN kernels), a hand-written NumPy LSTM
(one stacked GEMM per step, input GEMM hoisted, hand-written BPTT), a hand-written eager torch
loop of each cell (autograd), optionally torch.compile of that loop (--compile, compile time
reported). Ours: the generated NumPy code and the generated torch code run through its
autograd Function (the generated backward), on the CPU with and without its fused C kernels
(:mod:`lstm_verify.kernels`). Timings are medians of interleaved rounds; ratios
are to torch.nn.LSTM (or nn.GRU for GRU-like cells) at the same sizes, the median of the ratios
within each round (the machines are shared: a slow minute slows the peer as much as us).

    python benchmarks/speed.py                      # the reference shape, every catalog cell
    python benchmarks/speed.py --cells lstm gru --sweep   # T, H and batch sweeps, peak memory
    python benchmarks/speed.py --device cuda        # the same on a GPU

Writes the tables to stdout (Markdown) and, with --out FILE, to a file.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import numpy as np
import torch

import lstm_verify as lv
from lstm_verify import kernels

GRU_LIKE = {"gru", "gru_cho", "mgu", "mut1", "mut2", "mut3"}


# --------------------------------------------------------------------------- peers


class NumpyLSTM:
    """A careful hand-written NumPy LSTM (torch gate order), forward and BPTT."""

    def __init__(self, W_ih, W_hh, b):
        self.W_ih, self.W_hh, self.b = W_ih, W_hh, b

    def forward(self, x, h, c):
        T, B, _ = x.shape
        H = h.shape[1]
        gx = (x.reshape(T * B, -1) @ self.W_ih.T).reshape(T, B, 4 * H) + self.b
        self.cache = (x, [], h, c)
        hs = []
        for t in range(T):
            z = gx[t] + h @ self.W_hh.T
            i = 1 / (1 + np.exp(-z[:, :H]))
            f = 1 / (1 + np.exp(-z[:, H : 2 * H]))
            g = np.tanh(z[:, 2 * H : 3 * H])
            o = 1 / (1 + np.exp(-z[:, 3 * H :]))
            c_new = f * c + i * g
            tc = np.tanh(c_new)
            self.cache[1].append((h, c, i, f, g, o, tc))
            h, c = o * tc, c_new
            hs.append(h)
        return np.stack(hs), h, c

    def backward(self, d_out):
        x, steps, _, _ = self.cache
        T, B, _ = x.shape
        H = self.W_hh.shape[1]
        dh, dc = np.zeros((B, H), x.dtype), np.zeros((B, H), x.dtype)
        dz_all = np.empty((T, B, 4 * H), x.dtype)
        dW_hh = np.zeros_like(self.W_hh)
        for t in range(T - 1, -1, -1):
            h, c, i, f, g, o, tc = steps[t]
            dh = dh + d_out[t]
            do = dh * tc
            dc = dc + dh * o * (1 - tc * tc)
            di, df, dg = dc * g, dc * c, dc * i
            dz = np.concatenate([di * i * (1 - i), df * f * (1 - f), dg * (1 - g * g), do * o * (1 - o)], 1)
            dz_all[t] = dz
            dW_hh += dz.T @ h
            dh = dz @ self.W_hh
            dc = dc * f
        flat = dz_all.reshape(T * B, 4 * H)
        dW_ih = flat.T @ x.reshape(T * B, -1)
        dx = (flat @ self.W_ih).reshape(x.shape)
        return dW_ih, dW_hh, flat.sum(0), dx, dh, dc


def eager_lstm(x, h, c, W_ih, W_hh, b):
    gx = x @ W_ih.T + b
    outs = []
    for t in range(x.shape[0]):
        i, f, g, o = (gx[t] + h @ W_hh.T).chunk(4, 1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        outs.append(h)
    return torch.stack(outs)


def eager_gru(x, h, W_ih, W_hh, b_ih, b_hh):
    gx = x @ W_ih.T + b_ih
    outs = []
    for t in range(x.shape[0]):
        gh = h @ W_hh.T + b_hh
        xr, xz, xn = gx[t].chunk(3, 1)
        hr, hz, hn = gh.chunk(3, 1)
        r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
        n = torch.tanh(xn + r * hn)
        h = (1 - z) * n + z * h
        outs.append(h)
    return torch.stack(outs)


# --------------------------------------------------------------------------- timing


def _times(fns: dict, repeat: int, sync) -> dict:
    """{name: [ms per round]}: every round runs each function once, back to back."""
    times = {k: [] for k in fns}
    for k, f in fns.items():  # warm-up
        f()
        sync()
    for _ in range(repeat):
        for k, f in fns.items():
            t = time.perf_counter()
            f()
            sync()
            times[k].append((time.perf_counter() - t) * 1e3)
    return times


def _summary(groups: list, ref: str):
    """{name: (median ms, ratio to ref)}. Within ref's group the ratio is the median of the
    per-round ratios, which cancels the slow drifts of a shared machine; other groups (timed
    apart) are compared by medians."""
    ref_times = next(g[ref] for g in groups if ref in g)
    out = {}
    for g in groups:
        for k, v in g.items():
            if ref in g:
                ratio = statistics.median(a / b for a, b in zip(v, g[ref]))
            else:
                ratio = statistics.median(v) / statistics.median(ref_times)
            out[k] = (statistics.median(v), ratio)
    return out


def measure(name, T, B, I, H, device, repeat, compile_=False, numpy_peers=True, eager_peer=True, members=16):
    """{implementation: (forward ms, forward ratio, fwd+bwd ms, fwd+bwd ratio)} for one cell
    and shape (None where an implementation has no forward-only timing)."""
    dev = torch.device(device)
    sync = (lambda: torch.cuda.synchronize()) if dev.type == "cuda" else (lambda: None)
    cell = lv.load(name)
    sizes = {k: {"input": I, "hidden": H, "proj": H // 2, "set": members}.get(k, H) for k in cell.ir.size_names}
    g = torch.Generator().manual_seed(0)
    xs = {n: torch.randn(*shape, generator=g).to(dev) for n, shape in cell.ir.input_shapes(sizes, T, B).items()}
    x = xs[cell.ir.inputs[0][0]]
    fns_f, fns_fb = {}, {}
    ref_name = "torch.nn.GRU" if name in GRU_LIKE else "torch.nn.LSTM"
    n_in = x.shape[-1]  # cells that tie the input size to the hidden size get that size
    ref = (torch.nn.GRU(n_in, H) if name in GRU_LIKE else torch.nn.LSTM(n_in, H)).to(dev)

    def ref_f():
        with torch.no_grad():  # inference, like every other forward-only timing here
            ref(x)

    fns_f[ref_name] = ref_f

    def ref_fb():
        out, _ = ref(x)
        out.sum().backward()

    fns_fb[ref_name] = ref_fb
    layer = cell.module(sizes=sizes, dtype=torch.float32, device=dev)
    plain = cell.module(sizes=sizes, dtype=torch.float32, device=dev, fused=False)

    def gen_f():
        with torch.no_grad():
            layer(xs)

    def gen_fb():
        out, _ = layer(xs)
        out.sum().backward()

    fns_f["generated torch"], fns_fb["generated torch"] = gen_f, gen_fb
    if dev.type == "cpu" and cell.torch().kernels is None:  # the same code with its blocks as torch operations

        def plain_ops(fn):
            def run():
                with kernels.disabled():
                    fn()

            return run

        fns_f["generated torch, no C kernels"] = plain_ops(gen_f)
        fns_fb["generated torch, no C kernels"] = plain_ops(gen_fb)
    if name == "lstm":
        W_ih = torch.randn(4 * H, I, device=dev, requires_grad=True)
        W_hh = torch.randn(4 * H, H, device=dev, requires_grad=True)
        b = torch.zeros(4 * H, device=dev, requires_grad=True)
        h0, c0 = torch.zeros(B, H, device=dev), torch.zeros(B, H, device=dev)
        eager = lambda: eager_lstm(x, h0, c0, W_ih, W_hh, b)  # noqa: E731
    elif name == "gru":
        W_ih = torch.randn(3 * H, I, device=dev, requires_grad=True)
        W_hh = torch.randn(3 * H, H, device=dev, requires_grad=True)
        b1 = torch.zeros(3 * H, device=dev, requires_grad=True)
        b2 = torch.zeros(3 * H, device=dev, requires_grad=True)
        h0 = torch.zeros(B, H, device=dev)
        eager = lambda: eager_gru(x, h0, W_ih, W_hh, b1, b2)  # noqa: E731
    else:  # the eager loop of this cell: autograd through its step-by-step torch code

        def eager():
            return plain(xs)[0]

    eager_name = "eager torch loop"

    def eager_f():
        with torch.no_grad():
            eager()

    def eager_fb():
        eager().sum().backward()

    if eager_peer:
        fns_f[eager_name], fns_fb[eager_name] = eager_f, eager_fb
    compile_s = None
    if compile_:
        compiled = torch.compile(eager)
        t = time.perf_counter()
        compiled().sum().backward()
        compile_s = time.perf_counter() - t

        def comp_fb():
            compiled().sum().backward()

        fns_fb["torch.compile of the eager loop"] = comp_fb
    # NumPy's BLAS threads keep spinning for a while after each call and steal the cores from
    # torch's own threads, so the NumPy implementations are timed as a separate group
    torch_f, torch_fb = fns_f, fns_fb
    fns_f, fns_fb = {}, {}
    if numpy_peers:
        p = {k: v.detach().cpu().numpy() for k, v in layer.param_dict().items()}
        xn = x.cpu().numpy()
        xsn = {k: v.cpu().numpy() for k, v in xs.items()}
        impl = cell.numpy()
        d = np.ones((T, B, sizes[dict(cell.ir.states)[cell.ir.output]]), np.float32)
        zero = {k: np.zeros((B, sizes[dd]), np.float32) for k, dd in cell.ir.states}
        fns_f["generated NumPy"] = lambda: impl.module.forward(p, xsn, zero, 0, False)

        def np_fb():
            _, _, cache = impl.module.forward(p, xsn, zero, 0, True)
            impl.module.backward(p, cache, d)

        fns_fb["generated NumPy"] = np_fb
        if name == "lstm":
            rng = np.random.default_rng(0)
            hand = NumpyLSTM(rng.standard_normal((4 * H, I)).astype(np.float32) * 0.05,
                             rng.standard_normal((4 * H, H)).astype(np.float32) * 0.05, np.zeros(4 * H, np.float32))  # fmt: skip
            h0n = np.zeros((B, H), np.float32)
            fns_f["hand-written NumPy LSTM"] = lambda: hand.forward(xn, h0n, h0n)

            def hand_fb():
                hand.forward(xn, h0n, h0n)
                hand.backward(d)

            fns_fb["hand-written NumPy LSTM"] = hand_fb
    f = _summary([_times(torch_f, repeat, sync), _times(fns_f, repeat, sync)], ref_name)
    fb = _summary([_times(torch_fb, repeat, sync), _times(fns_fb, repeat, sync)], ref_name)
    names = list(torch_f) + list(torch_fb) + list(fns_f) + list(fns_fb)
    out = {k: f.get(k, (None, None)) + fb.get(k, (None, None)) for k in dict.fromkeys(names)}
    return out, ref_name, compile_s


def peak_memory(impl: str, name: str, T, B, I, H) -> float:
    """Peak resident memory (MB) during one forward+backward, above the resident memory just
    before it, in a fresh process (a thread samples /proc/self/statm every millisecond)."""
    code = f"""
import os, threading, time, torch, lstm_verify as lv
torch.manual_seed(0)
page = os.sysconf("SC_PAGE_SIZE")
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * page
cell = lv.load({name!r})
x = torch.randn({T}, {B}, {I})
if {impl!r} == "reference":
    m = (torch.nn.GRU if {name!r} in {sorted(GRU_LIKE)!r} else torch.nn.LSTM)({I}, {H})
else:
    m = cell.module(sizes={{k: {{"input": {I}, "hidden": {H}, "proj": {H // 2}}}.get(k, {H}) for k in cell.ir.size_names}},
                    dtype=torch.float32)
m(x[:2])[0].sum().backward()  # warm up: load kernels and code before the baseline
for p in m.parameters():
    p.grad = None
base = peak = rss()
done = False
def sample():
    global peak
    while not done:
        peak = max(peak, rss())
        time.sleep(0.001)
t = threading.Thread(target=sample)
t.start()
out = m(x)[0]
out.sum().backward()
peak = max(peak, rss())
done = True
t.join()
print((peak - base) / 2**20)
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(res.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- main


def table(rows, out):
    for r in rows:
        print(r)
        if out:
            out.write(r + "\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", nargs="*", default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--T", type=int, default=100)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--input", type=int, default=128)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--members", type=int, default=16, help="members of a set input (attention_decoder)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--compile", action="store_true", help="also torch.compile the eager loop")
    ap.add_argument("--sweep", action="store_true", help="T, H and batch sweeps and peak memory")
    ap.add_argument("--out", help="also write the Markdown tables here")
    ap.add_argument("--json", help="raw numbers as JSON")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads or torch.get_num_threads())
    out = open(args.out, "w") if args.out else None
    cells = args.cells or lv.catalog()
    raw = {"shape": vars(args), "cells": {}, "sweep": {}}
    table([f"## float32, T={args.T}, batch={args.batch}, input={args.input}, hidden={args.hidden}, "
           f"device {args.device}, {torch.get_num_threads()} threads", "",
           "| cell | implementation | forward ms | fwd+bwd ms | fwd ratio | fwd+bwd ratio |",
           "|---|---|---|---|---|---|"], out)  # fmt: skip
    for name in cells:
        res, ref_name, comp = measure(name, args.T, args.batch, args.input, args.hidden, args.device,
                                      args.repeat, args.compile, members=args.members)  # fmt: skip
        raw["cells"][name] = {"ref": ref_name, "compile_s": comp, "implementations": {
            k: dict(zip(("forward_ms", "forward_ratio", "fwd_bwd_ms", "fwd_bwd_ratio"), v)) for k, v in res.items()}}
        rows = []
        for impl, (f, fr, fb, fbr) in res.items():
            fr = f"{fr:.2f}x" if f else "-"
            fbr = f"{fbr:.2f}x"
            rows.append(f"| {name} | {impl} | {f:.1f} | {fb:.1f} | {fr} | {fbr} |" if f else
                        f"| {name} | {impl} | - | {fb:.1f} | - | {fbr} |")  # fmt: skip
        if comp:
            rows.append(f"| {name} | (torch.compile took {comp:.0f} s to compile) | | | | |")
        table(rows, out)
    if args.sweep:
        for name in args.cells or ["lstm"]:
            table(["", f"## {name}: how cost grows (fwd+bwd ms; ratio to the torch.nn peer; ms per step)", "",
                   "| T | H | batch | generated torch | peer | ratio | generated ms/step |", "|---|---|---|---|---|---|---|"], out)  # fmt: skip
            shapes = [(T, 256, 32) for T in (100, 1000, 10000)] + [(100, H, 32) for H in (64, 1024)] + \
                [(100, 256, B) for B in (1, 256)]  # fmt: skip
            for T, H, B in shapes:
                res, ref_name, _ = measure(name, T, B, args.input, H, args.device, 3 if T < 10000 else 1,
                                           numpy_peers=False, eager_peer=False)  # fmt: skip
                g, ratio, r = res["generated torch"][2], res["generated torch"][3], res[ref_name][2]
                raw["sweep"].setdefault(name, []).append({"T": T, "H": H, "B": B, "generated": g, "peer": r})
                table([f"| {T} | {H} | {B} | {g:.1f} | {r:.1f} | {ratio:.2f}x | {g / T:.3f} |"], out)
            if args.device == "cpu":
                mg = peak_memory("generated", name, 1000, 32, args.input, 256)
                mr = peak_memory("reference", name, 1000, 32, args.input, 256)
                raw["sweep"][f"{name}_memory"] = {"generated_mb": mg, "peer_mb": mr}
                table(["", f"Peak memory of fwd+bwd, T=1000, batch 32, hidden 256: generated {mg:.0f} MB, "
                       f"peer {mr:.0f} MB, ratio {mg / mr:.2f}x"], out)  # fmt: skip
    if args.json:
        with open(args.json, "w") as f:
            json.dump(raw, f, indent=1)
    if out:
        out.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
