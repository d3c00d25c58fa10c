"""Exported modules, verified as exported: Python imported where SymPy and lstm_verify cannot be,
C compiled with -O2 -Wall -Werror and called through ctypes; both against the mpmath reference
and the in-memory implementation."""

from __future__ import annotations

import ctypes
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import lstm_verify as lv
from lstm_verify.cli import main
from lstm_verify.compare import errors
from lstm_verify.export import SUFFIX, TARGETS, c_compiler, export
from lstm_verify.spec import SET

GOLDEN = Path(__file__).parent / "golden"
GOLDEN_CELLS = ("lstm", "gru", "clockwork_rnn", "layernorm_lstm")
CELLS = lv.catalog()
T, B = 5, 2


# L = 4 members of a set input, and member and attention sizes unlike the others, so that an
# index that mixes them up reads the wrong values (or out of bounds)
SIZES = {"input": 3, "hidden": 4, "proj": 2, "item": 5, "attn": 3, SET: 4}


def _problem(cell, seed=0, dtype=np.float64):
    sizes = {k: SIZES[k] for k in cell.ir.size_names}
    rng = np.random.default_rng(seed)
    p = cell.init_params(sizes=sizes, init="uniform", seed=seed, dtype=dtype)
    # per-step inputs (T, B, n), then set inputs (B, L, n), fixed over time
    x = {n: rng.uniform(-2, 2, shape).astype(dtype) for n, shape in cell.ir.input_shapes(sizes, T, B).items()}
    s = {k: rng.uniform(*cell.spec.state_range(k), (B, sizes[d])).astype(dtype) for k, d in cell.ir.states}
    d_out = rng.standard_normal((T, B, sizes[dict(cell.ir.states)[cell.ir.output]]))
    return sizes, p, x, s, d_out


def _first_step(cell, x):
    """The inputs of the first step: per-step inputs at t = 0, set inputs as they are."""
    sets = dict(cell.ir.sets)
    return {k: v if k in sets else v[0] for k, v in x.items()}


RUNNER = textwrap.dedent('''
    import importlib, importlib.util, json, sys
    import numpy as np
    blocked = [m for m in ("sympy", "lstm_verify") if importlib.util.find_spec(m) is not None
               and not getattr(importlib.util.find_spec(m), "origin", "").startswith(sys.argv[1])]
    assert not blocked, blocked
    target, cells = sys.argv[2], json.loads(sys.argv[3])
    if target == "torch":
        import torch
    for name in cells:
        mod = importlib.import_module(f"{name}_{target}")
        data = np.load(f"{name}.npz")
        conv = (lambda a: torch.tensor(a)) if target == "torch" else (lambda a: a)
        def part(prefix):
            return {k[len(prefix):]: conv(data[k]) for k in data.files if k.startswith(prefix)}
        p, x, s = part("p:"), part("x:"), part("s:")
        out, final, cache = mod.forward(p, x, s, 0, True)
        grads, dx, ds = mod.backward(p, cache, conv(data["d_out"]), None)
        sets = getattr(mod, "_SETS", [])  # set inputs have no step axis
        new = mod.step(p, {k: v if k in sets else v[0] for k, v in x.items()}, s)
        res = {"out": out} | {f"final:{k}": v for k, v in final.items()}
        res |= {f"g:{k}": v for k, v in grads.items()} | {f"dx:{k}": v for k, v in dx.items()}
        res |= {f"ds:{k}": v for k, v in ds.items()} | {f"step:{k}": v for k, v in new.items()}
        np.savez(f"{name}.out.npz", **{k: np.asarray(v) for k, v in res.items()})
    assert "sympy" not in sys.modules and "lstm_verify" not in sys.modules
    print("ok")
''')


def _blocker(root: Path) -> Path:
    """A folder that shadows sympy and lstm_verify with packages that refuse to import."""
    b = root / "blocked"
    for m in ("sympy", "lstm_verify"):
        (b / m).mkdir(parents=True, exist_ok=True)
        (b / m / "__init__.py").write_text(f"raise ImportError('{m} is not available to exported code')\n")
    return b


