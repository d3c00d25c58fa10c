"""Spec files: TOML text to a frozen :class:`CellSpec` with exact SymPy equations.

Spec text is never evaluated. Each right-hand side goes through ``ast.parse(mode="eval")``
after cheap size checks, and a whitelist walker builds SymPy objects from the tree. ``h'`` is
rewritten to ``h_`` before parsing (same length, so columns stay exact); user names may
therefore not end in ``_``.
"""

from __future__ import annotations

import ast
import copy
import hashlib
import json
import keyword
import math
import os
import re
import stat
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import mpmath
import sympy

from .errors import SpecError
from .functions import BY_SYMPY, SPEC_FUNCTIONS, sigmoid, softplus

MAX_FILE_BYTES = 128 * 1024
MAX_EQUATION_CHARS = 1000
MAX_EQUATIONS = 200
MAX_DEPTH = 48
MAX_EXPONENT = 8
MAX_CONSTANT = 1e6
MAX_NAME = 64  # characters of a name: names become file, C and Python identifiers
MAX_FOLDED = 1e38  # constant sub-expressions must stay within float32's range (3.4e38)
NEW = "_"  # suffix of a state's new value: h' is spelled h_ inside
RESERVED = {"lin", "numpy", "torch", "mpmath", "math", "params", "inputs", "state", "bias"}
# reductions over a vector's units (their value is one number per batch row, size "1"), and the
# forms built from them; every one of these names is reserved
REDUCTIONS = {"sum", "mean", "var"}
NORMS = {"rms", "layernorm", "rmsnorm"}
# over the set axis of set inputs (sets = [...], each (B, L, n), fixed over time): setsum sums
# over the L members, softmax normalises over them; "setmax" is internal (softmax's shift)
SET_FUNCTIONS = {"setsum", "softmax"}
SET_OPS = {"setsum", "setmax"}
RESERVED |= REDUCTIONS | NORMS | SET_FUNCTIONS | SET_OPS
SCALAR = "1"  # the size of a reduction's value: broadcast against any vector
SET = "set"  # the size name of the set axis: the number of members L of the set inputs
VECTOR_KINDS = ("input", "set", "state", "new", "node")
DEFAULT_EPS = "1e-5"  # layernorm and rmsnorm: x/sqrt(var + eps), torch.nn.LayerNorm's default
# buffer initialisers (lstm_verify.params.BUFFER_INITS) and their options: name -> (min, max)
BUFFER_OPTIONS = {
    "clockwork_periods": {"modules": (1, 1024), "base": (2, 1024)},
    "heads": {"heads": (1, 1024)},
}
# buffer initialisers that need at least as many units as one of their options
BUFFER_MIN_UNITS = {"clockwork_periods": ("modules", 4), "heads": ("heads", 4)}  # (option, default)
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
_EQUATION = re.compile(r"\s*([A-Za-z][A-Za-z0-9_]*'?)\s*=(?!=)")
_KEYS = {
    "name", "title", "cite", "notes", "input", "inputs", "state", "output", "diagonal",
    "sizes", "buffers", "step", "masks", "equations", "layouts", "same_as", "ranges", "sets",
}  # fmt: skip


def display(name: str) -> str:
    """``h_`` (internal) to ``h'`` (as written in specs and papers)."""
    return name[:-1] + "'" if name.endswith(NEW) else name


@dataclass(frozen=True)
class LinArg:
    """One argument of ``lin(...)``: its weight-naming key, SymPy expression and size."""

    key: str
    expr: sympy.Expr
    dim: str
    column: int


@dataclass(frozen=True)
class Lin:
    """An affine map ``lin(a, b, ..., bias=true)`` found in an equation."""

    symbol: sympy.Symbol  # placeholder standing for the map's value in the equation
    args: tuple[LinArg, ...]
    bias: bool
    column: int


@dataclass(frozen=True)
class Reduction:
    """``sum(a, b, ...)``, ``mean(...)`` or ``var(...)`` over the units of all its arguments
    together (their concatenation); ``var`` is the population variance about ``center``, the
    ``mean`` of the same arguments. ``setsum`` and ``setmax`` (one argument) reduce over the set
    axis instead: their value is a vector of the argument's size."""

    symbol: sympy.Symbol  # placeholder standing for the reduction's value
    op: str
    args: tuple[LinArg, ...]
    column: int
    center: sympy.Symbol | None = None


@dataclass(frozen=True)
class Equation:
    lhs: str  # internal name (h_ for h')
    text: str
    expr: sympy.Expr  # right-hand side; lin calls replaced by their placeholder symbols
    lins: tuple[Lin, ...]
    dim: str
    rhs_offset: int  # column (0-based) where the right-hand side starts in text
    reductions: tuple[Reduction, ...] = ()


@dataclass(frozen=True)
class BufferSpec:
    init: str
    options: tuple[tuple[str, object], ...] = ()


@dataclass(frozen=True)
class Layout:
    """A third-party parameter layout: tensors made of stacked blocks of spec parameters."""

    name: str
    target: str
    options: tuple[tuple[str, object], ...]
    state: tuple[str, ...]
    tensors: tuple[tuple[str, tuple[str, ...]], ...]
    transpose: tuple[str, ...] = ()
    equivalent: bool = True  # False: a port users write that is NOT the same function
    # tensor -> (form, groups): "rows" (one group, blocks along axis 0), "stack" (each group
    # along axis 0, the groups along a new leading axis), "grid" (each group's blocks side by
    # side along axis 1, the groups along axis 0); tensors absent here are "rows"
    forms: tuple[tuple[str, str, tuple[tuple[str, ...], ...]], ...] = ()
    scale: tuple[tuple[str, float], ...] = ()  # spec parameter = scale * blocks + shift
    shift: tuple[tuple[str, float], ...] = ()
    frozen: tuple[str, ...] = ()  # the implementation's tensors this layout ignores
    zero: tuple[str, ...] = ()  # spec parameters the implementation does not have: pinned at 0

    def form(self, tensor: str) -> tuple[str, tuple[tuple[str, ...], ...]]:
        for name, kind, groups in self.forms:
            if name == tensor:
                return kind, groups
        return "rows", (dict(self.tensors)[tensor],)


