"""The reference upfirdn2d's own gradient (_FirPass): equal to autograd's through the plain depthwise passes, to
any order, and no longer one convolution per channel in the double backward."""

from __future__ import annotations

import pytest
import torch

from torch_utils.ops import upfirdn2d

CASES = [
    # (up, down, padding, filter kind, flip_filter): the networks' three directions, crops, anisotropic factors.
    (1, 2, [2, 1, 2, 1], "sep", False),  # D's downsampling (padding as conv2d_resample sets it)
    (2, 1, [2, 1, 2, 1], "sep", False),  # G's upsampling
    (1, 1, [1, 2, 1, 2], "sep", True),  # plain filter
    (2, 1, [2, 1, 2, 1], "2d", False),
    (1, 2, [1, 1, 1, 1], "2d", True),
    ([1, 2], [2, 1], [-1, 2, 1, 0], "2d", False),
    (2, 2, [2, 1, 0, 3], "sep", True),
]


def _filter(kind: str) -> torch.Tensor:
    gen = torch.Generator().manual_seed(7)
    if kind == "sep":
        return upfirdn2d.setup_filter([1, 3, 3, 1])
    return torch.rand([3, 4], generator=gen) + 0.2  # asymmetric, not separable


def _grads(x, f, case, own: bool):
    up, down, padding, _, flip = case
    x = x.detach().clone().requires_grad_(True)
    r = torch.linspace(-1, 2, 5, dtype=x.dtype)
    if own:
        y = upfirdn2d._upfirdn2d_ref(x, f, up, down, padding, flip, 1.3)
    else:  # the same passes with autograd's own derivatives
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(upfirdn2d, "_fir_pass", upfirdn2d._upfirdn_pass)
            y = upfirdn2d._upfirdn2d_ref(x, f, up, down, padding, flip, 1.3)
    weight = r.repeat(y.numel() // 5 + 1)[: y.numel()].reshape(y.shape)
    (gx,) = torch.autograd.grad((y * y * weight).sum(), [x], create_graph=True)
    (hx,) = torch.autograd.grad((gx * gx).sum(), [x])
    return y.detach(), gx.detach(), hx


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"up{c[0]}-down{c[1]}-{c[3]}-flip{int(c[4])}")
def test_own_gradient_matches_autograd_to_second_order(case):
    x = torch.randn([2, 3, 7, 6], generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    f = _filter(case[3])
    for own, plain, what in zip(_grads(x, f, case, True), _grads(x, f, case, False), ("value", "grad", "2nd grad")):
        torch.testing.assert_close(own, plain, rtol=1e-12, atol=1e-12, msg=lambda m, w=what: f"{what}: {m}")


@pytest.mark.parametrize("case", CASES[:2], ids=["down", "up"])
def test_gradgradcheck(case):
    up, down, padding, kind, flip = case
    x = torch.randn([1, 2, 5, 6], dtype=torch.float64, requires_grad=True)
    f = _filter(kind).double()

    def fn(t):
        return upfirdn2d._upfirdn2d_ref(t, f.float(), up, down, padding, flip, 1.0)

    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))


def test_double_backward_stays_depthwise():
    """R1 through D's downsampling filter at 64 channels: no per-channel convolutions in the double backward."""
    from torch.profiler import ProfilerActivity, profile

    f = upfirdn2d.setup_filter([1, 3, 3, 1])
    x = torch.randn([2, 64, 16, 16], requires_grad=True)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        y = upfirdn2d.upfirdn2d(x, f, down=2, padding=1)
        (g,) = torch.autograd.grad(y.square().sum(), [x], create_graph=True)
        g.square().sum().backward()
    convs = sum(e.count for e in prof.key_averages() if e.key == "aten::convolution")
    assert convs < 20, f"{convs} convolutions for 2 FIR passes and their gradients"


def test_filter_that_requires_grad_keeps_autograd_path():
    f = upfirdn2d.setup_filter([1, 3, 3, 1]).requires_grad_(True)
    x = torch.randn([1, 2, 8, 8], requires_grad=True)
    y = upfirdn2d.upfirdn2d(x, f, down=2, padding=1)
    gx, gf = torch.autograd.grad(y.square().sum(), [x, f])
    assert gf is not None and gf.shape == f.shape and gf.abs().sum() > 0
    assert gx.shape == x.shape
