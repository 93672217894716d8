"""conv2d / conv_transpose2d whose weight gradients can be switched off, with any-order input gradients.

Why: R1 and path-length regularisation differentiate through the network twice; inside the inner
``torch.autograd.grad`` the weight gradients are wasted work. ``with no_weight_gradients():`` around
that inner backward skips them, while gradients with respect to the input (and, in the outer backward,
the weights reached through the inner gradient) stay exact.

Only public PyTorch API is used: an autograd.Function whose backward is again made of these
functions (so it is differentiable) plus ``torch.nn.grad.conv2d_weight``, or, for wide 3x3 float32
convolutions on CPU, ``conv2d_winograd`` (forward, input and weight gradients, and stride-2 transposed
convolutions, where it beats oneDNN) and ``conv2d_1x1`` (1x1 convolutions as one matrix product).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F

from torch_utils.ops import conv2d_1x1, conv2d_winograd

IntPair = int | Sequence[int]

enabled = True  # False: plain F.conv2d / F.conv_transpose2d (weight gradients always computed).
weight_gradients_disabled = False


@contextlib.contextmanager
def no_weight_gradients(disable: bool = True) -> Iterator[None]:
    """Within the block, backward passes through our convolutions leave the weight gradient out."""
    global weight_gradients_disabled
    old = weight_gradients_disabled
    if disable:
        weight_gradients_disabled = True
    try:
        yield
    finally:
        weight_gradients_disabled = old


def _pair(v: IntPair) -> tuple[int, int]:
    if isinstance(v, int):
        return (v, v)
    v = tuple(int(i) for i in v)
    if len(v) != 2:
        raise ValueError(f"expected an int or a pair, got {v!r}")
    return v


def _needs_custom(input: torch.Tensor, weight: torch.Tensor) -> bool:
    return enabled and torch.is_grad_enabled() and (input.requires_grad or weight.requires_grad)


def conv2d(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: IntPair = 1,
    padding: IntPair = 0,
    dilation: IntPair = 1,
    groups: int = 1,
) -> torch.Tensor:
    """Same as torch.nn.functional.conv2d (input [N, Cin, H, W], weight [Cout, Cin/groups, kh, kw])."""
    cfg = _ConvConfig(False, _pair(stride), _pair(padding), (0, 0), _pair(dilation), groups)
    if not _needs_custom(input, weight):
        return cfg.run(input, weight, bias)
    return _Conv.apply(input, weight, bias, cfg)


def conv_transpose2d(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: IntPair = 1,
    padding: IntPair = 0,
    output_padding: IntPair = 0,
    groups: int = 1,
    dilation: IntPair = 1,
) -> torch.Tensor:
    """Same as torch.nn.functional.conv_transpose2d (weight [Cin, Cout/groups, kh, kw])."""
    cfg = _ConvConfig(True, _pair(stride), _pair(padding), _pair(output_padding), _pair(dilation), groups)
    if not _needs_custom(input, weight):
        return cfg.run(input, weight, bias)
    return _Conv.apply(input, weight, bias, cfg)


class _ConvConfig:
    """Hashable description of one convolution (transpose flag and geometry)."""

    __slots__ = ("transpose", "stride", "padding", "output_padding", "dilation", "groups")

    def __init__(self, transpose: bool, stride, padding, output_padding, dilation, groups: int):
        self.transpose = transpose
        self.stride = stride
        self.padding = padding
        self.output_padding = output_padding
        self.dilation = dilation
        self.groups = groups

    def run(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
        """The convolution itself: conv2d_winograd where it pays and no graph is recorded, else PyTorch's."""
        if self.transpose:
            # At stride 1 (input gradients) the transpose is a correlation with the flipped, transposed kernel.
            w_conv = w.transpose(0, 1)
            if self.output_padding == (0, 0) and self._pointwise(x, w_conv):
                return conv2d_1x1.conv1x1(x, w_conv, b)
            if self.output_padding == (0, 0) and conv2d_winograd.forward_route(
                x, w_conv, b, self.stride, self.padding, self.dilation, self.groups
            ):
                return conv2d_winograd.conv3x3(x, w, b, transposed=True)
            if conv2d_winograd.transpose_route(x, w, b, self.stride, self.dilation, self.groups):
                return conv2d_winograd.conv_transpose3x3_stride2(x, w, b, self.padding, self.output_padding)
            return F.conv_transpose2d(
                _dense_for_onednn(x, wide=w.shape[0] >= 256),
                w,
                b,
                self.stride,
                self.padding,
                self.output_padding,
                self.groups,
                self.dilation,
            )
        if conv2d_winograd.forward_route(x, w, b, self.stride, self.padding, self.dilation, self.groups):
            return conv2d_winograd.conv3x3(x, w, b)
        if self._pointwise(x, w):
            return conv2d_1x1.conv1x1(x, w, b)
        x = _dense_for_onednn(x, wide=w.shape[1] * self.groups >= 256)
        return F.conv2d(x, w, b, self.stride, self.padding, self.dilation, self.groups)

    def _pointwise(self, x: torch.Tensor, w: torch.Tensor) -> bool:
        """Whether conv2d(x, w) (w [K, C, 1, 1]) is one matrix product here (conv2d_1x1)."""
        eligible = conv2d_1x1.eligible(x, w.shape, self.stride, self.padding, self.dilation, self.groups)
        return eligible and w.dtype == torch.float32 and conv2d_1x1.product_pays(x)

    def adjoint(self, in_shape: torch.Size, out_shape: torch.Size, w_shape: torch.Size) -> _ConvConfig:
        """The convolution mapping grad_output back to grad_input (transpose flag flipped)."""
        if self.transpose:
            return _ConvConfig(False, self.stride, self.padding, (0, 0), self.dilation, self.groups)
        kh, kw = w_shape[2], w_shape[3]
        op = []
        for i, k in enumerate((kh, kw)):
            full = (out_shape[2 + i] - 1) * self.stride[i] - 2 * self.padding[i] + self.dilation[i] * (k - 1) + 1
            op.append(in_shape[2 + i] - full)
        return _ConvConfig(True, self.stride, self.padding, tuple(op), self.dilation, self.groups)


