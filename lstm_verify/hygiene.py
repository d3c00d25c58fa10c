"""How spec text may reach generated source, and the audit every generated Python module passes.

Three rules keep a spec from becoming code:

* **Names live in their own namespace.** Every name that comes from a spec (inputs, states,
  nodes, parameters, buffers, the step counter) is written in generated Python as
  :func:`ident` ``(name) = "v_" + name``; every name the generator makes itself starts with
  ``_`` or is one of a fixed set (the functions' arguments, the module's imports, builtins), none
  of which starts with ``v_``. Spec names start with a letter, so no spec name can shadow or
  collide with a generated one, whatever it is (``t0``, ``range``, ``torch``, ``cache``).
* **Free text only as literals.** Titles, sources, notes and equation texts reach Python source
  only through :func:`quoted_lines` (``repr()`` of each line), and C source only through
  :func:`c_comment` (printable ASCII, no comment delimiters or trigraphs).
* **Audit before use.** :func:`audit_python` parses a generated module with ``ast`` and checks it
  against an allowlist: imports only of the preamble's modules at top level, calls only of known
  helpers, builtins, backend functions and tensor methods, no access to dunder attributes, no
  names outside the generated and ``v_`` namespaces. A module that fails is an internal error
  and is never executed.
"""

from __future__ import annotations

import ast
import re

from .errors import LstmVerifyError

PREFIX = "v_"


class GeneratedCodeError(LstmVerifyError, RuntimeError):
    """Generated source failed the audit: a defect of the generator, never executed."""


def ident(name: str) -> str:
    """The Python identifier of a spec-derived name in generated code."""
    return PREFIX + name


def quoted_lines(lines: list[str], indent: str = "    ") -> str:
    """A parenthesised implicit concatenation of ``repr()`` literals, one source line per text
    line (the text joined with newlines)."""
    parts = [repr(line + "\n") for line in lines]
    return "(\n" + "".join(f"{indent}{p}\n" for p in parts) + ")"


def c_comment(text: str) -> str:
    """Text safe inside a C block comment: printable ASCII only (anything else escaped as
    ``\\uXXXX``), no ``*/`` or ``/*``, no trigraph (``??x``)."""
    out = []
    for ch in text:
        code = ord(ch)
        if 0x20 <= code < 0x7F and ch != "\\":
            out.append(ch)
        else:
            out.append(f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}")
    safe = "".join(out)
    while "*/" in safe or "/*" in safe or "??" in safe:
        safe = safe.replace("*/", "* /").replace("/*", "/ *").replace("??", "? ?")
    return safe


def lambdify(expr, modules):
    """``sympy.lambdify`` of an expression in its free symbols, returning (the symbols' names in
    argument order, the function). The symbols are renamed first: lambdify puts symbol names
    into the namespace it evaluates in, so a spec name such as ``mpf`` or ``pi`` would shadow
    what the printed expression calls."""
    import sympy

    args = sorted(expr.free_symbols, key=lambda s: s.name)
    safe = [sympy.Symbol(f"_lv_arg{k}", real=True) for k in range(len(args))]
    renamed = expr.xreplace(dict(zip(args, safe)))
    return [a.name for a in args], sympy.lambdify(safe, renamed, modules=modules)


# ----------------------------------------------------------------------------- the audit

