"""Which cell does an implementation compute? Catalog cells and their convention variants.

Candidates, each a single difference from a cell (the conventions in cells.md that users hit):

* other catalog cells the implementation's parameters map onto (same layout target or tensor
  shapes; for functions, the same parameter names): ``gru`` versus ``gru_cho``;
* gate order: gates with the same parameter structure permuted (``i, g, f, o`` for ``i, f, g, o``);
* state order: ``(c, h)`` for ``(h, c)``;
* equation variants, rewritten from the spec text and parsed like any spec: ``hard_sigmoid`` for
  ``sigmoid``; a gate and its complement exchanged in a state update (``z`` and ``1 - z``); a
  constant 1 added to a gate's pre-activation (the forget bias some libraries add at run time);
  a gate that reads a state's new value reading the old one, or the other way round (peepholes);
* schedule: the step counter shifted by one (clockwork periods off by one step).

Each candidate is run on fixed float64 probes with the implementation given that candidate's
parameters, and compared at every state and step.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from .errors import LstmVerifyError, SpecError
from .ir import Affine

PROBES = 2
PROBE_STEPS = 5
PROBE_BATCH = 2


@dataclass(frozen=True)
class Candidate:
    cell: object  # Cell
    description: str
    layout: object = None  # Layout for module subjects
    rename: tuple = ()  # (implementation's parameter, reference parameter): gate permutation
    state_order: tuple | None = None
    t_shift: int = 0
    kind: str = "catalog"


@dataclass
class Identification:
    claimed: str | None
    subject: str
    matches: list = field(default_factory=list)  # Candidates that reproduce the implementation
    claimed_matches: bool = False
    divergence: object = None  # first Divergence against the claimed cell
    tried: int = 0
    unusable: str | None = None  # why the implementation's return value fitted no candidate
    precision: str = "float64"  # what the probes were compared at

    def note(self, outcome) -> None:
        """Keep the first reason a candidate could not even be compared: a return value that
        is not a state explains "matches no catalog cell" better than the count alone."""
        if isinstance(outcome, str) and outcome.startswith("ReturnValueError") and self.unusable is None:
            self.unusable = outcome.partition(": ")[2]

    def summary(self) -> str:
        if self.claimed and self.claimed_matches and self.precision == "float32":
            return (f"computes `{self.claimed}` in float32: it matches at float32 tolerances, and a "
                    "float64 check fails it by float32 rounding only (check with dtype auto or float32)")
        if self.claimed and self.claimed_matches:
            return (f"computes `{self.claimed}` on ordinary inputs; the difference lies only where "
                    "the failing property looks (saturation, long sequences or gradients)")
        if self.matches:
            best = self.matches[0]
            head = f"matches {best.description}"
            if self.claimed:
                claimed_title = _title(self.claimed)
                head += f", not `{self.claimed}` ({claimed_title})"
            others = [m.description for m in self.matches[1:]]
            if others:
                head += "; also matches " + ", ".join(others)
        else:
            head = f"matches no catalog cell or convention variant ({self.tried} tried)"
            if self.unusable:
                head += f"; its return value did not fit: {self.unusable}"
        if self.divergence is not None:
            head += f"; against `{self.claimed}`, the first quantity to differ is {self.divergence}"
        if self.precision == "float32":
            head += " (compared at float32, the precision it computes in)"
        return head


def describe(cell) -> str:
    """```lstm` (LSTM with forget gate)``; a cell with ``same_as`` says which cell it equals."""
    same = cell.spec.same_as
    return f"`{cell.name}` ({cell.spec.title}" + (f"; the same equations as `{same}`)" if same else ")")


def _canonical_first(matches: list) -> list:
    """Matches in the order of their kind; among them a cell whose spec says it is the same as
    another matching cell (``same_as = "lstm"``) comes after that cell."""
    order = {"claimed": 0, "catalog": 1, "gate order": 2, "state order": 3, "equation": 4, "schedule": 5}
    names = {m.cell.name for m in matches if m.kind in ("claimed", "catalog")}

    def key(m):
        return order.get(m.kind, 9), m.kind in ("claimed", "catalog") and m.cell.spec.same_as in names

    return sorted(matches, key=key)


@lru_cache(maxsize=None)
def _title(name):
    from .cell import load

    return load(name).spec.title


# --------------------------------------------------------------------------- candidates


def _gates(ir):
    """Gate name -> {role: parameter}, for gates written as one equation over lin(...)."""
    out: dict[str, dict[str, str]] = {}
    for node in ir.nodes:
        if not isinstance(node, Affine):
            continue
        gate = node.equation.split("=")[0].strip()
        roles = out.setdefault(gate, {})
        for w, arg in node.terms:
            roles[w[len(f"W_{gate}"):] if w.startswith(f"W_{gate}_") else w] = w
        if node.bias:
            roles[node.bias[len(f"b_{gate}"):] or "b"] = node.bias
    return out


def gate_permutations(cell):
    """Renamings that permute gates with identical parameter structure."""
    ir = cell.ir
    gates = _gates(ir)
    groups: dict[tuple, list[str]] = {}
    for g, roles in gates.items():
        shape_key = tuple(sorted((r, ir.dims.get(p, "") if p in ir.dims else _wshape(ir, p)) for r, p in roles.items()))
        groups.setdefault(shape_key, []).append(g)
    out = []
    for key, members in groups.items():
        if len(members) < 2 or len(members) > 5:
            continue
        for perm in itertools.permutations(members):
            if perm == tuple(members):
                continue
            rename = {}
            for src, dst in zip(members, perm):  # the implementation uses src's block as dst
                for role, p in gates[src].items():
                    rename[p] = gates[dst][role]
            out.append((tuple(sorted(rename.items())),
                        f"`{cell.name}` with its gate blocks in the order {', '.join(perm)} "
                        f"(the layout says {', '.join(members)})"))  # fmt: skip
    return out


def _wshape(ir, name):
    for w in ir.weights:
        if w.name == name:
            return (w.out_dim, w.in_dim)
    return ""


def _tok(name):
    return re.compile(r"(?<![A-Za-z0-9_'])" + re.escape(name) + r"(?![A-Za-z0-9_'])")


def equation_variants(cell):
    """(name, description, equations) for the convention variants of a cell's equations."""
    spec = cell.spec
    eqs = [e.text for e in spec.equations]
    states = set(spec.states)
    lhs = [e.split("=")[0].strip() for e in eqs]
    gates = [lhs[i] for i, e in enumerate(eqs) if re.match(r"\s*(hard_)?sigmoid\(", e.split("=", 1)[1])]
    out = []
    if any(re.search(r"(?<!hard_)\bsigmoid\(", e) for e in eqs):
        out.append(("hard", "with hard_sigmoid (torch and Keras 3: x/6 + 1/2, clipped) in place of sigmoid",
                    [re.sub(r"(?<!hard_)\bsigmoid\(", "hard_sigmoid(", e) for e in eqs]))  # fmt: skip
        # 0.2x + 1/2 = hard_sigmoid(6/5 x)
        out.append(("hard02", "with hard_sigmoid in the 0.2x + 1/2 convention (Keras 2, ONNX "
                    "HardSigmoid's defaults) in place of sigmoid",
                    [_rewrite_calls(e, "sigmoid", lambda arg: f"hard_sigmoid(6/5*({arg}))") for e in eqs]))  # fmt: skip
    for g in gates:
        comp = re.compile(r"\(1 - " + re.escape(g) + r"\)")
        new, changed = [], []
        for lh, e in zip(lhs, eqs):
            rhs = e.split("=", 1)[1]
            if lh.endswith("'") and _tok(g).search(rhs):
                rhs = comp.sub("\0", rhs)
                rhs = _tok(g).sub(f"(1 - {g})", rhs).replace("\0", g)
                changed.append(lh)
                e = f"{lh} = {rhs.strip()}"
            new.append(e)
        if changed:
            out.append((f"comp_{g}", f"with {g} and 1 - {g} exchanged in {', '.join(changed)}", new))
    for i, g in enumerate(gates):
        lh, rhs = eqs[i].split("=", 1)
        m = re.match(r"\s*((?:hard_)?sigmoid)\((.*)\)\s*$", rhs)
        if m:
            new = list(eqs)
            new[i] = f"{lh.strip()} = {m.group(1)}({m.group(2)} + 1)"
            out.append((f"plus1_{g}", f"with a constant 1 added to {g}'s pre-activation", new))
    for i, (lh, e) in enumerate(zip(lhs, eqs)):
        if lh.endswith("'"):
            continue
        rhs = e.split("=", 1)[1]
        for s in states:
            for old, new_name, text in ((f"{s}'", s, f"{lh} reads {s} where the spec has {s}'"),
                                        (s, f"{s}'", f"{lh} reads {s}' where the spec has {s}")):  # fmt: skip
                if _tok(old).search(rhs):
                    new = list(eqs)
                    new[i] = f"{lh} = {_tok(old).sub(new_name, rhs).strip()}"
                    out.append((f"state_{lh}_{old}", f"with {text}", new))
    return out


