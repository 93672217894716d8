"""Bilinear grid_sample with second-order gradients, as ADA's geometric augmentation needs.

The augmentation sits between the generator and the discriminator, so R1 (a gradient penalty) and the
generator loss differentiate through it twice. PyTorch's own ``grid_sample`` backward is itself
differentiable in the pinned release (checked by tests/test_ops.py with gradgradcheck), so this wraps
the public op with the fixed options ADA uses instead of reaching into private aten functions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

enabled = True  # Kept for source compatibility with the official module; both settings use the public op.


def grid_sample(input: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Sample input [N, C, H, W] at grid [N, Ho, Wo, 2] (x, y in [-1, 1]) -> [N, C, Ho, Wo].

    Bilinear, zeros outside, align_corners=False (pixel centres at (2i + 1) / size - 1).
    """
    if input.ndim != 4 or grid.ndim != 4 or grid.shape[-1] != 2 or grid.shape[0] != input.shape[0]:
        raise ValueError(
            f"grid_sample expects input [N, C, H, W] and grid [N, Ho, Wo, 2], got "
            f"{tuple(input.shape)} and {tuple(grid.shape)}"
        )
    return F.grid_sample(input, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