# modules a generated module may import (the preambles of both backends, and what export adds)
IMPORTS = {"numpy", "torch", "sys", "weakref", "math"}
# builtins the generated code calls
BUILTINS = {
    "range", "len", "dict", "list", "tuple", "sum", "next", "iter", "isinstance", "float", "int",
    "bool", "zip", "super", "staticmethod", "any",
}  # fmt: skip
# names of the generated forward and backward that do not start with "_": their parameters and
# the tables they return; inside them every other name is "_..." or a spec name "v_..."
LOCALS = {
    "forward", "backward", "params", "inputs", "state", "t0", "save", "cache", "d_outputs",
    "d_state", "trace", "grads", "d_inputs",
}  # fmt: skip
# names of the fixed helper code (the preamble, and what export adds), which no spec touches
HELPER_NAMES = LOCALS | {
    "product", "packed_product", "a", "add", "out", "W", "k", "n", "x", "xs", "t", "period",
    "shape", "like", "value", "buf", "bufs", "escaping", "taken", "size", "total", "free", "b",
    "axis", "rows", "steps", "sizes", "s", "w", "eligible", "packed", "Wc", "Wt", "Wk", "z",
    "POOL_BYTES", "PACKED_GEMM", "step", "INPUTS", "STATES", "PARAM_SHAPES", "BUFFERS",
    "SequenceFunction", "init_params", "Layer", "ctx", "names", "tensors", "m", "new",
    "d_out", "d_final", "flat", "final", "d_state0", "seed", "dtype", "device", "g", "dims",
    "name", "init", "options", "self", "first", "pnames", "leaves", "modules", "base",
    "Exception", "v", "dim", "d", "heads",
}  # fmt: skip
# attributes that may be read or called: backend functions and tensor/array methods
ATTRIBUTES = {
    "sigmoid", "tanh", "exp", "relu", "maximum", "clip", "remainder", "concatenate", "zeros",
    "empty", "astype", "dtype", "errstate", "reshape", "shape", "T", "sum", "clone", "add_",
    "transpose", "contiguous", "expand", "bmm", "addmm", "mm", "addcmul", "add", "mul", "cat",
    "tensor", "to", "device", "type", "is_grad_enabled", "numel", "element_size",
    "untyped_storage", "data_ptr", "pop", "append", "get", "setdefault", "items", "values",
    "keys", "_C", "_storage_Use_Count", "_cdata", "getrefcount", "finalize", "ops", "mkl",
    "_mkl_reorder_linear_weight", "_mkl_linear", "arange", "equal", "nn", "functional",
    "hardsigmoid", "float32", "float64", "Tensor", "requires_grad", "autograd", "Function",
    "Module", "Generator", "manual_seed", "rand", "sqrt", "Parameter", "as_tensor",
    "register_buffer", "register_parameter", "named_parameters", "named_buffers", "apply",
    "params", "cache", "names", "__init__", "log", "logaddexp", "minimum", "softplus",
    "result_type", "is_tensor", "broadcast_to", "max", "amax", "table", "stride", "sequence", "backward_loop",
}  # fmt: skip
_GENERATED_NAME = re.compile(r"_[A-Za-z0-9_]*\Z")
_SPEC_NAME = re.compile(re.escape(PREFIX) + r"[A-Za-z][A-Za-z0-9_]*\Z")
_ALLOWED_DUNDER = {"__init__", "__slots__"}
_CONSTANTS = (int, float, str, bool, type(None), type(...))
_STATEMENTS = (
    ast.Module, ast.FunctionDef, ast.ClassDef, ast.Assign, ast.AugAssign, ast.AnnAssign, ast.For,
    ast.While, ast.If, ast.Return, ast.Expr, ast.Import, ast.Try, ast.ExceptHandler, ast.Global,
    ast.With, ast.withitem, ast.Continue, ast.Delete, ast.alias,
)  # fmt: skip
_EXPRESSIONS = (
    ast.Name, ast.Attribute, ast.Call, ast.Constant, ast.Subscript, ast.Slice, ast.Tuple,
    ast.List, ast.Dict, ast.BinOp, ast.UnaryOp, ast.BoolOp, ast.Compare, ast.IfExp,
    ast.Starred, ast.keyword, ast.arguments, ast.arg, ast.ListComp, ast.DictComp,
    ast.GeneratorExp, ast.SetComp, ast.comprehension, ast.expr_context, ast.operator,
    ast.unaryop, ast.boolop, ast.cmpop,
)  # fmt: skip


def audit_python(text: str, label: str = "generated module") -> ast.Module:
    """Parse generated source and check it against the allowlist; returns the tree. Raises
    :class:`GeneratedCodeError` naming the first offending line."""
    try:
        tree = ast.parse(text)
    except SyntaxError as exc:
        raise GeneratedCodeError(f"{label}: not valid Python at line {exc.lineno}: {exc.msg}") from None

    def fail(node, why):
        line = getattr(node, "lineno", "?")
        raise GeneratedCodeError(f"{label}, line {line}: {why}; the module is not executed")

    top = set(map(id, tree.body))
    strict = {
        id(sub)
        for fn in tree.body
        if isinstance(fn, ast.FunctionDef) and fn.name in ("forward", "backward")
        for sub in ast.walk(fn)
    }
    for node in ast.walk(tree):
        names = LOCALS if id(node) in strict else HELPER_NAMES
        if not isinstance(node, _STATEMENTS + _EXPRESSIONS):
            fail(node, f"{type(node).__name__} is not allowed in generated code")
        if isinstance(node, ast.ImportFrom):  # pragma: no cover - not in _STATEMENTS
            fail(node, "from-import")
        if isinstance(node, ast.Import):
            if id(node) not in top:
                fail(node, "import inside a function")
            for alias in node.names:
                if alias.name not in IMPORTS or alias.asname is not None:
                    fail(node, f"import of {alias.name!r} (allowed: {sorted(IMPORTS)})")
        elif isinstance(node, ast.Name):
            _check_name(node, node.id, names, fail)
        elif isinstance(node, ast.arg):
            _check_name(node, node.arg, names, fail)
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            _check_name(node, node.name, names, fail)
        elif isinstance(node, ast.Global):
            for n in node.names:
                _check_name(node, n, names, fail)
        elif isinstance(node, ast.Attribute):
            attr = node.attr
            if attr.startswith("__") and attr not in _ALLOWED_DUNDER:
                fail(node, f"access to attribute {attr!r}")
            if attr not in ATTRIBUTES:
                fail(node, f"attribute {attr!r} is not on the allowlist")
        elif isinstance(node, ast.Call):
            f = node.func
            if isinstance(f, ast.Name):
                if not (f.id in BUILTINS or f.id in names or _GENERATED_NAME.match(f.id)):
                    fail(node, f"call of {f.id!r}")
            elif not isinstance(f, (ast.Attribute, ast.Subscript, ast.Call)):
                fail(node, f"call of a {type(f).__name__}")
        elif isinstance(node, ast.Constant) and not isinstance(node.value, _CONSTANTS):
            fail(node, f"constant of type {type(node.value).__name__}")
    return tree


def _check_name(node, name, allowed, fail):
    if name in BUILTINS or name in allowed or name in IMPORTS:
        return
    if name in _ALLOWED_DUNDER and allowed is HELPER_NAMES:
        return
    if _GENERATED_NAME.match(name) and not name.startswith("__"):
        return
    if _SPEC_NAME.match(name):
        return
    fail(node, f"name {name!r} is neither generated nor a spec name in the {PREFIX!r} namespace")