def _rewrite_calls(text: str, name: str, new) -> str:
    """``text`` with every call ``name(ARG)`` (not part of a longer name) replaced by
    ``new(ARG)``, ARG found by balancing parentheses."""
    out, pos = [], 0
    pattern = re.compile(r"(?<![A-Za-z0-9_'])" + re.escape(name) + r"\(")
    while (m := pattern.search(text, pos)) is not None:
        depth, end = 1, m.end()
        while end < len(text) and depth:
            depth += {"(": 1, ")": -1}.get(text[end], 0)
            end += 1
        if depth:
            break  # unbalanced: the spec parser would have refused it
        out += [text[pos : m.start()], new(_rewrite_calls(text[m.end() : end - 1], name, new))]
        pos = end
    return "".join(out) + text[pos:]


@lru_cache(maxsize=256)
def _variant_cell(cell_name_or_path, key):
    from .cell import Cell, load
    from .ir import build_ir
    from .spec import variant

    base = load(cell_name_or_path)
    for k, desc, eqs in equation_variants(base):
        if k == key:
            return Cell(build_ir(variant(base.spec, f"{base.name}_variant", base.spec.title, eqs)))
    raise KeyError(key)


def catalog_candidates(cell, kind="module", runner_layout=None, engine=None):
    """The other catalog cells an implementation could compute, whatever their parameters:
    a framework cell's (``engine``) are the cells with a layout for its target and options
    (gru and gru_cho for Keras's GRUCell, told apart by reset_after); a module's, the cells
    with a layout of the same tensor names; a function's, the cells with the same inputs and
    states (a function that reads a parameter a cell lacks simply fails that candidate)."""
    from .cell import catalog as names, load
    from .conformance import NoLayoutError, engine_layout

    out = []
    for n in names():
        if n == cell.name:
            continue
        other = load(n)
        if kind == "engine":
            try:
                out.append(Candidate(other, describe(other), engine_layout(other, engine)))
            except NoLayoutError:
                pass
        elif kind == "module":
            for lay in other.spec.layouts:
                if runner_layout is not None and {t for t, _ in lay.tensors} == {t for t, _ in runner_layout.tensors}:
                    out.append(Candidate(other, describe(other), lay))
        elif [x for x, _ in other.ir.inputs] == [x for x, _ in cell.ir.inputs] and other.ir.sets == cell.ir.sets and \
                sorted(s for s, _ in other.ir.states) == sorted(s for s, _ in cell.ir.states):  # fmt: skip
            out.append(Candidate(other, describe(other)))
    return out


