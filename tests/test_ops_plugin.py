"""CUDA plugin layer: autograd wrappers, fallback behaviour, a real nvcc build (slow), GPU checks (cuda).

The CPU tests drive the plugin autograd wrappers with stand-in "plugins" that implement the kernels'
documented contract (bias_act.h / upfirdn2d.h) in PyTorch, and compare values and first/second-order
gradients against the reference ops. The cuda-marked tests do the same against the compiled kernels.
"""

import os
import warnings

import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck

from torch_utils import custom_ops
from torch_utils.ops import bias_act, conv2d_resample, plugin_contract, upfirdn2d

OPS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "torch_utils", "ops")
ACTS = sorted(bias_act.activation_funcs)
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

# Stand-in plugins implementing the kernel contracts in PyTorch (no autograd inside, like a kernel).
FakeBiasActPlugin = plugin_contract.bias_act_plugin
FakeUpfirdn2dPlugin = plugin_contract.upfirdn2d_plugin


def _first_and_second_grads(fn, inputs):
    """Outputs, d(sum(y*g1))/d inputs, and d(sum(grads*g2))/d inputs, all with create_graph."""
    torch.manual_seed(1)
    y = fn(*inputs)
    g1 = torch.randn_like(y)
    grads = torch.autograd.grad(y, inputs, g1, create_graph=True, allow_unused=True)
    used = [(g, x) for g, x in zip(grads, inputs) if g is not None and g.requires_grad]
    if not used:
        return y, grads, [None] * len(inputs)
    total = sum((g * torch.randn_like(g)).sum() for g, _ in used)
    second = torch.autograd.grad(total, inputs, allow_unused=True)
    return y, grads, second


def _assert_grads_close(a, b, **tol):
    """Same outputs and gradients; a missing gradient (None) counts as zeros."""
    ya, ga, sa = a
    yb, gb, sb = b
    torch.testing.assert_close(ya, yb, **tol)
    for u, v in list(zip(ga, gb)) + list(zip(sa, sb)):
        if u is None and v is None:
            continue
        u = torch.zeros_like(v) if u is None else u.detach()
        v = torch.zeros_like(u) if v is None else v.detach()
        torch.testing.assert_close(u, v, **tol)


def _bias_act_inputs(device="cpu", dtype=torch.float64, channels_last=False):
    x = torch.randn(2, 5, 3, 4, dtype=dtype, device=device) * 1.5
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    b = torch.randn(5, dtype=dtype, device=device) * 0.5
    return x.requires_grad_(True), b.requires_grad_(True)


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("clamp", [None, 0.7])
def test_bias_act_plugin_autograd_matches_reference_to_second_order(monkeypatch, act, clamp):
    monkeypatch.setattr(bias_act, "_plugin", lambda: FakeBiasActPlugin)
    spec, alpha, gain, clamp_f = bias_act._resolve(act, None, 1.3, clamp)
    fn_cuda = lambda x, b: bias_act._bias_act_cuda(1, act, alpha, gain, clamp_f).apply(x, b)
    fn_ref = lambda x, b: bias_act._bias_act_ref(x, b, act=act, gain=1.3, clamp=clamp)
    for channels_last in (False, True):
        x, b = _bias_act_inputs(channels_last=channels_last)
        _assert_grads_close(
            _first_and_second_grads(fn_cuda, (x, b)), _first_and_second_grads(fn_ref, (x, b)), rtol=1e-9, atol=1e-9
        )