def _dense_for_onednn(t: torch.Tensor, wide: bool = True) -> torch.Tensor:
    """Contiguous NCHW for oneDNN's float32 CPU kernels where a channels_last input (the conv2d_winograd routes'
    outputs) measured slower: every weight gradient (e.g. stride-2, 512 channels, 33 px: 0.88 s against 0.36 s; the
    copy costs ~40 ms), and forwards from 256 input channels (3x3 stride 2 at 33 px: 0.38-0.50 s against 0.30 s).
    Narrower forwards ran faster channels_last (64 channels: 0.8x), so they keep it."""
    if wide and t.device.type == "cpu" and t.dtype == torch.float32 and not t.is_contiguous():
        return t.contiguous()
    return t


def _conv_or_custom(cfg: _ConvConfig, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    if not _needs_custom(x, w):
        return cfg.run(x, w)
    return _Conv.apply(x, w, None, cfg)


def _weight_grad(cfg: _ConvConfig, x: torch.Tensor, grad_out: torch.Tensor, w_shape: torch.Size) -> torch.Tensor:
    """d<conv(x, w), grad_out>/dw; for a transposed conv the roles of x and grad_out swap.

    3x3 float32 CPU layers wide enough for it go to conv2d_winograd (Winograd for stride 1, im2col for stride 2:
    up to 2.7x faster than oneDNN's kernel there; `conv2d_winograd.pays` says where).
    """
    inp, out = (grad_out, x) if cfg.transpose else (x, grad_out)
    if conv2d_1x1.eligible(inp, w_shape, cfg.stride, cfg.padding, cfg.dilation, cfg.groups):
        if out.dtype == torch.float32 and conv2d_1x1.weight_grad_pays(inp):
            return conv2d_1x1.weight_grad(inp, out)
    if conv2d_winograd.route(inp, out, w_shape, cfg.stride, cfg.padding, cfg.dilation, cfg.groups):
        return conv2d_winograd.weight_grad(inp, out, w_shape, cfg.stride, cfg.padding)
    inp, out = _dense_for_onednn(inp), _dense_for_onednn(out)
    return torch.nn.grad.conv2d_weight(inp, w_shape, out, cfg.stride, cfg.padding, cfg.dilation, cfg.groups)


class _Conv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w, b, cfg):
        ctx.cfg = cfg
        ctx.x_shape = x.shape
        ctx.has_bias = b is not None
        ctx.save_for_backward(x if w.requires_grad else None, w)
        return cfg.run(x, w, b)

    @staticmethod
    def backward(ctx, grad_out):
        x, w = ctx.saved_tensors
        cfg: _ConvConfig = ctx.cfg
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = _conv_or_custom(cfg.adjoint(ctx.x_shape, grad_out.shape, w.shape), grad_out, w)
            if grad_x.shape != ctx.x_shape:
                raise RuntimeError(f"conv2d_gradfix: input gradient {tuple(grad_x.shape)} != {tuple(ctx.x_shape)}")
        if ctx.needs_input_grad[1] and not weight_gradients_disabled:
            grad_w = _weight_grad(cfg, x, grad_out, w.shape)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad_out.sum([0, 2, 3])
        return grad_x, grad_w, grad_b, None
