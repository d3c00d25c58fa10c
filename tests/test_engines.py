"""The machinery behind built-in subjects, with engines written here in NumPy (no framework
needed): layout forms, the precision probe, sequence kernels, exceptions from the subject,
identification across parameter structures, the command line's options."""

from __future__ import annotations

import numpy as np
import pytest

import lstm_verify as lv
from lstm_verify.cli import main
from lstm_verify.conformance import check, make_layout
from lstm_verify.errors import SpecError
from lstm_verify.frameworks import Engine, is_builtin
from lstm_verify.layout import from_target, stack, stack_gradients
from lstm_verify.spec import Layout


def _sig(a):
    return 0.5 * (1 + np.tanh(a / 2))  # no overflow warning at |a| >= 800


class HaikuStyleLSTM(Engine):
    """An LSTM stored as Haiku stores it: one matrix over [x, h] (rows i, g, f, o), a forget
    bias of +1 added at run time, state (h, c). ``dtype``, ``sequence`` and the faults are
    class attributes, set by subclasses."""

    target = "test.HaikuStyleLSTM"
    compute = np.float64
    forget_bias = 1.0
    fault = None  # an exception class raised by run

    def __init__(self, sizes, options, dtype):
        super().__init__(sizes, options, dtype)
        I, H = sizes["input"], sizes["hidden"]
        rng = np.random.default_rng(0)
        self.t = {"w": rng.standard_normal((I + H, 4 * H)), "b": rng.standard_normal(4 * H)}

    def tensors(self):
        return dict(self.t)

    def set_tensors(self, values):
        self.t = {k: np.asarray(values[k], self.compute) for k in self.t}

    def run(self, xs, state):
        if self.fault is not None:
            raise self.fault("the kernel refused the input")
        h, c = (np.asarray(s, self.compute) for s in state)
        out = []
        for x in np.asarray(xs, self.compute):
            z = np.concatenate([x, h], 1) @ self.t["w"] + self.t["b"]
            i, g, f, o = np.split(z, 4, axis=1)
            c = _sig(f + self.forget_bias) * c + _sig(i) * np.tanh(g)
            h = _sig(o) * np.tanh(c)
            out.append((h, c))
        return out


HAIKU_LAYOUT = {
    "tensors": {"w": {"grid": [["W_i_x", "W_i_h"], ["W_g_x", "W_g_h"], ["W_f_x", "W_f_h"], ["W_o_x", "W_o_h"]]},
                "b": ["b_i", "b_g", "b_f", "b_o"]},
    "transpose": ["w"], "shift": {"b_f": 1.0}, "state": ["h", "c"],
}  # fmt: skip


def _layout(cell="lstm", data=HAIKU_LAYOUT, name="haiku_style", target="test.HaikuStyleLSTM"):
    """A Layout parsed from TOML-like data exactly as a spec's [layouts.NAME] table is."""
    from lstm_verify.spec import _Parser

    base = lv.load(cell).spec
    return _Parser({"state": list(base.states), "layouts": {name: {"target": target, **data}}}, "<test>").layouts()[0]


# --------------------------------------------------------------------------- layout forms


def test_every_catalog_layout_round_trips_and_its_gradients_have_the_tensor_shapes():
    rng = np.random.default_rng(0)
    for name in lv.catalog():
        cell = lv.load(name)
        sizes = {k: 4 * (i + 1) for i, k in enumerate(cell.ir.size_names)}  # distinct, and divisible by 4 heads
        params = cell.init_params(sizes=sizes, seed=1)
        bufs = {b: params[b] for b, _, _ in cell.ir.buffers}
        # entries a mask zeroes are not part of the cell: a per-head layout does not store them
        used = {w.name: w.mask.evaluate(bufs) for w in cell.ir.weights if w.mask is not None}
        for lay in cell.spec.layouts:
            tensors = stack(lay, params, split=rng)
            back = from_target(cell.ir, lay, tensors, sizes)
            assert set(back) == set(cell.ir.param_names) - set(lay.zero), (name, lay.name)
            for k in back:
                m = used.get(k, 1.0)
                np.testing.assert_allclose(back[k] * m, params[k] * m, atol=1e-12, err_msg=f"{name} {lay.name} {k}")
            grads = stack_gradients(lay, params)
            assert {k: v.shape for k, v in grads.items()} == {k: v.shape for k, v in tensors.items()}, (name, lay.name)