@dataclass(frozen=True)
class CellSpec:
    path: str
    name: str
    title: str
    cite: tuple[str, ...]
    notes: str
    inputs: tuple[str, ...]
    states: tuple[str, ...]
    output: str
    diagonal: tuple[str, ...]
    buffers: tuple[tuple[str, BufferSpec], ...]
    step: str | None
    masks: tuple[tuple[str, str], ...]
    equations: tuple[Equation, ...]
    dims: tuple[tuple[str, str], ...]  # every vector name (and diagonal/buffer) -> size name
    layouts: tuple[Layout, ...]
    sha256: str = field(repr=False)
    data: dict = field(default_factory=dict, repr=False, compare=False)  # the parsed TOML
    same_as: str | None = None  # a catalog cell with the same equations, to be named first
    # state -> (lo, hi): where drawn initial states lie (default [-1, 1]); a normaliser that
    # divides must stay positive (xLSTM's n)
    ranges: tuple[tuple[str, tuple[float, float]], ...] = ()
    sets: tuple[str, ...] = ()  # set inputs: (B, L, n), fixed over time, L the size "set"

    def dim(self, name: str) -> str:
        return dict(self.dims)[name]

    def state_range(self, name: str) -> tuple[float, float]:
        return dict(self.ranges).get(name, (-1.0, 1.0))


# --------------------------------------------------------------------------- reading


def read_spec(path) -> CellSpec:
    """Read and parse one spec file; every problem raises :class:`SpecError`."""
    path = Path(path)
    raw = _read_limited(path)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(f"cannot read spec file as UTF-8 text: {exc}", path=path) from None
    return parse_spec(text, path=str(path))


def _read_limited(path: Path) -> bytes:
    """At most MAX_FILE_BYTES of a regular file. The file is opened without blocking (a FIFO
    would wait for a writer) and checked on the open descriptor; at most one byte more than the
    limit is read, so a device or a growing file cannot make the read unbounded."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise SpecError(f"cannot read spec file: {exc.strerror}", path=path) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise SpecError("not a regular file; a spec is a TOML text file", path=path)
    with os.fdopen(fd, "rb") as f:
        try:
            raw = f.read(MAX_FILE_BYTES + 1)
        except OSError as exc:
            raise SpecError(f"cannot read spec file: {exc.strerror}", path=path) from None
    if len(raw) > MAX_FILE_BYTES:
        raise SpecError(f"file is larger than {MAX_FILE_BYTES} bytes, the limit for specs", path=path)
    return raw


def parse_spec(text: str, path: str = "<spec>") -> CellSpec:
    """Parse spec text (TOML). ``path`` is used in error messages only."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_FILE_BYTES:
        raise SpecError(f"spec text is larger than {MAX_FILE_BYTES} bytes", path=path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"not valid TOML: {exc}", path=path) from None
    except RecursionError:  # tomllib recurses once per nested array or inline table
        raise SpecError("TOML arrays or tables are nested too deeply", path=path) from None
    return _Parser(data, path).run(hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest())


def variant(spec: CellSpec, name: str, title: str, equations: list[str]) -> CellSpec:
    """The same cell with other equations (a convention variant), parsed like any spec text."""
    data = copy.deepcopy(spec.data) | {"name": name, "title": title, "equations": list(equations)}
    data.pop("same_as", None)  # other equations: no longer the same as anything
    digest = hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()
    return _Parser(data, spec.path).run(digest)


