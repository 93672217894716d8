"""ADA: differentiable, non-leaking augmentations applied to every image the discriminator sees.

Karras et al., "Training Generative Adversarial Networks with Limited Data" (NeurIPS 2020). Constructor
kwargs, buffer names (`p`, `Hz_geom`, `Hz_fbank`) and the preset table match StyleGAN2-ADA, so the
`augment_pipe` of an official snapshot loads with `load_state_dict`. Images are float [N, C, H, W] in about
[-1, 1]; every operation is differentiable (twice, for R1), so generator gradients flow through it.

Each augmentation is applied to each image independently with probability `strength * p`, where `p` is the
shared buffer the ADA heuristic adjusts (`AdaController` below).

Two numerical differences from the official code, both invisible to checkpoints: (1) when only blit
augmentations are enabled, flips, quarter turns and integer shifts move pixels exactly instead of going
through the resampler; (2) the resampler models the asymmetric sym6 filter's delay by its centre of mass
(0.40 taps) rather than 0.5, which cuts the error of a half-turn of a smooth 32x32 image from 0.024 to
0.004 (mean absolute, tests/test_augment.py checks < 0.01).
"""

from __future__ import annotations

import copy
import json
import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from torch_utils.ops import conv2d_gradfix, grid_sample_gradfix, upfirdn2d

# Wavelet low-pass decomposition filters (published coefficients; sum sqrt(2), unit energy).
WAVELETS = {
    "sym2": [-0.12940952255092145, 0.22414386804185735, 0.836516303737469, 0.48296291314469025],
    "sym6": [
        0.015404109327027373,
        0.0034907120842174702,
        -0.11799011114819057,
        -0.048311742585633,
        0.4910559419267466,
        0.787641141030194,
        0.3379294217276218,
        -0.07263752278646252,
        -0.021060292512300564,
        0.04472490177066578,
        0.0017677118642428036,
        -0.007800708325034148,
    ],
}

# Presets for train.py --augpipe (official names and contents).
_BLIT = dict(xflip=1, rotate90=1, xint=1)
_GEOM = dict(scale=1, rotate=1, aniso=1, xfrac=1)
_COLOR = dict(brightness=1, contrast=1, lumaflip=1, hue=1, saturation=1)
AUGPIPE_SPECS: dict[str, dict[str, float]] = {
    "blit": dict(_BLIT),
    "geom": dict(_GEOM),
    "color": dict(_COLOR),
    "filter": dict(imgfilter=1),
    "noise": dict(noise=1),
    "cutout": dict(cutout=1),
    "bg": dict(_BLIT, **_GEOM),
    "bgc": dict(_BLIT, **_GEOM, **_COLOR),
    "bgcf": dict(_BLIT, **_GEOM, **_COLOR, imgfilter=1),
    "bgcfn": dict(_BLIT, **_GEOM, **_COLOR, imgfilter=1, noise=1),
    "bgcfnc": dict(_BLIT, **_GEOM, **_COLOR, imgfilter=1, noise=1, cutout=1),
}

# Assumed share of image power in the four octave bands of the filter bank (lowest first), as in ADA.
EXPECTED_BAND_POWER = [10 / 13, 1 / 13, 1 / 13, 1 / 13]


def octave_filter_bank(lowpass: list[float], num_bands: int = 4) -> np.ndarray:
    """Zero-phase FIR filters [num_bands, taps] splitting the spectrum into octaves (lowest band first).

    Built from an orthonormal wavelet: lo2 = H(z)H(1/z)/2 and hi2 = H(-z)H(-1/z)/2 are power-complementary
    (lo2 + hi2 = identity), so the rows sum to a unit impulse and unit gains leave an image unchanged.
    Band b (>= 1) is hi2 at scale 2**(num_bands - 1 - b) behind the low-passes of the finer levels.
    """
    lo = np.asarray(lowpass, dtype=np.float64)
    hi = lo * (-1.0) ** np.arange(lo.size)
    lo2 = np.convolve(lo, lo[::-1]) / 2
    hi2 = np.convolve(hi, hi[::-1]) / 2
    bank = np.zeros([num_bands, 1])
    bank[0, 0] = 1
    for band in range(1, num_bands):
        stretched = np.zeros([num_bands, bank.shape[1] * 2 - 1])
        stretched[:, ::2] = bank  # every existing band moves down an octave
        bank = np.stack([np.convolve(row, lo2) for row in stretched])
        start = (bank.shape[1] - hi2.size) // 2
        bank[band, start : start + hi2.size] += hi2
    return bank