def test_grid_stack_shift_and_scale_place_each_block_where_the_framework_reads_it():
    cell = lv.load("lstm")
    sizes = {"input": 2, "hidden": 3}
    p = cell.init_params(sizes=sizes, seed=3)
    lay = _layout()
    t = stack(lay, p)
    assert t["w"].shape == (5, 12)
    np.testing.assert_array_equal(t["w"][:2, 3:6], p["W_g_x"].T)  # x rows, the second gate's columns
    np.testing.assert_array_equal(t["w"][2:, 6:9], p["W_f_h"].T)
    np.testing.assert_allclose(t["b"][6:9], p["b_f"] - 1.0)  # the framework adds the 1 back
    gru = lv.load("gru")
    g = gru.init_params(sizes=sizes, seed=4)
    keras = _layout("gru", {"tensors": {"bias": {"stack": [["b_z", "b_r", "b_n_x"], ["b_z", "b_r", "b_n_h"]]},
                                        "kernel": ["W_z_x", "W_r_x", "W_n_x"], "recurrent_kernel": ["W_z_h", "W_r_h", "W_n_h"]},
                            "transpose": ["kernel", "recurrent_kernel"], "scale": {"b_z": -2.0}}, "k", "t")  # fmt: skip
    t = stack(keras, g, split=np.random.default_rng(0))
    assert t["bias"].shape == (2, 9) and t["kernel"].shape == (2, 9)
    np.testing.assert_allclose(t["bias"][0, :3] + t["bias"][1, :3], g["b_z"] / -2.0)  # split, then summed
    np.testing.assert_array_equal(t["bias"][1, 6:], g["b_n_h"])
    back = from_target(gru.ir, keras, t, sizes)
    for k in g:
        np.testing.assert_allclose(back[k], g[k], atol=1e-12)


@pytest.mark.parametrize("table, message", [
    ({"tensors": {"w": {"rows": [["W_h_x"]]}}}, "one key, stack or grid"),
    ({"tensors": {"w": {"stack": ["W_h_x"]}}}, "one key, stack or grid"),
    ({"tensors": {"w": {"grid": [[]]}}}, "one key, stack or grid"),
    ({"tensors": {"w": ["W_h_x", "W_h_h", "b_h"]}, "shift": {"b_h": "1"}}, "'shift' must be a table"),
    ({"tensors": {"w": ["W_h_x", "W_h_h", "b_h"]}, "scale": {"b_h": 0}}, "other than 0"),
    ({"tensors": {"w": ["W_h_x", "W_h_h", "b_h"]}, "scale": {"b_h": float("inf")}}, "finite numbers"),
    ({"tensors": {"w": ["W_h_x", "W_h_h", "b_h"]}, "frozen": ["w"]}, "'frozen' must list tensor names"),
    ({"tensors": {"w": ["W_h_x", "W_h_h", "b_h"]}, "shift": {"nope": 1.0}}, "'nope'] are not parameters"),
    ({"tensors": {"w": ["W_h_x", "W_h_h", "b_h"]}, "zero": ["b_h"]}, "'zero' must list parameter names that"),
    ({"tensors": {"w": ["W_h_x", "W_h_h"]}, "zero": ["b_x"]}, "zero: ['b_x'] are not parameters"),
])  # fmt: skip
def test_malformed_layout_tables_are_refused_with_the_layout_named(tmp_path, table, message):
    from pathlib import Path

    text = Path(lv.load("rnn_tanh").spec.path).read_text()
    spec = tmp_path / "bad.toml"
    body = text.split("\n[layouts")[0] + "\n" + _toml_layout("bad", table)
    spec.write_text(body.replace('name = "rnn_tanh"', 'name = "bad_layout"'))
    with pytest.raises(SpecError, match="layout 'bad'") as info:
        lv.load(str(spec))
    assert message in str(info.value)


def _toml_layout(name, table) -> str:
    def value(v):
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + " }"
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, str):
            return f'"{v}"'
        if isinstance(v, float) and not np.isfinite(v):
            return "inf"
        return repr(v)

    lines = [f"[layouts.{name}]", 'target = "t"']
    lines += [f"{k} = {value(v)}" for k, v in table.items() if k != "tensors"]
    lines += [f"[layouts.{name}.tensors]"] + [f'"{k}" = {value(v)}' for k, v in table["tensors"].items()]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- checking engines


def _check(engine, cell="lstm", **kw):
    kw.setdefault("examples", 10)
    return check(cell, engine, layout=kw.pop("layout", HAIKU_LAYOUT), seed=0, shrink=False, **kw)


def test_an_engine_with_its_layout_conforms_and_its_first_line_says_nothing_of_precision():
    report = _check(HaikuStyleLSTM)
    assert report.passed, report.table()
    assert report.precision == "float64" and report.table().startswith("test_engines.HaikuStyleLSTM against lstm:")
    assert all(r.examples > 0 for r in report.rows if not r.skipped)
    assert "forward only" in report.rows[-1].skipped  # no vjp: said, not passed
    assert is_builtin("keras.layers:GRUCell") and is_builtin("m.onnx") and not is_builtin(HaikuStyleLSTM)


