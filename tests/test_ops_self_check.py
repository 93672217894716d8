"""Kernels prove themselves: the self-check that decides, per (op, device, dtype), plugin or reference.

Runs on CPU: `custom_ops.plugin_device_types` gets "cpu", and the op's `_plugin` is replaced by a stand-in that
implements the kernel contract in PyTorch (plugin_contract), a deliberately wrong variant of it, or one that
raises. The oracle is the op's pure-PyTorch reference.
"""

import time
import types
import warnings

import pytest
import torch

from torch_utils import custom_ops
from torch_utils.ops import bias_act, plugin_contract, upfirdn2d

FILTER = upfirdn2d.setup_filter([1, 3, 3, 1])


@pytest.fixture(autouse=True)
def _fresh_verdicts(monkeypatch):
    monkeypatch.delenv(custom_ops.OPS_ENV, raising=False)
    monkeypatch.setattr(custom_ops, "plugin_device_types", {"cuda", "cpu"})
    custom_ops.reset_self_checks()
    yield
    custom_ops.reset_self_checks()


class Counting:
    """A plugin module whose entry point counts calls and may alter the stand-in's results."""

    def __init__(self, entry: str, kernel, alter=None):
        self.calls = 0
        self.entry = entry

        def run(*args):
            self.calls += 1
            out = kernel(*args)
            return alter(out, *args) if alter is not None else out

        setattr(self, entry, run)


def bias_act_plugin(alter=None) -> Counting:
    return Counting("bias_act", plugin_contract.bias_act_kernel, alter)


def upfirdn2d_plugin(alter=None) -> Counting:
    return Counting("upfirdn2d", plugin_contract.upfirdn2d_kernel, alter)


def run_bias_act(x=None):
    x = torch.randn(2, 4, 5, 5) if x is None else x
    b = torch.linspace(-1, 1, x.shape[1], dtype=x.dtype)
    return bias_act.bias_act(x, b, act="lrelu", impl="cuda"), bias_act.bias_act(x, b, act="lrelu", impl="ref")


def run_upfirdn2d(x=None):
    x = torch.randn(2, 3, 8, 8) if x is None else x
    return (upfirdn2d.upsample2d(x, FILTER, impl="cuda"), upfirdn2d.upsample2d(x, FILTER, impl="ref"))


OPS = {
    "bias_act": (bias_act, bias_act_plugin, run_bias_act),
    "upfirdn2d": (upfirdn2d, upfirdn2d_plugin, run_upfirdn2d),
}


def install(monkeypatch, op: str, plugin) -> None:
    module = OPS[op][0]
    monkeypatch.setattr(module, "_plugin", lambda: plugin)


# ----------------------------------------------------------------------------------------------------
# A correct plugin is used.


@pytest.mark.parametrize("op", sorted(OPS))
def test_correct_plugin_passes_the_self_check_and_is_used(monkeypatch, op):
    _, make, run = OPS[op]
    plugin = make()
    install(monkeypatch, op, plugin)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got, want = run()
    calls_after_first = plugin.calls
    assert calls_after_first > 1  # the self-check's calls and the op's own
    torch.testing.assert_close(got, want)
    got, want = run()
    assert plugin.calls > calls_after_first  # the op itself runs the plugin
    [result] = custom_ops.self_check_results()
    assert (result.op, result.device, result.dtype, result.passed, result.error) == (op, "cpu", "float32", True, "")


@pytest.mark.parametrize("op", sorted(OPS))
def test_reference_wrapped_as_plugin_passes_in_float64_too(monkeypatch, op):
    _, make, run = OPS[op]
    install(monkeypatch, op, make())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run(
            torch.randn(2, 4, 5, 5, dtype=torch.float64)
            if op == "bias_act"
            else torch.randn(2, 3, 8, 8, dtype=torch.float64)
        )
    assert [r.passed for r in custom_ops.self_check_results()] == [True]