def filter_delay(f: torch.Tensor) -> float:
    """How far (in taps) the centre of mass of a 1-D filter sits before its geometric centre."""
    taps = torch.arange(f.numel(), dtype=torch.float64)
    f = f.detach().double().cpu()
    return float((f.numel() - 1) / 2 - (taps * f).sum() / f.sum())


# ------------------------------------------------------------------ batched homogeneous matrices


def _matrix(rows: list[list[Any]], ref: torch.Tensor) -> torch.Tensor:
    """[N, R, C] from rows of numbers and [N] tensors; `ref` [N] gives batch size, dtype and device."""
    entries = [x if isinstance(x, torch.Tensor) else torch.full_like(ref, float(x)) for row in rows for x in row]
    return torch.stack(entries, dim=-1).reshape(ref.shape[0], len(rows), len(rows[0]))


def translate2d(tx, ty, ref):
    return _matrix([[1, 0, tx], [0, 1, ty], [0, 0, 1]], ref)


def scale2d(sx, sy, ref):
    return _matrix([[sx, 0, 0], [0, sy, 0], [0, 0, 1]], ref)


def rotate2d(theta, ref):
    return _matrix([[torch.cos(theta), -torch.sin(theta), 0], [torch.sin(theta), torch.cos(theta), 0], [0, 0, 1]], ref)


def translate3d(tx, ty, tz, ref):
    return _matrix([[1, 0, 0, tx], [0, 1, 0, ty], [0, 0, 1, tz], [0, 0, 0, 1]], ref)


def scale3d(sx, sy, sz, ref):
    return _matrix([[sx, 0, 0, 0], [0, sy, 0, 0], [0, 0, sz, 0], [0, 0, 0, 1]], ref)


def rotate3d(axis: list[float], theta, ref):
    """Rotation by theta [N] about the unit vector `axis` (Rodrigues' formula)."""
    x, y, z = axis
    s, c = torch.sin(theta), torch.cos(theta)
    cc = 1 - c
    return _matrix(
        [
            [x * x * cc + c, x * y * cc - z * s, x * z * cc + y * s, 0],
            [y * x * cc + z * s, y * y * cc + c, y * z * cc - x * s, 0],
            [z * x * cc - y * s, z * y * cc + x * s, z * z * cc + c, 0],
            [0, 0, 0, 1],
        ],
        ref,
    )


def _reflect_pad(x: torch.Tensor, pad: list[int]) -> torch.Tensor:
    """Mirror padding [left, right, top, bottom] that may exceed the image (mirrors the mirror image)."""
    left, right, top, bottom = pad
    while left or right or top or bottom:
        w, h = x.shape[3] - 1, x.shape[2] - 1
        step = [min(left, w), min(right, w), min(top, h), min(bottom, h)]
        x = F.pad(x, step, mode="reflect")
        left, right, top, bottom = left - step[0], right - step[1], top - step[2], bottom - step[3]
    return x


def _mirror_index(i: torch.Tensor, size: int) -> torch.Tensor:
    """Indices outside [0, size) reflected back in, like F.pad(mode='reflect') (edge not repeated)."""
    period = 2 * (size - 1)
    i = torch.remainder(i, period)
    return torch.where(i >= size, period - i, i)


class _Draws:
    """Random numbers for one forward pass.

    With `debug_percentile` in [0, 1] every uniform draw equals it, every normal draw is that quantile of
    N(0, 1) and every probability gate passes, so one image shows each transform at that percentile.
    """

    def __init__(self, batch_size: int, device: torch.device, debug_percentile: float | None):
        self.n, self.device, self.debug = batch_size, device, debug_percentile

    def uniform(self, *shape: int) -> torch.Tensor:
        if self.debug is not None:
            return torch.full([self.n, *shape], float(self.debug), device=self.device)
        return torch.rand([self.n, *shape], device=self.device)

    def normal(self, *shape: int) -> torch.Tensor:
        if self.debug is not None:
            percentile = min(max(float(self.debug), 1e-6), 1 - 1e-6)  # finite quantiles (|z| <= 4.75)
            quantile = math.sqrt(2) * torch.erfinv(torch.tensor(2 * percentile - 1, dtype=torch.float64)).item()
            return torch.full([self.n, *shape], quantile, device=self.device)
        return torch.randn([self.n, *shape], device=self.device)

    def gate(self, prob: torch.Tensor, value: torch.Tensor, otherwise: float) -> torch.Tensor:
        """`value` where a uniform draw < prob (per image), else the neutral `otherwise`."""
        if self.debug is not None:
            return value
        keep = torch.rand([self.n] + [1] * (value.ndim - 1), device=self.device) < prob
        return torch.where(keep, value, torch.full_like(value, otherwise))


