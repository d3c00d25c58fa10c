"""Check a user's implementation against a spec: forward values, sequences, gradients.

A *subject* is the user's code plus how the spec's parameters reach it:

* a **torch module** factory (``MyLSTMCell``, or ``torch.nn.GRUCell`` itself) called as
  ``factory(input_size=..., hidden_size=..., **{f"{size}_size": ...})``; the module is called as
  torch.nn cells are, ``module(x, state) -> new state`` (``module(x, state, t)`` for cells with a
  step counter), with the state a tuple in the layout's order (a lone tensor for one state). A
  *layout* (the spec's own table, e.g. ``"torch"``, or a dict ``{tensor: [spec parameters]}``
  with optional ``transpose`` and ``state``) says which spec parameters its tensors stack.
* a **function** ``fn(params, x, state) -> new state`` (``t`` too for step cells) that
  receives the spec's named parameters, given either itself or as a factory returning it
  (called with the sizes as above); ``backend`` says whether it takes NumPy arrays or torch
  tensors. :func:`subject` tells the two apart by the signature (see there).

The new state may be returned as a tuple (or list) in the layout's state order, as a lone array
for a cell with one state, or as a dict keyed by the spec's state names; anything else stops the
check at once with a :class:`ReturnValueError` naming what was returned and what is expected.

Every property runs under Hypothesis with the strategies of :mod:`lstm_verify.strategies`, so a
failure is shrunk to a small example before it is reported; the reference is the generated
float64 NumPy code, itself verified against the 60-digit mpmath evaluation by ``lstm-verify
check``. Tolerances scale with a condition estimate (:func:`compare.sensitivity`).
"""

from __future__ import annotations

import inspect
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .compare import sensitivity, tolerance
from .errors import GenerationError, LstmVerifyError, ShapeError, VerificationError
from .layout import stack_gradients
from .spec import Layout, display

BACKENDS = ("numpy", "torch")


# --------------------------------------------------------------------------- subjects


@dataclass(frozen=True)
class Subject:
    """A user's implementation and how spec parameters reach it."""

    factory: Callable
    layout: Any = None  # layout name, dict or Layout (module subjects)
    state: tuple[str, ...] | None = None  # state order of calls (default: layout's or spec's)
    backend: str | None = None  # function subjects: "numpy" or "torch"
    label: str = ""
    options: tuple = ()  # built-in subjects: constructor options or operator attributes
    engine: Any = None  # built-in subjects: the Engine class (the factory builds it)

    @property
    def fixed_sizes(self) -> dict | None:
        """Sizes the subject cannot change (a model file's), or None."""
        return getattr(self.engine, "fixed_sizes", None)


KINDS = ("factory", "function")


class ReturnValueError(ShapeError):
    """The implementation returned something that is not a new state (a ``dict`` with other
    keys, ``None``, a tuple of the wrong length, a non-array): the check stops at once, as for
    a factory that does not fit, instead of reporting wrong values."""


class _FunctionFactory:
    """A function subject given as the function itself: a factory that ignores the sizes."""

    def __init__(self, fn):
        self.fn = fn

    def __call__(self, **sizes):
        return self.fn

    def __repr__(self):
        return f"<the function {getattr(self.fn, '__qualname__', self.fn)!r} itself>"


def is_function(impl) -> bool:
    """True if ``impl`` is ``fn(params, x, state)`` itself rather than a factory.

    Decided from the signature alone, never by calling it: a callable that accepts three
    positional arguments and has no parameter named ``*_size`` is the function; a class, a
    callable taking the sizes (``input_size=``, ``hidden_size=``, ``**sizes``) and a callable
    whose signature cannot be read are factories."""
    if isinstance(impl, type):
        return False
    try:
        sig = inspect.signature(impl)
    except (TypeError, ValueError):
        return False
    if any(name.endswith("_size") for name in sig.parameters):
        return False
    try:
        sig.bind(None, None, None)
    except TypeError:
        return False
    return True


class NoLayoutError(ShapeError):
    """The claimed cell has no layout for a framework cell built with these options (Keras's
    GRUCell with reset_after=True claimed as gru_cho): the implementation computes something
    else, which identification names."""


def _builtin_subject(ref, options, layout, state, label):
    from .frameworks import builtin

    engine = builtin(ref) if isinstance(ref, str) else ref
    opts = dict(options or {})

    def build(dtype=np.float64, **sizes):
        return engine({k[: -len("_size")]: v for k, v in sizes.items()}, opts, dtype)

    label = label or (ref if isinstance(ref, str) else f"{ref.__module__}.{ref.__qualname__}")
    return Subject(build, layout, tuple(state) if state else None, None, label,
                   tuple(sorted(opts.items())), engine)  # fmt: skip


