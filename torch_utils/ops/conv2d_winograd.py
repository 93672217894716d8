"""Weight gradients of 3x3 convolutions on CPU in float32, where oneDNN's own kernel is slow.

Stride 1: Winograd's minimal filtering F(2x2, 3x3). Other strides: one matrix product over im2col columns.

Why: on a CPU without AVX-512, oneDNN's weight-gradient kernel for these convolutions runs at a third of the speed
of its forward kernel (one thread, batch 16, 512 channels, 32x32: forward ~1.05 s, weight gradient ~3 s), and the
networks compute one per 3x3 layer per training phase. F(2x2, 3x3) (Lavin & Gray, 2016) turns it into 16 matrix
products over the channels with 2.25x fewer multiply-adds: ~1.0 s there. The forward pass and the input gradient
keep oneDNN's direct kernels, which are already as fast as a Winograd version would be.

dL/dw[k, c] = sum over tiles of AT dY AT^T (x) BT X BT^T, back through the filter transform G: only additions,
subtractions and halvings, so the rounding is no worse than the direct kernel's (max relative error vs float64
~5e-7, against ~5e-6 for oneDNN's). Built from differentiable ops (pad, unfold, matrix products), so it is
differentiable again. The oracle is torch.nn.grad.conv2d_weight (tests/test_ops_winograd.py).

Where it pays (`pays`): the transforms and the im2col copies cost memory traffic in proportion to C x pixels,
the matrix products C^2 x pixels, so only wide layers at small images gain. With few channels or large images it
loses, up to 4-6x at 16-32 channels and 16-32 px (the `tiny` config: 1.3x slower training with it everywhere),
and oneDNN's kernel keeps those layers. `benchmarks/bench_weight_grad.py` prints both times and the route for a
grid of layers.

Strided (the stride-2 convolution after each discriminator FIR filter, and the generator's transposed upsampling
convolution, whose weight gradient is a stride-2 correlation): the nine shifted, strided views of the padded input
side by side make a [pixels, 9 C] matrix, and one matrix product with the [pixels, K] output gradient gives the
weight gradient, with the same multiply-adds. At 512 channels it measured 1.5-2x faster than oneDNN's kernel on a
quiet machine but 1.0-1.3x slower at 17-33 px under load; at <= 9 px it won in every measurement (0.5-0.9x).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

enabled = True  # False: conv2d_gradfix always uses torch.nn.grad.conv2d_weight (A/B benchmarks, debugging)
force = False  # True: every geometry this module computes takes its route, paying or not (tests of the routes)

# F(2, 3) in one dimension: y = AT [(G g) * (BT d)] for a 4-sample input tile d and a 3-tap correlation g.
_BT = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]
_G = [[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]]
_AT = [[1, 1, 1, 0], [0, 1, -1, -1]]
_matrices: dict[tuple[torch.dtype, torch.device], tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}


def _transforms(dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """2-D transforms as Kronecker products: input BT(x)BT [16, 16], filter G(x)G [16, 9], output AT(x)AT [4, 16]."""
    key = (dtype, device)
    if key not in _matrices:
        bt, g, at = (torch.tensor(m, dtype=torch.float64) for m in (_BT, _G, _AT))
        _matrices[key] = tuple(torch.kron(m, m).to(dtype=dtype, device=device) for m in (bt, g, at))
    return _matrices[key]


def route(
    x: torch.Tensor,
    grad_out: torch.Tensor,
    w_shape: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    groups: int,
) -> str:
    """How the weight gradient of conv2d(x, w, stride, padding, dilation, groups) is computed here:
    'winograd', 'im2col', or '' (not here: torch.nn.grad.conv2d_weight). Only float32 CPU tensors qualify."""
    if not (
        enabled
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and grad_out.dtype == torch.float32
        and x.ndim == 4
        and grad_out.ndim == 4
        and tuple(w_shape[2:]) == (3, 3)
        and groups == 1
        and tuple(dilation) == (1, 1)
    ):
        return ""
    kind = _geometry(x, grad_out, stride, padding)
    return kind if kind and (force or pays(kind, x, grad_out)) else ""


def pays(kind: str, x: torch.Tensor, grad_out: torch.Tensor) -> bool:
    """Whether route `kind` beats oneDNN's weight-gradient kernel for this layer. Measured one thread, batch 16,
    AVX2 (benchmarks/bench_weight_grad.py): Winograd wins at 512 channels at every size up to 32 px (0.6-0.75x),
    at 256 channels up to 16 px and at 64 up to 8 px; im2col only on the small (<= 9 px) inputs of the last
    downsampling layers, from 64 channels."""
    channels = min(x.shape[1], grad_out.shape[1])
    pixels = x.shape[2] * x.shape[3]
    if kind == "winograd":
        return channels >= 512 or (channels >= 256 and pixels <= 16 * 16) or (channels >= 64 and pixels <= 8 * 8)
    return kind == "im2col" and channels >= 64 and pixels <= 9 * 9


def _geometry(x: torch.Tensor, grad_out: torch.Tensor, stride: Sequence[int], padding: Sequence[int]) -> str:
    if stride[0] != stride[1] or padding[0] != padding[1]:
        return ""
    s, p = int(stride[0]), int(padding[0])
    out_size = tuple((size + 2 * p - 3) // s + 1 for size in x.shape[2:])
    if out_size != tuple(grad_out.shape[2:]) or min(out_size) < 1:
        return ""  # e.g. the adjoint of a transposed conv with output_padding: leave it to the direct kernel
    if s == 1 and p == 1 and x.shape[2] % 2 == 0 and x.shape[3] % 2 == 0:
        return "winograd"
    return "im2col" if s > 1 else ""


def weight_grad(
    x: torch.Tensor, grad_out: torch.Tensor, w_shape: Sequence[int], stride: Sequence[int], padding: Sequence[int]
) -> torch.Tensor:
    """torch.nn.grad.conv2d_weight(x, w_shape, grad_out, stride, padding) for 3x3 kernels, by the route its
    geometry allows (any float dtype; conv2d_gradfix sends only float32 CPU tensors here) -> [K, C, 3, 3]."""
    kind = _geometry(x, grad_out, stride, padding) if tuple(w_shape[2:]) == (3, 3) else ""
    if kind == "winograd":
        return weight_grad_3x3(x, grad_out)
    if kind == "im2col":
        return weight_grad_im2col(x, grad_out, int(stride[0]), int(padding[0]))
    raise ValueError(
        f"no CPU route for the weight gradient of x {tuple(x.shape)}, grad_out {tuple(grad_out.shape)}, "
        f"w {tuple(w_shape)}, stride {tuple(stride)}, padding {tuple(padding)}"
    )


def weight_grad_im2col(x: torch.Tensor, grad_out: torch.Tensor, stride: int, padding: int) -> torch.Tensor:
    """torch.nn.grad.conv2d_weight(x, [K, C, 3, 3], grad_out, stride, padding) -> [K, C, 3, 3]."""
    n, c = x.shape[:2]
    k, oh, ow = grad_out.shape[1:]
    xp = F.pad(x.permute(0, 2, 3, 1), (0, 0, padding, padding, padding, padding))  # [N, H', W', C]
    cols = torch.stack(
        [
            xp[:, a : a + stride * (oh - 1) + 1 : stride, b : b + stride * (ow - 1) + 1 : stride]
            for a in range(3)
            for b in range(3)
        ],
        dim=3,
    )  # [N, oh, ow, 9, C]
    dw = grad_out.permute(0, 2, 3, 1).reshape(-1, k).t() @ cols.reshape(-1, 9 * c)  # [K, 9 C]
    return dw.reshape(k, 3, 3, c).permute(0, 3, 1, 2)


def weight_grad_3x3(x: torch.Tensor, grad_out: torch.Tensor) -> torch.Tensor:
    """torch.nn.grad.conv2d_weight(x, [K, C, 3, 3], grad_out, padding=1) for x [N, C, H, W] (H, W even) and
    grad_out [N, K, H, W] -> [K, C, 3, 3]."""
    n, c, h, width = x.shape
    k = grad_out.shape[1]
    if h % 2 or width % 2 or grad_out.shape[0] != n or tuple(grad_out.shape[2:]) != (h, width):
        raise ValueError(
            f"weight_grad_3x3: needs x [N, C, H, W] with even H, W and grad_out [N, K, H, W]; got "
            f"{tuple(x.shape)} and {tuple(grad_out.shape)}"
        )
    kb, kg, ka = _transforms(x.dtype, x.device)
    th, tw = h // 2, width // 2
    # Input tiles: 4x4 windows with stride 2 of the zero-padded NHWC image, transformed by BT (x) BT.
    xp = F.pad(x.permute(0, 2, 3, 1), (0, 0, 1, 1, 1, 1))  # [N, H+2, W+2, C]
    tiles = xp.unfold(1, 4, 2).unfold(2, 4, 2).permute(4, 5, 0, 1, 2, 3).reshape(16, -1)  # [16, tiles * C]
    v = (kb @ tiles).reshape(16, n * th * tw, c)  # [16, tiles, C]
    # Output-gradient tiles (2x2, no overlap), back through the output transform AT (x) AT.
    g = grad_out.permute(0, 2, 3, 1).reshape(n, th, 2, tw, 2, k).permute(2, 4, 0, 1, 3, 5).reshape(4, -1)
    dm = (ka.t() @ g).reshape(16, n * th * tw, k)  # [16, tiles, K]
    du = torch.bmm(v.transpose(1, 2), dm)  # [16, C, K]
    dw = (kg.t() @ du.reshape(16, c * k)).reshape(3, 3, c, k)
    return dw.permute(3, 2, 0, 1)
