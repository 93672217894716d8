"""Fused multiply-add with broadcasting: a * b + c (one kernel, any-order autograd)."""

from __future__ import annotations

import torch


def fma(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """a * b + c with NumPy broadcasting over all three; gradients are reduced to each input's shape."""
    return torch.addcmul(c, a, b)
