"""3x3 stride-1 convolution by Winograd's minimal filtering F(2x2, 3x3), for float32 on CPU.

Why: the networks spend most of their CPU time in 3x3 stride-1 convolutions (conv1 of every synthesis block, conv0
of every discriminator block) and their gradients. F(2x2, 3x3) (Lavin & Gray, 2016) turns each into 16 matrix
products over the channels with 2.25x fewer multiply-adds than the direct convolution; oneDNN on AVX2 has no
Winograd path of its own, and its direct backward passes are 2-3x slower than its forward, while here the
backward passes are matrix products too. Measured with one thread at batch 16, 512 channels: forward+backward
1.7x faster than F.conv2d at 32x32 and 16x16, and about 6x *more* accurate (the transforms only add, subtract
and halve; max relative error vs float64 ~5e-7 against ~3e-6 for oneDNN's direct convolution).

Everything is composed of differentiable PyTorch ops (pad, unfold, matrix products), so first, second and
higher-order gradients come from autograd; `torch.autograd.grad(..., inputs=[x])` skips the weight-gradient
products by itself (what conv2d_gradfix.no_weight_gradients does for the direct path).

The oracle is F.conv2d(x, w, padding=1): values and gradients agree to float rounding (tests/test_ops_winograd.py).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

enabled = True  # False: conv2d_resample always uses the direct convolution (A/B benchmarks, debugging)

# F(2, 3) in one dimension: y = AT [(G g) * (BT d)] for a 4-sample input tile d and a 3-tap correlation g.
_BT = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]
_G = [[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]]
_AT = [[1, 1, 1, 0], [0, 1, -1, -1]]
_matrices: dict[tuple[torch.dtype, torch.device], tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}


def _transforms(dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """2-D transforms as Kronecker products: input [16, 16], filter [16, 9], output [4, 16]."""
    key = (dtype, device)
    if key not in _matrices:
        bt, g, at = (torch.tensor(m, dtype=torch.float64) for m in (_BT, _G, _AT))
        _matrices[key] = tuple(torch.kron(m, m).to(dtype=dtype, device=device) for m in (bt, g, at))
    return _matrices[key]


def applies(x: torch.Tensor, w: torch.Tensor, padding, groups: int = 1) -> bool:
    """Whether conv2d_resample's unresampled convolution of x with w may take this path."""
    return (enabled and x.device.type == "cpu" and x.dtype == torch.float32 and w.dtype == torch.float32
            and x.ndim == 4 and w.ndim == 4 and tuple(w.shape[2:]) == (3, 3) and groups == 1
            and list(padding) == [1, 1] and x.shape[2] % 2 == 0 and x.shape[3] % 2 == 0 and x.shape[2] >= 4
            and x.shape[3] >= 4)


def conv3x3(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """F.conv2d(x, w, padding=1) for x [N, C, H, W] (H, W even) and w [K, C, 3, 3] -> [N, K, H, W].

    The result has channels_last strides (its natural layout here); values equal F.conv2d's up to rounding.
    """
    n, c, h, width = x.shape
    k = w.shape[0]
    if w.shape[1] != c or tuple(w.shape[2:]) != (3, 3) or h % 2 or width % 2:
        raise ValueError(f"conv3x3: needs x [N, C, H, W] with even H, W and w [K, C, 3, 3]; got {tuple(x.shape)} "
                         f"and {tuple(w.shape)}")
    kb, kg, ka = _transforms(x.dtype, x.device)
    th, tw = h // 2, width // 2
    # Input tiles: 4x4 windows with stride 2 of the zero-padded NHWC image, transformed by BT (x) BT.
    xp = F.pad(x.permute(0, 2, 3, 1), (0, 0, 1, 1, 1, 1))                           # [N, H+2, W+2, C]
    tiles = xp.unfold(1, 4, 2).unfold(2, 4, 2)                                       # [N, th, tw, C, 4, 4]
    tiles = tiles.permute(4, 5, 0, 1, 2, 3).reshape(16, n * th * tw * c)
    v = (kb @ tiles).reshape(16, n * th * tw, c)                                     # [16, tiles, C]
    u = (kg @ w.permute(2, 3, 1, 0).reshape(9, c * k)).reshape(16, c, k)             # [16, C, K]
    m = torch.bmm(v, u)                                                              # [16, tiles, K]
    y = (ka @ m.reshape(16, -1)).reshape(2, 2, n, th, tw, k)                         # [2, 2, N, th, tw, K]
    y = y.permute(2, 3, 0, 4, 1, 5).reshape(n, h, width, k)
    return y.permute(0, 3, 1, 2)
