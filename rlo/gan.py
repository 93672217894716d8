"""Adversarial objectives for the StyleGAN2 loss, taken from the loss family (one implementation, no copy).

StyleGAN2's logistic loss is binary cross-entropy on the discriminator logit: D minimises
``softplus(-D(x)) + softplus(D(G(z)))`` and G (non-saturating) minimises ``softplus(-D(G(z)))``. Each softplus is
the nll of a binary target, so any member of the family replaces it: ``rlo`` gives
``m * exp(softplus(-D(x)) / k)`` etc. (eq. 4 for D and G, what the RLO authors ran on FFHQ with k = 2) and
``rlo-eq9`` the bounded eq. 9 form.
"""
from __future__ import annotations

import dataclasses

import torch

from rlo.family import LossConfig, binary_loss


@dataclasses.dataclass(frozen=True)
class GanObjective:
    """Per-sample adversarial losses for D (real and fake terms) and the non-saturating G loss."""

    loss: LossConfig = LossConfig(name="ce")

    def d_real(self, logits: torch.Tensor) -> torch.Tensor:
        """D's loss on real images: target 'real'. ``ce``: softplus(-logits)."""
        return binary_loss(self.loss, logits, 1, reduction="none")

    def d_fake(self, logits: torch.Tensor) -> torch.Tensor:
        """D's loss on generated images: target 'fake'. ``ce``: softplus(logits)."""
        return binary_loss(self.loss, logits, 0, reduction="none")

    def g_fake(self, logits: torch.Tensor) -> torch.Tensor:
        """G's non-saturating loss on generated images: target 'real'. ``ce``: softplus(-logits)."""
        return binary_loss(self.loss, logits, 1, reduction="none")