def subject(impl, layout=None, state=None, backend=None, label=None, kind=None, options=None) -> Subject:
    """Wrap an implementation (or return an existing Subject) with how parameters and state
    reach it.

    ``impl`` is a factory (a ``torch.nn.Module`` class, or a function called with
    ``input_size=``, ``hidden_size=``, ... that returns a module or ``fn(params, x, state)``),
    or such a function ``fn`` itself. ``kind`` (``"factory"`` or ``"function"``) says which;
    by default :func:`is_function` reads it from the signature: three positional parameters
    and none named ``*_size`` make a function, anything else a factory. Pass ``kind`` for a
    callable whose signature says both (``def f(*args, **kwargs)`` is taken as a function)."""
    if isinstance(impl, Subject):
        return impl
    from .frameworks import Engine, is_builtin

    if is_builtin(impl) or (isinstance(impl, type) and issubclass(impl, Engine)):
        return _builtin_subject(impl, options, layout, state, label)
    if isinstance(impl, str):
        from .loading import load_object

        impl = load_object(impl)
        if isinstance(impl, Subject):
            return impl
    if not callable(impl):
        raise TypeError(f"an implementation must be a factory (a class or function) or a function "
                        f"fn(params, x, state), got {impl!r}")  # fmt: skip
    if backend is not None and backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    name = label or f"{getattr(impl, '__module__', '?')}.{getattr(impl, '__qualname__', repr(impl))}"
    if kind == "function" or (kind is None and is_function(impl)):
        if options:
            raise ValueError(f"options= are passed to a factory (a class, or a function taking the "
                             f"sizes); {name} is the function itself")  # fmt: skip
        impl = _FunctionFactory(impl)
    return Subject(impl, layout, tuple(state) if state else None, backend, name, tuple(sorted((options or {}).items())))


def make_layout(ir, layout) -> Layout:
    """A Layout for ``ir`` from a layout name, a dict or a Layout, with its names checked."""
    if isinstance(layout, Layout):
        out = layout
    elif isinstance(layout, str):
        from .layout import get_layout

        out = get_layout(ir, layout)
    elif isinstance(layout, dict):
        from .errors import SpecError
        from .spec import _Parser

        data = dict(layout) if "tensors" in layout else {"tensors": layout}
        data.setdefault("target", "user")
        try:  # read as a spec's [layouts.NAME] table is: every form (stack, grid, scale, shift, frozen)
            out = _Parser({"state": [s for s, _ in ir.states], "layouts": {"user": data}}, "layout").layouts()[0]
        except SpecError as exc:
            raise ShapeError(str(exc).replace("layout: layout 'user'", "layout").replace("layout 'user'", "layout")) from None
    else:
        raise ShapeError(f"layout must be a name, a dict or a Layout, got {layout!r}")
    params = set(ir.param_names)
    unknown = sorted(({b for _, bs in out.tensors for b in bs} | set(out.zero)) - params)
    if unknown:
        raise ShapeError(f"layout names {unknown}, which are not parameters of {ir.name} "
                         f"(its parameters: {sorted(params)})")  # fmt: skip
    missing = sorted(params - {b for _, bs in out.tensors for b in bs} - set(out.zero))
    if missing:
        raise ShapeError(f"layout leaves parameters of {ir.name} unmapped: {missing}")
    if sorted(out.state) != sorted(s for s, _ in ir.states):
        raise ShapeError(f"layout state order {list(out.state)} must list exactly {[s for s, _ in ir.states]}")
    return out


def _target_of(module) -> str:
    cls = type(module)
    mod = cls.__module__
    if mod.startswith("torch.nn.modules"):
        mod = "torch.nn"
    return f"{mod}.{cls.__qualname__}"