def candidates(cell, runner_layout=None, kind="module", catalog=True, engine=None, order=None):
    """Every candidate explanation around ``cell`` (a Cell); ``order`` is the state order the
    implementation was called with (the layout's unless the caller gave one)."""
    from .cell import catalog as names

    out = catalog_candidates(cell, kind, runner_layout, engine) if catalog else []
    if runner_layout is None and kind == "engine":
        return out  # the cell has no layout for this framework cell: its variants cannot run
    for rename, desc in gate_permutations(cell):
        out.append(Candidate(cell, desc, runner_layout, rename=rename, kind="gate order"))
    states = [s for s, _ in cell.ir.states]
    if len(states) > 1:
        base = tuple(order) if order else tuple(runner_layout.state) if runner_layout is not None else tuple(states)
        for perm in itertools.permutations(base):
            if perm != base:
                out.append(Candidate(cell, f"`{cell.name}` with its state passed as ({', '.join(perm)}) "
                                           f"instead of ({', '.join(base)})", runner_layout,
                                     state_order=perm, kind="state order"))  # fmt: skip
    for key, desc, _ in equation_variants(cell):
        try:
            v = _variant_cell(cell.spec.path if cell.name not in names() else cell.name, key)
        except (SpecError, LstmVerifyError):
            continue  # the rewrite made a cycle or another impossible cell
        out.append(Candidate(v, f"`{cell.name}` {desc}", runner_layout, kind="equation"))
    if cell.ir.step:
        for shift in (1, -1):
            out.append(Candidate(cell, f"`{cell.name}` with its step counter shifted by {shift:+d}",
                                 runner_layout, t_shift=shift, kind="schedule"))  # fmt: skip
    return out


