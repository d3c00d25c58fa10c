"""Equivalence of two specs (``lstm-verify equiv A B``): do they compute the same outputs?

What "equivalent" means
-----------------------
Cells A and B are equivalent when they have the same interface (the same inputs, by name and
size name; an output state of the same size; the same trainable parameters, by the spec's
generated names such as ``W_i_x``, ``b_f``, ``p_i``, with the same shapes) and, for every input
sequence, every value of the parameters and every pair of corresponding initial states, they give
the same output (each cell's output state, ``h``) at every step. Points where a cell is undefined
(a division by zero, the log of a negative number) are outside the claim. Masks and buffers
belong to each spec: a weight with a different mask, or a buffer initialised differently, is
simply part of a different function, which the comparison below finds.

Corresponding states are the same values for states of the same name, or, when one cell has
states the other lacks (xLSTM's stabiliser ``m``), a state map phi from the bigger cell's state
to the smaller one's. phi is searched in a small family: the output state maps to itself, and
every other shared state ``s`` to ``s``, ``s*exp(e)`` or ``s*exp(-e)`` for an extra state ``e``
of the same size (slstm's stabilised ``c`` and ``n`` are the unstabilised ones times exp(-m),
so phi(c) = c*exp(m)). Every map of the family sends extra states at 0 to the identity, and the
zero state to the zero state.

Interface differences: exit 1, not 2
------------------------------------
Different inputs, output sizes or parameter shapes mean the two cells cannot even be run on the
same data: the verdict is "not equivalent" with that reason and no counterexample. Different
parameter names (``lstm`` vs ``lstm_peephole``, ``gru`` vs ``gru_cho``) mean two different
parametrised families: also "not equivalent", and since both can still be run on shared
inputs, every parameter is drawn (each cell gets its own) and the first differing output is
shown. When the parameters only one cell has are at most a third of all, the comparison is
repeated with them pinned at 0 and its verdict printed as a note (lstm_peephole with p = 0 is
lstm; gru and gru_cho differ even with their differing biases at 0). Exit status 2 is kept for
questions the tool cannot answer at all: a spec that cannot be read or built (missing file,
malformed spec). So a script can tell "different" (1) from "broken input" (2).

How it is decided
-----------------
1. **Numeric screen.** Each candidate map (identity first) is tried for one step at 6 random
   points, 3 at the smallest sizes and 3 at 3 units (one unit hides a misplaced matmul), with
   the mpmath evaluation of the IR (the reference's affine and pointwise evaluation):
   ``phi(step_big(s)) == step_small(phi(s))`` for every state, outputs included. A value
   differs when ``|a - b| > 10**(-dps/2) * max(1, |a|, |b|)`` at 30 digits and again at 60.
2. **Proof.** For each map that survives, in turn, each cell's one-step new-state expressions
   are built per unit in SymPy over shared symbols: inputs, previous states, biases, diagonal
   parameters and buffers (with their initialiser) by name, and each weight ``W`` as an opaque
   real function ``W·(v)`` of the vector it multiplies (linear: sums and constant factors are
   taken out), named with the weight's mask and the buffers the mask reads. No size enters, so
   equal expressions mean equal cells at every size. Each obligation
   ``phi_q(step_big(s)) - step_small(phi(s))_q`` (``q`` a state of the smaller cell; the output
   state maps to itself, so this includes the outputs) must simplify to 0: cheap steps first
   (the numerator of ``together``, expanded; the same after writing sigmoid, tanh and softplus
   in exp and log), then ``simplify`` on both forms, within ``budget`` seconds per obligation (a
   SIGALRM timer: only in the main thread; elsewhere without a limit). A map whose obligations
   all vanish proves equivalence by induction over the steps.
3. **Counterexample search.** When no map is proved, random sequences of 3 steps are run in both
   cells from corresponding states (the surviving map, else equal shared states with extra
   states at 0, else, with no correspondence at all, zero states), at the smallest sizes the
   specs allow (so a counterexample prints in a few numbers) and at 3 units, with inputs in
   [-2, 2] and parameters in [-1, 1], then both times 3, initial states in the bigger cell's
   ``ranges`` (default [-1, 1]). Values are rounded to 2 decimals, so a printed point is the
   point. The first difference (outputs before states, earliest step first) is confirmed at 60
   digits. None found: "equivalent (tested on N points, not proved)", unless no map commuted
   in the screen (then the states do not correspond: not equivalent).
4. **Overflow.** When equivalent, both cells' generated NumPy code runs 1000 steps from the zero
   state in float32 and float64 along a ramp of constant pre-activations: the input is z at
   every step and unit, weights reading an input are 1/input size (so every such ``lin`` is z),
   other weights, biases and diagonal parameters 0. z runs over ±0.1, ±0.5, ±1 to ±99 in steps
   of 1 and ±100 to ±1000 in steps of 10, then every integer between the first |z| with a
   difference and the ramp value before it. For each z where one cell's output becomes
   non-finite before the other's, the step (lag) is reported.

Exit status: 0 equivalent (proved or tested), 1 not equivalent, 2 bad input.
"""

