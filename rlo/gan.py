"""Adversarial objectives for the StyleGAN2 loss, taken from the loss family (one implementation, no copy).

StyleGAN2's logistic loss is binary cross-entropy on the discriminator logit: D minimises
``softplus(-D(x)) + softplus(D(G(z)))`` and G (non-saturating) minimises ``softplus(-D(G(z)))``. Each softplus is
the nll of a binary target, so any member of the family replaces it: ``rlo`` gives
``m * exp(softplus(-D(x)) / k)`` etc. (eq. 4 for D and G, the form of the RLO authors' StyleGAN2 code; the paper
states k = 2 on FFHQ, but their public run's logged losses fit k = 20: docs/authors_ffhq_k.md) and
``rlo-eq9`` the bounded eq. 9 form. ``nll_d_real`` / ``nll_d_fake`` / ``nll_g_fake`` give those softplus terms
themselves, whatever the member, so logs can show the CE-equivalent loss next to the objective being optimised.

The pairing is independent of the member:

- ``standard``: D sees real and fake logits separately (the terms above).
- ``relativistic`` (RpGAN; Jolicoeur-Martineau 2019, the loss of R3GAN, Huang et al. 2024): D's loss is the
  member's binary loss that a real image beats its paired fake on the margin ``D(x_i) - D(G(z_i))``, and G's the
  loss that the fake beats the real on ``D(G(z_i)) - D(x_i)``. With ``ce`` that is ``softplus(-(D(x) - D(G(z))))``
  for D and ``softplus(-(D(G(z)) - D(x)))`` for G; ``rlo`` roots those softplus terms.

A member may name the loss its generator minimises (hinge: ``-D(G(z))``, as in BigGAN); G then applies that form to
its own term or margin.

``g_selfnorm`` divides G's per-sample losses by the batch mean of their weight relative to CE, w_i = dl_i/dn_i
(n_i = softplus(-logit_i), G's nll), held constant. G's gradient keeps the member's direction within the batch
(eq. 4 still weights hard samples by p^(-1/k)) at CE's scale: under eq. 4 at small k a sample that D rejects
confidently has w = (m/k) e^(n/k), e^14 at n = 29 and k = 2, and the batch gradient explodes with it; normalised,
the logit gradients sum to at most the batch size times CE's. For eq. 4 this is the gradient of
k log(mean_i e^(n_i/k)), a log of the batch's eq. 4 loss (docs/rlo_derivation.md).
"""

from __future__ import annotations

import dataclasses

import torch

from rlo import functional as RF
from rlo.family import LossConfig, binary_loss

REAL, FAKE = 1, 0  # D's binary targets; G's non-saturating loss asks D to say REAL on generated images
PAIRINGS = ("standard", "relativistic")


@dataclasses.dataclass(frozen=True)
class GanObjective:
    """Per-sample adversarial losses for D and the non-saturating G, in either pairing."""

    loss: LossConfig = LossConfig(name="ce")
    pairing: str = "standard"
    g_selfnorm: bool = False  # G's losses over their batch-mean weight relative to CE (module docstring)

    def __post_init__(self):
        if self.loss.member.binary is None:
            raise ValueError(f"GanObjective needs a member with a binary form, got loss={self.loss.name!r}")
        if self.pairing not in PAIRINGS:
            raise ValueError(f"pairing must be one of {PAIRINGS}, got pairing={self.pairing!r}")

    @property
    def relativistic(self) -> bool:
        return self.pairing == "relativistic"

    def describe(self) -> str:
        """Label for run names and plots: the member's label, with ``-rel`` for the relativistic pairing and
        ``-gsn`` for the self-normalised generator loss."""
        return self.loss.describe() + ("-rel" if self.relativistic else "") + ("-gsn" if self.g_selfnorm else "")

    def _member_generator_loss(self, logits: torch.Tensor) -> torch.Tensor:
        generator = self.loss.member.generator
        if generator is None:
            return binary_loss(self.loss, logits, REAL, reduction="none")
        return generator(logits, REAL, reduction="none", **self.loss.parameters())

    def _generator_loss(self, logits: torch.Tensor) -> torch.Tensor:
        loss = self._member_generator_loss(logits)
        return loss / self.generator_weight(logits) if self.g_selfnorm else loss

    def generator_weight(self, logits: torch.Tensor) -> torch.Tensor:
        """mean_i |dl_i/dn_i| over the batch, detached (1 where every weight is 0): how much the member scales
        CE's gradient on these logits (or margins). Computed in float64 by autograd on a detached copy, so any
        member qualifies; dn/dlogit = -sigmoid(-logit) is never 0 in float64 for |logits| below 700."""
        with torch.enable_grad():
            s = logits.detach().double().requires_grad_(True)
            (dl,) = torch.autograd.grad(self._member_generator_loss(s).sum(), s)
        weight = (dl / -torch.sigmoid(-s.detach())).abs().mean()
        weight = torch.where(torch.isfinite(weight) & (weight > 0), weight, torch.ones_like(weight))
        return weight.to(logits.dtype)

    # Standard pairing.

    def d_real(self, logits: torch.Tensor) -> torch.Tensor:
        """D's loss on real images: target 'real'. ``ce``: softplus(-logits)."""
        return binary_loss(self.loss, logits, REAL, reduction="none")

    def d_fake(self, logits: torch.Tensor) -> torch.Tensor:
        """D's loss on generated images: target 'fake'. ``ce``: softplus(logits)."""
        return binary_loss(self.loss, logits, FAKE, reduction="none")

    def g_fake(self, logits: torch.Tensor) -> torch.Tensor:
        """G's non-saturating loss on generated images: target 'real'. ``ce``: softplus(-logits)."""
        return self._generator_loss(logits)

    # Relativistic pairing: sample i of the real batch is paired with sample i of the fake batch.

    @staticmethod
    def _margin(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if a.shape != b.shape:
            raise ValueError(
                f"relativistic pairing needs real and fake logits of one shape, got {tuple(a.shape)} "
                f"and {tuple(b.shape)}"
            )
        return a - b

    def d_relativistic(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        """D's loss that each real beats its fake: the member on D(x) - D(G(z)), target 'real'."""
        return binary_loss(self.loss, self._margin(real_logits, fake_logits), REAL, reduction="none")

    def g_relativistic(self, fake_logits: torch.Tensor, real_logits: torch.Tensor) -> torch.Tensor:
        """G's loss that each fake beats its real: the member (or its generator form) on D(G(z)) - D(x)."""
        return self._generator_loss(self._margin(fake_logits, real_logits))

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