# --------------------------------------------------------------------------- running candidates


def _probes(cell, seeds=range(PROBES), sizes=None, dtype="float64"):
    """Benign fixed cases (float64 values; at float32, rounded to float32 and checked at its
    tolerances)."""
    from .conformance import _probe_sizes
    from .strategies import Case

    sizes = dict(sizes or _probe_sizes(cell))
    dt = np.dtype(dtype)
    out = []
    for seed in seeds:
        rng = np.random.default_rng(1000 + seed)
        params = cell.init_params(sizes=sizes, init="uniform", scale=0.8, seed=1000 + seed)
        inputs = {n: rng.uniform(-1.5, 1.5, shape) for n, shape in cell.ir.input_shapes(sizes, PROBE_STEPS, PROBE_BATCH).items()}
        state = {s: 0.8 * rng.uniform(*cell.spec.state_range(s), (PROBE_BATCH, sizes[d])) for s, d in cell.ir.states}
        if dt != np.float64:
            params, inputs, state = ({k: v.astype(dt) for k, v in d.items()} for d in (params, inputs, state))
        out.append(Case(cell.name, "probe", dt, sizes, params, inputs, state, 3 if cell.ir.step else 0))
    return out


def matches(subj, candidate: Candidate, precision="float64"):
    """None if the implementation reproduces the candidate on every probe, else the first
    Divergence (or the exception text)."""
    from .conformance import Runner, _first_divergence, _forward_problem

    cell = candidate.cell
    for case in _probes(cell, sizes=subj.fixed_sizes, dtype=precision):
        try:
            runner = Runner(subj, cell, case.sizes, case.dtype, layout=candidate.layout,
                            state_order=candidate.state_order)  # fmt: skip
            got, ref, tol, names = _forward_problem(cell, runner, case, dict(candidate.rename), candidate.t_shift)
        except Exception as exc:  # noqa: BLE001 - whatever the implementation raises: not this candidate
            return f"{type(exc).__name__}: {exc}"
        d = _first_divergence(got, ref, tol, names)
        if d is not None:
            return d
    return None