from __future__ import annotations

import itertools
import time
import warnings
from dataclasses import dataclass

import mpmath
import numpy as np
import sympy

from . import functions
from . import params as _params
from .cell import Cell, load
from .ir import Affine, CellIR
from .limits import CallTimeout, available, time_limit
from .reference import step_values
from .spec import SET, display

DPS = (30, 60)  # screen and search precision, then the confirmation precision
SCREEN_POINTS = 6  # half at the smallest sizes, half at 3 units (one unit hides transposes)
STEPS = 3  # steps of each searched sequence
DEFAULT_POINTS = 200
DEFAULT_BUDGET = 10.0  # seconds of simplification per obligation
MAX_CANDIDATES = 243
RAMP = (
    (0.1, 0.5)
    + tuple(float(z) for z in range(1, 100))
    + tuple(float(z) for z in range(100, 1001, 10))
)
RAMP_STEPS = 1000
_UNDEFINED = (ZeroDivisionError, TypeError, ValueError, OverflowError)


# ----------------------------------------------------------------------------------- results


@dataclass(frozen=True)
class StateMap:
    """phi from the state of cell ``source`` (the one with more states) to that of ``target``:
    each rule ``(target state, source state, extra state or None, sign)`` reads
    ``target state = source state * exp(sign * extra)``."""

    source: str
    target: str
    rules: tuple[tuple[str, str, str | None, int], ...]

    @property
    def identity(self) -> bool:
        return all(e is None for _, _, e, _ in self.rules)

    def __str__(self) -> str:
        def rhs(s, e, sign):
            return s if e is None else f"{s}*exp({'-' if sign < 0 else ''}{e})"

        return ", ".join(f"{t} -> {rhs(s, e, sign)}" for t, s, e, sign in self.rules)

    def symbolic(self) -> dict:
        return {
            _sym(t): _sym(s) * (1 if e is None else sympy.exp(sign * _sym(e)))
            for t, s, e, sign in self.rules
        }

    def numeric(self, state: dict) -> dict:
        """The map on object arrays of mpf (at the caller's precision)."""
        return {
            t: state[s] if e is None else state[s] * _exp(sign, state[e])
            for t, s, e, sign in self.rules
        }


@dataclass(frozen=True)
class Difference:
    """Where A and B first differ: ``quantity`` (``h'`` for the output, or a new state), at
    ``step`` (1-based) and ``unit``, with A's and B's ``values`` (17 digits). The point: the
    ``inputs`` up to that step (name -> (step, n) array), each cell's initial state (``states``:
    (cell name, {state: (n,) array}) for A, then B; a mapped state rounded to float64 for
    display) and ``params`` (name -> array; each cell takes the names it has)."""

    quantity: str
    output: bool
    step: int
    unit: int
    sizes: dict
    inputs: dict
    states: tuple
    params: dict
    values: tuple[str, str]

    def point_text(self) -> str:
        parts = [f"{n} = {_fmt(v)}" for n, v in self.inputs.items()]
        parts += [f"{cell} state = (" + ", ".join(f"{n} = {_fmt(v)}" for n, v in st.items()) + ")"
                  for cell, st in self.states]  # fmt: skip
        parts += [f"{n} = {_fmt(v)}" for n, v in sorted(self.params.items())]
        return "; ".join(parts)


@dataclass(frozen=True)
class Overflow:
    dtype: str
    z: float
    step: int  # first step (1-based) where ``cell``'s output is not finite, the other's still is
    cell: str
    other: str