def test_rounding_below_the_tolerance_is_accepted(monkeypatch):
    """A plugin off by float32 rounding (relative 1e-6 noise) is not a mismatch."""

    def jitter(out, *args):
        gen = torch.Generator().manual_seed(int(out.numel()))
        return out * (1 + 1e-6 * torch.randn(out.shape, generator=gen, dtype=out.dtype))

    def jitter_unclamped(out, *args):  # a kernel's clamp is exact: y == +-clamp marks the clamped outputs
        clamp = args[-1]
        return torch.where(out.abs() == clamp, out, jitter(out)) if clamp >= 0 else jitter(out)

    install(monkeypatch, "bias_act", bias_act_plugin(jitter_unclamped))
    install(monkeypatch, "upfirdn2d", upfirdn2d_plugin(jitter))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run_bias_act()
        run_upfirdn2d()
    assert [r.passed for r in custom_ops.self_check_results()] == [True, True]


# ----------------------------------------------------------------------------------------------------
# Wrong or raising plugins fall back, with one warning naming the op and the error.


def _value_off(out, x, *args):
    return out * 1.01 if args[4] == 0 else out  # bias_act grad=0 only: the forward values


def _first_order_off(out, x, *args):
    return out * 1.01 if args[4] == 1 else out  # bias_act grad=1: dL/dx (and so dL/db)


def _second_order_off(out, x, *args):
    return out + 0.05 * out.abs().max() if args[4] == 2 else out  # bias_act grad=2 only


def _upfirdn_value_off(out, x, f, upx, upy, downx, downy, *args):
    return out + 1e-2 if (upx, downx) == (2, 1) else out


def _upfirdn_backward_off(out, x, f, upx, upy, downx, downy, *args):
    # Wrong only for decimation: the forward of the up=2 cases is right, their gradient is not.
    return out * 0.98 if downx > 1 or downy > 1 else out


def _upfirdn_ignores_flip(out, x, f, upx, upy, downx, downy, px0, px1, py0, py1, flip_filter, gain):
    return plugin_contract.upfirdn2d_kernel(x, f, upx, upy, downx, downy, px0, px1, py0, py1, False, gain)


BROKEN = [
    ("bias_act", _value_off, "bias_act.*value"),
    ("bias_act", _first_order_off, "bias_act.*grad"),
    ("bias_act", _second_order_off, "bias_act.*2nd-order grad"),
    ("upfirdn2d", _upfirdn_value_off, "upfirdn2d.*value"),
    ("upfirdn2d", _upfirdn_backward_off, "upfirdn2d.*grad x"),
    ("upfirdn2d", _upfirdn_ignores_flip, "upfirdn2d.*flip_filter"),
]


@pytest.mark.parametrize("op,alter,what", BROKEN, ids=[f"{op}-{alter.__name__}" for op, alter, _ in BROKEN])
def test_wrong_plugin_is_detected_and_the_op_falls_back_to_the_reference(monkeypatch, op, alter, what):
    _, make, run = OPS[op]
    plugin = make(alter)
    install(monkeypatch, op, plugin)
    with pytest.warns(custom_ops.PluginSelfCheckWarning) as record:
        got, want = run()
    [warning] = [w for w in record if issubclass(w.category, custom_ops.PluginFallbackWarning)]
    message = str(warning.message)
    assert f"'{op}'" in message and "float32 on cpu" in message and "PluginMismatch" in message
    assert "reference" in message
    import re

    assert re.search(what, message), message
    torch.testing.assert_close(got, want, rtol=0, atol=0)  # the reference's result, exactly
    calls = plugin.calls
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one warning only
        got, want = run()
    assert plugin.calls == calls  # never called again
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    [result] = custom_ops.self_check_results()
    assert not result.passed and "PluginMismatch" in result.error


@pytest.mark.parametrize("op", sorted(OPS))
def test_raising_plugin_falls_back_with_the_error(monkeypatch, op):
    _, make, run = OPS[op]

    def boom(*args):
        raise RuntimeError("CUDA error: no kernel image is available for execution on the device")

    plugin = types.SimpleNamespace(**{make().entry: boom})
    install(monkeypatch, op, plugin)
    with pytest.warns(custom_ops.PluginSelfCheckWarning, match=f"'{op}'.*no kernel image is available"):
        got, want = run()
    torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_nan_from_a_plugin_is_a_mismatch(monkeypatch):
    install(monkeypatch, "upfirdn2d", upfirdn2d_plugin(lambda out, *a: out * float("nan")))
    with pytest.warns(custom_ops.PluginSelfCheckWarning, match="upfirdn2d.*value"):
        run_upfirdn2d()


