"""The StyleGAN2 loss with a pluggable adversarial objective from the rlo family.

Phases as in StyleGAN2-ADA: Gmain (non-saturating G loss), Greg (lazy path-length regularisation), Dmain (D loss
on fakes and reals, plus LeCam), Dreg (lazy R1 and R2), or Gboth/Dboth when regularisation is not lazy. The
adversarial terms are `rlo.GanObjective`'s per-sample losses: `ce` is StyleGAN2's softplus logistic loss; `rlo` is
eq. 4 of the RLO paper for D and G, `rlo-eq9` its bounded eq. 9 form, `hinge` BigGAN's; the pairing (standard or
relativistic) is independent of the member. Everything else (R1, path length, style mixing, blur, augmentation) is
unchanged, so each switch is the only difference between two runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

import rlo
from torch_utils import training_stats
from torch_utils.ops import conv2d_gradfix, upfirdn2d
from training.options import LossOptions

PHASES = ("Gmain", "Greg", "Gboth", "Dmain", "Dreg", "Dboth")


class LeCamAnchors:
    """LeCam regularisation (Tseng et al., "Regularizing Generative Adversarial Networks under Limited Data",
    CVPR 2021) in the form of the authors' StyleGAN2 code (google/lecam-gan, stylegan2/lecam_loss.py):

        R_LC = mean(relu(D(x) - a_F)^2) + mean(relu(a_R - D(G(z)))^2),

    with a_R and a_F the exponential moving averages (decay 0.99, zero-debiased, updated with the current batch
    before use) of D's mean output on reals and on fakes. The paper writes the squares without the relu; the
    authors' code, which produced their results, penalises only outputs beyond the other side's anchor, i.e. a
    D that is more confident than the history of its outputs warrants. Their StyleGAN2 FFHQ-1k run used
    lambda = 3e-7. The anchors are part of the resume state; each process keeps its own.
    """

    def __init__(self, decay: float, device: torch.device):
        self.decay = float(decay)
        self.biased = torch.zeros([2], dtype=torch.float64, device=device)  # [real, fake], not yet debiased
        self.steps = torch.zeros([], dtype=torch.float64, device=device)

    def anchors(self) -> torch.Tensor:
        """[a_R, a_F] (zeros before the first update)."""
        return self.biased / (1 - self.decay**self.steps).clamp_min(1e-300)

    def __call__(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        means = torch.stack([real_logits.detach().mean(), fake_logits.detach().mean()]).to(self.biased.dtype)
        self.biased.mul_(self.decay).add_(means, alpha=1 - self.decay)
        self.steps += 1
        anchor_real, anchor_fake = self.anchors().to(real_logits.dtype)
        penalty = F.relu(real_logits - anchor_fake).square().mean() + F.relu(anchor_real - fake_logits).square().mean()
        training_stats.report("Loss/lecam_penalty", penalty)
        return penalty

    def state_dict(self) -> dict[str, torch.Tensor]:
        return dict(biased=self.biased.detach().cpu(), steps=self.steps.detach().cpu())

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.biased.copy_(state["biased"])
        self.steps.copy_(state["steps"])


class StyleGAN2Loss:
    """accumulate_gradients(phase, ...) adds gain * d(mean loss of the phase)/d(params) to the .grad fields.

    opts.adversarial picks the adversarial loss from the rlo family. observe_real_logits: called with D's logits
    on reals (ADA's overfitting heuristic). `nonfinite` counts phases whose loss was not finite (checked without a
    sync). With a rooted loss, Loss/G/nll and Loss/D/nll log the CE-equivalent softplus terms beside the rooted
    values: eq. 4 grows as m*exp(nll/k), so its own values are hard to read and not comparable with a CE run.
    """

    def __init__(
        self,
        device: torch.device,
        G: torch.nn.Module,
        D: torch.nn.Module,
        opts: LossOptions = LossOptions(),
        augment_pipe: torch.nn.Module | None = None,
        observe_real_logits: Callable[[torch.Tensor], None] | None = None,
    ):
        self.device = device
        self.G = G
        self.D = D
        self.opts = opts
        self.objective = rlo.GanObjective(opts.adversarial, opts.pairing, opts.g_selfnorm)
        self.reports_nll = opts.adversarial.name != "ce"
        self.lecam = LeCamAnchors(opts.lecam_decay, device) if opts.lecam_weight > 0 else None
        self.joint_d_terms = self.objective.relativistic or self.lecam is not None  # D's terms need both logits
        self.augment_pipe = augment_pipe
        self.observe_real_logits = observe_real_logits
        self.pl_mean = torch.zeros([], device=device)  # running mean path length (part of the resume state)
        self.nonfinite = torch.zeros([], device=device)  # phases with a non-finite loss since the last reset

    def run_G(self, z: torch.Tensor, c: torch.Tensor, update_emas: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """z [N, z_dim], c [N, c_dim] -> (img [N, C, H, W], ws [N, num_ws, w_dim]), with style mixing."""
        ws = self.G.mapping(z, c, update_emas=update_emas)
        if self.opts.style_mixing_prob > 0:
            # One crossover layer for the whole batch, as in the official code.
            cutoff = torch.empty([], dtype=torch.int64, device=ws.device).random_(1, ws.shape[1])
            mix = torch.rand([], device=ws.device) < self.opts.style_mixing_prob
            cutoff = torch.where(mix, cutoff, torch.full_like(cutoff, ws.shape[1]))
            ws_mix = self.G.mapping(torch.randn_like(z), c, update_emas=False)
            layer = torch.arange(ws.shape[1], device=ws.device).view(1, -1, 1)
            ws = torch.where(layer < cutoff, ws, ws_mix)
        img = self.G.synthesis(ws, update_emas=update_emas)
        return img, ws

    def run_D(self, img: torch.Tensor, c: torch.Tensor, blur_sigma: float = 0) -> torch.Tensor:
        """img [N, C, H, W] -> logits [N, 1]; blur and augmentation as D sees every image."""
        blur_size = int(np.floor(blur_sigma * 3))
        if blur_size > 0:
            f = torch.arange(-blur_size, blur_size + 1, device=img.device).div(blur_sigma).square().neg().exp2()
            img = upfirdn2d.filter2d(img, f / f.sum())
        if self.augment_pipe is not None:
            img = self.augment_pipe(img)
        return self.D(img, c)

    def _check_finite(self, loss: torch.Tensor) -> None:
        self.nonfinite += (~torch.isfinite(loss.detach())).any().to(self.nonfinite.dtype)

    def accumulate_gradients(
        self,
        phase: str,
        real_img: torch.Tensor,
        real_c: torch.Tensor,
        gen_z: torch.Tensor,
        gen_c: torch.Tensor,
        gain: float,
        cur_nimg: int,
    ) -> None:
        """One pass of `phase` on a batch: real_img [N, C, H, W] in [-1, 1], real_c/gen_c [N, c_dim],
        gen_z [N, z_dim]; gain scales the gradient (lazy-regularisation interval, 1/passes)."""
        if phase not in PHASES:
            raise ValueError(f"unknown loss phase {phase!r}; expected one of {PHASES}")
        if self.opts.pl_weight == 0:
            phase = {"Greg": "none", "Gboth": "Gmain"}.get(phase, phase)
        if self.opts.r1_gamma == 0 and self.opts.r2_gamma == 0:
            phase = {"Dreg": "none", "Dboth": "Dmain"}.get(phase, phase)
        blur_sigma = 0.0
        if self.opts.blur_init_sigma > 0:
            fade = max(1 - cur_nimg / (self.opts.blur_fade_kimg * 1e3), 0) if self.opts.blur_fade_kimg > 0 else 0
            blur_sigma = fade * self.opts.blur_init_sigma

        # Gmain: make D call the fakes real.
        if phase in ("Gmain", "Gboth"):
            gen_img, _ = self.run_G(gen_z, gen_c)
            gen_logits = self.run_D(gen_img, gen_c, blur_sigma=blur_sigma)
            training_stats.report("Loss/scores/fake", gen_logits)
            training_stats.report("Loss/signs/fake", gen_logits.sign())
            if self.objective.relativistic:  # D's view of the paired reals; they do not depend on G
                with torch.no_grad():
                    real_logits = self.run_D(real_img.detach(), real_c, blur_sigma=blur_sigma)
                loss_Gmain = self.objective.g_relativistic(gen_logits, real_logits)
            else:
                loss_Gmain = self.objective.g_fake(gen_logits)
            training_stats.report("Loss/G/loss", loss_Gmain)
            if self.reports_nll:
                training_stats.report("Loss/G/nll", self.objective.nll_g_fake(gen_logits.detach()))
            self._check_finite(loss_Gmain)
            loss_Gmain.mean().mul(gain).backward()

        # Greg: path-length regularisation on a shrunk batch.
        if phase in ("Greg", "Gboth"):
            batch_size = max(gen_z.shape[0] // self.opts.pl_batch_shrink, 1)
            gen_img, gen_ws = self.run_G(gen_z[:batch_size], gen_c[:batch_size])
            pl_noise = torch.randn_like(gen_img) / np.sqrt(gen_img.shape[2] * gen_img.shape[3])
            with conv2d_gradfix.no_weight_gradients():
                pl_grads = torch.autograd.grad(
                    outputs=[(gen_img * pl_noise).sum()], inputs=[gen_ws], create_graph=True, only_inputs=True
                )[0]
            pl_lengths = pl_grads.square().sum(2).mean(1).sqrt()
            pl_mean = self.pl_mean.lerp(pl_lengths.mean(), self.opts.pl_decay)
            self.pl_mean.copy_(pl_mean.detach())
            pl_penalty = (pl_lengths - pl_mean).square()
            training_stats.report("Loss/pl_penalty", pl_penalty)
            loss_Gpl = pl_penalty * self.opts.pl_weight
            training_stats.report("Loss/G/reg", loss_Gpl)
            self._check_finite(loss_Gpl)
            loss_Gpl.mean().mul(gain).backward()

        # Dmain: make D call the fakes fake (G frozen; its w_avg tracks the latents here, as in StyleGAN3). Without
        # pairing or LeCam the fake term is back-propagated on its own, as in StyleGAN2-ADA (less memory).
        do_main = phase in ("Dmain", "Dboth")
        loss_Dgen, nll_Dgen, gen_logits = 0, 0, None
        if do_main:
            gen_img, _ = self.run_G(gen_z, gen_c, update_emas=True)
            gen_logits = self.run_D(gen_img, gen_c, blur_sigma=blur_sigma)
            training_stats.report("Loss/scores/fake", gen_logits)
            training_stats.report("Loss/signs/fake", gen_logits.sign())
            if self.reports_nll:
                nll_Dgen = self.objective.nll_d_fake(gen_logits.detach())
            if not self.objective.relativistic:
                loss_Dgen = self.objective.d_fake(gen_logits)
                self._check_finite(loss_Dgen)
            if not self.joint_d_terms:
                loss_Dgen.mean().mul(gain).backward()

        # Dmain: make D call the reals real (or beat their paired fakes). Dreg: R1 penalty on the reals.
        do_r1 = phase in ("Dreg", "Dboth") and self.opts.r1_gamma > 0
        if do_main or do_r1:
            real_img_tmp = real_img.detach().requires_grad_(do_r1)
            real_logits = self.run_D(real_img_tmp, real_c, blur_sigma=blur_sigma)
            training_stats.report("Loss/scores/real", real_logits)
            training_stats.report("Loss/signs/real", real_logits.sign())
            if self.observe_real_logits is not None:
                self.observe_real_logits(real_logits)

            loss_Dreal_r1 = torch.zeros([], device=real_logits.device)
            if do_main:
                if self.objective.relativistic:
                    loss_Dadv = self.objective.d_relativistic(real_logits, gen_logits)
                    training_stats.report("Loss/D/loss", loss_Dadv)
                else:
                    loss_Dadv = self.objective.d_real(real_logits)
                    training_stats.report("Loss/D/loss", loss_Dgen + loss_Dadv)
                    if self.joint_d_terms:
                        loss_Dadv = loss_Dadv + loss_Dgen
                if self.reports_nll:
                    training_stats.report("Loss/D/nll", nll_Dgen + self.objective.nll_d_real(real_logits.detach()))
                self._check_finite(loss_Dadv)
                loss_Dreal_r1 = loss_Dreal_r1 + loss_Dadv.mean()
                if self.lecam is not None:
                    loss_lecam = self.lecam(real_logits, gen_logits) * self.opts.lecam_weight
                    self._check_finite(loss_lecam)
                    loss_Dreal_r1 = loss_Dreal_r1 + loss_lecam
            if do_r1:
                loss_Dr1 = self.gradient_penalty(real_logits, real_img_tmp, "r1") * (self.opts.r1_gamma / 2)
                training_stats.report("Loss/D/reg", loss_Dr1)
                self._check_finite(loss_Dr1)
                loss_Dreal_r1 = loss_Dreal_r1 + loss_Dr1.mean()
            loss_Dreal_r1.mul(gain).backward()

        # Dreg: R2 penalty on the fakes (R3GAN's gamma/2 * (R1 + R2) is --gamma=G --r2=G).
        if phase in ("Dreg", "Dboth") and self.opts.r2_gamma > 0:
            with torch.no_grad():
                gen_img, _ = self.run_G(gen_z, gen_c)
            gen_img_tmp = gen_img.detach().requires_grad_(True)
            gen_logits = self.run_D(gen_img_tmp, gen_c, blur_sigma=blur_sigma)
            loss_Dr2 = self.gradient_penalty(gen_logits, gen_img_tmp, "r2") * (self.opts.r2_gamma / 2)
            training_stats.report("Loss/D/reg", loss_Dr2)
            self._check_finite(loss_Dr2)
            loss_Dr2.mean().mul(gain).backward()

    def gradient_penalty(self, logits: torch.Tensor, images: torch.Tensor, name: str) -> torch.Tensor:
        """||d sum(logits) / d images||^2 per sample (R1 on reals, R2 on fakes), reported as Loss/<name>_penalty."""
        with conv2d_gradfix.no_weight_gradients():
            grads = torch.autograd.grad(outputs=[logits.sum()], inputs=[images], create_graph=True, only_inputs=True)[0]
        penalty = grads.square().sum([1, 2, 3])
        training_stats.report(f"Loss/{name}_penalty", penalty)
        return penalty

    def state_dict(self) -> dict[str, Any]:
        """Running statistics a resumed run needs: the path-length mean and LeCam's anchors."""
        return dict(
            pl_mean=self.pl_mean.detach().cpu(), lecam=self.lecam.state_dict() if self.lecam is not None else None
        )

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.pl_mean.copy_(state["pl_mean"])
        if self.lecam is not None and state.get("lecam") is not None:
            self.lecam.load_state_dict(state["lecam"])