class Runner:
    """One built instance of a subject for a cell: runs sequences step by step."""

    def __init__(self, subj: Subject, cell, sizes: dict, dtype, layout=None, state_order=None):
        self.subject, self.cell, self.ir, self.sizes = subj, cell, cell.ir, dict(sizes)
        if cell.ir.sets:
            raise ShapeError(f"{cell.name} has set inputs ({', '.join(n for n, _ in cell.ir.sets)}, fixed over time): "
                             "checking another implementation against such a cell is not supported; its generated "
                             "code is checked by `lstm-verify check`")  # fmt: skip
        self.dtype = np.dtype(dtype)
        kwargs = {f"{k}_size": v for k, v in sizes.items()}
        try:
            obj = subj.factory(**kwargs, **dict(subj.options)) if subj.engine is None else \
                subj.factory(dtype=self.dtype, **kwargs)  # fmt: skip
        except TypeError as exc:
            raise ShapeError(f"{subj.label}: calling the factory with {kwargs | dict(subj.options)} failed: {exc}") from None
        self.obj = obj
        self.seen = set()  # dtypes of what the implementation returned
        if subj.engine is not None:
            self._engine(obj, layout, state_order)
            return
        self.kind = "module" if _is_module(obj) else "function"
        if not callable(obj):
            raise ShapeError(f"{subj.label}: the factory returned {type(obj).__name__}, not a module or function")
        if self.kind == "module":
            import torch

            self.backend = "torch"
            lay = layout if layout is not None else subj.layout
            if lay is None:
                lay = _find_layout(cell, obj)
            self.layout = make_layout(self.ir, lay)
            self.module = obj.to(getattr(torch, str(self.dtype)))
            self.tensors = dict(self.module.named_parameters())
            names = {t for t, _ in self.layout.tensors}
            if names != set(self.tensors):
                raise ShapeError(
                    f"{subj.label}: the module's parameters {sorted(self.tensors)} are not the "
                    f"layout's tensors {sorted(names)}"
                )
        else:
            self.backend = subj.backend or "numpy"
            if self.backend == "torch":
                from .extras import require

                require("torch", "checking a function with backend='torch'")
            self.layout = None
        self._splits = 0  # a new random split of summed parameters at every load
        default = self.layout.state if self.layout is not None else tuple(s for s, _ in self.ir.states)
        self.order = tuple(state_order or subj.state or default)

    def _engine(self, eng, layout, state_order=None):
        """A built-in subject: its layout is the one for its target and options."""
        self.kind, self.backend, self.engine = "engine", eng.gradients, eng
        lay = layout if layout is not None else self.subject.layout
        self.layout = make_layout(self.ir, lay if lay is not None else engine_layout(self.cell, eng))
        self.tensors = {k: v for k, v in eng.tensors().items() if k not in self.layout.frozen}
        names = {t for t, _ in self.layout.tensors}
        if names != set(self.tensors):
            frozen = sorted(eng.frozen())
            raise ShapeError(f"{self.subject.label}: its tensors {sorted(self.tensors)} are not the "
                             f"{self.layout.name!r} layout's {sorted(names)}"
                             + (f" (ignored as frozen: {frozen})" if frozen else ""))  # fmt: skip
        self._splits = 0
        self.order = tuple(state_order or self.subject.state or self.layout.state)

    # -- conversions
    def _arr(self, a, grad=False):
        if self.backend == "torch":
            import torch

            t = torch.tensor(np.asarray(a), dtype=getattr(torch, str(self.dtype)))
            return t.requires_grad_(grad)
        return np.asarray(a, dtype=self.dtype)

    def load_params(self, params: dict, grad=False):
        """Put spec parameters into the subject; returns the leaves to differentiate."""
        train = set(self.ir.param_names)
        if self.kind == "engine":
            from .layout import stack

            values = stack(self.layout, params, split=np.random.default_rng(self._splits))
            self._splits += 1
            for name, t in self.tensors.items():
                if tuple(np.shape(t)) != values[name].shape:
                    raise ShapeError(f"{self.subject.label}: tensor {name!r} has shape {tuple(np.shape(t))}; "
                                     f"the layout makes {values[name].shape}")  # fmt: skip
            self.engine.set_tensors({k: np.asarray(v, np.float64) for k, v in values.items()})
            return {}
        if self.kind == "module":
            import torch

            from .layout import stack

            values = stack(self.layout, params, split=np.random.default_rng(self._splits))
            self._splits += 1
            with torch.no_grad():
                for name, t in self.tensors.items():
                    v = np.asarray(values[name])
                    if tuple(t.shape) != v.shape:
                        raise ShapeError(f"{self.subject.label}: tensor {name!r} has shape {tuple(t.shape)}; "
                                         f"the layout makes {v.shape}")  # fmt: skip
                    t.copy_(torch.as_tensor(v))
                    t.grad = None
            return dict(self.tensors)
        self.params = {k: self._arr(v, grad and k in train) for k, v in params.items()}
        return {k: v for k, v in self.params.items() if k in train}

    def run(self, inputs: dict, state: dict, t0=0, grad=False):
        """States after every step: list of {state: array}; leaves for inputs and state. A
        built-in subject runs the whole sequence in one call; a sequence kernel's steps may
        lack a state it does not expose (ONNX's c before the last step)."""
        if self.kind == "engine":
            (name,) = inputs
            steps = self.engine.run(np.asarray(inputs[name], np.float64),
                                    tuple(np.asarray(state[s], np.float64) for s in self.order))  # fmt: skip
            T = inputs[name].shape[0]
            if not isinstance(steps, (list, tuple)) or len(steps) != T:
                raise ReturnValueError(f"{self.subject.label}: its run gave {_describe(steps)}, not {T} steps")
            out = []
            for st in steps:
                if len(st) != len(self.order):
                    self._bad_return(st)
                for v in st:
                    if v is not None:
                        self.seen.add(str(v.dtype))
                out.append({k: v for k, v in zip(self.order, st) if v is not None})
            return out, inputs, state
        xs = {k: self._arr(v, grad) for k, v in inputs.items()}
        s0 = {k: self._arr(v, grad) for k, v in state.items()}
        cur = tuple(s0[s] for s in self.order)
        names = [n for n, _ in self.ir.inputs]
        T = next(iter(inputs.values())).shape[0]
        out = []
        for t in range(T):
            x = xs[names[0]][t] if len(names) == 1 else tuple(xs[n][t] for n in names)
            args = (x, cur if len(cur) > 1 else cur[0])
            if self.ir.step:
                args += (t0 + t,)
            if self.kind == "module":
                new = self.module(*args)
            else:
                new = self.obj(self.params, *args)
            new = self._new_state(new)
            self.seen.update(str(v.dtype) for v in new)
            cur = new
            out.append(dict(zip(self.order, new)))
        return out, xs, s0


    def _new_state(self, value) -> tuple:
        """The returned new state as a tuple in ``self.order``; a ReturnValueError if it is not one."""
        order = self.order
        if isinstance(value, Mapping):
            keys = list(value)
            if sorted(map(str, keys)) != sorted(order):
                self._bad_return(value)
            values = tuple(value[s] for s in order)
        elif isinstance(value, (tuple, list)):
            values = tuple(value)
        else:
            values = (value,)
        if len(values) != len(order) or not all(_is_array(v) for v in values):
            self._bad_return(value)
        return values

    def _bad_return(self, value):
        order = self.order
        if len(order) == 1:
            expected = f"the new {order[0]}: an array, a 1-tuple ({order[0]},) or a dict {{'{order[0]}': ...}}"
        else:
            expected = (f"the new state: a tuple ({', '.join(order)}) of arrays or a dict keyed by "
                        f"{', '.join(order)}")  # fmt: skip
        raise ReturnValueError(f"{self.subject.label} returned {_describe(value)}; {self.cell.name} "
                               f"expects {expected}")  # fmt: skip


def _is_array(v) -> bool:
    """An array of any backend (NumPy, torch, JAX...): something with a shape, not a container."""
    return hasattr(v, "shape") and hasattr(v, "dtype") and not isinstance(v, (Mapping, str, bytes))