def test_verdicts_are_per_op_and_dtype(monkeypatch):
    """A plugin broken for float64 only still serves float32; each (op, dtype) is checked once."""
    alter = lambda out, *args: out * 1.5 if out.dtype == torch.float64 else out
    plugin = bias_act_plugin(alter)
    install(monkeypatch, "bias_act", plugin)
    install(monkeypatch, "upfirdn2d", upfirdn2d_plugin())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run_bias_act()
        run_bias_act()
        run_upfirdn2d()
    with pytest.warns(custom_ops.PluginSelfCheckWarning, match="'bias_act' \\(float64 on cpu\\)"):
        run_bias_act(torch.randn(2, 4, 3, 3, dtype=torch.float64))
    calls = plugin.calls
    run_bias_act(torch.randn(2, 4, 3, 3, dtype=torch.float64))
    assert plugin.calls == calls
    run_bias_act()
    assert plugin.calls > calls  # float32 still on the plugin
    results = [(r.op, r.dtype, r.passed) for r in custom_ops.self_check_results()]
    assert results == [("bias_act", "float32", True), ("upfirdn2d", "float32", True), ("bias_act", "float64", False)]


# ----------------------------------------------------------------------------------------------------
# Environment switches.


def _must_not_load():
    raise AssertionError("RLO_CUDA_OPS=reference loaded a plugin")


@pytest.mark.parametrize("op", sorted(OPS))
def test_reference_mode_never_loads_a_plugin(monkeypatch, op):
    monkeypatch.setenv(custom_ops.OPS_ENV, "reference")
    monkeypatch.setattr(OPS[op][0], "_plugin", _must_not_load)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got, want = OPS[op][2]()
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert custom_ops.self_check_results() == []


@pytest.mark.parametrize("op,alter", [("bias_act", _first_order_off), ("upfirdn2d", _upfirdn_backward_off)])
def test_strict_mode_makes_a_mismatch_fatal(monkeypatch, op, alter):
    monkeypatch.setenv(custom_ops.OPS_ENV, "strict")
    install(monkeypatch, op, OPS[op][1](alter))
    with pytest.raises(custom_ops.PluginError, match=f"strict.*'{op}'.*PluginMismatch"):
        OPS[op][2]()


def test_strict_mode_makes_an_unavailable_plugin_fatal(monkeypatch):
    monkeypatch.setenv(custom_ops.OPS_ENV, "strict")
    monkeypatch.setattr(bias_act, "_plugin", lambda: None)
    with pytest.raises(custom_ops.PluginError, match="strict.*'bias_act'.*unavailable"):
        run_bias_act()


def test_strict_mode_with_a_correct_plugin_uses_it(monkeypatch):
    monkeypatch.setenv(custom_ops.OPS_ENV, "STRICT")  # case does not matter
    plugin = upfirdn2d_plugin()
    install(monkeypatch, "upfirdn2d", plugin)
    run_upfirdn2d()
    assert plugin.calls > 0 and custom_ops.self_check_results()[0].passed


def test_unknown_mode_is_refused_with_the_choices(monkeypatch):
    monkeypatch.setenv(custom_ops.OPS_ENV, "fast")
    install(monkeypatch, "bias_act", bias_act_plugin())
    with pytest.raises(ValueError, match="RLO_CUDA_OPS='fast'.*auto.*reference.*strict"):
        run_bias_act()


def test_ops_on_cpu_tensors_skip_all_of_it_by_default(monkeypatch):
    monkeypatch.setattr(custom_ops, "plugin_device_types", {"cuda"})
    monkeypatch.setattr(bias_act, "_plugin", _must_not_load)
    monkeypatch.setattr(upfirdn2d, "_plugin", _must_not_load)
    run_bias_act()
    run_upfirdn2d()
    assert custom_ops.self_check_results() == []


# ----------------------------------------------------------------------------------------------------
# The check leaves no trace and is cheap.