@dataclass(frozen=True)
class Result:
    a: str
    b: str
    equivalent: bool
    proved: bool
    points: int  # random points tested numerically (screen and search)
    reasons: tuple[str, ...]  # interface differences
    difference: Difference | None
    state_map: StateMap | None
    candidates: int
    obligations: tuple[str, ...]  # what was proved
    notes: tuple[str, ...]
    overflow: tuple[Overflow, ...]
    ramp: tuple[float, ...]  # the magnitudes of the pre-activation ramp (empty: not run)
    seconds: float

    @property
    def exit_code(self) -> int:
        return 0 if self.equivalent else 1

    @property
    def verdict(self) -> str:
        if not self.equivalent:
            return "NOT equivalent"
        return (
            "equivalent (proved)"
            if self.proved
            else f"equivalent (tested on {self.points} points, not proved)"
        )

    def text(self) -> str:
        lines = [f"{self.a} vs {self.b}: {self.verdict}"]
        lines += [f"  {r}" for r in self.reasons]
        m = self.state_map
        if m is not None and self.equivalent and m.identity:
            lines.append(f"  states: the same ({', '.join(t for t, _, _, _ in m.rules)})"
                         + (f", {self.candidates} candidate maps" if self.candidates > 1 else ""))  # fmt: skip
        elif m is not None and self.equivalent:
            lines.append(f"  state map {m.source} -> {m.target}: {m}"
                         + (f" (of {self.candidates} candidates)" if self.candidates > 1 else ""))  # fmt: skip
        if self.obligations:
            lines.append(f"  proved: {', '.join(self.obligations)}")
        if self.difference is not None:
            lines += _difference_lines(self.a, self.b, self.difference)
        lines += [f"  {n}" for n in self.notes]
        if self.ramp:
            lines += _overflow_lines(self.overflow, self.ramp)
        how = "proved symbolically" if self.proved else (
            "tested numerically" if self.equivalent else "decided by the interface" if self.difference is None
            else "counterexample found numerically")  # fmt: skip
        lines.append(f"  time: {self.seconds:.1f} s ({how})")
        return "\n".join(lines)


def _difference_lines(a, b, d: Difference) -> list[str]:
    what = "output" if d.output else "state"
    sizes = ", ".join(f"{k}={v}" for k, v in sorted(d.sizes.items()))
    width = max(len(a), len(b))
    return [f"  first differing {what}: {d.quantity} at step {d.step}, unit {d.unit} (sizes {sizes})",
            f"    {a:{width}s}  {d.values[0]}", f"    {b:{width}s}  {d.values[1]}",
            f"    at {d.point_text()}"]  # fmt: skip


def _overflow_lines(found, grid) -> list[str]:
    head = (f"  non-finite outputs on a ramp of constant pre-activations z = ±{RAMP[0]:g} to ±{RAMP[-1]:g} "
            f"({RAMP_STEPS} steps from the zero state, NumPy code): ")  # fmt: skip
    if not found:
        return [head + "no difference (both finite, or both not, from the same step)"]
    lines = [head]
    for dtype in ("float32", "float64"):
        rows = [o for o in found if o.dtype == dtype]
        for cell, other in sorted({(o.cell, o.other) for o in rows}):
            mine = [o for o in rows if o.cell == cell]
            lags = "; ".join(
                _runs([o for o in mine if o.z > 0], grid)
                + _runs([o for o in mine if o.z < 0], grid)
            )
            lines.append(
                f"    {dtype}: {cell}'s output is not finite while {other}'s is, first at {lags}"
            )
        if not rows:
            lines.append(f"    {dtype}: no difference")
    return lines


def _runs(rows, grid) -> list[str]:
    """``z=82: step 832`` per entry, runs of neighbouring ramp values with one step as a range."""
    index = {z: k for k, z in enumerate(grid)}
    rows = sorted(rows, key=lambda o: abs(o.z))
    out, k = [], 0
    while k < len(rows):
        j = k
        while (j + 1 < len(rows) and rows[j + 1].step == rows[k].step
               and index[abs(rows[j + 1].z)] == index[abs(rows[j].z)] + 1):  # fmt: skip
            j += 1
        z = f"z={rows[k].z:g}" if j == k else f"z={rows[k].z:g} to {rows[j].z:g}"
        out.append(f"{z}: step {rows[k].step}")
        k = j + 1
    return out


# ----------------------------------------------------------------------------------- entry point


def equiv(a, b, *, points: int = DEFAULT_POINTS, seed: int = 0, budget: float = DEFAULT_BUDGET,
          ramp: bool = True) -> Result:  # fmt: skip
    """Decide whether cells ``a`` and ``b`` (catalog names, spec paths or :class:`Cell`) compute
    the same outputs; see the module docstring. Raises SpecError for a spec that cannot be
    read or built."""
    start = time.perf_counter()
    ca, cb = (c if isinstance(c, Cell) else load(c) for c in (a, b))
    blocking, only, reasons = _interface(ca.ir, cb.ir)
    base = {"a": ca.name, "b": cb.name, "state_map": None, "candidates": 0, "obligations": (), "overflow": (),
            "ramp": ()}  # fmt: skip
    if blocking:
        notes = ("the cells cannot be run on the same data: nothing was evaluated",)
        return Result(equivalent=False, proved=False, points=0, reasons=tuple(blocking + reasons), difference=None,
                      notes=notes, seconds=time.perf_counter() - start, **base)  # fmt: skip
    rng = np.random.default_rng(seed)
    if only:
        decision = _decide(ca, cb, rng, points, budget, pinned=frozenset())
        notes = ()
        if 3 * len(only) <= len(_shapes(ca.ir).keys() | _shapes(cb.ir).keys()):
            notes = (
                _pinned_note(only, _decide(ca, cb, rng, points, budget, pinned=frozenset(only))),
            )
        return Result(equivalent=False, proved=False, points=decision.points, reasons=tuple(reasons),
                      difference=decision.difference, notes=notes, seconds=time.perf_counter() - start,
                      **base)  # fmt: skip
    d = _decide(ca, cb, rng, points, budget, pinned=frozenset())
    overflow, grid = _overflow(ca, cb) if (d.equivalent and ramp) else ((), ())
    return Result(a=ca.name, b=cb.name, equivalent=d.equivalent, proved=d.proved, points=d.points, reasons=(),
                  difference=d.difference, state_map=d.state_map, candidates=d.candidates,
                  obligations=d.obligations, notes=d.notes, overflow=overflow, ramp=grid,
                  seconds=time.perf_counter() - start)  # fmt: skip