def _describe(value, depth=0) -> str:
    """What a return value is, briefly: ``a dict with keys ['hidden', 'cell']``, ``None``..."""
    if value is None:
        return "None"
    if _is_array(value):
        return f"{type(value).__name__} of shape {tuple(value.shape)}"
    if isinstance(value, Mapping):
        keys = list(value)
        return f"a dict with keys {keys[:6]!r}" + (" ..." if len(keys) > 6 else "")
    if isinstance(value, (tuple, list)) and depth == 0:
        items = ", ".join(_describe(v, 1) for v in value[:4]) + (", ..." if len(value) > 4 else "")
        return f"a {type(value).__name__} of {len(value)} ({items})"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)}"
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 30 else text[:27] + '...'}"


def _is_module(obj) -> bool:
    # a torch module exists only once torch is imported: never import it just to ask
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.nn.Module)


def _find_layout(cell, module):
    """The spec's layout for this module: by its class (torch.nn.LSTMCell), else by tensor names."""
    target = _target_of(module)
    names = {n for n, _ in module.named_parameters()}
    for lay in cell.spec.layouts:
        if lay.target == target:
            return lay
    for lay in cell.spec.layouts:
        if {t for t, _ in lay.tensors} == names:
            return lay
    err = ShapeError(f"no layout given, and {cell.name} has no layout for {target}; pass layout= "
                     f"(a dict {{tensor: [spec parameters]}}) for {sorted(names)}")  # fmt: skip
    # the command line's wording: the option is a flag there (printed by lstm_verify.cli)
    err.cli_message = (f"no layout given, and {cell.name} has no layout for {target}; pass --layout "
                       f"FILE (.toml or .json: tensors = {{tensor = [spec parameters]}}) for {sorted(names)}")  # fmt: skip
    raise err


def _options_text(options: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in sorted(options.items())) or "its defaults"


def engine_layout(cell, eng):
    """The spec's layout for a built framework cell: its target, and options equal to the cell's
    on every key the layout names. A NoLayoutError says which options the cell's layouts need."""
    mine = [lay for lay in cell.spec.layouts if lay.target == eng.target]
    for lay in mine:
        if all(eng.options.get(k, _UNSET) == v for k, v in lay.options):
            return lay
    if mine:
        differ = [{k: v for k, v in lay.options if eng.options.get(k, _UNSET) != v} for lay in mine]
        need = "; ".join(f"{lay.name!r} needs {_options_text(d)}" for lay, d in zip(mine, differ))
        have = {k: eng.options.get(k, "unset") for d in differ for k in d}
        raise NoLayoutError(f"{cell.name} has no layout for {eng.target} built with {_options_text(have)} "
                            f"({need})")  # fmt: skip
    raise NoLayoutError(f"{cell.name} has no layout for {eng.target}")


_UNSET = object()


def _np64(a):
    if hasattr(a, "detach"):
        return a.detach().cpu().double().numpy()
    return np.asarray(a, dtype=np.float64)


# --------------------------------------------------------------------------- the reference


def reference_states(cell, params, inputs, state, t0=0, rename=None):
    """float64 states after every step from the generated NumPy code: list of {state: array}."""
    impl = cell.numpy()
    p = {k: np.asarray(v, dtype=np.float64) for k, v in params.items()}
    if rename:
        p = {rename.get(k, k): v for k, v in p.items()}
    s = {k: np.asarray(v, dtype=np.float64) for k, v in state.items()}
    out = []
    T = next(iter(inputs.values())).shape[0]
    for t in range(T):
        _, s = impl.step(p, {k: np.asarray(v[t], dtype=np.float64) for k, v in inputs.items()}, s, t=t0 + t,
                         check=False)
        out.append(s)
    return out


@dataclass(frozen=True)
class Divergence:
    quantity: str  # "h'" or "dL/dW_i_x" ...
    step: int | None
    index: tuple
    got: float
    expected: float
    tol: float
    count: int  # elements out of tolerance in this quantity
    size: int

    def __str__(self):
        where = f" at step {self.step}" if self.step is not None else ""
        return (f"{self.quantity}{where}, index {self.index}: got {self.got!r}, expected {self.expected!r} "
                f"(|diff| {abs(self.got - self.expected):.3g} > tolerance {self.tol:.3g}; "
                f"{self.count} of {self.size} elements out)")  # fmt: skip


def _first_divergence(got: list, ref: list, tol: list, names: list) -> Divergence | None:
    for (step, name), g, r, tl in zip(names, got, ref, tol):
        g = np.asarray(g, dtype=np.float64)
        if g.shape != r.shape:
            return Divergence(name, step, (), float("nan"), float("nan"), 0.0, r.size, r.size)
        bad = ~(np.abs(g - r) <= tl)  # NaN counts as bad
        if bad.any():
            idx = tuple(int(i) for i in np.argwhere(bad)[0])
            return Divergence(name, step, idx, float(g[idx]), float(r[idx]), float(tl[idx]), int(bad.sum()), r.size)
    return None


# --------------------------------------------------------------------------- properties


def _theirs(cell, case, fn, *args):
    """Run the implementation's side of a property: an exception it raises is the
    implementation's failure (a VerificationError naming it), never the tool's."""
    try:
        return fn(*args)
    except (VerificationError, ReturnValueError):
        raise
    except Exception as exc:  # whatever the user's code raises is its failure
        raise VerificationError(f"{cell.name}: the implementation raised {type(exc).__name__}: {exc}\n"
                                f"on {case.describe()}") from exc  # fmt: skip