class AugmentPipe(torch.nn.Module):
    """StyleGAN2-ADA's augmentation pipeline: blit, geometric, colour, image-space filter, noise, cutout.

    Each `name=strength` kwarg enables one augmentation with probability strength * p per image;
    the `*_std` / `*_max` kwargs set magnitudes (units: fractions of the image size, log2 scale factors,
    multiples of pi for angles). forward(images [N, C, H, W] float) -> same shape.
    """

    def __init__(
        self,
        xflip=0,
        rotate90=0,
        xint=0,
        xint_max=0.125,
        scale=0,
        rotate=0,
        aniso=0,
        xfrac=0,
        scale_std=0.2,
        rotate_max=1,
        aniso_std=0.2,
        xfrac_std=0.125,
        brightness=0,
        contrast=0,
        lumaflip=0,
        hue=0,
        saturation=0,
        brightness_std=0.2,
        contrast_std=0.5,
        hue_max=1,
        saturation_std=1,
        imgfilter=0,
        imgfilter_bands=None,
        imgfilter_std=1,
        noise=0,
        cutout=0,
        noise_std=0.1,
        cutout_size=0.5,
    ):
        if imgfilter_bands is None:
            imgfilter_bands = [1, 1, 1, 1]
        super().__init__()
        kwargs = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        self.init_kwargs = json.loads(json.dumps(copy.deepcopy(kwargs)))
        if len(imgfilter_bands) != len(EXPECTED_BAND_POWER):
            raise ValueError(
                f"AugmentPipe: imgfilter_bands needs {len(EXPECTED_BAND_POWER)} strengths (lowest octave "
                f"first), got {imgfilter_bands!r}"
            )
        for name, value in kwargs.items():
            if name == "imgfilter_bands":
                continue
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise ValueError(f"AugmentPipe: {name}={value!r}; expected a number >= 0")
            setattr(self, name, float(value))
        self.imgfilter_bands = [float(b) for b in imgfilter_bands]
        self.register_buffer("p", torch.ones([]))  # overall multiplier, driven by ADA
        self.register_buffer("Hz_geom", upfirdn2d.setup_filter(WAVELETS["sym6"]))
        self.register_buffer("Hz_fbank", torch.as_tensor(octave_filter_bank(WAVELETS["sym2"]), dtype=torch.float32))

    def extra_repr(self) -> str:
        enabled = [f"{k}={v:g}" for k, v in self.init_kwargs.items() if k in AUGPIPE_SPECS["bgcfnc"] and v]
        return ", ".join(enabled) or "no augmentations"

    def forward(self, images: torch.Tensor, debug_percentile: float | None = None) -> torch.Tensor:
        if not (isinstance(images, torch.Tensor) and images.ndim == 4):
            raise ValueError(f"AugmentPipe expects images [N, C, H, W], got {getattr(images, 'shape', type(images))}")
        draws = _Draws(images.shape[0], images.device, debug_percentile)
        images = self._geometric(images, draws)
        images = self._color(images, draws)
        images = self._imgfilter(images, draws)
        images = self._noise_and_cutout(images, draws)
        return images

    # ---------------------------------------------------------------- pixel blitting and general geometry

    def _geometric(self, images: torch.Tensor, d: _Draws) -> torch.Tensor:
        n, channels, height, width = images.shape
        ref = torch.zeros([n], device=images.device)
        # G_inv maps output pixel positions to input positions; coordinates are in pixels from the image centre.
        G_inv = None

        def then(m):
            nonlocal G_inv
            G_inv = m if G_inv is None else G_inv @ m

        p = self.p
        if self.xflip > 0:
            i = d.gate(self.xflip * p, torch.floor(d.uniform() * 2), 0)
            then(scale2d(1 - 2 * i, 1, ref))
        if self.rotate90 > 0:
            i = d.gate(self.rotate90 * p, torch.floor(d.uniform() * 4), 0)
            then(rotate2d(-np.pi / 2 * i, ref))
        if self.xint > 0:
            t = d.gate(self.xint * p, (d.uniform(2) * 2 - 1) * self.xint_max, 0)
            then(translate2d(-torch.round(t[:, 0] * width), -torch.round(t[:, 1] * height), ref))
        if self.scale > 0:
            s = d.gate(self.scale * p, torch.exp2(d.normal() * self.scale_std), 1)
            then(scale2d(1 / s, 1 / s, ref))
        # Two independent rotations (before and after the anisotropic scaling), each with the probability
        # that makes "at least one" happen with probability rotate * p.
        p_rot = 1 - torch.sqrt((1 - self.rotate * p).clamp(0, 1))
        if self.rotate > 0:
            theta = d.gate(p_rot, (d.uniform() * 2 - 1) * np.pi * self.rotate_max, 0)
            then(rotate2d(-theta, ref))
        if self.aniso > 0:
            s = d.gate(self.aniso * p, torch.exp2(d.normal() * self.aniso_std), 1)
            then(scale2d(1 / s, s, ref))
        if self.rotate > 0:
            theta = d.gate(p_rot, (d.uniform() * 2 - 1) * np.pi * self.rotate_max, 0)
            then(rotate2d(-theta, ref))
        if self.xfrac > 0:
            t = d.gate(self.xfrac * p, d.normal(2) * self.xfrac_std, 0)
            then(translate2d(-t[:, 0] * width, -t[:, 1] * height, ref))
        if G_inv is None:
            return images
        if max(self.scale, self.rotate, self.aniso, self.xfrac) == 0:
            return self._blit(images, G_inv)
        return self._resample(images, G_inv)

    def _blit(self, images: torch.Tensor, G_inv: torch.Tensor) -> torch.Tensor:
        """Integer flips, quarter turns and shifts move pixels exactly: gather, mirroring at the borders."""
        n, channels, height, width = images.shape
        if self.rotate90 > 0 and height != width:
            raise ValueError(f"AugmentPipe: rotate90 needs square images, got {height}x{width}")
        cx, cy = (width - 1) / 2, (height - 1) / 2
        ys, xs = torch.meshgrid(
            torch.arange(height, device=images.device, dtype=G_inv.dtype) - cy,
            torch.arange(width, device=images.device, dtype=G_inv.dtype) - cx,
            indexing="ij",
        )
        out = torch.stack([xs.flatten(), ys.flatten(), torch.ones_like(xs.flatten())])  # [3, H * W]
        src = G_inv @ out  # integer transforms keep pixel centres on pixel centres
        src_x = _mirror_index(torch.round(src[:, 0] + cx).long(), width)
        src_y = _mirror_index(torch.round(src[:, 1] + cy).long(), height)
        index = (src_y * width + src_x).unsqueeze(1).expand(n, channels, height * width)
        return images.reshape(n, channels, height * width).gather(2, index).reshape(n, channels, height, width)

    def _resample(self, images: torch.Tensor, G_inv: torch.Tensor) -> torch.Tensor:
        """Warp by G_inv without aliasing: 2x upsample (sym6), bilinear sampling, 2x downsample (sym6)."""
        n, channels, height, width = images.shape
        ref = torch.zeros([n], device=images.device)
        cx, cy = (width - 1) / 2, (height - 1) / 2
        hz_pad = self.Hz_geom.shape[0] // 4  # support of the resampling filter, in input pixels

        # Mirror-pad just enough that every sample (plus filter support) falls inside the image.
        corners = torch.tensor([[-cx, -cy, 1], [cx, -cy, 1], [cx, cy, 1], [-cx, cy, 1]], device=images.device)
        reach = (G_inv @ corners.t())[:, :2, :].permute(1, 0, 2).flatten(1)  # [xy, N * 4]
        margin = torch.cat([-reach, reach]).max(dim=1).values  # [x0, y0, x1, y1]
        margin = margin + torch.tensor([hz_pad * 2 - cx, hz_pad * 2 - cy] * 2, device=images.device)
        margin = margin.clamp(min=0)
        margin = torch.minimum(margin, torch.tensor([width - 1, height - 1] * 2, device=images.device))
        mx0, my0, mx1, my1 = [int(v) for v in margin.ceil().tolist()]
        images = F.pad(images, [mx0, mx1, my0, my1], mode="reflect")
        G_inv = translate2d(ref + (mx0 - mx1) / 2, ref + (my0 - my1) / 2, ref) @ G_inv

        # Work at twice the resolution. sym6 is not symmetric: its centre of mass sits `delay` taps early, so
        # both the upsampled input and the supersampled output grid are offset by that much (the downsampling
        # uses the flipped filter, so the two offsets cancel exactly for the identity transform).
        images = upfirdn2d.upsample2d(images, self.Hz_geom, up=2)
        delay = filter_delay(self.Hz_geom)
        G_inv = scale2d(2, 2, ref) @ G_inv @ scale2d(0.5, 0.5, ref)
        G_inv = translate2d(-delay, -delay, ref) @ G_inv @ translate2d(delay, delay, ref)

        # Supersampled output grid with hz_pad extra input pixels each side for the downsampling filter.
        shape = [n, channels, (height + hz_pad * 2) * 2, (width + hz_pad * 2) * 2]
        to_normalized = scale2d(2 / images.shape[3], 2 / images.shape[2], ref)
        from_normalized = scale2d(shape[3] / 2, shape[2] / 2, ref)
        theta = (to_normalized @ G_inv @ from_normalized)[:, :2, :]
        grid = F.affine_grid(theta.to(images.dtype), shape, align_corners=False)
        images = grid_sample_gradfix.grid_sample(images, grid)
        return upfirdn2d.downsample2d(images, self.Hz_geom, down=2, padding=-hz_pad * 2, flip_filter=True)

    # ---------------------------------------------------------------- colour

    def _color(self, images: torch.Tensor, d: _Draws) -> torch.Tensor:
        n, channels, height, width = images.shape
        ref = torch.zeros([n], device=images.device)
        C = None  # 4x4 colour transform acting on homogeneous RGB

        def then(m):
            nonlocal C
            C = m if C is None else m @ C

        p = self.p
        luma = torch.tensor([1, 1, 1, 0], dtype=torch.float32, device=images.device) / np.sqrt(3)
        luma_outer = torch.outer(luma, luma)
        eye = torch.eye(4, device=images.device)
        if self.brightness > 0:
            b = d.gate(self.brightness * p, d.normal() * self.brightness_std, 0)
            then(translate3d(b, b, b, ref))
        if self.contrast > 0:
            c = d.gate(self.contrast * p, torch.exp2(d.normal() * self.contrast_std), 1)
            then(scale3d(c, c, c, ref))
        if self.lumaflip > 0:
            i = d.gate(self.lumaflip * p, torch.floor(d.uniform(1, 1) * 2), 0)
            then(eye - 2 * luma_outer * i)  # mirror along the luma axis
        if self.hue > 0 and channels > 1:
            theta = d.gate(self.hue * p, (d.uniform() * 2 - 1) * np.pi * self.hue_max, 0)
            then(rotate3d([1 / np.sqrt(3)] * 3, theta, ref))
        if self.saturation > 0 and channels > 1:
            s = d.gate(self.saturation * p, torch.exp2(d.normal(1, 1) * self.saturation_std), 1)
            then(luma_outer + (eye - luma_outer) * s)
        if C is None:
            return images
        C = C.to(images.dtype)
        flat = images.reshape(n, channels, height * width)
        if channels == 3:
            flat = C[:, :3, :3] @ flat + C[:, :3, 3:]
        elif channels == 1:  # act on grey as on (g, g, g) and average the three outputs
            C = C[:, :3, :].mean(dim=1, keepdim=True)
            flat = flat * C[:, :, :3].sum(dim=2, keepdim=True) + C[:, :, 3:]
        else:
            raise ValueError(f"AugmentPipe colour transforms need 1 or 3 channels, got {channels}")
        return flat.reshape(n, channels, height, width)

    # ---------------------------------------------------------------- image-space filtering

    def _imgfilter(self, images: torch.Tensor, d: _Draws) -> torch.Tensor:
        if self.imgfilter <= 0:
            return images
        n, channels, height, width = images.shape
        num_bands = self.Hz_fbank.shape[0]
        expected_power = torch.tensor(EXPECTED_BAND_POWER, device=images.device)
        gains = torch.ones([n, num_bands], device=images.device)
        for band, strength in enumerate(self.imgfilter_bands):
            if strength <= 0:
                continue
            t_band = d.gate(self.imgfilter * self.p, torch.exp2(d.normal() * self.imgfilter_std), 1)
            t = torch.ones([n, num_bands], device=images.device)
            t[:, band] = t_band
            t = t / (expected_power * t.square()).sum(dim=-1, keepdim=True).sqrt()  # keep the expected power
            gains = gains * t
        taps = (gains @ self.Hz_fbank).to(images.dtype)  # [N, taps], one zero-phase filter per image
        taps = taps.unsqueeze(1).repeat([1, channels, 1]).reshape(n * channels, 1, -1)
        pad = self.Hz_fbank.shape[1] // 2
        x = _reflect_pad(images.reshape(1, n * channels, height, width), [pad] * 4)
        x = conv2d_gradfix.conv2d(x, taps.unsqueeze(2), groups=n * channels)
        x = conv2d_gradfix.conv2d(x, taps.unsqueeze(3), groups=n * channels)
        return x.reshape(n, channels, height, width)

    # ---------------------------------------------------------------- additive noise and cutout

    def _noise_and_cutout(self, images: torch.Tensor, d: _Draws) -> torch.Tensor:
        n, channels, height, width = images.shape
        if self.noise > 0:
            sigma = d.gate(self.noise * self.p, d.normal(1, 1, 1).abs() * self.noise_std, 0)
            images = images + torch.randn_like(images) * sigma.to(images.dtype)
        if self.cutout > 0:
            size = d.gate(self.cutout * self.p, torch.full([n, 2, 1, 1, 1], self.cutout_size, device=images.device), 0)
            center = d.uniform(2, 1, 1, 1)
            xs = ((torch.arange(width, device=images.device) + 0.5) / width).reshape(1, 1, 1, -1)
            ys = ((torch.arange(height, device=images.device) + 0.5) / height).reshape(1, 1, -1, 1)
            outside_x = (xs - center[:, 0]).abs() >= size[:, 0] / 2
            outside_y = (ys - center[:, 1]).abs() >= size[:, 1] / 2
            images = images * torch.logical_or(outside_x, outside_y).to(images.dtype)
        return images