def _pinned_note(only, d) -> str:
    head = f"with {', '.join(only)} = 0 (the parameters only one cell has): "
    if not d.equivalent:
        return (
            head
            + "not equivalent either"
            + (f" ({d.difference.quantity} differs)" if d.difference else "")
        )
    via = f" via {d.state_map}" if d.state_map is not None and not d.state_map.identity else ""
    return head + ("equivalent (proved)" if d.proved else "equivalent (tested, not proved)") + via


@dataclass(frozen=True)
class _Decision:
    equivalent: bool
    proved: bool
    points: int
    difference: Difference | None
    state_map: StateMap | None
    candidates: int
    obligations: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


def _decide(ca: Cell, cb: Cell, rng, points, budget, pinned) -> _Decision:
    big, small = (ca, cb) if len(ca.ir.states) >= len(cb.ir.states) else (cb, ca)
    pair = _Pair(ca, cb, big is ca, pinned)
    candidates = _candidates(big.ir, small.ir)
    survivors, screened = [], 0
    for phi in candidates:
        found, n, _ = pair.search(rng, phi, SCREEN_POINTS, steps=1, scales=(1,))
        screened = max(screened, n)
        if found is None and n:
            survivors.append(phi)
    for phi in survivors:
        proved = _prove_map(big.ir, small.ir, phi, pinned, budget)
        if proved is not None:
            return _Decision(True, True, screened, None, phi, len(candidates), proved)
    phi = survivors[0] if survivors else (candidates[0] if candidates else None)
    mode = "map" if survivors else ("extras0" if candidates else "zero")
    found, n, drawn = pair.search(rng, phi, points, steps=STEPS, mode=mode)
    notes = ()
    if n < drawn and found is None:
        notes += ((f"{drawn - n} of {drawn} drawn points are undefined in a cell (a division by zero, "
                   "the log of a negative number) and were skipped"),)  # fmt: skip
    if not candidates:
        notes += ("no state map between the cells' states: compared from the zero state only",)
    if big.ir.reduces or small.ir.reduces:
        notes += ("a cell has reductions (over units, or over the members of a set): compared numerically only, no proof",)
    elif not survivors and found is not None and len(candidates) > 1:
        notes += (f"none of the {len(candidates)} candidate state maps commutes with the step",)
    if found is not None:
        return _Decision(False, False, screened + n, found, None, len(candidates), notes=notes)
    if candidates and not survivors:  # outputs agree on the search, but no map commutes
        return _Decision(False, False, screened + n, None, None, len(candidates), notes=notes + (
            "the outputs agreed on every searched point, but the states do not correspond",))  # fmt: skip
    return _Decision(True, False, screened + n, None, phi, len(candidates), notes=notes)


# ----------------------------------------------------------------------------------- interface


def _shapes(ir: CellIR) -> dict[str, tuple[str, ...]]:
    out = {w.name: (w.out_dim, w.in_dim) for w in ir.weights}
    out |= {n: (d,) for n, d in list(ir.biases) + list(ir.diagonals)}
    return out


