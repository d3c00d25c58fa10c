"""Long-lag learning tasks, trained with the generated torch cells (their backward is ours).

* **Adding problem** (Hochreiter & Schmidhuber 1997, as in Le et al. 2015): two channels, values
  U(0, 1) and a marker that is 1 at one step in the first half and one in the second; the target
  is the sum of the two marked values. Predicting the mean gives MSE 1/6; *solved* means test
  MSE < 0.01.
* **Temporal order** (Hochreiter & Schmidhuber 1997, experiment 6a): a sequence of distractor
  symbols a-d between a start and an end marker, with X or Y at one step in [0.1T, 0.2T] and one
  in [0.5T, 0.6T]; the class is the ordered pair (XX, XY, YX, YY). Chance is 25%; *solved*
  means test accuracy >= 95%.

Training: Adam (lr 0.01), batch 64, gradient norm clipped at 1, a linear readout of the last
output, at most ``max_steps`` updates, evaluated on 1000 fixed test sequences every
``eval_every`` updates; denormal floats are flushed to zero while training (vanishing gradients
otherwise become denormals that run many times slower on a CPU).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np

TASKS = ("adding", "order")


def adding(T, batch, rng):
    x = np.zeros((T, batch, 2), dtype=np.float32)
    x[:, :, 0] = rng.uniform(0, 1, (T, batch))
    half = max(T // 2, 1)
    a = rng.integers(0, half, batch)
    b = rng.integers(half, max(T, half + 1), batch) if T > 1 else a
    x[a, np.arange(batch), 1] = 1
    x[b, np.arange(batch), 1] = 1
    y = x[a, np.arange(batch), 0] + x[b, np.arange(batch), 0] * (b != a)
    return x, y.astype(np.float32)


def order(T, batch, rng):
    """One-hot over 8 symbols: a, b, c, d, X, Y, start, end."""
    T = max(T, 10)
    sym = rng.integers(0, 4, (T, batch))
    sym[0], sym[-1] = 6, 7
    t1 = rng.integers(max(1, int(0.1 * T)), max(2, int(0.2 * T)) + 1, batch)
    t2 = rng.integers(max(t1.max() + 1, int(0.5 * T)), max(t1.max() + 2, int(0.6 * T)) + 1, batch)
    t2 = np.minimum(t2, T - 2)
    v1, v2 = rng.integers(0, 2, batch), rng.integers(0, 2, batch)
    cols = np.arange(batch)
    sym[t1, cols] = 4 + v1
    sym[t2, cols] = 4 + v2
    x = np.eye(8, dtype=np.float32)[sym]
    return x, (2 * v1 + v2).astype(np.int64)


@dataclass
class Result:
    cell: str
    task: str
    T: int
    seed: int
    init: str
    solved: bool
    steps: int  # updates until solved (or the budget)
    metric: float  # final test MSE (adding) or accuracy (order)
    seconds: float

    def as_dict(self):
        return asdict(self)


def train(cell, task: str, T: int, seed: int = 0, init: str = "torch_default", hidden: int = 32,
          max_steps: int = 2000, eval_every: int = 100, batch: int = 64, lr: float = 1e-2,
          return_model: bool = False):  # fmt: skip
    """Train one cell on one task at lag T; a Result (and the model if asked)."""
    from .extras import require

    torch = require("torch", "training a cell (lstm_verify.tasks.train)")

    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    if cell.ir.sets:
        raise ValueError(f"{cell.name} reads a set input ({', '.join(n for n, _ in cell.ir.sets)}); the {task} task "
                         "gives one input sequence and no set")  # fmt: skip
    make = adding if task == "adding" else order
    n_in = 2 if task == "adding" else 8
    n_out = 1 if task == "adding" else 4
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    sizes = {k: {"input": n_in, "hidden": hidden, "proj": hidden // 2}.get(k, hidden) for k in cell.ir.size_names}
    layer = cell.module(sizes=sizes, init=init, seed=seed, dtype=torch.float32, t_max=T)
    out_dim = sizes[dict(cell.ir.states)[cell.ir.output]]
    readout = torch.nn.Linear(out_dim, n_out)
    opt = torch.optim.Adam(list(layer.parameters()) + list(readout.parameters()), lr=lr)
    xt, yt = make(T, 1000, np.random.default_rng(10_000 + seed))
    xt, yt = torch.from_numpy(xt), torch.from_numpy(yt)

    def loss_of(x, y):
        out, _ = layer(x)
        pred = readout(out[-1])
        if task == "adding":
            return torch.nn.functional.mse_loss(pred[:, 0], y), pred
        return torch.nn.functional.cross_entropy(pred, y), pred

    def evaluate():
        with torch.no_grad():
            loss, pred = loss_of(xt, yt)
        if task == "adding":
            return float(loss), float(loss) < 0.01
        acc = float((pred.argmax(1) == yt).float().mean())
        return acc, acc >= 0.95

    start = time.perf_counter()
    torch.set_flush_denormal(True)  # returns whether the CPU supports it, not the previous state
    try:
        metric, solved, step = *evaluate(), 0
        while not solved and step < max_steps:
            for _ in range(eval_every):
                x, y = make(T, batch, rng)
                loss, _ = loss_of(torch.from_numpy(x), torch.from_numpy(y))
                opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(opt.param_groups[0]["params"], 1.0)
                opt.step()
                step += 1
            metric, solved = evaluate()
    finally:
        torch.set_flush_denormal(False)  # torch's default: subnormals are numbers again
    result = Result(cell.name, task, T, seed, init, bool(solved), step, metric, time.perf_counter() - start)
    return (result, layer) if return_model else result
