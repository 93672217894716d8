"""1x1 convolutions on CPU in float32 as one matrix product over the pixels.

Why: the generator's toRGB layers (512 -> 3 channels) and the discriminator's fromRGB layer (3 -> 512) are 1x1
convolutions whose inputs or gradients the 3x3 routes (conv2d_winograd) leave channels_last. oneDNN gets them a
dense NCHW copy first (conv2d_gradfix._dense_for_onednn) and then runs a kernel built for wide layers: a toRGB
forward at 32 px took 18 ms where the product it is takes 1.5 ms. As a product, a 1x1 convolution reads either
layout without a copy: a channels_last tensor is a [pixels, C] matrix, an NCHW one is N [C, pixels] matrices.

Forward and input gradient (the same product with the transposed weight), and the weight gradient, where the
rules `product_pays` and `weight_grad_pays` hold (`python3 benchmarks/bench_winograd.py --op=pointwise` prints
the grid behind them). `RLO_CPU_WINOGRAD=off` turns these routes off with the others (conv2d_winograd.enabled).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from torch_utils.ops import conv2d_winograd

WIDE = 256  # channels from which conv2d_gradfix hands oneDNN a dense copy of a channels_last input


def eligible(x: torch.Tensor, w_shape: Sequence[int], stride, padding, dilation, groups: int) -> bool:
    """A float32 CPU 1x1 convolution without stride, padding, dilation or groups, with the routes enabled."""
    return (
        conv2d_winograd.enabled
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and x.ndim == 4
        and tuple(w_shape[2:]) == (1, 1)
        and groups == 1
        and tuple(stride) == (1, 1)
        and tuple(padding) == (0, 0)
        and tuple(dilation) == (1, 1)
    )


def product_pays(x: torch.Tensor) -> bool:
    """Whether the forward product beats oneDNN as conv2d_gradfix calls it (benchmarks/results/conv1x1_*.json): on
    every NCHW input and on channels_last inputs from 256 channels, which oneDNN gets a dense copy of (0.15-0.95x
    with AVX-512 and AVX2 kernels). Narrower channels_last inputs go to oneDNN as they are (the product: 0.37-1.57x)."""
    return conv2d_winograd.force or not conv2d_winograd.is_channels_last(x) or x.shape[1] >= WIDE


def weight_grad_pays(x: torch.Tensor) -> bool:
    """Whether the weight-gradient product beats oneDNN with its dense copies: on every channels_last input
    (0.10-0.74x), where the product reads the pixels as rows in place; an NCHW input needs a transposing copy
    first (0.21-3.4x, mostly above 1), and stays with oneDNN."""
    return conv2d_winograd.force or conv2d_winograd.is_channels_last(x)


def conv1x1(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    """F.conv2d(x, w, b) for w [K, C, 1, 1]: channels_last in, channels_last out; NCHW in, NCHW out."""
    n, c, h, width = x.shape
    k = w.shape[0]
    w2 = w.reshape(k, c)
    if conv2d_winograd.is_channels_last(x):
        rows = x.permute(0, 2, 3, 1).reshape(-1, c)  # a view: [pixels, C]
        y = rows @ w2.t() if b is None else torch.addmm(b, rows, w2.t())
        return y.view(n, h, width, k).permute(0, 3, 1, 2)
    # bmm, not matmul: matmul folds or batches by whether its operands require grad, which changes the rounding
    # between a training network and its frozen copy.
    y = torch.bmm(w2.expand(n, k, c), x.reshape(n, c, h * width))  # [N, K, pixels]
    if b is not None:
        y += b.view(1, k, 1)
    return y.view(n, k, h, width)


def weight_grad(x: torch.Tensor, grad_out: torch.Tensor) -> torch.Tensor:
    """torch.nn.grad.conv2d_weight(x, [K, C, 1, 1], grad_out) -> [K, C, 1, 1]: the sum over pixels of
    grad_out[p]^T x[p] (a copy only for an NCHW side)."""
    c, k = x.shape[1], grad_out.shape[1]
    x_rows = x.permute(0, 2, 3, 1).reshape(-1, c)
    g_rows = grad_out.permute(0, 2, 3, 1).reshape(-1, k)
    return (g_rows.t() @ x_rows).view(k, c, 1, 1)
