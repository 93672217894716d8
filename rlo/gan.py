"""Adversarial objectives for the StyleGAN2 loss, taken from the loss family (one implementation, no copy).

StyleGAN2's logistic loss is binary cross-entropy on the discriminator logit: D minimises
``softplus(-D(x)) + softplus(D(G(z)))`` and G (non-saturating) minimises ``softplus(-D(G(z)))``. Each softplus is
the nll of a binary target, so any member of the family replaces it: ``rlo`` gives
``m * exp(softplus(-D(x)) / k)`` etc. (eq. 4 for D and G, what the RLO authors ran on FFHQ with k = 2) and
``rlo-eq9`` the bounded eq. 9 form. ``nll_d_real`` / ``nll_d_fake`` / ``nll_g_fake`` give those softplus terms
themselves, whatever the member, so logs can show the CE-equivalent loss next to the objective being optimised.
"""
from __future__ import annotations

import dataclasses

import torch

from rlo import functional as RF
from rlo.family import LossConfig, binary_loss

REAL, FAKE = 1, 0  # D's binary targets; G's non-saturating loss asks D to say REAL on generated images


@dataclasses.dataclass(frozen=True)
class GanObjective:
    """Per-sample adversarial losses for D (real and fake terms) and the non-saturating G loss."""

    loss: LossConfig = LossConfig(name="ce")

    def __post_init__(self):
        if self.loss.member.binary is None:
            raise ValueError(f"GanObjective needs a member with a binary form, got loss={self.loss.name!r}")

    def d_real(self, logits: torch.Tensor) -> torch.Tensor:
        """D's loss on real images: target 'real'. ``ce``: softplus(-logits)."""
        return binary_loss(self.loss, logits, REAL, reduction="none")

    def d_fake(self, logits: torch.Tensor) -> torch.Tensor:
        """D's loss on generated images: target 'fake'. ``ce``: softplus(logits)."""
        return binary_loss(self.loss, logits, FAKE, reduction="none")

    def g_fake(self, logits: torch.Tensor) -> torch.Tensor:
        """G's non-saturating loss on generated images: target 'real'. ``ce``: softplus(-logits)."""
        return binary_loss(self.loss, logits, REAL, reduction="none")

    # The nll each term is a function of (what `ce` would optimise), from the same function the losses use.

    def nll_d_real(self, logits: torch.Tensor) -> torch.Tensor:
        """softplus(-logits): the CE-equivalent of :meth:`d_real`, in float32 (float64 for float64 logits)."""
        return RF.binary_nll(logits, REAL)

    def nll_d_fake(self, logits: torch.Tensor) -> torch.Tensor:
        """softplus(logits): the CE-equivalent of :meth:`d_fake`."""
        return RF.binary_nll(logits, FAKE)

    def nll_g_fake(self, logits: torch.Tensor) -> torch.Tensor:
        """softplus(-logits): the CE-equivalent of :meth:`g_fake`."""
        return RF.binary_nll(logits, REAL)