def test_the_layout_shift_is_what_makes_it_conform():
    no_shift = {k: v for k, v in HAIKU_LAYOUT.items() if k != "shift"}
    report = _check(HaikuStyleLSTM, layout=no_shift)
    assert not report.passed
    assert "constant 1 added to f's pre-activation" in report.identification.summary()


class Float32Out(HaikuStyleLSTM):
    compute = np.float32


class Float32Inside(Float32Out):
    """float64 results of a float32 computation."""

    def run(self, xs, state):
        return [tuple(np.asarray(s, np.float64) for s in step) for step in super().run(xs, state)]


@pytest.mark.parametrize("engine, evidence", [(Float32Out, "it returns float32 for float64 inputs"),
                                              (Float32Inside, "float64 results with relative error")])  # fmt: skip
def test_a_float32_engine_is_found_and_checked_at_float32(engine, evidence):
    report = _check(engine)
    assert report.passed, report.table()
    first = report.table().splitlines()[0]
    assert first.startswith("computes in float32 (") and evidence in first and first.endswith("checked at float32 tolerances")
    # at float64 it fails, and identification says float32, never another cell
    strict = _check(engine, dtype="float64")
    assert not strict.passed
    assert strict.identification.summary().startswith("computes `lstm` in float32")


class SequenceKernel(HaikuStyleLSTM):
    """Exposes every h but only the last c, as ONNX's LSTM does; counts its calls."""

    sequence = True
    calls: list = []

    def run(self, xs, state):
        SequenceKernel.calls.append(len(xs))
        steps = super().run(xs, state)
        return [(h, c if t == len(steps) - 1 else None) for t, (h, c) in enumerate(steps)]


def test_a_sequence_kernel_is_called_once_per_sequence_and_checked_where_it_exposes_states():
    SequenceKernel.calls.clear()
    report = _check(SequenceKernel)
    assert report.passed, report.table()
    assert max(SequenceKernel.calls) >= 50  # the long-sequence properties: one call each


class WrongCell(SequenceKernel):
    forget_bias = 0.5


def test_a_sequence_kernel_that_differs_fails_on_the_states_it_exposes():
    import re

    report = _check(WrongCell)
    assert not report.passed
    message = next(r.message for r in report.rows if not r.passed)
    # which case fails first depends on Hypothesis's draws (which also mine constants from the
    # modules loaded): the failure is on h' at any step, or on c' at the last step, never on a c
    # the kernel did not expose
    state, step = re.match(r"lstm: (h'|c') at step (\d+)", message).groups()
    steps = int(re.search(r", (\d+) steps?, batch", message).group(1))
    assert state == "h'" or int(step) == steps - 1, message


class KernelError(Exception):
    """An exception type from outside anything lstm-verify knows (as onnxruntime's)."""


class Raising(HaikuStyleLSTM):
    fault = KernelError


class SometimesRaising(HaikuStyleLSTM):
    """Raises on some inputs and is wrong on others: two distinct failures."""

    def run(self, xs, state):
        if xs.shape[0] > 2:
            raise KernelError("long input refused")
        return WrongCell.run(self, xs, state)


@pytest.mark.parametrize("engine", [Raising, SometimesRaising])
def test_any_exception_from_the_subject_is_a_failing_property_with_its_message(engine):
    report = _check(engine, examples=30)
    assert not report.passed
    failed = next(r for r in report.rows if not r.passed)
    assert failed.message, report.table()
    if engine is Raising:
        assert "raised KernelError: the kernel refused the input" in failed.message


# --------------------------------------------------------------------------- the command line


def test_cli_impl_options_reach_a_factory_and_dtype_is_honoured(capsys):
    assert main(["check", "rnn_relu", "--impl", "torch.nn:RNNCell", "--impl-option", "nonlinearity=relu",
                 "--examples", "3", "--dtype", "float32"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert out.startswith("checked at float32 tolerances (dtype='float32')")
    assert main(["check", "rnn_relu", "--impl", "torch.nn:RNNCell", "--examples", "3"]) == 1  # tanh by default
    assert main(["check", "rnn_relu", "--impl", "torch.nn:RNNCell", "--impl-option", "nonlinearity"]) == 2
    assert "expected KEY=VALUE" in capsys.readouterr().err
    assert main(["check", "lstm", "--impl-option", "a=1"]) == 2
    assert "--impl-option applies only with --impl" in capsys.readouterr().err


def test_cli_unknown_builtin_names_the_known_ones(capsys):
    assert main(["check", "lstm", "--impl", "onnx:LSTMCell"]) == 2
    err = capsys.readouterr().err
    assert "not a built-in subject" in err and "onnx:LSTM" in err