def identify(impl, claimed=None, cells=None, layout=None, state=None, backend=None, options=None,
             precision="auto") -> Identification:  # fmt: skip
    """Which catalog cell or convention variant an implementation computes.

    With ``claimed``, candidates are the variants of that cell and the catalog cells its
    parameters map onto; without, every catalog cell (or ``cells``) the implementation can be
    given parameters for, and their variants. Probes are compared at ``precision``; ``"auto"``
    finds the precision the implementation computes in first, so that a float32 cell is never
    taken for a different one."""
    from .cell import Cell, catalog, load
    from .conformance import NoLayoutError, Runner, _probe_sizes, subject

    subj = subject(impl, layout, state, backend, options=options)
    if claimed is not None:
        claimed = claimed if isinstance(claimed, Cell) else load(claimed)
        bases = [claimed]
    else:
        bases = [c if isinstance(c, Cell) else load(c) for c in (cells or catalog())]
    result = Identification(claimed.name if claimed is not None else None, subj.label)
    unfit = _unfit(subj, bases, claimed is not None)
    pairs = [(b, None) for b in bases if b.name not in unfit] + \
        [(c.cell, c.layout) for cands in unfit.values() for c in cands]  # fmt: skip
    if precision == "auto":
        precision = _precision(subj, pairs)
    result.precision = precision
    seen = set()

    def try_all(pool):
        for cand in pool:
            key = (cand.cell.name, cand.description)
            if key in seen:
                continue
            seen.add(key)
            result.tried += 1
            d = matches(subj, cand, precision)
            result.note(d)
            if d is None:
                result.matches.append(cand)

    for base in bases:
        if base.name in unfit:
            try_all(unfit[base.name])
            continue
        try:
            runner = Runner(subj, base, subj.fixed_sizes or _probe_sizes(base), np.float64)
        except (LstmVerifyError, KeyError, TypeError, ValueError):
            if claimed is not None:
                raise
            continue
        layout_ = runner.layout
        own = Candidate(base, describe(base), layout_, kind="claimed")
        d = matches(subj, own, precision)
        result.note(d)
        result.tried += 1
        if claimed is not None:
            result.claimed_matches = d is None
            result.divergence = d if not isinstance(d, str) else None
            if d is None:
                return result
        elif d is None and base.name not in seen:
            seen.add(base.name)
            result.matches.append(own)
        try_all(candidates(base, layout_, runner.kind, catalog=claimed is not None,
                           engine=getattr(runner, "engine", None), order=runner.order))  # fmt: skip
    result.matches = _canonical_first(result.matches)
    return result


def _unfit(subj, bases, claimed: bool) -> dict:
    """For a framework cell built with options that no layout of a base cell describes (Keras's
    GRUCell with reset_after=False as gru, an LSTM with hard-sigmoid gates as lstm): base name
    -> the candidates to try instead, the base's own variants through its layouts for that
    framework whatever their options, and for a claimed cell the other catalog cells built
    so. Bases with no layout for the framework at all have none."""
    from .conformance import NoLayoutError, _probe_sizes, engine_layout

    if subj.engine is None or subj.layout is not None:
        return {}
    built: dict = {}
    out = {}
    for base in bases:
        sizes = tuple(sorted((subj.fixed_sizes or _probe_sizes(base)).items()))
        if sizes not in built:
            try:
                built[sizes] = subj.factory(dtype=np.float64, **{f"{k}_size": v for k, v in sizes})
            except Exception:  # noqa: BLE001 - not buildable at this cell's sizes: not this cell
                built[sizes] = None
        eng = built[sizes]
        if eng is None:
            continue
        try:
            engine_layout(base, eng)
        except NoLayoutError:
            near = [c for lay in base.spec.layouts if lay.target == eng.target
                    for c in candidates(base, lay, "engine", catalog=False, engine=eng)]  # fmt: skip
            others = catalog_candidates(base, "engine", engine=eng) if claimed else []
            out[base.name] = others + near
    return out


def _precision(subj, pairs) -> str:
    """The precision the implementation computes in: float32 if any (cell, layout) it can be run
    as says so (float32 results, or float32 rounding errors), else float64."""
    from .conformance import Runner, find_precision

    for base, lay in pairs:
        try:
            precision, _ = find_precision(base, subj, lambda sizes, dt, base=base, lay=lay:
                                          Runner(subj, base, sizes, dt, layout=lay))  # fmt: skip
        except LstmVerifyError:  # its return value is no state of this cell: another may fit
            continue
        if precision == "float32":  # a wrong candidate is off by far more than float32 rounding
            return precision
    return "float64"
