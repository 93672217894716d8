"""Perceptual Path Length (Karras et al. 2019/2020): LPIPS distance between images at latent t and t + epsilon,
divided by epsilon^2, averaged after dropping the 1% tails; computed as in StyleGAN2-ADA.

Randomness is seeded by batch: batch k (of `batch_size` samples) draws its latents, t and labels from
sample_rng(seed, index) per sample and its noise buffers from a stream seeded by k, so the value does not
depend on the number of processes.
"""

from __future__ import annotations

import copy
import inspect

import numpy as np
import torch

from metrics import metric_utils


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between the directions of a and b [N, D] at fractions t [N, 1]; unit-norm result."""
    a = a / a.norm(dim=-1, keepdim=True)
    b = b / b.norm(dim=-1, keepdim=True)
    d = (a * b).sum(dim=-1, keepdim=True)
    p = t * torch.acos(d)
    c = b - d * a
    c = c / c.norm(dim=-1, keepdim=True)
    d = a * torch.cos(p) + c * torch.sin(p)
    return d / d.norm(dim=-1, keepdim=True)


def _accepts(fn, name: str) -> bool:
    params = inspect.signature(fn).parameters
    return name in params or any(p.kind == inspect.Parameter.VAR_KEYWORD for p in params.values())


class PPLSampler(torch.nn.Module):
    """Differential LPIPS of G along random latent paths, for given endpoints z0, z1 [N, z_dim], t [N], c [N, c_dim]."""

    def __init__(
        self,
        G: torch.nn.Module,
        G_kwargs: dict,
        epsilon: float,
        space: str,
        sampling: str,
        crop: bool,
        vgg16: torch.nn.Module,
    ):
        if space not in ("z", "w"):
            raise ValueError(f"space must be 'z' or 'w', got {space!r}")
        if sampling not in ("full", "end"):
            raise ValueError(f"sampling must be 'full' or 'end', got {sampling!r}")
        super().__init__()
        self.G = copy.deepcopy(G)
        self.G_kwargs = dict(G_kwargs)
        self.epsilon = epsilon
        self.space = space
        self.sampling = sampling
        self.crop = crop
        self.vgg16 = vgg16
        self._synthesis_kwargs = dict(noise_mode="const")
        if _accepts(self.G.synthesis.forward, "force_fp32"):
            self._synthesis_kwargs["force_fp32"] = True

    def randomize_noise(self, generator: torch.Generator) -> None:
        """Fill the generator's constant noise buffers (official name '*.noise_const') from `generator`."""
        for name, buf in self.G.named_buffers():
            if name.endswith("noise_const"):
                buf.copy_(torch.randn(buf.shape, generator=generator, dtype=torch.float32).to(buf))

    def forward(self, z0: torch.Tensor, z1: torch.Tensor, t: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        if self.sampling == "end":
            t = torch.zeros_like(t)
        if self.space == "w":
            w0, w1 = self.G.mapping(z=torch.cat([z0, z1]), c=torch.cat([c, c])).chunk(2)
            wt0 = w0.lerp(w1, t.unsqueeze(1).unsqueeze(2))
            wt1 = w0.lerp(w1, t.unsqueeze(1).unsqueeze(2) + self.epsilon)
        else:
            zt0 = slerp(z0, z1, t.unsqueeze(1))
            zt1 = slerp(z0, z1, t.unsqueeze(1) + self.epsilon)
            wt0, wt1 = self.G.mapping(z=torch.cat([zt0, zt1]), c=torch.cat([c, c])).chunk(2)
        img = self.G.synthesis(torch.cat([wt0, wt1]), **self._synthesis_kwargs, **self.G_kwargs)

        if self.crop:  # the face-centred crop of the original PPL (StyleGAN v1 on FFHQ)
            if img.shape[2] != img.shape[3]:
                raise ValueError(f"PPL crop needs square images, got {list(img.shape)}")
            q = img.shape[2] // 8
            img = img[:, :, q * 3 : q * 7, q * 2 : q * 6]
        factor = self.G.img_resolution // 256
        if factor > 1:  # box-downsample to 256x256
            img = img.reshape([-1, img.shape[1], img.shape[2] // factor, factor, img.shape[3] // factor, factor])
            img = img.mean([3, 5])
        img = (img + 1) * (255 / 2)
        if img.shape[1] == 1:
            img = img.repeat([1, 3, 1, 1])
        lpips_t0, lpips_t1 = self.vgg16(img, resize_images=False, return_lpips=True).chunk(2)
        return (lpips_t0 - lpips_t1).square().sum(1) / self.epsilon**2


def ppl_from_distances(dist: np.ndarray) -> float:
    """Mean of the distances between their 1st (lower) and 99th (higher) percentiles."""
    lo = np.percentile(dist, 1, method="lower")
    hi = np.percentile(dist, 99, method="higher")
    return float(np.extract(np.logical_and(dist >= lo, dist <= hi), dist).mean())


def _batch_draws(indices: list[int], z_dim: int, seed: int, dataset, c_dim: int):
    z0 = np.zeros([len(indices), z_dim], np.float32)
    z1 = np.zeros([len(indices), z_dim], np.float32)
    t = np.zeros([len(indices)], np.float32)
    c = np.zeros([len(indices), c_dim], np.float32)
    for row, index in enumerate(indices):
        rng = metric_utils.sample_rng(seed, index)
        z0[row] = rng.standard_normal(z_dim)
        z1[row] = rng.standard_normal(z_dim)
        t[row] = rng.uniform()
        if c_dim > 0:
            c[row] = dataset.get_label(int(rng.integers(len(dataset))))
    return z0, z1, t, c


@torch.no_grad()
def compute_ppl(
    opts: metric_utils.MetricOptions,
    num_samples: int,
    epsilon: float,
    space: str,
    sampling: str,
    crop: bool,
    batch_size: int,
) -> float:
    """PPL over `num_samples` paths; NaN off rank 0."""
    G = opts.G
    dataset = metric_utils.labels_dataset(opts, G)
    vgg16 = metric_utils._get_detector(opts, "vgg16", dict(return_lpips=True), verbose=opts.progress.verbose)
    sampler = PPLSampler(
        G=G, G_kwargs=opts.G_kwargs, epsilon=epsilon, space=space, sampling=sampling, crop=crop, vgg16=vgg16
    )
    sampler.eval().requires_grad_(False).to(opts.device)

    dist = []
    progress = opts.progress.sub(tag="ppl sampling", num_items=num_samples)
    per_step = batch_size * opts.num_gpus
    for step_start in range(0, num_samples, per_step):
        progress.update(step_start)
        batch = step_start // batch_size + opts.rank  # global batch number of this process in this step
        indices = [batch * batch_size + j for j in range(batch_size)]
        z0, z1, t, c = (
            torch.from_numpy(a).to(opts.device) for a in _batch_draws(indices, G.z_dim, opts.seed, dataset, G.c_dim)
        )
        noise_seed = int(np.random.SeedSequence([opts.seed, batch, 1]).generate_state(1)[0])
        sampler.randomize_noise(torch.Generator().manual_seed(noise_seed))
        x = sampler(z0, z1, t, c)
        for src in range(opts.num_gpus):
            y = x.clone()
            if opts.num_gpus > 1:
                torch.distributed.broadcast(y, src=src)
            dist.append(y)
    progress.update(num_samples)
    if opts.rank != 0:
        return float("nan")
    return ppl_from_distances(torch.cat(dist)[:num_samples].cpu().numpy())