class _Parser:
    def __init__(self, data: dict, path: str):
        self.data = data
        self.path = path

    def fail(self, message, equation=None, column=None):
        raise SpecError(message, path=self.path, equation=equation, column=column)

    # ----- top-level fields

    def string(self, key, default=None):
        value = self.data.get(key, default)
        if not isinstance(value, str):
            self.fail(f"'{key}' must be a string, got {type(value).__name__}")
        return value

    def names(self, key, default=()):
        value = self.data.get(key, list(default))
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.fail(f"'{key}' must be a list of names")
        for v in value:
            self.check_name(v, key)
        if len(set(value)) != len(value):
            self.fail(f"'{key}' lists a name twice: {value}")
        return tuple(value)

    def check_name(self, name, where):
        if len(name) > MAX_NAME:
            self.fail(f"{where}: a name of {len(name)} characters; at most {MAX_NAME}")
        if not _NAME.match(name) or name.endswith(NEW) or keyword.iskeyword(name):
            self.fail(
                f"{where}: {name!r} is not a valid name (letters, digits and '_', starting with a "
                "letter, not ending in '_')"
            )
        if name in RESERVED or name in SPEC_FUNCTIONS:
            self.fail(f"{where}: {name!r} is reserved")

    def run(self, sha) -> CellSpec:
        unknown = set(self.data) - _KEYS
        if unknown:
            self.fail(f"unknown keys {sorted(unknown)}; allowed: {sorted(_KEYS)}")
        for key in ("name", "cite", "state", "equations"):
            if key not in self.data:
                self.fail(f"missing required key '{key}'")
        name = self.string("name")
        if not re.fullmatch(r"[a-z][a-z0-9_]*", name) or len(name) > MAX_NAME:
            self.fail(f"'name' must be lower-case letters, digits and '_' (at most {MAX_NAME}), "
                      f"got {name[:80]!r}")
        cite = self.data["cite"]
        if isinstance(cite, str):
            cite = [cite]
        if not isinstance(cite, list) or not cite or not all(isinstance(c, str) for c in cite):
            self.fail("'cite' must be a non-empty list of strings: where the equations come from")
        if "input" in self.data and "inputs" in self.data:
            self.fail("give either 'input' or 'inputs', not both")
        if "input" in self.data:
            inputs = (self.string("input"),)
            self.check_name(inputs[0], "input")
        else:
            inputs = self.names("inputs", ["x"])
        if not inputs:
            self.fail("a cell needs at least one input")
        states = self.names("state")
        if not states:
            self.fail("'state' must name at least one state variable")
        output = self.string("output", states[0])
        if output not in states:
            self.fail(f"'output' {output!r} is not one of the states {list(states)}")
        diagonal = self.names("diagonal")
        sets = self.names("sets")
        step = self.data.get("step")
        if step is not None:
            self.check_name(self.string("step"), "step")
        buffers = self.buffers()
        declared = list(inputs) + list(sets) + list(states) + list(diagonal) + [b for b, _ in buffers]
        declared += [step] if step else []
        if len(set(declared)) != len(declared):
            self.fail("inputs, sets, states, diagonal parameters, buffers and step share a name")
        self.declared = declared
        sizes = self.sizes()
        equations = self.equations(inputs, states, diagonal, buffers, step, sizes, sets)
        masks, in_masks = self.masks({b for b, _ in buffers})
        for b in sorted(in_masks):  # a buffer used only in masks: per hidden unit
            self.dims.setdefault(b, sizes.get(b, "hidden"))
        dims = dict(self.dims)
        unused = [n for n in list(diagonal) + [b for b, _ in buffers] if n not in dims]
        if unused:
            self.fail(f"declared but never used in an equation: {unused}")
        return CellSpec(
            path=self.path,
            name=name,
            title=self.string("title", name),
            cite=tuple(cite),
            notes=self.string("notes", ""),
            inputs=inputs,
            states=states,
            output=output,
            diagonal=diagonal,
            buffers=buffers,
            step=step,
            masks=masks,
            equations=equations,
            dims=tuple(sorted(dims.items())),
            layouts=self.layouts(),
            sha256=sha,
            data=self.data,
            same_as=self.same_as(name),
            ranges=self.ranges(states),
            sets=sets,
        )

    def ranges(self, states):
        table = self.data.get("ranges", {})
        if not isinstance(table, dict):
            self.fail("'ranges' must map state names to [low, high], e.g. { n = [0, 1] }")
        out = []
        for sname, value in table.items():
            if sname not in states:
                self.fail(f"'ranges' names {sname[:80]!r}, which is not a state ({', '.join(states)})")
            ok = isinstance(value, list) and len(value) == 2 and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                and abs(v) <= MAX_CONSTANT for v in value)  # fmt: skip
            if not ok or not value[0] < value[1]:
                self.fail(f"'ranges': {sname} must be [low, high], finite numbers with low < high "
                          f"and magnitude at most {MAX_CONSTANT:g}")
            out.append((sname, (float(value[0]), float(value[1]))))
        return tuple(out)

    def same_as(self, name):
        value = self.data.get("same_as")
        if value is None:
            return None
        from .cell import catalog

        known = [c for c in catalog() if c != name]
        if not isinstance(value, str) or value not in known:
            self.fail(f"'same_as' must name another catalog cell ({', '.join(known)}), got {str(value)[:80]!r}")
        return value

    def buffers(self):
        table = self.data.get("buffers", {})
        if not isinstance(table, dict):
            self.fail("'buffers' must be a table of name = { init = ..., ... }")
        out = []
        for bname, entry in table.items():
            self.check_name(bname, "buffers")
            if not isinstance(entry, dict) or not isinstance(entry.get("init"), str):
                self.fail(f"buffer {bname!r} needs a string 'init' naming its initialiser")
            opts = {k: v for k, v in entry.items() if k != "init"}
            self.buffer_options(bname, entry["init"], opts)
            out.append((bname, BufferSpec(entry["init"], tuple(sorted(opts.items())))))
        return tuple(out)

    def buffer_options(self, bname, init, opts):
        """Options are checked here, against the initialiser's table, so that a bad value is a
        SpecError at load and never an error at init_params."""
        schema = BUFFER_OPTIONS.get(init)
        where = f"buffer {bname!r}"
        if schema is None:
            self.fail(f"{where}: unknown initialiser {init!r}; known: {sorted(BUFFER_OPTIONS)}")
        unknown = set(opts) - set(schema)
        if unknown:
            self.fail(f"{where}: unknown options {sorted(unknown)} for {init}; allowed: {sorted(schema)}")
        for k, v in opts.items():
            lo, hi = schema[k]
            if type(v) is not int or not lo <= v <= hi:
                self.fail(f"{where}: option {k!r} must be an integer from {lo} to {hi}, got {v!r}")
        if init == "clockwork_periods":
            modules, base = opts.get("modules", 4), opts.get("base", 2)
            if base ** (modules - 1) > 2**53:
                self.fail(f"{where}: the slowest period base**(modules - 1) = {base}**{modules - 1} "
                          "exceeds 2**53, beyond exact float step counts")

    def sizes(self):
        table = self.data.get("sizes", {})
        if not isinstance(table, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and _NAME.match(v) for k, v in table.items()
        ):
            self.fail("'sizes' must map names to size names, e.g. { h = \"proj\" }")
        if SET in table.values():
            self.fail(f"'sizes': {SET!r} is reserved: it is the number of members of the set inputs")
        return dict(table)

    def masks(self, buffers):
        """The masks table, and the buffers the masks read."""
        table = self.data.get("masks", {})
        if not isinstance(table, dict) or not all(isinstance(v, str) for v in table.values()):
            self.fail("'masks' must map weight names to comparisons such as \"T_in >= T_out\"")
        from .masks import parse_mask  # local: masks need the buffer names known here

        used = set()
        for weight, text in table.items():
            m = parse_mask(text, buffers, self.path, weight)
            used |= {o.buffer for o in (m.left, m.right) if o.buffer is not None}
        return tuple(sorted(table.items())), used

    def layouts(self):
        table = self.data.get("layouts", {})
        if not isinstance(table, dict):
            self.fail("'layouts' must be a table of layouts")
        out = []
        for lname, entry in table.items():
            where = f"layout {lname!r}"
            if not isinstance(entry, dict):
                self.fail(f"{where} must be a table")
            extra = set(entry) - {"target", "options", "state", "tensors", "transpose", "equivalent",
                                  "scale", "shift", "frozen", "zero"}  # fmt: skip
            if extra:
                self.fail(f"{where}: unknown keys {sorted(extra)}")
            target = entry.get("target")
            tensors = entry.get("tensors")
            if not isinstance(target, str) or not isinstance(tensors, dict) or not tensors:
                self.fail(f"{where} needs 'target' (a string) and 'tensors' (a table)")
            flat, forms = [], []
            for tname, value in tensors.items():
                kind, groups = self.tensor_form(where, tname, value)
                flat.append((tname, tuple(b for g in groups for b in g)))
                if kind != "rows":
                    forms.append((tname, kind, groups))
            options = entry.get("options", {})
            state = entry.get("state", list(self.data["state"]))
            transpose = entry.get("transpose", [])
            frozen = entry.get("frozen", [])
            if not isinstance(options, dict) or not isinstance(state, list):
                self.fail(f"{where}: 'options' must be a table and 'state' a list")
            if sorted(state) != sorted(self.data["state"]):
                self.fail(f"{where}: 'state' must order exactly the cell's states")
            if not isinstance(transpose, list) or not set(transpose) <= set(tensors):
                self.fail(f"{where}: 'transpose' must list some of its tensors")
            if not isinstance(frozen, list) or not all(isinstance(f, str) for f in frozen) or set(frozen) & set(tensors):
                self.fail(f"{where}: 'frozen' must list tensor names that 'tensors' does not map")
            zero = entry.get("zero", [])
            mapped = {b for _, bs in flat for b in bs}
            if not isinstance(zero, list) or not all(isinstance(z, str) for z in zero) or set(zero) & mapped:
                self.fail(f"{where}: 'zero' must list parameter names that 'tensors' does not map")
            equivalent = entry.get("equivalent", True)
            if not isinstance(equivalent, bool):
                self.fail(f"{where}: 'equivalent' must be true or false")
            out.append(
                Layout(
                    lname,
                    target,
                    tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in options.items())),
                    tuple(state),
                    tuple(flat),
                    tuple(transpose),
                    equivalent,
                    tuple(forms),
                    self.layout_numbers(where, entry, "scale"),
                    self.layout_numbers(where, entry, "shift"),
                    tuple(frozen),
                    tuple(zero),
                )
            )
        return tuple(out)

    def tensor_form(self, where, tname, value):
        """("rows" | "stack" | "grid", groups of parameter names) of one layout tensor."""
        def names(v):
            return isinstance(v, list) and v and all(isinstance(b, str) for b in v)

        if names(value):
            return "rows", (tuple(value),)
        if isinstance(value, dict) and len(value) == 1:
            kind, groups = next(iter(value.items()))
            if kind in ("stack", "grid") and isinstance(groups, list) and groups and all(names(g) for g in groups):
                return kind, tuple(tuple(g) for g in groups)
            if kind == "interleave" and isinstance(groups, list) and len(groups) == 1 and names(groups[0]):
                return kind, (tuple(groups[0]),)
        if isinstance(value, dict) and set(value) == {"heads", "rows"} and names(value["rows"]):
            k = value["heads"]
            if type(k) is int and 1 <= k <= 1024:
                return f"heads:{k}", (tuple(value["rows"]),)
        self.fail(f"{where}: tensor {tname!r} must be a list of parameter names, or a table with one "
                  f"key, stack or grid (a list of such lists) or interleave (a list of one such "
                  f"list), or {{ heads = K (1 to 1024), rows = [parameter names] }}")  # fmt: skip

    def layout_numbers(self, where, entry, key):
        """A layout's ``scale`` or ``shift`` table: parameter name -> finite number (scale not 0)."""
        table = entry.get(key, {})
        ok = isinstance(table, dict) and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and (key == "shift" or v)
            for v in table.values()
        )
        if not ok:
            self.fail(f"{where}: {key!r} must be a table of parameter names to finite numbers"
                      + (" other than 0" if key == "scale" else ""))  # fmt: skip
        return tuple(sorted((k, float(v)) for k, v in table.items()))

    # ----- equations

    def equations(self, inputs, states, diagonal, buffers, step, sizes, sets=()):
        texts = self.data["equations"]
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            self.fail("'equations' must be a list of strings like \"h' = tanh(lin(x, h))\"")
        if not texts:
            self.fail("'equations' is empty")
        if len(texts) > MAX_EQUATIONS:
            self.fail(f"{len(texts)} equations; at most {MAX_EQUATIONS} are allowed")
        heads = []
        for text in texts:
            self.check_text(text)
            if len(text) > MAX_EQUATION_CHARS:
                self.fail(
                    f"equation is {len(text)} characters long; at most {MAX_EQUATION_CHARS}",
                    equation=text[:40] + "...",
                    column=MAX_EQUATION_CHARS + 1,
                )
            m = _EQUATION.match(text)
            if not m:
                self.fail("expected 'name = expression'", equation=text, column=1)
            heads.append((m.group(1), m.end()))
        # classify names
        self.kinds = {n: "input" for n in inputs}
        self.kinds.update({n: "set" for n in sets})
        self.kinds.update({n: "state" for n in states})
        self.kinds.update({n + NEW: "new" for n in states})
        self.kinds.update({n: "diagonal" for n in diagonal})
        self.kinds.update({b: "buffer" for b, _ in buffers})
        if step:
            self.kinds[step] = "step"
        self.dims = {}
        for n in list(inputs):
            self.dims[n] = sizes.get(n, "input")
        for n in sets:
            self.dims[n] = sizes.get(n, "item")
        for n in states:
            self.dims[n] = self.dims[n + NEW] = sizes.get(n, "hidden")
        defined = {}
        scalar = None
        for text, (lhs, _) in zip(texts, heads):
            col = text.index(lhs) + 1
            if lhs.endswith("'"):
                base = lhs[:-1]
                if base not in states:
                    self.fail(f"only state variables take a prime; {base!r} is not a state",
                              equation=text, column=col)
                lhs = base + NEW
            else:
                self.check_name(lhs, "equation")
                if lhs in self.kinds:
                    kind = self.kinds[lhs]
                    hint = f"; write {lhs}' for its new value" if kind == "state" else ""
                    self.fail(f"cannot assign to {lhs!r}, which is a {kind}{hint}",
                              equation=text, column=col)
                self.kinds[lhs] = "node"
                if scalar is None:
                    scalar = self.scalar_nodes(texts, heads, sizes)
                self.dims[lhs] = SCALAR if lhs in scalar else sizes.get(lhs, "hidden")
            if lhs in defined:
                self.fail(f"{display(lhs)!r} is defined twice", equation=text, column=col)
            defined[lhs] = text
        for n in states:
            if n + NEW not in defined:
                self.fail(f"state {n!r} is never updated: add an equation for {n}'")
        unknown_sizes = set(sizes) - set(self.kinds)
        if unknown_sizes:
            self.fail(f"'sizes' names unknown variables {sorted(unknown_sizes)}")
        self.sizes_given = sizes
        self.symbols = {n: sympy.Symbol(n, real=True) for n in self.kinds}
        return tuple(
            self.equation(text, lhs if not lhs.endswith("'") else lhs[:-1] + NEW, offset)
            for text, (lhs, offset) in zip(texts, heads)
        )

    def scalar_nodes(self, texts, heads, sizes) -> set[str]:
        """Nodes whose value is one number per batch row: every vector they read outside a
        reduction is itself such a node. Found before the equations are built, since a size is
        needed to check each name; equations that do not parse are left to ``equation``."""
        trees = {}
        for text, (lhs, offset) in zip(texts, heads):
            source = re.sub(r"([A-Za-z0-9_])'", r"\1" + NEW, text[offset:]).strip()
            if lhs.endswith("'") or lhs in sizes or _depth(source) > MAX_DEPTH:
                continue
            try:
                trees[lhs] = ast.parse(source, mode="eval")
            except (SyntaxError, RecursionError, MemoryError, ValueError):
                continue
        outside, reduces = {}, {}
        for lhs, tree in trees.items():
            inner = set()
            for sub in ast.walk(tree):
                if isinstance(sub, ast.Call) and isinstance(sub.func, ast.Name) and sub.func.id in REDUCTIONS | {"rms"}:
                    inner |= {id(x) for x in ast.walk(sub)}
            reduces[lhs] = bool(inner)
            outside[lhs] = {x.id for x in ast.walk(tree) if isinstance(x, ast.Name) and id(x) not in inner}
        vectors = {n for n, k in self.kinds.items() if k in ("input", "set", "state", "new")} | set(trees) | {"lin"}
        vectors |= {h[0] for h in heads if not h[0].endswith("'")} - set(trees)
        vectors |= set(sizes)
        scalar: set[str] = set()
        changed = True
        while changed:
            changed = False
            for lhs in trees:
                read = outside[lhs] & vectors
                if lhs not in scalar and read <= scalar and (reduces[lhs] or read):
                    scalar.add(lhs)
                    changed = True
        return scalar

    def check_text(self, text):
        """One line of printable text; ASCII before a ``#`` comment (Python would read a
        fullwidth letter as its ASCII twin), no quotes there (equations hold no strings, and
        a prime only follows a name)."""
        code_end = text.find("#") if "#" in text else len(text)
        for pos, ch in enumerate(text):
            col = pos + 1
            if not ch.isprintable() and ch != "\t":
                self.fail(f"character {ch!r} is not allowed: an equation is one line of text",
                          equation=text, column=col)
            if pos >= code_end:
                continue
            if not ch.isascii():
                self.fail(f"character {ch!r} (U+{ord(ch):04X}) is not allowed: names and operators "
                          "are ASCII (non-ASCII text may follow a '#')", equation=text, column=col)
            if ch == '"' or (ch == "'" and (pos == 0 or not re.match(r"[A-Za-z0-9_]", text[pos - 1]))):
                self.fail("quotes are not allowed: equations hold no strings, and a prime follows "
                          "a state name (h')", equation=text, column=col)

    def equation(self, text, lhs, offset):
        rhs = text[offset:]
        source = re.sub(r"([A-Za-z0-9_])'", r"\1" + NEW, rhs)
        if _depth(source) > MAX_DEPTH:
            self.fail(f"nesting deeper than {MAX_DEPTH}", equation=text, column=offset + _depth(source, at=True) + 1)
        try:
            tree = ast.parse(source.strip() and source.lstrip(), mode="eval")
        except SyntaxError as exc:
            lead = len(source) - len(source.lstrip())
            col = offset + lead + (exc.offset or 1)
            self.fail(f"syntax error: {exc.msg}", equation=text, column=col)
        except (RecursionError, MemoryError, ValueError):
            self.fail("expression too deeply nested or malformed", equation=text, column=offset + 1)
        lead = len(source) - len(source.lstrip())
        walker = _Walker(self, text, offset + lead, self.dims[lhs], lhs)
        expr = walker.top(tree.body)
        return Equation(lhs, text, expr, tuple(walker.lins), self.dims[lhs], offset + lead,
                        tuple(walker.reductions))