def _pinned(case, runner):
    """The case with the parameters the implementation does not have (its layout's ``zero``:
    Flax nnx's GRU has no hidden bias of n) set to 0, as the implementation computes it."""
    zero = getattr(runner.layout, "zero", ()) if runner.layout is not None else ()
    if not zero:
        return case
    import dataclasses

    params = {k: np.zeros_like(v) if k in zero else v for k, v in case.params.items()}
    return dataclasses.replace(case, params=params)


def _forward_problem(cell, runner, case, rename=None, t_shift=0):
    """(got, ref, tol, names) for every state at every step of a case."""
    case = _pinned(case, runner)
    order = [s for s, _ in cell.ir.states]

    def run():
        runner.load_params(case.params)
        theirs, _, _ = runner.run(case.inputs, case.state, case.t0)
        return [{s: _np64(g[s]) for s in order if s in g} for g in theirs]

    theirs = _theirs(cell, case, run)
    train = [k for k in cell.ir.param_names]
    fixed = {k: v for k, v in case.params.items() if k not in train}
    ops = {f"p:{k}": np.asarray(case.params[k], np.float64) for k in train}
    ops |= {f"x:{k}": np.asarray(v, np.float64) for k, v in case.inputs.items()}
    ops |= {f"s:{k}": np.asarray(v, np.float64) for k, v in case.state.items()}

    def flat(o):
        p = {k[2:]: v for k, v in o.items() if k.startswith("p:")} | fixed
        ref = reference_states(cell, p, {k[2:]: v for k, v in o.items() if k.startswith("x:")},
                               {k[2:]: v for k, v in o.items() if k.startswith("s:")},
                               case.t0 + t_shift, rename)  # fmt: skip
        return np.concatenate([r[s].ravel() for r in ref for s in order])

    ref = reference_states(cell, case.params, case.inputs, case.state, case.t0 + t_shift, rename)
    sens = sensitivity(flat, ops)
    got, refs, tols, names = [], [], [], []
    pos = 0
    for t, (g, r) in enumerate(zip(theirs, ref)):
        for s in order:
            n = r[s].size
            if s not in g:  # a sequence kernel that does not expose this state at this step
                pos += n
                continue
            got.append(g[s])
            refs.append(r[s])
            tols.append(tolerance(case.dtype, r[s], sens[pos:pos + n].reshape(r[s].shape)))
            names.append((t, display(cell.ir.new(s))))
            pos += n
    return got, refs, tols, names


def _runner(cell, runner_for, case):
    """The subject built for the case's sizes and dtype. The library's own errors (a layout
    or factory that does not fit) are the caller's to fix: they stop the check at once (see
    :func:`run_property`); anything else the factory raises is the implementation's failure."""
    try:
        return runner_for(case.sizes, case.dtype)
    except LstmVerifyError as exc:
        raise _Stop(exc) from exc
    except Exception as exc:  # the user's factory
        raise VerificationError(f"{cell.name}: building the implementation raised {type(exc).__name__}: "
                                f"{exc}\non {case.describe()}") from exc  # fmt: skip


def _record(stats, got, ref, tol):
    """The worst |got - expected| (and its ratio to the tolerance) seen so far, in ``stats``."""
    if stats is None:
        return
    with np.errstate(invalid="ignore"):
        for g, r, t in zip(got, ref, tol):
            diff = np.abs(np.asarray(g, np.float64) - r)
            if diff.size:
                diff = np.where(np.isnan(diff), np.inf, diff)  # NaN is as bad as it gets
                stats["abs"] = max(stats.get("abs", 0.0), float(diff.max()))
                stats["ratio"] = max(stats.get("ratio", 0.0), float((diff / np.maximum(t, 1e-300)).max()))


def check_forward(cell, runner_for, case, stats=None):
    """Raise VerificationError if the subject's states differ from the spec at any step."""
    runner = _runner(cell, runner_for, case)
    got, ref, tol, names = _forward_problem(cell, runner, case)
    _record(stats, got, ref, tol)
    d = _first_divergence(got, ref, tol, names)
    if d is not None:
        err = VerificationError(f"{cell.name}: {d}\non {case.describe()}")
        err.divergence = d
        raise err


