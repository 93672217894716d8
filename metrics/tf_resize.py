"""Bilinear resize that reproduces TensorFlow 1.x `tf.image.resize_bilinear(align_corners=False)`.

The FID/IS Inception graph and the PPL/PR VGG16 were run in TF1, whose resize samples the source at
`dst * in_size / out_size` (no half-pixel offset, edges clamped). PyTorch's `interpolate` uses half-pixel
centres, which shifts every resized image slightly and moves FID; we emulate TF1 with a shifted affine grid.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def resize_like_tf1(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Resize NCHW float `x` to [N, C, height, width] the way TF1 does; identity when the size already matches."""
    n, c, in_h, in_w = x.shape
    if (in_h, in_w) == (height, width):
        return x
    theta = torch.zeros([n, 2, 3], dtype=x.dtype, device=x.device)
    theta[:, 0, 0] = 1
    theta[:, 1, 1] = 1
    # With align_corners=False, output pixel j sits at (2j+1)/out - 1; this shift moves it to 2j/out + 1/in - 1,
    # i.e. source pixel j * in / out.
    theta[:, 0, 2] = 1 / in_w - 1 / width
    theta[:, 1, 2] = 1 / in_h - 1 / height
    grid = F.affine_grid(theta, [n, c, height, width], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