def _interface(a: CellIR, b: CellIR):
    """(reasons the cells cannot share data, parameters only one has, reasons for those)."""
    blocking = []
    if dict(a.inputs) != dict(b.inputs) or dict(a.sets) != dict(b.sets):
        sig = lambda ir: ", ".join([f"{n} ({d})" for n, d in ir.inputs] + [f"set {n} ({d})" for n, d in ir.sets])
        blocking.append(f"the inputs differ: {a.name} takes {sig(a)}, {b.name} takes {sig(b)}")
    if a.dims[a.output] != b.dims[b.output]:
        blocking.append(f"the output sizes differ: {a.name}'s {a.output} has size {a.dims[a.output]}, "
                        f"{b.name}'s {b.output} has size {b.dims[b.output]}")  # fmt: skip
    sa, sb = _shapes(a), _shapes(b)
    for name in sorted(sa.keys() & sb.keys()):
        if sa[name] != sb[name]:
            blocking.append(f"parameter {name} has shape ({', '.join(sa[name])}) in {a.name} and "
                            f"({', '.join(sb[name])}) in {b.name}")  # fmt: skip
    only_a, only_b = sorted(sa.keys() - sb.keys()), sorted(sb.keys() - sa.keys())
    parts = [f"only in {c.name}: {', '.join(o)}" for c, o in ((a, only_a), (b, only_b)) if o]
    reasons = [f"the parameter sets differ ({'; '.join(parts)})"] if parts else []
    return blocking, only_a + only_b, reasons


def _candidates(big: CellIR, small: CellIR) -> list[StateMap]:
    """State maps of the family (identity first), from ``big``'s state to ``small``'s."""
    bd, sd = dict(big.states), dict(small.states)
    if not set(sd) <= set(bd) or big.output != small.output or any(bd[s] != sd[s] for s in sd):
        return []
    extras = [s for s in bd if s not in sd]
    options = []
    for q in sd:
        rules = [(q, q, None, 0)]
        if q != small.output:
            rules += [(q, q, e, sign) for e in extras if bd[e] == bd[q] for sign in (1, -1)]
        options.append(rules)
    combos = itertools.islice(itertools.product(*options), MAX_CANDIDATES)
    return [StateMap(big.name, small.name, tuple(c)) for c in combos]


# ----------------------------------------------------------------------------------- numbers


def _mp(a):
    return np.vectorize(lambda v: mpmath.mpf(float(v)), otypes=[object])(np.asarray(a, dtype=float))


def _trace(ir: CellIR, params: dict, inputs: dict, state: dict, dps: int) -> list[dict]:
    """Node values of every step in mpmath at ``dps`` digits. ``params`` and ``inputs`` are float
    arrays (exact), ``state`` object arrays of mpf (so a mapped state loses nothing)."""
    with mpmath.workdps(dps):
        P = {k: _mp(v) for k, v in params.items()}
        W = {}
        for w in ir.weights:
            m = P[w.name]
            if w.mask is not None:
                keep = w.mask.evaluate(
                    {b: np.asarray(params[b], dtype=float) for b, _, _ in ir.buffers}
                )
                m = np.where(keep, m, mpmath.mpf(0))
            W[w.name] = m
        X = {k: _mp(v) for k, v in inputs.items()}
        S, out = dict(state), []
        sets = {k for k, _ in ir.sets}
        for t in range(X[ir.inputs[0][0]].shape[0]):
            values = dict(S) | {k: v if k in sets else v[t] for k, v in X.items()}
            step_values(ir, values, W, P, t)
            S = {s: values[ir.new(s)] for s, _ in ir.states}
            out.append(values)
        return out