def test_self_check_leaves_rng_and_grad_mode_alone(monkeypatch):
    install(monkeypatch, "bias_act", bias_act_plugin())
    install(monkeypatch, "upfirdn2d", upfirdn2d_plugin())
    state = torch.get_rng_state()
    with torch.no_grad():
        run_bias_act(torch.zeros(2, 4, 3, 3))
        assert not torch.is_grad_enabled()
    assert torch.equal(torch.get_rng_state(), state)
    with torch.inference_mode():
        run_upfirdn2d(torch.zeros(2, 3, 8, 8))
    assert torch.equal(torch.get_rng_state(), state)
    assert [r.passed for r in custom_ops.self_check_results()] == [True, True]


def test_first_use_runs_the_check_later_uses_only_look_it_up(monkeypatch):
    checks = []
    monkeypatch.setattr(bias_act, "self_check", lambda device, dtype: checks.append((device, dtype)))
    install(monkeypatch, "bias_act", bias_act_plugin())
    x = torch.randn(2, 4, 3, 3)
    for _ in range(3):
        bias_act.bias_act(x, torch.zeros(4), act="lrelu")
    assert checks == [(torch.device("cpu"), torch.float32)]
    start = time.perf_counter()
    for _ in range(200):
        custom_ops.use_plugin("bias_act", x, bias_act._plugin, bias_act.self_check)
    assert (time.perf_counter() - start) / 200 < 1e-4  # a dictionary lookup, not a check


@pytest.mark.parametrize("op", sorted(OPS))
def test_self_check_cpu_side_cost_is_milliseconds(monkeypatch, op):
    """CPU-side cost with the contract stand-in (GPU kernels add launches, not Python work): well under 1 s
    even on a loaded 2-core machine (~50 ms measured; benchmarks/bench_self_check.py reports it)."""
    install(monkeypatch, op, OPS[op][1]())
    module = OPS[op][0]
    module.self_check(torch.device("cpu"), torch.float32)  # warm-up
    start = time.perf_counter()
    module.self_check(torch.device("cpu"), torch.float32)
    assert time.perf_counter() - start < 1.0


def test_compare_with_reference_names_the_first_failing_tensor_and_treats_none_as_zero():
    ref = torch.tensor([1.0, -2.0, 3.0])
    custom_ops.compare_with_reference(
        [("a", ref + 1e-5, ref), ("b", None, None), ("c", None, torch.zeros(3))], torch.float32
    )
    with pytest.raises(custom_ops.PluginMismatch, match=r"^c: .*exceeds 0.0001 x 1 \(2 of 3 tensors"):
        custom_ops.compare_with_reference(
            [("a", ref + 1e-5, ref), ("c", None, torch.ones(3) * 1e-3), ("d", ref * 2, ref)], torch.float32
        )
    with pytest.raises(custom_ops.PluginMismatch, match="shape"):
        custom_ops.compare_with_reference([("a", ref[:2], ref)], torch.float32)
    # The tolerance scales with the reference's magnitude (normwise), and with the dtype.
    custom_ops.compare_with_reference([("big", ref * 1000 + 0.05, ref * 1000)], torch.float32)
    custom_ops.compare_with_reference([("half", ref + 1e-2, ref)], torch.float16)
    with pytest.raises(custom_ops.PluginMismatch):
        custom_ops.compare_with_reference([("half", ref + 1e-1, ref)], torch.float16)


# ----------------------------------------------------------------------------------------------------
# On a GPU: the real kernels pass their own self-check (also run by tools/gpu_check.py, strict).


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("op", sorted(OPS))
def test_compiled_plugins_pass_their_self_check_on_the_gpu(monkeypatch, op, dtype):
    module = OPS[op][0]
    monkeypatch.setattr(custom_ops, "plugin_device_types", {"cuda"})
    if module._plugin() is None:
        pytest.fail(f"the {op} plugin did not build on a machine with a GPU (see the PluginFallbackWarning)")
    module.self_check(torch.device("cuda"), dtype)  # raises PluginMismatch on disagreement
    x = torch.randn(2, 4, 8, 8, device="cuda", dtype=dtype)
    assert custom_ops.use_plugin(op, x, module._plugin, module.self_check)