def check_gradients(cell, runner_for, case, seed=0, stats=None):
    """Gradients of a random linear loss over every output and the final state, with respect to
    the parameters (or the module's tensors), the inputs and the initial state: the subject's
    autograd against the generated backward."""
    runner = _runner(cell, runner_for, case)
    if runner.backend not in ("torch", "jax"):
        return
    case = _pinned(case, runner)
    ir = cell.ir
    rng = np.random.default_rng(seed)
    T, B = case.steps, case.batch
    # the loss's weights are exact in the case's dtype: an implementation that rounds them to
    # float32 computes the same loss as the float64 reference
    w_out = rng.standard_normal((T, B, case.sizes[dict(ir.states)[ir.output]])).astype(case.dtype).astype(np.float64)
    w_state = {s: rng.standard_normal((B, case.sizes[d])).astype(case.dtype).astype(np.float64) for s, d in ir.states}

    def run_engine():
        runner.load_params(case.params)
        (name,) = case.inputs
        order = runner.order
        d_t, d_x, d_s = runner.engine.vjp(np.asarray(case.inputs[name], np.float64),
                                          tuple(np.asarray(case.state[s], np.float64) for s in order),
                                          w_out, tuple(w_state[s] for s in order), order.index(ir.output))  # fmt: skip
        got = {("p", k): _np64(d_t[k]) for k in runner.tensors}
        got[("x", name)] = _np64(d_x)
        return got | {("s", s): _np64(g) for s, g in zip(order, d_s)}

    def run():
        import torch

        leaves = runner.load_params(case.params, grad=True)
        theirs, xs, s0 = runner.run(case.inputs, case.state, case.t0, grad=True)
        tdt = getattr(torch, str(case.dtype))
        loss = sum((st[ir.output] * torch.tensor(w_out[t], dtype=tdt)).sum() for t, st in enumerate(theirs))
        loss = loss + sum((theirs[-1][s] * torch.tensor(w, dtype=tdt)).sum() for s, w in w_state.items())
        leaf_list = list(leaves.values()) + list(xs.values()) + list(s0.values())
        grads = torch.autograd.grad(loss, leaf_list, allow_unused=True)
        got = {}
        for key, g, leaf in zip([("p", k) for k in leaves] + [("x", k) for k in xs] + [("s", k) for k in s0],
                                grads, leaf_list):  # fmt: skip
            got[key] = np.zeros(tuple(leaf.shape)) if g is None else _np64(g)
        return got

    got = _theirs(cell, case, run_engine if runner.kind == "engine" else run)

    p64 = {k: np.asarray(v, np.float64) for k, v in case.params.items()}
    x64 = {k: np.asarray(v, np.float64) for k, v in case.inputs.items()}
    s64 = {k: np.asarray(v, np.float64) for k, v in case.state.items()}
    impl = cell.numpy()
    train = list(ir.param_names)

    def ours(p, x, s):
        run = impl.forward(p, x, s, t0=case.t0, save=True)
        g = impl.backward(p, run.cache, w_out, w_state)
        pg = stack_gradients(runner.layout, g.params) if runner.kind in ("module", "engine") else \
            {k: g.params[k] for k in train}  # fmt: skip
        return {("p", k): v for k, v in pg.items()} | {("x", k): v for k, v in g.inputs.items()} | \
            {("s", k): v for k, v in g.state.items()}  # fmt: skip

    expected = ours(p64, x64, s64)
    keys = list(expected)
    fixed = {k: v for k, v in p64.items() if k not in train}
    ops = {f"p:{k}": p64[k] for k in train} | {f"x:{k}": v for k, v in x64.items()} | {f"s:{k}": v for k, v in s64.items()}

    def flat(o):
        e = ours({k[2:]: v for k, v in o.items() if k[0] == "p"} | fixed,
                 {k[2:]: v for k, v in o.items() if k[0] == "x"}, {k[2:]: v for k, v in o.items() if k[0] == "s"})  # fmt: skip
        return np.concatenate([np.ravel(e[k]) for k in keys])

    sens = sensitivity(flat, ops)
    gl, rl, tl, names, pos = [], [], [], [], 0
    for k in keys:
        r = np.asarray(expected[k])
        gl.append(got[k])
        rl.append(r)
        tl.append(tolerance(case.dtype, r, sens[pos:pos + r.size].reshape(r.shape)))
        label = {"p": "", "x": "", "s": ""}[k[0]] + k[1]
        names.append((None, f"dL/d{label}"))
        pos += r.size
    _record(stats, gl, rl, tl)
    d = _first_divergence(gl, rl, tl, names)
    if d is not None:
        err = VerificationError(f"{cell.name}: gradient {d}\non {case.describe()}")
        err.divergence = d
        raise err


# --------------------------------------------------------------------------- the check


@dataclass
class Row:
    name: str
    examples: int = 0
    first_failure: int | None = None  # example number of the first failure (1-based)
    passed: bool = True
    skipped: str = ""
    message: str = ""
    seconds: float = 0.0
    worst: float | None = None  # the largest |implementation - spec| over every example
    worst_ratio: float | None = None  # ... and the largest |difference| / tolerance


@dataclass
class Report:
    cell: str
    subject: str
    rows: list = field(default_factory=list)
    identification: Any = None
    seconds: float = 0.0
    precision: str = "float64"  # what the check ran at
    precision_note: str = ""  # how it was chosen, when it is not float64
    error: str = ""  # why no property could run (no layout for the subject as built)

    @property
    def passed(self) -> bool:
        return not self.error and all(r.passed for r in self.rows)

    def table(self) -> str:
        lines = ([self.precision_note] if self.precision_note else []) + [f"{self.subject} against {self.cell}:", ""]
        if self.error:
            lines += [f"  {self.error}"]
        else:
            lines.append(f"  {'property':40s} {'examples':>8s}  result")
        for r in self.rows:
            if r.skipped:
                res = r.skipped
            elif r.passed:
                res = "ok"
            else:
                res = f"FAIL (first failing example: #{r.first_failure})"
            lines.append(f"  {r.name:40s} {r.examples:8d}  {res}")
        for r in self.rows:
            if not r.passed:
                lines += ["", f"{r.name}: {r.message}"]
        if self.identification is not None and not self.passed:
            lines += ["", "identification: " + self.identification.summary()]
        lines += ["", f"{'conforms' if self.passed else 'DOES NOT CONFORM'} ({self.seconds:.1f} s)"]
        return "\n".join(lines)


PROPERTIES = {
    # name: (what to check, strategy options, share of the example budget)
    "forward, ordinary and near-zero": ("forward", {"regime": None}, 1.0),
    "forward, saturated |z| >= 20": ("forward", {"regime": "saturated"}, 0.5),
    "forward, |z| >= 800 (f64) / 90 (f32)": ("forward", {"regime": "saturated", "extreme": True}, 0.25),
    "sequences of 50-200 steps": ("forward", {"regime": "long"}, 0.15),
    "saturated sequences of 50-200 steps": ("forward", {"regime": "long_saturated"}, 0.25),
    "gradients": ("gradients", {"regime": None, "dtype": "float64"}, 0.5),
    "gradients, |z| >= 800 (f64) / 90 (f32)": ("gradients", {"regime": "saturated", "extreme": True}, 0.25),
}