def _run_exported(tmp_path, target, cells, texts=None):
    blocked = _blocker(tmp_path)
    for name in cells:
        cell = lv.load(name)
        text = texts[name] if texts else export(cell, target)
        (tmp_path / f"{name}_{target}.py").write_text(text)
        _, p, x, s, d_out = _problem(cell)
        np.savez(tmp_path / f"{name}.npz", **{f"p:{k}": v for k, v in p.items()},
                 **{f"x:{k}": v for k, v in x.items()}, **{f"s:{k}": v for k, v in s.items()}, d_out=d_out)  # fmt: skip
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(blocked), str(tmp_path)]))
    proc = subprocess.run([sys.executable, "-c", RUNNER, str(blocked), target, json.dumps(list(cells))],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-3000:]
    return {name: dict(np.load(tmp_path / f"{name}.out.npz")) for name in cells}


def _verify_python(name, got):
    cell = lv.load(name)
    _, p, x, s, d_out = _problem(cell)
    ref_out, ref_state = cell.reference(p, x, s)
    e = errors(got["out"], ref_out, np.float64)
    assert e.normwise < 1e-13, (name, str(e))
    for k in ref_state:
        assert errors(got[f"final:{k}"], ref_state[k], np.float64).normwise < 1e-13
    impl = cell.numpy()
    run = impl.forward(p, x, s, save=True)
    g = impl.backward(p, run.cache, d_out)
    np.testing.assert_allclose(got["out"], run.outputs, rtol=1e-13, atol=1e-15)
    for k, v in g.params.items():
        np.testing.assert_allclose(got[f"g:{k}"], v, rtol=1e-12, atol=1e-14, err_msg=f"{name} dL/d{k}")
    for k, v in g.inputs.items():
        np.testing.assert_allclose(got[f"dx:{k}"], v, rtol=1e-12, atol=1e-14)
    for k, v in g.state.items():
        np.testing.assert_allclose(got[f"ds:{k}"], v, rtol=1e-12, atol=1e-14)
    _, one = impl.step(p, _first_step(cell, x), s)
    for k, v in one.items():
        np.testing.assert_allclose(got[f"step:{k}"], v, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("target", ["numpy", "torch"])
def test_every_cell_exports_and_runs_without_sympy_or_lstm_verify(tmp_path, target):
    results = _run_exported(tmp_path, target, CELLS)
    for name in CELLS:
        _verify_python(name, results[name])


def _compile(tmp_path, name, text):
    cc = c_compiler()
    assert cc, "a C compiler (cc or gcc) is needed"
    src = tmp_path / f"{name}.c"
    src.write_text(text)
    lib = tmp_path / f"lib{name}.so"
    proc = subprocess.run([cc, "-O2", "-Wall", "-Werror", "-std=c99", "-shared", "-fPIC", str(src), "-o", str(lib), "-lm"],
                          capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return ctypes.CDLL(str(lib))


def _run_c(lib, cell, dtype, sizes, p, x, s):
    ir = cell.ir
    suffix, ct = ("_f64", ctypes.c_double) if dtype == np.float64 else ("_f32", ctypes.c_float)
    Sizes = type("Sizes", (ctypes.Structure,), {"_fields_": [(k, ctypes.c_int) for k in ir.size_names]})
    names = list(ir.param_names) + [b for b, _, _ in ir.buffers]
    Params = type("Params", (ctypes.Structure,), {"_fields_": [(k, ctypes.POINTER(ct)) for k in names]})
    keep = {k: np.ascontiguousarray(p[k], dtype=dtype) for k in names}
    params = Params(**{k: keep[k].ctypes.data_as(ctypes.POINTER(ct)) for k in names})
    # per-step inputs, then set inputs: the order of the C arguments
    names_x = [n for n, _ in ir.inputs] + [n for n, _ in ir.sets]
    xs = [np.ascontiguousarray(x[n], dtype=dtype) for n in names_x]
    per_step = [n not in dict(ir.sets) for n in names_x]
    st = {k: np.ascontiguousarray(s[k], dtype=dtype).copy() for k, _ in ir.states}
    out = np.zeros((T, B, sizes[dict(ir.states)[ir.output]]), dtype=dtype)
    fn = getattr(lib, f"{ir.name}_sequence{suffix}")
    fn.restype = ctypes.c_int
    ptr = lambda a: a.ctypes.data_as(ctypes.POINTER(ct))  # noqa: E731
    rc = fn(ctypes.byref(Sizes(**sizes)), ctypes.byref(params), *[ptr(a) for a in xs],
            *[ptr(st[k]) for k, _ in ir.states], ptr(out), T, B, ctypes.c_long(0))  # fmt: skip
    assert rc == 0
    # one step on its own
    new = {k: np.zeros_like(v) for k, v in st.items()}
    step = getattr(lib, f"{ir.name}_step{suffix}")
    s0 = {k: np.ascontiguousarray(s[k], dtype=dtype) for k, _ in ir.states}
    first = [np.ascontiguousarray(a[0]) if k else a for a, k in zip(xs, per_step)]  # a set input as it is
    step(ctypes.byref(Sizes(**sizes)), ctypes.byref(params), *[ptr(a) for a in first],
         *[ptr(s0[k]) for k, _ in ir.states], *[ptr(new[k]) for k, _ in ir.states], B, ctypes.c_long(0))  # fmt: skip
    return out, st, new


@pytest.mark.parametrize("name", CELLS)
def test_every_cell_exports_to_c_that_compiles_clean_and_matches(tmp_path, name):
    cell = lv.load(name)
    lib = _compile(tmp_path, name, export(cell, "c"))
    for dtype, limit in ((np.float64, 1e-13), (np.float32, 2e-6)):
        sizes, p, x, s, _ = _problem(cell, dtype=dtype)
        out, final, new = _run_c(lib, cell, dtype, sizes, p, x, s)
        ref_out, ref_state = cell.reference(p, x, s)  # exact, from the same (rounded) values
        assert errors(out, ref_out, dtype).normwise < limit, (dtype, str(errors(out, ref_out, dtype)))
        for k in ref_state:
            assert errors(final[k], ref_state[k], dtype).normwise < limit
        run = cell.numpy().forward(p, x, s)
        np.testing.assert_allclose(out, run.outputs, rtol=limit * 10, atol=limit)
        _, one = cell.numpy().step(p, _first_step(cell, x), s)
        for k in one:
            np.testing.assert_allclose(new[k], one[k], rtol=limit * 10, atol=limit)


def _c_matches_numpy(lib, cell, dtype, limit):
    """Whether the C sequence and one C step agree with the generated NumPy implementation
    (and the sequence with the exact reference) to ``limit``."""
    sizes, p, x, s, _ = _problem(cell, dtype=dtype)
    out, final, new = _run_c(lib, cell, dtype, sizes, p, x, s)
    run = cell.numpy().forward(p, x, s)
    _, one = cell.numpy().step(p, _first_step(cell, x), s)
    ref_out, _ = cell.reference(p, x, s)
    return (errors(out, ref_out, dtype).normwise < limit
            and np.allclose(out, run.outputs, rtol=limit * 10, atol=limit)
            and all(np.allclose(final[k], run.state[k], rtol=limit * 10, atol=limit) for k in final)
            and all(np.allclose(new[k], one[k], rtol=limit * 10, atol=limit) for k in one))  # fmt: skip


def test_c_attention_decoder_set_is_fixed_over_time_and_softmax_is_over_members(tmp_path):
    """The set input (B, L, n) is passed unchanged to every step; the checks against NumPy and
    the reference (L = 4 members, B = 2 rows, T = 5 steps) fail for C that reads another set
    row as time goes on, or normalises the attention weights over anything but all members."""
    cell = lv.load("attention_decoder")
    assert cell.ir.input_shapes(SIZES, T, B)["a"] == (B, SIZES[SET], SIZES["item"]) and SIZES[SET] >= 3
    text = export(cell, "c")
    assert "A_y + (size_t)t * batch * n->input, A_a, A_h, A_c, X_h, X_c, batch, t0 + t);" in text
    assert "(batch, L, size) with L = n->set >= 1 members, fixed over time" in text
    lib = _compile(tmp_path, "attention_decoder", text)
    assert _c_matches_numpy(lib, cell, np.float64, 1e-13) and _c_matches_numpy(lib, cell, np.float32, 2e-6)
    # permuting the members changes nothing (up to rounding); another row of the set changes
    # only its own batch row
    sizes, p, x, s, _ = _problem(cell)
    out, _, _ = _run_c(lib, cell, np.float64, sizes, p, x, s)
    perm = dict(x, a=x["a"][:, [2, 0, 3, 1]])
    np.testing.assert_allclose(_run_c(lib, cell, np.float64, sizes, p, perm, s)[0], out, rtol=1e-13, atol=1e-15)
    other = dict(x, a=x["a"].copy())
    other["a"][1] += 0.5
    changed = _run_c(lib, cell, np.float64, sizes, p, other, s)[0]
    assert np.array_equal(changed[:, 0], out[:, 0]) and not np.allclose(changed[:, 1], out[:, 1])
    mutants = {
        "the set row moves with t": ("const double *R_a = A_a + (size_t)b * n->set * n->item;",
                                     "const double *R_a = A_a + (size_t)((b + t) % batch) * n->set * n->item;"),
        "softmax normalised by one member": ("V_setsum_alpha += V_setsum_alpha_in0[m];",
                                             "V_setsum_alpha += V_setsum_alpha_in0[0];"),
        "context weighted by one member": ("*V_alpha[m];", "*V_alpha[0];"),
    }  # fmt: skip
    for k, (old, new) in enumerate(mutants.values()):
        assert old in text, old  # (the float32 functions are not called)
        bad = _compile(tmp_path, f"mutant{k}", text.replace(old, new))
        assert not _c_matches_numpy(bad, cell, np.float64, 1e-13), list(mutants)[k]


SET_PATHS = """
name = "set_paths"
title = "Every C path of set inputs"
cite = ["lstm-verify tests"]
input = "x"
sets = ["a"]
state = ["h"]
diagonal = ["w"]
sizes = { a = "item", k = "item", r = "item" }
equations = [
  "q = lin(a, x)",
  "k = lin(a)",
  "u = (q - mean(q))/sqrt(var(q) + 1) + sum(k, h)/8",
  "alpha = softmax(u + h)",
  "r = setsum(a)",
  "h' = tanh(lin(x, h, r) + w*setsum(alpha*u))",
]
"""


def test_c_set_paths_lin_reductions_and_vector_softmax(tmp_path):
    """lin of a set input alone and with a per-step input, mean/var/sum per member (over set
    and plain vectors together), a softmax over the members at every unit (setmax and setsum
    of vectors) and setsum of the set input itself: C against NumPy and the reference."""
    path = tmp_path / "set_paths.toml"
    path.write_text(SET_PATHS)
    cell = lv.load(path)
    text = export(cell, "c")
    assert "double V_mean_u[n->set];" in text and "double V_setmax_alpha[n->hidden];" in text
    assert "V_setsum_r[j] += R_a[(size_t)m * n->item + j];" in text
    lib = _compile(tmp_path, "set_paths", text)
    assert _c_matches_numpy(lib, cell, np.float64, 1e-13)
    assert _c_matches_numpy(lib, cell, np.float32, 2e-6)


def test_exported_torch_layer_passes_set_inputs(tmp_path):
    """The torch Layer of a cell with a set input takes it in the inputs dict (in any order)
    and trains it with the generated backward: gradients equal autograd's through forward."""
    import importlib.util

    import torch

    path = tmp_path / "attention_torch_mod.py"
    path.write_text(export(lv.load("attention_decoder"), "torch"))
    spec = importlib.util.spec_from_file_location("attention_torch_mod", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    layer = mod.Layer({k: SIZES[k] for k in ("input", "hidden", "item", "attn")}, seed=0, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    y = torch.randn(T, B, SIZES["input"], generator=g, dtype=torch.float64)
    a = torch.randn(B, SIZES[SET], SIZES["item"], generator=g, dtype=torch.float64, requires_grad=True)
    out, _ = layer({"a": a, "y": y})
    (out**2).sum().backward()
    params = {k: v.detach().clone().requires_grad_(True) for k, v in layer.named_parameters()}
    a2 = a.detach().clone().requires_grad_(True)
    zeros = {k: torch.zeros(B, SIZES["hidden"], dtype=torch.float64) for k in ("h", "c")}
    out2, _, _ = mod.forward(params, {"y": y, "a": a2}, zeros)
    (out2**2).sum().backward()
    torch.testing.assert_close(out, out2, rtol=0, atol=0)
    assert float(a2.grad.abs().max()) > 1e-3
    torch.testing.assert_close(a.grad, a2.grad, rtol=1e-12, atol=1e-14)
    for k, v in layer.named_parameters():
        torch.testing.assert_close(v.grad, params[k].grad, rtol=1e-12, atol=1e-14)


def test_c_half_integer_powers_and_size_one_values(tmp_path):
    """sqrt and x**(k/2) print as products of the C square root (x**(-3/2) is
    1/(sqrt(x)*x)), and each compiles clean and agrees with the exact value."""
    import sympy

    from lstm_verify.export import _C_HELPERS, _CPrinter

    x = sympy.Symbol("x", positive=True)
    exprs = [sympy.sqrt(x), x ** sympy.Rational(3, 2), x ** sympy.Rational(-1, 2),
             x ** sympy.Rational(-3, 2), x ** sympy.Rational(5, 2), 1 / sympy.sqrt(x + sympy.Rational(1, 100000))]  # fmt: skip
    printer = _CPrinter("_f64", "double")
    assert printer.doprint(x ** sympy.Rational(-3, 2)) == "(1/(lv_sqrt_f64(x)*x))"
    body = "\n".join(f"double e{k}(double x) {{ return {printer.doprint(e)}; }}"
                     for k, e in enumerate(exprs))
    helper = _C_HELPERS["sqrt"].format(T="double", S="_f64", SQRT="sqrt")
    lib = _compile(tmp_path, "halfpow", "#include <math.h>\n" + helper + "\n" + body + "\n")
    for k, e in enumerate(exprs):
        f = getattr(lib, f"e{k}")
        f.restype, f.argtypes = ctypes.c_double, [ctypes.c_double]
        for v in (0.25, 2.0, 7.5):
            assert f(v) == pytest.approx(float(e.subs(x, v)), rel=1e-15), (e, v)
    # the new catalog cells reduce over units and broadcast size-1 values: one local per row
    text = export(lv.load("layernorm_lstm"), "c")
    assert "double V_var_sx = 0;" in text and "/V_sx" in text and "V_sx[" not in text


def test_exported_torch_layer_trains_with_gradients_equal_to_autograd(tmp_path):
    import importlib.util

    import torch

    path = tmp_path / "lstm_torch_mod.py"
    path.write_text(export(lv.load("lstm"), "torch"))
    spec = importlib.util.spec_from_file_location("lstm_torch_mod", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    layer = mod.Layer({"input": 2, "hidden": 8}, seed=0, dtype=torch.float64)
    # gradients of the generated backward equal autograd through the exported forward
    x = torch.randn(12, 3, 2, dtype=torch.float64)
    out, _ = layer(x)
    (out**2).sum().backward()
    fused = {k: v.grad.clone() for k, v in layer.named_parameters()}
    params = {k: v.detach().clone().requires_grad_(True) for k, v in layer.named_parameters()}
    zeros = {s: torch.zeros(3, 8, dtype=torch.float64) for s in ("h", "c")}
    out2, _, _ = mod.forward(params, {"x": x}, zeros)
    (out2**2).sum().backward()
    for k in fused:
        torch.testing.assert_close(fused[k], params[k].grad, rtol=1e-12, atol=1e-14)
    # a few optimiser steps on a toy task decrease the loss
    readout = torch.nn.Linear(8, 1, dtype=torch.float64)
    opt = torch.optim.Adam(list(layer.parameters()) + list(readout.parameters()), lr=0.02)
    g = torch.Generator().manual_seed(0)
    xs = torch.randn(10, 64, 2, generator=g, dtype=torch.float64)
    target = xs[:, :, 0].sum(0, keepdim=True).T / 3
    losses = []
    for _ in range(30):
        out, _ = layer(xs)
        loss = ((readout(out[-1]) - target) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0], losses


@pytest.mark.parametrize("name", CELLS)
def test_every_export_matches_its_golden(name):
    """Every cell and target is pinned (refresh: python tests/golden/refresh.py)."""
    for target in TARGETS:
        golden = (GOLDEN / f"{name}_{target}{SUFFIX[target]}").read_text()
        assert export(lv.load(name), target) == golden, f"{name} ({target}) changed; refresh the goldens"


@pytest.mark.parametrize("seed", ["1", "4242"])
def test_export_is_deterministic_across_processes(tmp_path, seed):
    """Other hash seeds (set and dict order of strings) give byte-identical exports of every
    cell and target."""
    code = ("import json, lstm_verify as lv, lstm_verify.export as e; print(json.dumps("
            "{f'{c}_{t}{e.SUFFIX[t]}': e.export(c, t) for c in lv.catalog() for t in e.TARGETS}))")
    env = dict(os.environ, PYTHONHASHSEED=seed, LSTM_VERIFY_CACHE="0")
    there = json.loads(subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, check=True,
                                      capture_output=True, text=True).stdout)  # fmt: skip
    assert len(there) == len(CELLS) * len(TARGETS)
    changed = [f for f, text in there.items() if (GOLDEN / f).read_text() != text]
    assert not changed, f"PYTHONHASHSEED={seed} changes {changed}"


@pytest.mark.parametrize("name", GOLDEN_CELLS)
@pytest.mark.parametrize("target", ["numpy", "torch", "c"])
def test_golden_files(tmp_path, name, target):
    """Text equal to the golden file (refresh: python tests/golden/refresh.py), and the golden
    module itself verified."""
    suffix = ".c" if target == "c" else ".py"
    golden = (GOLDEN / f"{name}_{target}{suffix}").read_text()
    assert export(lv.load(name), target) == golden, "export changed; refresh with python tests/golden/refresh.py"
    if target == "c":
        cell = lv.load(name)
        lib = _compile(tmp_path, name, golden)
        sizes, p, x, s, _ = _problem(cell)
        out, _, _ = _run_c(lib, cell, np.float64, sizes, p, x, s)
        assert errors(out, cell.reference(p, x, s)[0], np.float64).normwise < 1e-13
    else:
        _verify_python(name, _run_exported(tmp_path, target, [name], {name: golden})[name])


def test_cli_export_bad_input_leaves_nothing(tmp_path, capsys):
    assert main(["export", "no_such_cell", "--target", "numpy", "-o", str(tmp_path)]) == 2
    assert "no catalog cell named 'no_such_cell'" in capsys.readouterr().err
    assert main(["export", "lstm", "--target", "numpy", "-o", str(tmp_path / "missing" / "x.py")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["export", "lstm", "--target", "numpy", "-o", str(tmp_path)]) == 0
    first = (tmp_path / "lstm_numpy.py").read_text()
    (tmp_path / "lstm_numpy.py").write_text("mine")
    assert main(["export", "lstm", "--target", "numpy", "-o", str(tmp_path)]) == 2
    assert "exists; pass --force" in capsys.readouterr().err
    assert (tmp_path / "lstm_numpy.py").read_text() == "mine"
    assert main(["export", "lstm", "--target", "numpy", "-o", str(tmp_path), "--force"]) == 0
    assert (tmp_path / "lstm_numpy.py").read_text() == first
    # a folder nobody can create files in, root included
    assert main(["export", "lstm", "--target", "c", "-o", "/proc/lstm_c.c"]) == 2
    assert "cannot write /proc/lstm_c.c" in capsys.readouterr().err
    assert not Path("/proc/lstm_c.c").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lstm_numpy.py"]


def test_cli_export_force_replaces_only_regular_files(tmp_path, capsys):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    link = tmp_path / "lstm_numpy.py"
    link.symlink_to(victim)
    assert main(["export", "lstm", "--target", "numpy", "-o", str(link), "--force"]) == 2
    assert "link" in capsys.readouterr().err
    assert victim.read_text() == "keep" and link.is_symlink()
    fifo = tmp_path / "lstm_c.c"
    os.mkfifo(fifo)
    assert main(["export", "lstm", "--target", "c", "-o", str(fifo), "--force"]) == 2
    assert "fifo" in capsys.readouterr().err.lower()


def test_export_never_overwrites_a_file_that_appears_meanwhile(tmp_path, monkeypatch):
    import lstm_verify.export as export_module

    target = tmp_path / "lstm_numpy.py"
    real = export_module.export

    def slow_export(cell, t):
        text = real(cell, t)
        target.write_text("written by someone else meanwhile")
        return text

    monkeypatch.setattr(export_module, "export", slow_export)
    with pytest.raises(lv.errors.LstmVerifyError, match="exists"):
        export_module.write("lstm", "numpy", target)
    assert target.read_text() == "written by someone else meanwhile"


SPEED_MACHINERY = ("_scratch", "_linear", "_blocked", "_put", "_cat_put", "_release", "_recycle", "_Cache", "_mm_",
                   "_G_", "_W_", "_sv_", "out=", "addcmul", "addmm")  # fmt: skip


@pytest.mark.parametrize("target", ["numpy", "torch"])
def test_the_exported_step_reads_like_the_equations_and_matches_the_reference(target):
    """``step`` is one line per equation with nothing of the fast path; run on the prelude
    alone, it matches the mpmath reference's first step for every cell."""
    from lstm_verify.codegen import prelude, readable_step

    if target == "torch":
        torch = pytest.importorskip("torch", reason="the torch target needs the torch extra")
    for name in CELLS:
        cell = lv.load(name)
        source = readable_step(cell.ir, target)
        assert not [m for m in SPEED_MACHINERY if re.search(r"(?<![\w])" + re.escape(m), source)], name
        lines = [ln for ln in source.splitlines() if " = " in ln and not ln.lstrip().startswith(("v_W", "x = "))]
        assert sum(ln.strip().startswith(("v_", "_n_", "_k")) for ln in lines) >= len(cell.ir.nodes)
        namespace: dict = {}
        exec(compile(prelude(target) + "\n\n" + source, f"<step of {name}>", "exec"), namespace)  # noqa: S102
        _, p, x, s, _ = _problem(cell)
        first = _first_step(cell, x)
        conv = (lambda a: torch.tensor(a)) if target == "torch" else (lambda a: a)  # noqa: E731
        new = namespace["step"]({k: conv(v) for k, v in p.items()}, {k: conv(v) for k, v in first.items()},
                                {k: conv(v) for k, v in s.items()})  # fmt: skip
        _, ref = cell.reference(p, {k: v if k in dict(cell.ir.sets) else v[:1] for k, v in x.items()}, s)
        for k in ref:
            e = errors(np.asarray(new[k]), ref[k], np.float64)
            assert e.normwise < 1e-13, (name, k, str(e))


def test_generated_functions_assign_nothing_they_never_read():
    import symtable

    for name in CELLS:
        for target in ("numpy", "torch"):
            text = export(lv.load(name), target)
            for fn in symtable.symtable(text, name, "exec").get_children():
                if fn.get_type() == "function" and fn.get_name() in ("forward", "backward", "step"):
                    unread = [s.get_name() for s in fn.get_symbols()
                              if s.is_assigned() and not s.is_referenced() and not s.is_parameter()]  # fmt: skip
                    assert not unread, (name, target, fn.get_name(), unread)


def test_drop_unread_keeps_effects_and_blocks():
    from lstm_verify.codegen import drop_unread

    src = textwrap.dedent("""\
        def f(params, cache):
            a = params['a']
            b = a.shape[0]
            c = _linear(a, 1, 2)
            u = params['u']
            w = u.shape
            d = params['d']
            for t in range(3):
                e = d[t]
            if d is None:
                g = 1
            return d
    """)
    out = drop_unread(src)
    assert "b = " not in out and "u = " not in out and "w = " not in out  # u was read only by w: a fixpoint
    assert "c = _linear(a, 1, 2)" in out and "a = params['a']" in out  # a call may do something: kept
    assert "d = params['d']" in out and "e = d[t]" in out and "g = 1" in out  # every block keeps a statement
    compile(out, "<tidy>", "exec")