class AdaController:
    """Sets AugmentPipe.p: fixed, or adapted by ADA's overfitting heuristic r_t = E[sign(D(real))].

    Call `observe(real_logits)` whenever D scores real images and `step()` once per minibatch. Every
    `interval` minibatches p moves by sign(r_t - target) * batch_size * interval / (kimg * 1000), i.e. it
    can sweep 0 -> 1 in `kimg` thousand real images, and is clamped at 0. `target=None` keeps p fixed.
    """

    def __init__(
        self,
        augment_pipe: AugmentPipe,
        batch_size: int,
        target: float | None = 0.6,
        p: float = 0.0,
        interval: int = 4,
        kimg: float = 500,
    ):
        if target is not None and not 0 <= target <= 1:
            raise ValueError(f"ADA target must be in [0, 1] (r_t is a mean of signs), got {target}")
        if interval < 1 or kimg <= 0 or batch_size < 1:
            raise ValueError(
                f"AdaController: need interval >= 1, kimg > 0, batch_size >= 1; got {interval}, {kimg}, {batch_size}"
            )
        self.pipe, self.target, self.interval = augment_pipe, target, int(interval)
        self.adjust_step = batch_size * interval / (kimg * 1000)
        self.num_steps = 0
        self.last_rt: float | None = None
        self._stats = torch.zeros([2], dtype=torch.float64, device=augment_pipe.p.device)  # [sum of signs, count]
        with torch.no_grad():
            augment_pipe.p.fill_(p)

    @property
    def p(self) -> float:
        return float(self.pipe.p)

    def observe(self, real_logits: torch.Tensor) -> None:
        """Accumulate the signs of D's logits for real images (no sync with the device)."""
        if self.target is None:
            return
        signs = real_logits.detach().sign().to(self._stats)
        self._stats[0] += signs.sum()
        self._stats[1] += signs.numel()

    def step(self) -> float | None:
        """End of a minibatch; returns r_t when p was just adjusted, else None."""
        self.num_steps += 1
        if self.target is None or self.num_steps % self.interval != 0:
            return None
        stats = self._stats.clone()
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(stats)
        self._stats.zero_()
        total, count = stats.tolist()
        if count == 0:
            return None
        self.last_rt = total / count
        adjust = float(np.sign(self.last_rt - self.target)) * self.adjust_step
        with torch.no_grad():
            self.pipe.p.copy_((self.pipe.p + adjust).clamp(min=0))
        return self.last_rt

    def state_dict(self) -> dict[str, Any]:
        return dict(num_steps=self.num_steps, stats=self._stats.tolist(), last_rt=self.last_rt, p=self.p)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.num_steps = int(state["num_steps"])
        self._stats = torch.tensor(state["stats"], dtype=torch.float64, device=self.pipe.p.device)
        self.last_rt = state["last_rt"]
        with torch.no_grad():
            self.pipe.p.fill_(float(state["p"]))