def _settings(examples, seed, ci, shrink=True):
    from hypothesis import HealthCheck, Phase, settings

    phases = [Phase.explicit, Phase.reuse, Phase.generate] + ([Phase.shrink] if shrink else [])
    return settings(
        max_examples=max(1, examples), deadline=None, database=None, derandomize=ci and seed is None,
        suppress_health_check=list(HealthCheck), print_blob=False, phases=phases,
        report_multiple_bugs=False,  # one shrunk failure, never an ExceptionGroup of several
    )  # fmt: skip


def _strategy(cell, opts, max_size, precision="float64", sizes=None):
    """A property's cases. At float32 (an implementation that computes in float32) every case is
    float32; at float64, cases of both precisions are drawn as the property says."""
    from hypothesis import strategies as st

    from .strategies import cases

    opts = dict(opts, max_size=max_size, sizes=sizes)
    if opts.pop("extreme", False):
        opts["regime"] = "saturated"
        opts.pop("dtype", None)
        f64 = cases(cell, dtype="float64", saturation=800.0, **opts)
        f32 = cases(cell, dtype="float32", saturation=90.0, **opts)
        return f32 if precision == "float32" else st.one_of(f64, f32)
    if precision == "float32":
        opts["dtype"] = "float32"
    return cases(cell, **opts)


class _Stop(BaseException):
    """Carries an error that is not the implementation's out of Hypothesis at once: a
    BaseException, so Hypothesis neither counts it as a failing example nor shrinks it."""

    def __init__(self, error: BaseException):
        super().__init__(error)
        self.error = error


def _fault(message: str, cause: BaseException) -> _Stop:
    err = GenerationError(f"{message}\n(a fault of lstm-verify, not of the implementation)")
    err.__cause__ = cause
    return _Stop(err)


def run_property(cell, check, strategy, settings_, seed=None):
    """Run one property under Hypothesis; returns (examples run, first failing example or None,
    the shrunk failure or None, whether no case could be drawn at all).

    Only a VerificationError (the implementation disagrees, or raised) is a failing example,
    shrunk before it is returned. Anything else stops the run at once, unshrunk: the library's
    own errors about the subject (a layout that does not fit) are re-raised as they are, and
    any other error, in drawing a case or in computing the reference, is lstm-verify's own
    fault and raised as a :class:`GenerationError`. A cell for which every draw is rejected
    (no finite bias saturates it) gives ``(0, None, None, True)``."""
    from hypothesis import given, strategies as st
    from hypothesis.errors import HypothesisException, Unsatisfiable
    from hypothesis.reporting import with_reporter

    count = {"n": 0, "first": None}

    @settings_
    @given(st.data())
    def prop(data):
        try:
            case = data.draw(strategy, label="case")
        except HypothesisException:  # reject(), assume(): Hypothesis draws another case
            raise
        except Exception as exc:  # noqa: BLE001 - the tool's own data generation
            raise _fault(f"{cell.name}: drawing a case failed: {type(exc).__name__}: {exc}", exc) from None
        count["n"] += 1
        try:
            check(case)
        except VerificationError:
            if count["first"] is None:
                count["first"] = count["n"]
            raise
        except _Stop:
            raise
        except ReturnValueError as exc:  # not a state at all: the interface, not the values
            raise _Stop(exc) from None
        except Exception as exc:  # noqa: BLE001 - the implementation's side raises VerificationError
            raise _fault(f"{cell.name}: computing the reference failed: {type(exc).__name__}: {exc}\n"
                         f"on {case.describe()}", exc) from None  # fmt: skip

    if seed is not None:
        from hypothesis import seed as _seed

        prop = _seed(seed)(prop)
    try:
        with with_reporter(lambda *a: None):
            prop()
    except VerificationError as exc:
        return count["n"], count["first"], exc, False
    except BaseExceptionGroup as group:  # several distinct failures: report the first
        first = group.subgroup(lambda e: isinstance(e, (VerificationError, _Stop)))
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        if isinstance(first, _Stop):
            raise first.error from first.error.__cause__
        if first is None:
            raise
        return count["n"], count["first"], first, False
    except _Stop as stop:
        raise stop.error from stop.error.__cause__
    except Unsatisfiable:
        return count["n"], None, None, True
    return count["n"], None, None, False


DTYPES = ("auto", "float64", "float32")