def _differs(x, y, dps) -> bool:
    x, y = mpmath.mpf(x), mpmath.mpf(y)
    return abs(x - y) > mpmath.mpf(10) ** (-(dps // 2)) * max(1, abs(x), abs(y))


class _Pair:
    """The two cells with everything the numeric comparison needs."""

    def __init__(self, ca: Cell, cb: Cell, a_is_big: bool, pinned: frozenset):
        self.a, self.b, self.a_is_big, self.pinned = ca, cb, a_is_big, pinned
        self.big, self.small = (ca, cb) if a_is_big else (cb, ca)
        shapes = _shapes(cb.ir) | _shapes(ca.ir)
        self.shapes = shapes
        self.low = {}
        for c in (ca, cb):
            self.low |= {name: 1 for name in c.ir.size_names if name not in self.low}
            for _, dim, buf in c.ir.buffers:
                self.low[dim] = max(self.low[dim], _params.min_units(buf))

    def sizes(self, minimal: bool) -> dict:
        return {k: v if minimal else max(v, 3) for k, v in self.low.items()}

    def search(self, rng, phi, points, steps, sizes_list=None, scales=(1, 3), mode="map"):
        """(the first confirmed difference over ``points`` random points or None, how many
        points were defined in both cells, how many were drawn)."""
        sizes_list = sizes_list or [self.sizes(True), self.sizes(False)]
        per = max(1, -(-points // (len(sizes_list) * len(scales))))
        tested = drawn = 0
        for sizes in sizes_list:
            for scale in scales:
                data = self.draw(rng, sizes, per, steps, scale, phi, mode)
                found, n = self.compare(data, phi, mode)
                tested, drawn = tested + n, drawn + per
                if found is not None:
                    return found, tested, drawn
        return None, tested, drawn

    def draw(self, rng, sizes, batch, steps, scale, phi, mode) -> dict:
        r = lambda lo, hi, shape: np.round(rng.uniform(lo, hi, shape), 2) + 0.0  # + 0.0: no -0
        p = {}
        for name, dims in self.shapes.items():
            shape = tuple(sizes[d] for d in dims)
            p[name] = np.zeros(shape) if name in self.pinned else r(-scale, scale, shape)
        x = {n: r(-2 * scale, 2 * scale, shape) for n, shape in self.big.ir.input_shapes(sizes, steps, batch).items()}
        s = {}
        ranges = getattr(self.big.spec, "state_range", lambda n: (-1.0, 1.0))
        shared = {t for t, _, _, _ in phi.rules} if phi is not None else set()
        for n, d in self.big.ir.states:
            if mode == "zero" or (mode == "extras0" and n not in shared):
                s[n] = np.zeros((batch, sizes[d]))
            else:
                s[n] = r(*ranges(n), (batch, sizes[d]))
        return {"params": p, "inputs": x, "state": s, "sizes": sizes}

    def params_of(self, cell: Cell, data) -> dict:
        out = {k: data["params"][k] for k in cell.ir.param_names}
        return out | _params.buffers(cell.ir, {k: data["sizes"][k] for k in cell.ir.size_names})

    def compare(self, data, phi, mode):
        """(first confirmed difference or None, number of points defined in both cells)."""
        batch = next(iter(data["inputs"].values())).shape[1]
        try:
            found = self.differences(data, phi, mode, DPS[0], range(batch))
            defined = list(range(batch))
        except _UNDEFINED:  # one point is undefined somewhere: take the points one by one
            found, defined = [], []
            for k in range(batch):
                try:
                    found += self.differences(data, phi, mode, DPS[0], [k])
                    defined.append(k)
                except _UNDEFINED:
                    continue
        for k, _ in found:
            try:
                again = self.differences(data, phi, mode, DPS[1], [k])
            except _UNDEFINED:
                continue
            if again:
                return self.report(data, k, again[0][1], mode, phi), len(defined)
        return None, len(defined)

    def differences(self, data, phi, mode, dps, rows) -> list:
        """[(row, (label, is_output, step, unit, value_big, value_small))]: each row's first
        difference at ``dps`` digits."""
        rows = list(rows)
        pick = lambda a: a[..., rows, :] if a.ndim == 3 else a[rows]
        sets = {k for k, _ in self.big.ir.sets}
        inputs = {k: v[rows] if k in sets else pick(v) for k, v in data["inputs"].items()}
        with mpmath.workdps(dps):
            sb = {k: _mp(pick(v)) for k, v in data["state"].items()}
            ss = self.small_state(sb, phi, mode, data["sizes"])
        tb = _trace(self.big.ir, self.params_of(self.big, data), inputs, sb, dps)
        ts = _trace(self.small.ir, self.params_of(self.small, data), inputs, ss, dps)
        out = []
        with mpmath.workdps(dps):
            for i, row in enumerate(rows):
                d = self.first(tb, ts, phi, mode, i, dps)
                if d is not None:
                    out.append((row, d))
        return out

    def small_state(self, sb, phi, mode, sizes) -> dict:
        """The smaller cell's initial state for the bigger one's ``sb`` (object arrays of mpf)."""
        if phi is not None and mode != "zero":
            return phi.numeric(sb)
        rows = next(iter(sb.values())).shape[0]
        return {n: _mp(np.zeros((rows, sizes[d]))) for n, d in self.small.ir.states}

    def first(self, tb, ts, phi, mode, i, dps):
        """Row ``i``'s first difference: outputs over every step first, then states."""
        big, small = self.big.ir, self.small.ir
        out = display(small.new(small.output))
        pairs = [(out, True, t, vb[big.new(big.output)][i], vs[small.new(small.output)][i])
                 for t, (vb, vs) in enumerate(zip(tb, ts))]  # fmt: skip
        if phi is not None and mode != "zero":
            for t, (vb, vs) in enumerate(zip(tb, ts)):
                mapped = phi.numeric({s: vb[big.new(s)][i : i + 1] for s, _ in big.states})
                pairs += [(display(small.new(q)), False, t, mapped[q][0], vs[small.new(q)][i])
                          for q, _ in small.states if q != small.output]  # fmt: skip
        for label, is_output, t, xb, xs in pairs:
            for j in range(len(xb)):
                if _differs(xb[j], xs[j], dps):
                    return (label, is_output, t + 1, j, xb[j], xs[j])
        return None

    def report(self, data, k, d, mode, phi) -> Difference:
        label, is_output, step, unit, vb, vs = d
        if not is_output and phi is not None and not phi.identity:
            label = f"{label} (mapped: {phi})"
        va, vb_ = (vb, vs) if self.a_is_big else (vs, vb)
        with mpmath.workdps(DPS[1]):
            sb = {n: _mp(v[k : k + 1]) for n, v in data["state"].items()}
            ss = self.small_state(sb, phi, mode, data["sizes"])
        floats = lambda st: {n: np.array([float(v) for v in st[n][0]]) for n in st}
        states = [(self.big.name, floats(sb)), (self.small.name, floats(ss))]
        return Difference(
            quantity=label,
            output=is_output,
            step=step,
            unit=unit,
            sizes=dict(data["sizes"]),
            inputs={n: v[:step, k, :] for n, v in data["inputs"].items()},
            states=tuple(states if self.a_is_big else states[::-1]),
            params=dict(data["params"]),
            values=(mpmath.nstr(va, 17), mpmath.nstr(vb_, 17)),
        )


def _exp(sign, values):
    """exp(sign * v) of an object array of mpf."""
    return np.vectorize(lambda v: mpmath.exp(sign * v), otypes=[object])(values)


def _fmt(a) -> str:
    a = np.asarray(a)
    return f"{float(a):g}" if a.ndim == 0 else "[" + ", ".join(_fmt(v) for v in a) + "]"


# ----------------------------------------------------------------------------------- symbols


def _sym(name: str) -> sympy.Symbol:
    return sympy.Symbol(name, real=True)


class _Dot(sympy.Function):
    """``W·(v)``, unit j of a weight times a vector: linear in ``v``, otherwise opaque."""

    nargs = 1

    @classmethod
    def eval(cls, arg):
        if arg.is_zero:
            return sympy.S.Zero
        if arg.is_Add:
            return sympy.Add(*[cls(t) for t in arg.args])
        coeff, rest = arg.as_coeff_Mul()
        if coeff != 1:
            return coeff * cls(rest)
        return None

    def _eval_is_extended_real(self):
        return True

    def _eval_is_finite(self):
        return True


_DOTS: dict = {}


def _dot(weight, buffers: dict) -> type:
    """The function class of one weight; weights of the same name and mask (over buffers of
    the same initialiser, ``buffers``: name -> its symbol's name) share it."""

    def side(o):
        return f"{buffers[o.buffer]}_{o.side}" if o.buffer else f"{o.value:g}"

    m = weight.mask
    name = weight.name + ("" if m is None else f"[{side(m.left)} {m.op} {side(m.right)}]") + "·"
    if name not in _DOTS:
        _DOTS[name] = type(name, (_Dot,), {})
    return _DOTS[name]


_STEP = sympy.Symbol("step·", real=True)


def step_expressions(ir: CellIR, pinned=frozenset()) -> dict[str, sympy.Expr]:
    """Each state's new value for one step, per unit, over shared symbols: inputs, previous
    states, biases, diagonal parameters and buffers by name, weights as ``W·(v)``, the
    parameters in ``pinned`` at 0."""
    weights = {w.name: w for w in ir.weights}
    buffers = {
        b: f"{b}·{spec.init}{sorted(dict(spec.options).items())}" for b, _, spec in ir.buffers
    }
    values: dict[str, sympy.Expr] = {}

    def leaf(s):
        if s.name == ir.step:
            return _STEP
        if s.name in pinned:
            return sympy.S.Zero
        return _sym(buffers[s.name]) if s.name in buffers else s

    for node in ir.nodes:
        if isinstance(node, Affine):
            acc = sympy.Add(
                *[
                    _dot(weights[w], buffers)(values.get(arg, _sym(arg)))
                    for w, arg in node.terms
                    if w not in pinned
                ]
            )
            values[node.name] = acc + (
                _sym(node.bias) if node.bias and node.bias not in pinned else 0
            )
        else:
            subs = {
                s: values[s.name] if s.name in values else leaf(s) for s in node.expr.free_symbols
            }
            values[node.name] = node.expr.xreplace(subs)
    return {s: values[ir.new(s)] for s, _ in ir.states}


def obligations(
    big: CellIR, small: CellIR, phi: StateMap, pinned=frozenset()
) -> dict[str, sympy.Expr]:
    """For each state q of ``small``: phi_q(step_big(s)) - step_small(phi(s))_q, which must be 0."""
    nb, ns = step_expressions(big, pinned), step_expressions(small, pinned)
    new_big = {_sym(s): nb[s] for s in nb}
    m = phi.symbolic()
    return {q: m[_sym(q)].xreplace(new_big) - ns[q].xreplace(m) for q in ns}


def _elementary(e):
    table = {
        functions.sigmoid: lambda u: 1 / (1 + sympy.exp(-u)),
        sympy.tanh: lambda u: 1 - 2 / (1 + sympy.exp(2 * u)),
    }
    if hasattr(functions, "softplus"):
        table[functions.softplus] = lambda u: sympy.log(1 + sympy.exp(u))
    return e.replace(lambda x: type(x) in table, lambda x: table[type(x)](*x.args))


def _numerator(e):
    return sympy.expand(sympy.fraction(sympy.together(e))[0])


_STAGES = (  # cheap first
    _numerator,
    lambda e: _numerator(_elementary(e)),
    sympy.simplify,
    lambda e: sympy.simplify(_elementary(e)),
)


def is_zero(expr, budget: float = DEFAULT_BUDGET) -> bool:
    """True when SymPy shows ``expr`` == 0 within ``budget`` seconds; False when it does not
    (inconclusive, never a proof of the contrary)."""
    if expr == 0:
        return True
    deadline = time.monotonic() + budget
    for stage in _STAGES:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        try:
            with time_limit(left if available() else None, "simplification"):
                if stage(expr) == 0:
                    return True
        except CallTimeout:
            return False
    return False


def _prove_map(big, small, phi, pinned, budget):
    """The obligations' names when all are proved, else None (always for a cell with reductions:
    its per-unit step expressions would have to sum over units of unknown number)."""
    if big.reduces or small.reduces:
        return None
    done = []
    for q, expr in obligations(big, small, phi, pinned).items():
        if not is_zero(expr, budget):
            return None
        done.append(display(small.new(q)) + (" (output)" if q == small.output else ""))
    return tuple(done)


# ----------------------------------------------------------------------------------- overflow


def _first_nonfinite(cell: Cell, sizes: dict, z: np.ndarray, dtype) -> np.ndarray:
    """Per z: the first step (1-based) whose output is not finite, 0 if none."""
    ir = cell.ir
    sz = {k: sizes[k] for k in ir.size_names}
    p = cell.init_params(sizes=sz, dtype=dtype)
    inputs = {n for n, _ in ir.inputs}
    reads = {w: arg for node in ir.nodes if isinstance(node, Affine) for w, arg in node.terms}
    for w in ir.weights:
        value = 1.0 / sz[ir.dims[reads[w.name]]] if reads[w.name] in inputs else 0.0
        p[w.name] = np.full_like(p[w.name], value)
    for name, _ in list(ir.biases) + list(ir.diagonals):
        p[name] = np.zeros_like(p[name])
    x = {
        n: np.broadcast_to(z[None, :, None], (RAMP_STEPS, len(z), sz[d])).astype(dtype)
        for n, d in ir.inputs
    } | {n: np.broadcast_to(z[:, None, None], (len(z), sz[SET], sz[d])).astype(dtype) for n, d in ir.sets}
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = np.asarray(cell.numpy().forward(p, x, check=False).outputs)
    bad = ~np.isfinite(out).all(axis=2)  # (T, B)
    return np.where(bad.any(axis=0), bad.argmax(axis=0) + 1, 0)


def _overflow(ca: Cell, cb: Cell) -> tuple[tuple[Overflow, ...], tuple[float, ...]]:
    """Where one cell's output becomes non-finite before the other's along the ramp, and the
    magnitudes of z tried: RAMP, then every integer between the first magnitude with such a
    difference (per dtype and sign) and the ramp value before it."""
    low = _Pair(ca, cb, True, frozenset()).sizes(minimal=True)
    found = _ramp_pass(ca, cb, low, RAMP)
    extra = set()
    for dtype, sign in itertools.product(("float32", "float64"), (1, -1)):
        first = min((abs(o.z) for o in found if o.dtype == dtype and o.z * sign > 0), default=None)
        k = RAMP.index(first) if first is not None else 0
        if k > 0:
            extra |= {float(v) for v in range(int(RAMP[k - 1]) + 1, int(first))}
    if extra:
        found += _ramp_pass(ca, cb, low, tuple(sorted(extra)))
    return tuple(sorted(found, key=lambda o: (o.dtype, abs(o.z)))), tuple(sorted(set(RAMP) | extra))


def _ramp_pass(ca, cb, sizes, magnitudes) -> list[Overflow]:
    z = np.array(magnitudes + tuple(-v for v in magnitudes))
    found = []
    for dtype in (np.float32, np.float64):
        la, lb = (_first_nonfinite(c, sizes, z, dtype) for c in (ca, cb))
        for k, zk in enumerate(z):
            if la[k] == lb[k]:
                continue
            a_first = la[k] and (not lb[k] or la[k] < lb[k])
            cell, other, step = (ca.name, cb.name, la[k]) if a_first else (cb.name, ca.name, lb[k])
            found.append(Overflow(np.dtype(dtype).name, float(zk), int(step), cell, other))
    return found
