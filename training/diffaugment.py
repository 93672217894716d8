"""DiffAugment: the same random, differentiable augmentation on real and generated images in every D evaluation.

Zhao, Liu, Lin, Zhu and Han, "Differentiable Augmentation for Data-Efficient GAN Training" (NeurIPS 2020,
arXiv 2006.10738). The paper names the three policies and their ranges; the exact numbers below are those of the
official code, github.com/mit-han-lab/data-efficient-gans `DiffAugment_pytorch.py` (read at commit 0b63395),
whose outputs this module reproduces bit for bit under the same torch seed (checked on CPU for 1 and 3 channels,
square and non-square sizes). A drop-in for `training.augment.AugmentPipe` in the loss:
`DiffAugment(policy)(images) -> images`, images float [N, C, H, W]. Unlike ADA there is no probability `p`:
every image is augmented every time.

Policies (`DIFFAUG_POLICIES`), applied in the order given; 'color,translation,cutout' is the default of the
official StyleGAN2 port and the one its README recommends for small data sets. Every draw is per sample:
  color        brightness: x + b,                         b ~ U[-0.5, 0.5)
               saturation: (x - mean_c) * s + mean_c,      s ~ U[0, 2),     mean_c over the channels of a pixel
               contrast:   (x - mean) * k + mean,          k ~ U[0.5, 1.5), mean over the whole image (C, H, W)
  translation  integer shift (dy, dx), each uniform on {-r, ..., r}, r = size / 8 rounded half up, per axis
               (2 px at 16, 4 at 32, 32 at 256); the pixels shifted in are 0.
  cutout       a square of side size / 2 rounded half up (per axis) set to 0; its centre is uniform over the
               image, so near a border only the part inside the image is cut (as in the official code).

Value range: the official code applies these numbers unchanged to images in [-1, 1] (its StyleGAN2 ports feed
D `x / 127.5 - 1`), and so do we: brightness moves by up to a quarter of the full range, and the 0 that
translation pads with and cutout writes is mid-grey, not black. With one channel, saturation is the identity
(a pixel equals its channel mean); its factor is still drawn so the random stream does not depend on C.

Randomness comes from torch's default generator of the images' device (`torch.rand`/`torch.randint` with
`device=images.device`), drawn in the official order (brightness, saturation, contrast, dy, dx, cutout centre y,
x), so seeding torch reproduces an augmentation and the training loop's RNG capture makes resume exact. Every
op is built from arithmetic, `gather`, `where` and masks, all with double-backward support, so R1's gradient of
D(aug(x)) w.r.t. x can itself be backpropagated.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

TRANSLATION_RATIO = 1 / 8  # max shift, fraction of the image size (official `rand_translation`, ratio=0.125)
CUTOUT_RATIO = 1 / 2  # side of the cut square, fraction of the image size (official `rand_cutout`, ratio=0.5)
DEFAULT_POLICY = "color,translation,cutout"
_EMPTY_POLICIES = ("", "none")


# ---------------------------------------------------------------- deterministic ops (explicit per-sample values)


def _per_sample(values: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    return values.to(images.dtype).reshape(-1, 1, 1, 1)


def adjust_brightness(images: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """images [N, C, H, W] + delta [N] (one constant per sample, in the images' units)."""
    return images + _per_sample(delta, images)


def adjust_saturation(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Scale each pixel's deviation from its channel mean by factor [N]; 0 gives grey, 1 the identity."""
    mean = images.mean(dim=1, keepdim=True)
    return (images - mean) * _per_sample(factor, images) + mean


def adjust_contrast(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Scale each image's deviation from its own mean over (C, H, W) by factor [N]."""
    mean = images.mean(dim=[1, 2, 3], keepdim=True)
    return (images - mean) * _per_sample(factor, images) + mean


def translate(images: torch.Tensor, shift_y: torch.Tensor, shift_x: torch.Tensor) -> torch.Tensor:
    """out[n, :, i, j] = images[n, :, i + shift_y[n], j + shift_x[n]], 0 where that falls outside the image.

    shift_y, shift_x: integer tensors [N] of any magnitude. (A positive shift moves the content up / left.)
    """
    n, c, h, w = images.shape
    # One gather over the flattened pixels moves every sample by its own shift in a single vectorised step;
    # source indices are clamped into the image and the pixels that came from outside then set to 0. Nothing
    # reads a shift back to the host, so on a GPU this queues without a sync.
    src_y = torch.arange(h, device=images.device) + shift_y.to(images.device).reshape(-1, 1)  # [N, H]
    src_x = torch.arange(w, device=images.device) + shift_x.to(images.device).reshape(-1, 1)  # [N, W]
    inside = ((src_y >= 0) & (src_y < h))[:, :, None] & ((src_x >= 0) & (src_x < w))[:, None, :]  # [N, H, W]
    src = src_y.clamp(0, h - 1)[:, :, None] * w + src_x.clamp(0, w - 1)[:, None, :]
    out = images.reshape(n, c, h * w).gather(2, src.reshape(n, 1, h * w).expand(n, c, h * w)).reshape(n, c, h, w)
    return torch.where(inside[:, None], out, torch.zeros([], dtype=out.dtype, device=out.device))


def cutout_mask(
    shape: Sequence[int],
    top: torch.Tensor,
    left: torch.Tensor,
    size_y: int,
    size_x: int,
    dtype: torch.dtype,
    device: torch.device,
) -> torch.Tensor:
    """[N, 1, H, W]: 0 on rows [top, top + size_y) x columns [left, left + size_x) of each sample (clipped to
    the image), 1 elsewhere. top, left: integer tensors [N], may be negative or run past the border."""
    n, _, h, w = shape
    ys = torch.arange(h, device=device)
    xs = torch.arange(w, device=device)
    top, left = top.to(device).reshape(-1, 1), left.to(device).reshape(-1, 1)
    in_rows = (ys >= top) & (ys < top + size_y)  # [N, H]
    in_cols = (xs >= left) & (xs < left + size_x)  # [N, W]
    cut = in_rows[:, :, None] & in_cols[:, None, :]
    return (~cut).to(dtype).reshape(n, 1, h, w)


def cutout(images: torch.Tensor, top: torch.Tensor, left: torch.Tensor, size_y: int, size_x: int) -> torch.Tensor:
    """Zero a size_y x size_x rectangle per sample (top-left corner at (top[n], left[n]), clipped)."""
    return images * cutout_mask(images.shape, top, left, size_y, size_x, images.dtype, images.device)


# ---------------------------------------------------------------- the random ops DiffAugment composes


def _uniform(images: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """[N] draws on U[low, high) from the images' device generator, in their dtype."""
    return torch.rand([images.shape[0]], dtype=images.dtype, device=images.device) * (high - low) + low


def random_brightness(images: torch.Tensor) -> torch.Tensor:
    return adjust_brightness(images, _uniform(images, -0.5, 0.5))


def random_saturation(images: torch.Tensor) -> torch.Tensor:
    return adjust_saturation(images, _uniform(images, 0.0, 2.0))


def random_contrast(images: torch.Tensor) -> torch.Tensor:
    return adjust_contrast(images, _uniform(images, 0.5, 1.5))


def max_shift(size: int, ratio: float = TRANSLATION_RATIO) -> int:
    """Largest translation along an axis of `size` pixels: size * ratio rounded half up (4 at 32 px)."""
    return int(size * ratio + 0.5)


def cutout_size(size: int, ratio: float = CUTOUT_RATIO) -> int:
    """Side of the cut square along an axis of `size` pixels: size * ratio rounded half up (16 at 32 px)."""
    return int(size * ratio + 0.5)


def random_translation(images: torch.Tensor) -> torch.Tensor:
    n, _, h, w = images.shape
    ry, rx = max_shift(h), max_shift(w)
    shift_y = torch.randint(-ry, ry + 1, [n], device=images.device)
    shift_x = torch.randint(-rx, rx + 1, [n], device=images.device)
    return translate(images, shift_y, shift_x)


def random_cutout(images: torch.Tensor) -> torch.Tensor:
    n, _, h, w = images.shape
    sy, sx = cutout_size(h), cutout_size(w)
    # Centre row on {0, ..., H} for an even side, {0, ..., H - 1} for an odd one (the official ranges; same for x).
    centre_y = torch.randint(0, h + 1 - sy % 2, [n], device=images.device)
    centre_x = torch.randint(0, w + 1 - sx % 2, [n], device=images.device)
    return cutout(images, centre_y - sy // 2, centre_x - sx // 2, sy, sx)


# The registry: policy name -> the random ops it applies, in order. Its keys are the valid names.
DIFFAUG_POLICIES: dict[str, tuple[Callable[[torch.Tensor], torch.Tensor], ...]] = {
    "color": (random_brightness, random_saturation, random_contrast),
    "translation": (random_translation,),
    "cutout": (random_cutout,),
}


def parse_policy(policy: str | Sequence[str] | None) -> tuple[str, ...]:
    """'color,translation,cutout' (or a list of names) -> ('color', 'translation', 'cutout'), in the given order.

    '' , 'none' and None give () (no augmentation). Raises ValueError naming an unknown, empty or repeated name
    together with the valid ones; use it to check `--diffaug-policy` before a run starts.
    """
    if policy is None:
        return ()
    text = policy if isinstance(policy, str) else ",".join(policy)
    if text.strip() in _EMPTY_POLICIES:
        return ()
    valid = ", ".join(DIFFAUG_POLICIES)
    names = tuple(name.strip() for name in text.split(","))
    for name in names:
        if name not in DIFFAUG_POLICIES:
            what = "an empty name" if not name else f"unknown name {name!r}"
            raise ValueError(
                f"DiffAugment policy {text!r} has {what}; valid names: {valid} (comma-separated, or 'none')"
            )
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(
            f"DiffAugment policy {text!r} lists {', '.join(repeated)} more than once; give each of {valid} at most once"
        )
    return names


class DiffAugment(torch.nn.Module):
    """DiffAugment(policy='color,translation,cutout'); forward(images [N, C, H, W] float) -> same shape and dtype.

    Stateless (no parameters or buffers); `init_kwargs` rebuilds it. An empty policy returns the input tensor.
    """

    def __init__(self, policy: str | Sequence[str] = DEFAULT_POLICY):
        super().__init__()
        self.policy = parse_policy(policy)
        self.init_kwargs = {"policy": ",".join(self.policy) or "none"}

    def extra_repr(self) -> str:
        return f"policy={self.init_kwargs['policy']!r}"

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if not (isinstance(images, torch.Tensor) and images.ndim == 4 and images.is_floating_point()):
            raise ValueError(
                f"DiffAugment expects float images [N, C, H, W], got "
                f"{getattr(images, 'dtype', type(images))} {tuple(getattr(images, 'shape', ()))}"
            )
        for name in self.policy:
            for op in DIFFAUG_POLICIES[name]:
                images = op(images)
        return images