@pytest.mark.parametrize(
    "up,down,padding,fname",
    [
        (2, 1, [2, 1, 2, 1], "2d"),
        (1, 2, [1, 2, 0, 1], "2d"),
        ([2, 1], [1, 2], [-1, 2, 1, 0], "2d"),
        (2, 2, [3, 0, 1, 2], "1d"),
        (1, 1, [1, 1, 2, 2], "1d"),
    ],
)
def test_upfirdn2d_plugin_autograd_matches_reference_to_second_order(monkeypatch, up, down, padding, fname):
    monkeypatch.setattr(upfirdn2d, "_plugin", lambda: FakeUpfirdn2dPlugin)
    f = torch.rand(3, 4) if fname == "2d" else upfirdn2d.setup_filter([1, 2, 3, 1], separable=True)
    x = torch.randn(2, 3, 5, 6, dtype=torch.float64, requires_grad=True)
    for flip in (False, True):
        fn_cuda = lambda x: upfirdn2d._upfirdn2d_cuda(x, f, up, down, padding, flip, 1.7)
        fn_ref = lambda x: upfirdn2d._upfirdn2d_ref(x, f, up, down, padding, flip, 1.7)
        _assert_grads_close(
            _first_and_second_grads(lambda x: fn_cuda(x) ** 2, (x,)),
            _first_and_second_grads(lambda x: fn_ref(x) ** 2, (x,)),
            rtol=1e-9,
            atol=1e-9,
        )


# ----------------------------------------------------------------------------------------------------
# Fallback behaviour.


