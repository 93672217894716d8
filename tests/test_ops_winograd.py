"""Winograd F(2x2, 3x3) convolution: the direct convolution (F.conv2d) is the oracle, to any order of gradient."""
import pytest
import torch
import torch.nn.functional as F

from torch_utils.ops import conv2d_resample, conv2d_winograd, upfirdn2d
from training.network_layers import Conv2dLayer, modulated_conv2d
from training.networks import Discriminator

SHAPES = [  # (N, C, K, H, W)
    (2, 5, 7, 6, 8), (1, 3, 2, 4, 4), (3, 8, 8, 10, 4), (2, 4, 6, 16, 16),
]


def _grads_to_second_order(fn, x, w):
    """y, d/d(x, w) of sum(r * y^2), and d/d(x, w) of the squared norm of those (an R1-like double backward)."""
    gen = torch.Generator().manual_seed(3)
    y = fn(x, w)
    r = torch.randn(y.shape, generator=gen, dtype=y.dtype)
    gx, gw = torch.autograd.grad((r * y * y).sum(), [x, w], create_graph=True)
    hx, hw = torch.autograd.grad((gx * gx).sum() + (gw * gw).sum(), [x, w])
    return y, gx, gw, hx, hw


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("channels_last", [False, True])
def test_values_and_gradients_to_second_order_equal_direct_convolution(shape, channels_last):
    n, c, k, h, w_ = shape
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, c, h, w_, generator=gen, dtype=torch.float64)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    x.requires_grad_(True)
    w = torch.randn(k, c, 3, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    got = _grads_to_second_order(conv2d_winograd.conv3x3, x, w)
    want = _grads_to_second_order(lambda a, b: F.conv2d(a, b, padding=1), x, w)
    for name, a, b in zip(["y", "gx", "gw", "hx", "hw"], got, want):
        assert a.shape == b.shape, name
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10, msg=name)


def test_gradcheck_and_gradgradcheck():
    x = torch.randn(1, 2, 4, 6, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(conv2d_winograd.conv3x3, (x, w))
    assert torch.autograd.gradgradcheck(conv2d_winograd.conv3x3, (x, w))


def test_float32_rounding_is_no_worse_than_the_direct_convolution():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(4, 64, 16, 16, generator=gen)
    w = torch.randn(64, 64, 3, 3, generator=gen) / 24
    exact = F.conv2d(x.double(), w.double(), padding=1)
    err_winograd = (conv2d_winograd.conv3x3(x, w).double() - exact).abs().max()
    err_direct = (F.conv2d(x, w, padding=1).double() - exact).abs().max()
    assert err_winograd <= 2 * err_direct + 1e-7, (float(err_winograd), float(err_direct))
    assert err_winograd / exact.abs().max() < 1e-6


def test_rejects_shapes_it_cannot_tile():
    with pytest.raises(ValueError, match="even H, W"):
        conv2d_winograd.conv3x3(torch.randn(1, 2, 5, 4), torch.randn(3, 2, 3, 3))
    with pytest.raises(ValueError, match=r"w \[K, C, 3, 3\]"):
        conv2d_winograd.conv3x3(torch.randn(1, 2, 4, 4), torch.randn(3, 2, 5, 5))


@pytest.mark.parametrize("x, w, padding, groups, expect", [
    (torch.randn(1, 2, 8, 8), torch.randn(3, 2, 3, 3), [1, 1], 1, True),
    (torch.randn(1, 2, 8, 8).double(), torch.randn(3, 2, 3, 3).double(), [1, 1], 1, False),  # float64: direct
    (torch.randn(1, 2, 8, 8), torch.randn(3, 2, 5, 5), [1, 1], 1, False),
    (torch.randn(1, 2, 8, 8), torch.randn(3, 2, 3, 3), [0, 0], 1, False),
    (torch.randn(1, 2, 7, 8), torch.randn(3, 2, 3, 3), [1, 1], 1, False),
    (torch.randn(1, 2, 8, 8), torch.randn(2, 1, 3, 3), [1, 1], 2, False),
    (torch.randn(1, 2, 2, 2), torch.randn(3, 2, 3, 3), [1, 1], 1, False),
])
def test_applies_only_to_what_it_computes(x, w, padding, groups, expect):
    assert conv2d_winograd.applies(x, w, padding, groups) is expect


def test_conv2d_resample_takes_the_winograd_path_and_matches_the_direct_one(monkeypatch):
    calls = []
    real = conv2d_winograd.conv3x3
    monkeypatch.setattr(conv2d_winograd, "conv3x3", lambda x, w: calls.append(1) or real(x, w))
    x = torch.randn(2, 6, 8, 8)
    w = torch.randn(5, 6, 3, 3)
    for flip_weight in (True, False):
        y = conv2d_resample.conv2d_resample(x, w, padding=1, flip_weight=flip_weight)
        monkeypatch.setattr(conv2d_winograd, "enabled", False)
        y_direct = conv2d_resample.conv2d_resample(x, w, padding=1, flip_weight=flip_weight)
        monkeypatch.setattr(conv2d_winograd, "enabled", True)
        torch.testing.assert_close(y, y_direct, rtol=1e-5, atol=1e-5)
    assert len(calls) == 2
    # Resampling convolutions keep their own route.
    conv2d_resample.conv2d_resample(x, w, f=upfirdn2d.setup_filter([1, 3, 3, 1]), down=2, padding=1)
    assert len(calls) == 2


def _layer_results(monkeypatch, enabled, fn):
    monkeypatch.setattr(conv2d_winograd, "enabled", enabled)
    torch.manual_seed(0)
    return fn()


def test_network_layers_and_r1_double_backward_equal_the_direct_path(monkeypatch):
    """The fused path's oracle at network level: a D's logits, its R1 penalty and the penalty's weight
    gradients (second order through every conv), Winograd on vs off."""
    def run():
        D = Discriminator(c_dim=0, img_resolution=16, img_channels=3, architecture='resnet', channel_base=256,
                          channel_max=16, epilogue_kwargs=dict(mbstd_group_size=2))
        img = torch.randn(4, 3, 16, 16, requires_grad=True)
        logits = D(img, None)
        (grad,) = torch.autograd.grad(logits.sum(), [img], create_graph=True)
        penalty = grad.square().sum()
        penalty.backward()
        return [logits.detach(), grad.detach()] + [p.grad for p in D.parameters()]
    with_winograd = _layer_results(monkeypatch, True, run)
    direct = _layer_results(monkeypatch, False, run)
    for a, b in zip(with_winograd, direct):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_modulated_conv_and_conv_layer_equal_the_direct_path(monkeypatch):
    def run():
        layer = Conv2dLayer(6, 4, kernel_size=3, activation='lrelu')
        x = torch.randn(3, 6, 8, 8, requires_grad=True)
        styles = torch.randn(3, 6)
        y = layer(x) + modulated_conv2d(x, layer.weight, styles, padding=1, fused_modconv=False)[:, :4]
        (gx,) = torch.autograd.grad(y.square().sum(), [x])
        return [y.detach(), gx]
    for a, b in zip(_layer_results(monkeypatch, True, run), _layer_results(monkeypatch, False, run)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
