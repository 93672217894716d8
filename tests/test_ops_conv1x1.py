"""1x1 convolutions as one matrix product (torch_utils/ops/conv2d_1x1.py): values and weight gradients against
torch's kernels in float64, in both layouts, and the routes conv2d_gradfix takes through them."""

import pytest
import torch
import torch.nn.functional as F

from torch_utils.ops import conv2d_1x1, conv2d_gradfix, conv2d_winograd


def _tensor(shape, channels_last: bool, seed: int) -> torch.Tensor:
    t = torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return t.contiguous(memory_format=torch.channels_last) if channels_last else t


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("c, k", [(5, 3), (3, 7)])
def test_conv1x1_equals_conv2d_and_keeps_the_layout(channels_last, with_bias, c, k):
    x = _tensor((2, c, 4, 6), channels_last, 0)
    w = _tensor((k, c, 1, 1), False, 1)
    b = _tensor((k,), False, 2) if with_bias else None
    y = conv2d_1x1.conv1x1(x, w, b)
    torch.testing.assert_close(y, F.conv2d(x, w, b), rtol=1e-12, atol=1e-12)
    assert y.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


@pytest.mark.parametrize("x_last, g_last", [(False, False), (True, False), (False, True), (True, True)])
def test_weight_grad_equals_torch(x_last, g_last):
    x = _tensor((3, 5, 4, 6), x_last, 3)
    g = _tensor((3, 7, 4, 6), g_last, 4)
    expected = torch.nn.grad.conv2d_weight(x, (7, 5, 1, 1), g)
    torch.testing.assert_close(conv2d_1x1.weight_grad(x, g), expected, rtol=1e-12, atol=1e-12)


def test_rules_leave_narrow_channels_last_products_and_nchw_weight_gradients_to_onednn():
    def last(t):
        return t.contiguous(memory_format=torch.channels_last)

    assert conv2d_1x1.product_pays(torch.randn(2, 3, 8, 8)) and conv2d_1x1.product_pays(torch.randn(2, 64, 8, 8))
    assert conv2d_1x1.product_pays(last(torch.randn(2, 256, 8, 8)))
    assert not conv2d_1x1.product_pays(last(torch.randn(2, 3, 8, 8)))
    assert not conv2d_1x1.product_pays(last(torch.randn(2, 64, 8, 8)))
    assert conv2d_1x1.weight_grad_pays(last(torch.randn(2, 3, 8, 8)))
    assert not conv2d_1x1.weight_grad_pays(torch.randn(2, 512, 8, 8))


def test_eligible_only_for_plain_float32_cpu_1x1(monkeypatch):
    x = torch.randn(2, 4, 8, 8)
    plain = ((1, 1), (0, 0), (1, 1), 1)
    assert conv2d_1x1.eligible(x, (3, 4, 1, 1), *plain)
    assert not conv2d_1x1.eligible(x, (3, 4, 3, 3), *plain)
    assert not conv2d_1x1.eligible(x, (3, 4, 1, 1), (2, 2), (0, 0), (1, 1), 1)
    assert not conv2d_1x1.eligible(x, (3, 4, 1, 1), (1, 1), (1, 1), (1, 1), 1)
    assert not conv2d_1x1.eligible(x.double(), (3, 4, 1, 1), *plain)
    monkeypatch.setattr(conv2d_winograd, "enabled", False)  # RLO_CPU_WINOGRAD=off turns this route off too
    assert not conv2d_1x1.eligible(x, (3, 4, 1, 1), *plain)


@pytest.mark.parametrize("transpose", [False, True])
@pytest.mark.parametrize("channels_last", [False, True])
def test_gradfix_routes_1x1_layers_here_and_agrees_with_onednn(monkeypatch, transpose, channels_last):
    """Value, input/weight/bias gradients and an inference call of a 1x1 (transposed) conv through
    conv2d_gradfix, routes on (forced past the rules, each product counted) and off: the same to float32
    rounding."""
    monkeypatch.setattr(conv2d_winograd, "force", True)
    calls = []
    for name in ("conv1x1", "weight_grad"):
        real = getattr(conv2d_1x1, name)
        monkeypatch.setattr(conv2d_1x1, name, lambda *a, _real=real, _name=name: calls.append(_name) or _real(*a))
    op = conv2d_gradfix.conv_transpose2d if transpose else conv2d_gradfix.conv2d
    results = []
    for enabled in (True, False):
        monkeypatch.setattr(conv2d_winograd, "enabled", enabled)
        gen = torch.Generator().manual_seed(5)
        x = torch.randn(2, 6, 5, 7, generator=gen)
        x = (x.contiguous(memory_format=torch.channels_last) if channels_last else x).requires_grad_()
        w = torch.randn(6, 5, 1, 1, generator=gen).requires_grad_()
        b = torch.randn(5, generator=gen).requires_grad_()
        y = op(x, w if transpose else w.transpose(0, 1), b)
        (y * y).sum().backward()
        with torch.no_grad():
            inference = op(x, w if transpose else w.transpose(0, 1), b)
        results.append((y.detach(), inference, x.grad, w.grad, b.grad))
    assert calls.count("conv1x1") == 3  # forward, input gradient, inference
    assert calls.count("weight_grad") == 1
    for ours, direct in zip(*results):
        torch.testing.assert_close(ours, direct, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("channels_last", [False, True])
def test_conv1x1_rounds_alike_for_a_training_network_and_its_frozen_copy(channels_last):
    """The same float32 inputs give the same bits whether the weight requires grad or not (a snapshot's loaded,
    frozen copy computes what the training network computed)."""
    gen = torch.Generator().manual_seed(6)
    x = torch.randn(2, 8, 4, 4, generator=gen)
    x = x.contiguous(memory_format=torch.channels_last) if channels_last else x
    w = torch.randn(3, 8, 1, 1, generator=gen)
    with torch.no_grad():
        frozen = conv2d_1x1.conv1x1(x, w)
        training = conv2d_1x1.conv1x1(x, w.clone().requires_grad_())
    assert torch.equal(frozen, training)