def test_ops_on_cpu_tensors_never_build_or_warn(monkeypatch):
    def no_build(*args, **kwargs):
        raise AssertionError("an op on CPU tensors asked for the CUDA plugin")

    monkeypatch.setattr(custom_ops, "get_plugin", no_build)
    x = torch.randn(1, 2, 4, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bias_act.bias_act(x, torch.zeros(2), act="lrelu", impl="cuda")
        upfirdn2d.upsample2d(x, upfirdn2d.setup_filter([1, 3, 3, 1]), impl="cuda")


def test_get_plugin_without_cuda_warns_once_and_returns_none(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    name = "rlo_test_plugin_nocuda"
    monkeypatch.delitem(custom_ops._cache, name, raising=False)
    with pytest.warns(custom_ops.PluginFallbackWarning, match="no CUDA device"):
        assert custom_ops.get_plugin(name, sources=["bias_act.cpp"], source_dir=OPS_DIR) is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert custom_ops.get_plugin(name, sources=["bias_act.cpp"], source_dir=OPS_DIR) is None


def test_get_plugin_build_failures_fall_back_with_the_reason(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    name = "rlo_test_plugin_missing"
    monkeypatch.delitem(custom_ops._cache, name, raising=False)
    with pytest.warns(custom_ops.PluginFallbackWarning, match="no_such_kernel.cu"):
        assert custom_ops.get_plugin(name, sources=["no_such_kernel.cu"], source_dir=OPS_DIR) is None

    def broken(*args, **kwargs):
        raise RuntimeError("Error building extension: nvcc exploded")

    monkeypatch.setattr(custom_ops, "compile_plugin", broken)
    name = "rlo_test_plugin_broken"
    monkeypatch.delitem(custom_ops._cache, name, raising=False)
    with pytest.warns(custom_ops.PluginFallbackWarning, match="nvcc exploded"):
        assert custom_ops.get_plugin(name, sources=["bias_act.cpp"], source_dir=OPS_DIR) is None


def test_cache_root_honours_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("RLO_CUDA_CACHE", str(tmp_path / "rlo"))
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "torch"))
    assert custom_ops.cache_root() == str(tmp_path / "rlo")
    monkeypatch.delenv("RLO_CUDA_CACHE")
    assert custom_ops.cache_root() == str(tmp_path / "torch")


# ----------------------------------------------------------------------------------------------------
# Real build (no GPU needed: nvcc + ninja, for a fixed architecture).


@pytest.mark.slow
@pytest.mark.parametrize(
    "module_name,sources,headers,entry",
    [
        ("rlo_bias_act_plugin", ["bias_act.cpp", "bias_act.cu"], ["bias_act.h"], "bias_act"),
        ("rlo_upfirdn2d_plugin", ["upfirdn2d.cpp", "upfirdn2d.cu"], ["upfirdn2d.h"], "upfirdn2d"),
    ],
)
def test_cuda_sources_compile_and_expose_entry_points(monkeypatch, tmp_path, module_name, sources, headers, entry):
    from torch.utils import cpp_extension

    try:
        cpp_extension.verify_ninja_availability()
    except RuntimeError:
        pytest.skip("ninja is not installed")
    if cpp_extension.CUDA_HOME is None:
        pytest.skip("nvcc (CUDA toolkit) not found")
    if not torch.cuda.is_available():
        monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", os.environ.get("TORCH_CUDA_ARCH_LIST", "9.0"))
    monkeypatch.setenv("RLO_CUDA_CACHE", str(tmp_path))
    module = custom_ops.compile_plugin(module_name, sources, headers, OPS_DIR, extra_cuda_cflags=["--use_fast_math"])
    assert callable(getattr(module, entry))
    assert any(p.suffix == ".so" for p in tmp_path.rglob("*.so"))


# ----------------------------------------------------------------------------------------------------
# On a GPU: compiled kernels vs the reference.


def _require_plugins():
    if bias_act._plugin() is None or upfirdn2d._plugin() is None:
        pytest.fail("CUDA plugin failed to build on a machine with a GPU (see the PluginFallbackWarning)")


# The checks take the device as an argument so that their logic can be exercised on CPU as well
# (where impl='cuda' quietly means the reference, making them self-comparisons).


def check_bias_act_values(device, act, dtype, clamp):
    x = torch.randn(4, 7, 5, 6, device=device) * 2
    b = torch.randn(7, device=device)
    ref = bias_act.bias_act(x.double(), b.double(), act=act, gain=1.1, clamp=clamp, impl="ref")
    tol = dict(rtol=1e-2, atol=1e-2) if dtype == torch.float16 else dict(rtol=1e-5, atol=1e-5)
    layouts = [(x, ref), (x.to(memory_format=torch.channels_last), ref), (x.transpose(2, 3), ref.transpose(2, 3))]
    for xx, expect in layouts:
        y = bias_act.bias_act(xx.to(dtype), b.to(dtype), act=act, gain=1.1, clamp=clamp, impl="cuda")
        assert y.dtype == dtype and y.shape == expect.shape
        torch.testing.assert_close(y.double(), expect, **tol)
    xt = x.transpose(0, 1)  # bias along dim 0 of a non-contiguous tensor
    torch.testing.assert_close(
        bias_act.bias_act(xt, b, dim=0, act=act, impl="cuda"),
        bias_act.bias_act(xt, b, dim=0, act=act, impl="ref"),
        rtol=1e-5,
        atol=1e-5,
    )


def check_bias_act_grads(device, act, clamp):
    fn_cuda = lambda x, b: bias_act.bias_act(x, b, act=act, gain=1.3, clamp=clamp, impl="cuda")
    fn_ref = lambda x, b: bias_act.bias_act(x, b, act=act, gain=1.3, clamp=clamp, impl="ref")
    for channels_last in (False, True):
        x, b = _bias_act_inputs(device, channels_last=channels_last)
        _assert_grads_close(
            _first_and_second_grads(fn_cuda, (x, b)), _first_and_second_grads(fn_ref, (x, b)), rtol=1e-7, atol=1e-7
        )
    x = (torch.rand(1, 3, 2, 2, dtype=torch.float64, device=device) * 0.8 + 0.1).requires_grad_(True)
    b = torch.zeros(3, dtype=torch.float64, device=device, requires_grad=True)
    assert gradcheck(fn_cuda, (x, b))
    assert gradgradcheck(fn_cuda, (x, b))


CUDA_FILTERS = {
    "none": None,
    "binomial4": upfirdn2d.setup_filter([1, 3, 3, 1]),
    "separable8": upfirdn2d.setup_filter([1, 2, 3, 4, 4, 3, 2, 1]),
    "random3x5": torch.rand(3, 5, generator=torch.Generator().manual_seed(2)),
}
UPFIRDN_CASES = [
    (1, 1, 0),
    (2, 1, [2, 1, 2, 1]),
    (1, 2, [1, 2, 1, 2]),
    (2, 2, [-1, 3, 0, 2]),
    ([3, 1], [1, 2], [4, 4, 2, -1]),
]


def check_upfirdn2d(device, fname, up, down, padding):
    f = CUDA_FILTERS[fname]
    f = None if f is None else f.to(device)
    x = torch.randn(2, 5, 11, 13, device=device)
    for flip in (False, True):
        ref = upfirdn2d.upfirdn2d(x.double(), f, up, down, padding, flip, 1.3, impl="ref")
        for xx in (x, x.to(memory_format=torch.channels_last)):
            y = upfirdn2d.upfirdn2d(xx, f, up, down, padding, flip, 1.3, impl="cuda")
            torch.testing.assert_close(y.double(), ref, rtol=1e-5, atol=1e-5)
        if device != "cpu":  # half-precision depthwise conv is not implemented on CPU
            y16 = upfirdn2d.upfirdn2d(x.half(), f, up, down, padding, flip, 1.3, impl="cuda")
            assert y16.dtype == torch.float16
            torch.testing.assert_close(y16.double(), ref, rtol=1e-2, atol=2e-2)
        xd = x[:1, :2].double().requires_grad_(True)
        fn_cuda = lambda x: upfirdn2d.upfirdn2d(x, f, up, down, padding, flip, 1.3, impl="cuda") ** 2
        fn_ref = lambda x: upfirdn2d.upfirdn2d(x, f, up, down, padding, flip, 1.3, impl="ref") ** 2
        _assert_grads_close(
            _first_and_second_grads(fn_cuda, (xd,)), _first_and_second_grads(fn_ref, (xd,)), rtol=1e-9, atol=1e-9
        )


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("clamp", [None, 0.5])
def test_cuda_bias_act_values_match_reference(act, dtype, clamp):
    _require_plugins()
    check_bias_act_values("cuda", act, dtype, clamp)


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("clamp", [None, 0.7])
def test_cuda_bias_act_grads_match_reference_to_second_order(act, clamp):
    _require_plugins()
    check_bias_act_grads("cuda", act, clamp)


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("fname", sorted(CUDA_FILTERS))
@pytest.mark.parametrize("up,down,padding", UPFIRDN_CASES)
def test_cuda_upfirdn2d_matches_reference(fname, up, down, padding):
    _require_plugins()
    check_upfirdn2d("cuda", fname, up, down, padding)


@pytest.mark.cuda
@needs_cuda
def test_cuda_conv2d_resample_matches_cpu():
    _require_plugins()
    f = upfirdn2d.setup_filter([1, 3, 3, 1])
    x = torch.randn(2, 8, 8, 8)
    w = torch.randn(6, 8, 3, 3)
    for up, down in [(2, 1), (1, 2), (1, 1)]:
        y_cpu = conv2d_resample.conv2d_resample(x, w, f, up=up, down=down, padding=1)
        y_gpu = conv2d_resample.conv2d_resample(x.cuda(), w.cuda(), f.cuda(), up=up, down=down, padding=1)
        torch.testing.assert_close(y_gpu.cpu(), y_cpu, rtol=1e-4, atol=1e-4)


@pytest.mark.cuda
@needs_cuda
def test_cuda_plugins_load_without_fallback_warning():
    """The plugin path is really taken on a GPU (no PluginFallbackWarning, plugin modules loaded)."""
    x = torch.randn(2, 4, 8, 8, device="cuda")
    with warnings.catch_warnings():
        warnings.simplefilter("error", custom_ops.PluginFallbackWarning)
        bias_act.bias_act(x, torch.zeros(4, device="cuda"), act="lrelu")
        upfirdn2d.upsample2d(x, upfirdn2d.setup_filter([1, 3, 3, 1], device=x.device))
    assert custom_ops.is_loaded("rlo_bias_act_plugin") and custom_ops.is_loaded("rlo_upfirdn2d_plugin")