def check(cell, impl, layout=None, state=None, backend=None, examples: int = 100, seed: int | None = None,
          identify: bool = True, max_size: int = 4, ci: bool | None = None, shrink: bool = True,
          options: dict | None = None, dtype: str = "auto") -> Report:  # fmt: skip
    """Check an implementation against a cell's spec; returns a Report (``report.passed``).

    ``impl`` is a factory, a function, or a built-in subject's name (``"keras.layers:GRUCell"``,
    ``"onnx:GRU"``, ``"model.onnx"``) with ``options`` (constructor options or operator
    attributes). ``dtype``: ``"auto"`` (default) finds the precision the implementation computes
    in on one benign probe and checks at it; ``"float64"`` draws cases of both precisions, each
    checked at its own tolerances; ``"float32"`` only float32 cases.
    ``examples`` is the Hypothesis budget of the main property (the others get shares of it);
    ``ci`` (default: the CI environment variable is set) derandomises; ``shrink=False`` reports
    the first failing example as found, without minimising it."""
    import os

    from .cell import Cell, load

    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    cell = cell if isinstance(cell, Cell) else load(cell)
    subj = subject(impl, layout, state, backend, options=options)
    ci = bool(os.environ.get("CI")) if ci is None else ci
    start = time.perf_counter()
    runners: dict = {}

    def runner_for(sizes, dt):
        key = (tuple(sorted(sizes.items())), str(np.dtype(dt)))
        if key not in runners:
            runners[key] = Runner(subj, cell, sizes, dt)
        return runners[key]

    report = Report(cell.name, subj.label)
    sizes = subj.fixed_sizes
    # build once up front so that a wrong layout or factory is an error, not a failing property
    try:
        first = runner_for(sizes or _probe_sizes(cell), np.float64)
    except NoLayoutError as exc:  # a framework cell built as another catalog cell: identify it
        report.error = str(exc)
        if identify:
            from .identify import identify as _identify

            report.identification = _identify(subj, claimed=cell)
        report.seconds = time.perf_counter() - start
        return report
    if first.kind == "engine":  # what was built: the framework's version, backend...
        built = getattr(first.engine, "label", "")
        built = built[len(first.engine.target):].strip() if built.startswith(first.engine.target) else built
        report.subject += f" {built}" if built.startswith("(") else f" ({built})" if built else ""
    precision = dtype
    if dtype == "auto":
        precision, evidence = find_precision(cell, subj, runner_for)
        if precision == "float32":
            report.precision_note = f"computes in float32 ({evidence}): checked at float32 tolerances"
    elif dtype == "float32":
        report.precision_note = "checked at float32 tolerances (dtype='float32')"
    report.precision = "float32" if precision == "float32" else "float64"
    for name, (kind, opts, share) in PROPERTIES.items():
        row = Row(f"gradients ({report.precision})" if name == "gradients" else name)
        t = time.perf_counter()
        if not report.passed:  # one shrunk counterexample says it; the rest would only repeat it
            row.skipped = "not run after the failure above"
        elif kind == "gradients" and first.backend not in ("torch", "jax"):  # the same at any dtype
            row.skipped = ("skipped: a NumPy implementation has no gradients to compare" if subj.engine is None
                           else f"skipped: {subj.label} runs forward only (no gradients to compare)")  # fmt: skip
        else:
            stats: dict = {}
            fn = (lambda c: check_forward(cell, runner_for, c, stats=stats)) if kind == "forward" else \
                (lambda c: check_gradients(cell, runner_for, c, stats=stats))  # fmt: skip
            if kind == "gradients":
                opts = dict(opts, dtype=report.precision)
            n, first_fail, exc, unsatisfiable = run_property(
                cell, fn, _strategy(cell, opts, max_size, report.precision, sizes),
                _settings(int(examples * share), seed, ci, shrink), seed)  # fmt: skip
            row.examples, row.first_failure = n, first_fail
            row.worst, row.worst_ratio = stats.get("abs"), stats.get("ratio")
            if unsatisfiable:
                row.skipped = "skipped: no case of this kind can be built for this cell"
            if exc is not None:
                row.passed, row.message = False, str(exc)
        row.seconds = time.perf_counter() - t
        report.rows.append(row)
    if identify and not report.passed:
        from .identify import identify as _identify

        # at float64, probe the precision again: a float32 result is never "another cell"
        report.identification = _identify(subj, claimed=cell, precision="float32" if
                                          report.precision == "float32" else "auto")  # fmt: skip
    report.seconds = time.perf_counter() - start
    return report


# float64 arithmetic on the probe is good to ~1e-15 relative; float32 to ~1e-7; a different
# cell is off by far more than either
FLOAT32_EVIDENCE = (1e-10, 1e-3)


def find_precision(cell, subj, runner_for) -> tuple[str, str]:
    """("float32" | "float64", the evidence): what the implementation computes in, from one
    benign float64 probe: the dtype it returns, else its error against the float64 reference
    (between FLOAT32_EVIDENCE: float32 rounding; beyond it: another function, left for the
    properties to report at float64)."""
    from .identify import _probes

    case = _probes(cell, seeds=[0], sizes=subj.fixed_sizes)[0]
    try:
        runner = runner_for(case.sizes, np.float64)
        runner.seen.clear()
        got, ref, _, _ = _forward_problem(cell, runner, case)
    except (ReturnValueError, _Stop):  # not a state at all, or not the implementation's fault: at once
        raise
    except Exception:  # noqa: BLE001 - the properties report what the implementation does
        return "float64", "the probe raised"
    narrow = sorted(d for d in runner.seen if d in ("float32", "float16", "bfloat16"))
    if narrow:
        return "float32", f"it returns {narrow[0]} for float64 inputs"
    err = max(float(np.max(np.abs(np.asarray(g, np.float64) - r) / np.maximum(1.0, np.abs(r))))
              for g, r in zip(got, ref))  # fmt: skip
    if FLOAT32_EVIDENCE[0] < err < FLOAT32_EVIDENCE[1]:
        return "float32", f"float64 results with relative error {err:.1e} on a benign probe"
    return "float64", f"relative error {err:.1e} on a benign probe"


def _probe_sizes(cell) -> dict:
    from .params import min_units

    base = {"input": 3, "hidden": 4, "proj": 2}
    out = {k: base.get(k, 3) for k in cell.ir.size_names}
    for _, dim, buf in cell.ir.buffers:
        out[dim] = max(out[dim], min_units(buf))
    return out