class _Walker:
    """Builds SymPy from a whitelisted expression tree and checks sizes."""

    def __init__(self, parser: _Parser, text, offset, dim, lhs):
        self.p = parser
        self.text = text
        self.offset = offset
        self.dim = dim
        self.lhs = lhs
        self.lins: list[Lin] = []
        self.reductions: list[Reduction] = []
        self.in_reduction = ""  # "reduce" inside sum, mean, var, rms, setsum, softmax; "norm" in a norm's vector
        self.depth = 0

    def fail(self, message, node):
        col = self.offset + getattr(node, "col_offset", 0) + 1
        self.p.fail(message, equation=self.text, column=col)

    def top(self, node):
        expr = self.build(node, self.dim, in_lin=False)
        if not self.has_vector(node):
            self.fail("the right-hand side must involve at least one vector", node)
        return expr

    def has_vector(self, node):
        for sub in ast.walk(node):
            if isinstance(sub, ast.Name) and self.p.kinds.get(sub.id) in VECTOR_KINDS:
                return True
            if isinstance(sub, ast.Call) and isinstance(sub.func, ast.Name) and sub.func.id == "lin":
                return True
        return False

    def build(self, node, dim, in_lin):
        self.depth += 1
        if self.depth > MAX_DEPTH:
            self.fail(f"expression nested deeper than {MAX_DEPTH}", node)
        try:
            method = getattr(self, "_" + type(node).__name__, None)
            if method is None:
                self.fail(f"{type(node).__name__} is not allowed in equations ({_EXPLAIN})", node)
            return self.finite(method(node, dim, in_lin), node)
        finally:
            self.depth -= 1

    def finite(self, expr, node):
        """Reject what SymPy folds to a non-finite value (``0**-1`` is zoo) and constant parts
        that no float32 can hold (``exp(100)``), at the sub-expression where they arise."""
        if expr.has(sympy.I):
            self.fail("this evaluates to a complex number (the log of a negative constant)", node)
        if expr.has(sympy.zoo, sympy.oo, -sympy.oo, sympy.nan):
            self.fail(f"this evaluates to {expr.func.__name__ if expr.is_Atom else 'an expression'} "
                      "that is not finite (a division by zero or an infinite constant)", node)
        if not expr.free_symbols:
            value = _constant_value(expr)
            if not (mpmath.isfinite(value) and abs(value) <= MAX_FOLDED):
                shown = mpmath.nstr(value, 3) if mpmath.isfinite(value) else str(value)
                self.fail(f"constant part {str(expr)[:60]} is {shown}, beyond {MAX_FOLDED:g}: float32 code "
                          "could not represent it", node)
        return expr

    def _Constant(self, node, dim, in_lin):
        v = node.value
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            self.fail(f"constant {v!r} is not allowed; only numbers", node)
        if not abs(v) <= MAX_CONSTANT:
            self.fail(f"constant {v!r} exceeds {MAX_CONSTANT:g} in magnitude", node)
        return sympy.Integer(v) if isinstance(v, int) else sympy.Rational(repr(v))

    def _Name(self, node, dim, in_lin):
        name = node.id
        kind = self.p.kinds.get(name)
        if kind is None:
            shown = display(name)
            if name.endswith(NEW) and name[:-1] in self.p.kinds:
                self.fail(f"{shown!r}: only state variables take a prime", node)
            self.fail(f"unknown name {shown!r}; known: {sorted(map(display, self.p.kinds))}", node)
        if kind in ("diagonal", "buffer") and dim == SCALAR:
            self.fail(f"{kind} {name!r} is per unit; this equation's value is one number per row "
                      "(a reduction's)", node)
        if kind in ("diagonal", "buffer"):
            have = self.p.dims.setdefault(name, self.p.sizes_given.get(name, dim))
            if have != dim:
                self.fail(f"{name!r} has size {have!r} but is used where vectors have size {dim!r}",
                          node)
        elif kind != "step":
            have = self.p.dims[name]
            if have == SCALAR and kind == "node":  # one number per row: broadcast
                return self.p.symbols[name]
            if have != dim:
                self.fail(
                    f"size mismatch: {display(name)!r} has size {have!r} but this expression's "
                    f"vectors have size {dim!r}",
                    node,
                )
        return self.p.symbols[name]

    def _UnaryOp(self, node, dim, in_lin):
        operand = self.build(node.operand, dim, in_lin)
        if isinstance(node.op, ast.USub):
            return -operand
        if isinstance(node.op, ast.UAdd):
            return operand
        self.fail(f"operator {type(node.op).__name__} is not allowed", node)

    def _BinOp(self, node, dim, in_lin):
        op = type(node.op)
        if op is ast.Pow:
            exp = node.right
            sign = 1
            if isinstance(exp, ast.UnaryOp) and isinstance(exp.op, ast.USub):
                exp, sign = exp.operand, -1
            if not (isinstance(exp, ast.Constant) and type(exp.value) is int):
                self.fail("exponents must be integer literals", node.right)
            if abs(exp.value) > MAX_EXPONENT:
                self.fail(f"exponent {sign * exp.value} exceeds {MAX_EXPONENT} in magnitude",
                          node.right)
            return self.build(node.left, dim, in_lin) ** (sign * exp.value)
        ops = {ast.Add: sympy.Add, ast.Sub: None, ast.Mult: sympy.Mul, ast.Div: None}
        if op not in ops:
            self.fail(f"operator {op.__name__} is not allowed (use + - * / and **)", node)
        left = self.build(node.left, dim, in_lin)
        right = self.build(node.right, dim, in_lin)
        if op is ast.Add:
            return left + right
        if op is ast.Sub:
            return left - right
        if op is ast.Mult:
            return left * right
        if right == 0:
            self.fail("division by zero", node)
        return left / right

    def _Call(self, node, dim, in_lin):
        if not isinstance(node.func, ast.Name):
            self.fail("only plain function names can be called", node)
        fname = node.func.id
        if fname == "lin":
            if in_lin:
                self.fail("lin(...) cannot be nested inside lin(...)", node)
            if self.in_reduction == "reduce":
                self.fail("lin(...) cannot appear inside sum, mean, var, rms, setsum or softmax; "
                          "give it its own equation", node)
            return self.lin(node, dim)
        if fname in REDUCTIONS or fname in NORMS or fname in SET_FUNCTIONS:
            if in_lin or self.in_reduction:
                self.fail(f"{fname}(...) cannot appear inside lin(...) or another reduction; "
                          "give it its own equation", node)
            if fname in SET_FUNCTIONS:
                return self.over_set(node, dim, fname)
            return self.reduction(node, dim, fname)
        func = SPEC_FUNCTIONS.get(fname)
        if func is None:
            self.fail(
                f"unknown function {fname!r}; known: lin, {', '.join(sorted(SPEC_FUNCTIONS))}", node
            )
        if node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
            self.fail(f"{fname}() takes plain positional arguments only", node)
        if len(node.args) != func.arity:
            self.fail(f"{fname}() takes {func.arity} argument(s), got {len(node.args)}", node)
        args = [self.build(a, dim, in_lin) for a in node.args]
        if func.name == "log" and isinstance(args[0], sigmoid):
            return -softplus(-args[0].args[0])  # log(sigmoid(u)), finite for every u
        return func.sympy(*args)

    def vector_dim(self, a):
        """Size of the first vector (not a reduction's value) an argument reads, or fail."""
        names = sorted((s for s in ast.walk(a) if isinstance(s, ast.Name)
                        and self.p.kinds.get(s.id) in VECTOR_KINDS
                        and self.p.dims.get(s.id) != SCALAR), key=lambda s: s.col_offset)  # fmt: skip
        if not names:
            self.fail("this argument must involve a vector variable (reductions and norms act "
                      "on vectors)", a)
        return self.p.dims[names[0].id]

    def over_set(self, node, dim, fname):
        """setsum(v): the sum over the set's members, a vector of v's size; softmax(e): over the
        members, exp(e - max)/setsum(exp(e - max)) (the shift by the maximum changes neither
        the value nor the derivative). Whether v has the set axis is checked in the IR."""
        if node.keywords or any(isinstance(a, ast.Starred) for a in node.args) or len(node.args) != 1:
            self.fail(f"{fname}() takes one positional argument", node)
        column = self.offset + node.col_offset + 1
        a = node.args[0]
        names = sorted((s for s in ast.walk(a) if isinstance(s, ast.Name)
                        and self.p.kinds.get(s.id) in VECTOR_KINDS), key=lambda s: s.col_offset)  # fmt: skip
        if not names:
            self.fail(f"{fname}() needs a vector with the set axis (a set input or what reads one)", a)
        wide = [s for s in names if self.p.dims.get(s.id) != SCALAR]
        adim = self.p.dims[wide[0].id] if wide else SCALAR
        if adim != SCALAR and adim != dim:
            self.fail(f"size mismatch: {fname}() gives a vector of size {adim!r} but this expression's "
                      f"vectors have size {dim!r}", node)
        self.in_reduction = "reduce"
        try:
            v = self.build(a, adim, False)
        finally:
            self.in_reduction = ""
        arg = LinArg("0", v, adim, self.offset + a.col_offset + 1)
        if fname == "setsum":
            return self.reduce("setsum", [arg], column)
        shifted = sympy.exp(v - self.reduce("setmax", [arg], column))
        return shifted / self.reduce("setsum", [LinArg("0", shifted, adim, arg.column)], column)

    def reduction(self, node, dim, fname):
        """sum, mean and var over the units of their arguments; rms, layernorm and rmsnorm in
        terms of them (see the module's REDUCTIONS and NORMS)."""
        if node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
            self.fail(f"{fname}() takes plain positional arguments only", node)
        column = self.offset + node.col_offset + 1
        if fname in REDUCTIONS | {"rms"}:
            if not node.args:
                self.fail(f"{fname}() needs one or more vector arguments", node)
            args = []
            self.in_reduction = "reduce"
            try:
                for a in node.args:
                    adim = self.vector_dim(a)
                    args.append(LinArg(str(len(args)), self.build(a, adim, False), adim,
                                       self.offset + a.col_offset + 1))
            finally:
                self.in_reduction = ""
            if fname == "rms":  # sqrt(mean(a**2, b**2, ...))
                args = [LinArg(a.key, a.expr**2, a.dim, a.column) for a in args]
                return sympy.sqrt(self.reduce("mean", args, column))
            return self.reduce(fname, args, column)
        # layernorm(v, gain, bias, eps = 1e-5), rmsnorm(v, gain, eps = 1e-5): v's units
        want = 3 if fname == "layernorm" else 2
        if len(node.args) not in (want, want + 1):
            shown = "v, gain, bias" if fname == "layernorm" else "v, gain"
            self.fail(f"{fname}() takes ({shown}) and optionally eps, a positive number "
                      f"(default {DEFAULT_EPS}, inside the square root)", node)
        if dim == SCALAR:
            self.fail(f"{fname}() gives a vector; this equation's value is one number per row", node)
        self.vector_dim(node.args[0])
        self.in_reduction = "norm"
        try:
            v = self.build(node.args[0], dim, False)
        finally:
            self.in_reduction = ""
        rest = [self.build(a, dim, False) for a in node.args[1:want]]
        eps = sympy.Rational(DEFAULT_EPS)
        if len(node.args) > want:
            e = node.args[want]
            if not (isinstance(e, ast.Constant) and type(e.value) in (int, float) and 0 < e.value <= 1):
                self.fail(f"{fname}(): eps must be a number in (0, 1], e.g. 1e-5", e)
            eps = sympy.Rational(repr(e.value))
        arg = [LinArg("0", v, dim, self.offset + node.args[0].col_offset + 1)]
        if fname == "layernorm":
            mean = self.reduce("mean", arg, column)
            var = self.reduce("var", arg, column)
            return rest[0] * (v - mean) / sympy.sqrt(var + eps) + rest[1]
        square = [LinArg("0", v**2, dim, arg[0].column)]
        return rest[0] * v / sympy.sqrt(self.reduce("mean", square, column) + eps)

    def reduce(self, op, args, column):
        """The placeholder of a reduction, shared by identical ones in this equation."""
        for a in args:  # h - h folds to 0: nothing left to reduce over
            if not any(self.p.kinds.get(x.name) in VECTOR_KINDS or "@" in x.name
                       for x in a.expr.free_symbols):  # fmt: skip
                self.p.fail("this reduction's argument simplifies to a constant; it must vary with "
                            "a vector", equation=self.text, column=a.column)
        key = (op, tuple((a.expr, a.dim) for a in args))
        for r in self.reductions:
            if (r.op, tuple((a.expr, a.dim) for a in r.args)) == key:
                return r.symbol
        center = self.reduce("mean", args, column) if op == "var" else None
        symbol = sympy.Symbol(f"red{len(self.reductions)}@{self.lhs}", real=True)
        self.reductions.append(Reduction(symbol, op, tuple(args), column, center))
        return symbol

    def lin(self, node, dim):
        if not node.args or any(isinstance(a, ast.Starred) for a in node.args):
            self.fail("lin(...) needs one or more vector arguments", node)
        bias = True
        for kw in node.keywords:
            if kw.arg != "bias":
                self.fail(f"lin() takes only the keyword 'bias', got {kw.arg!r}", kw.value)
            v = kw.value
            if isinstance(v, ast.Constant) and isinstance(v.value, bool):
                bias = v.value
            elif isinstance(v, ast.Name) and v.id in ("true", "false"):
                bias = v.id == "true"
            else:
                self.fail("bias must be true or false", v)
        args = []
        for a in node.args:
            names = [
                s.id for s in ast.walk(a)
                if isinstance(s, ast.Name) and self.p.kinds.get(s.id) in VECTOR_KINDS
            ]  # fmt: skip
            if not names:
                self.fail("each lin() argument must involve a vector variable", a)
            first = min(
                (s for s in ast.walk(a) if isinstance(s, ast.Name) and s.id in names),
                key=lambda s: s.col_offset,
            )
            arg_dim = self.p.dims[first.id]
            if arg_dim == SCALAR:
                self.fail(f"{first.id!r} is a reduction's value (one number per row); lin() "
                          "arguments are vectors", a)
            expr = self.build(a, arg_dim, in_lin=True)
            key = names[-1] if isinstance(a, ast.Name) else sorted(
                (s for s in ast.walk(a) if isinstance(s, ast.Name) and s.id in names),
                key=lambda s: s.col_offset,
            )[-1].id
            key = key[:-1] if key.endswith(NEW) else key
            if any(k.key == key for k in args):
                self.fail(f"two lin() arguments would share the weight name for {key!r}", a)
            args.append(LinArg(key, expr, arg_dim, self.offset + a.col_offset + 1))
        placeholder = sympy.Symbol(f"lin{len(self.lins)}@{self.lhs}", real=True)
        self.lins.append(Lin(placeholder, tuple(args), bias, self.offset + node.col_offset + 1))
        return placeholder


def _depth(source: str, at: bool = False) -> int:
    """Greatest bracket depth of ``source`` (``at``: the position where it first exceeds
    MAX_DEPTH)."""
    depth = deepest = 0
    for pos, ch in enumerate(source):
        depth += ch in "([{"
        depth -= ch in ")]}"
        if at and depth > MAX_DEPTH:
            return pos
        deepest = max(deepest, depth)
    return deepest


def _constant_value(expr) -> mpmath.mpf:
    """The value of a constant expression the walker built, at 30 digits. Its parts were checked
    as they were built, so every argument here is finite and within MAX_FOLDED."""
    with mpmath.workdps(30):
        if expr.is_Rational:
            return mpmath.mpf(expr.p) / expr.q
        if expr.is_Number:
            return mpmath.mpf(str(expr))
        if expr.is_NumberSymbol:  # exp(1) folds to E
            return mpmath.mpf(str(sympy.N(expr, 30)))
        args = [_constant_value(a) for a in expr.args]
        try:
            if expr.is_Add:
                return mpmath.fsum(args)
            if expr.is_Mul:
                return mpmath.fprod(args)
            if expr.is_Pow:
                return args[0] ** args[1]
            return BY_SYMPY[expr.func].mpmath(*args)
        except (ZeroDivisionError, ValueError, OverflowError):
            return mpmath.nan


_EXPLAIN = "equations use numbers, names, + - * / **, the functions " + ", ".join(
    sorted(SPEC_FUNCTIONS)
) + " and lin(...)"
