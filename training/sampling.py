"""Images from seeds and from ws, as StyleGAN2-ADA's generate.py makes them: shared by generate.py,
style_mixing.py and compare.py's report.

The latent z of seed s is np.random.RandomState(s).randn(1, z_dim), as in the official script, so the same weights
give the same images there and here; with noise_mode 'random', torch is seeded with s as well. Non-finite images
(an overflow, e.g. from an absurd truncation) are refused rather than written as black.
"""

from __future__ import annotations

import re

import numpy as np
import torch

NOISE_MODES = ("const", "random", "none")


SEED_LIMIT = 2**32  # np.random.RandomState's seeds, as the official script draws z
MAX_IMAGES = 100_000  # one run's images (and one grid): larger sets go in several runs
PROGRESS_EVERY = 100  # a line every this many images, on a terminal or not


def parse_range(text: str) -> list[int]:
    """'0-3,7,10-11' -> [0, 1, 2, 3, 7, 10, 11] (inclusive ranges, order kept); seeds in [0, 2^32), at most
    MAX_IMAGES of them, counted before any list is built."""
    parts: list[tuple[int, int]] = []
    for part in text.split(","):
        part = part.strip()
        match = re.fullmatch(r"(\d+)-(\d+)", part) or re.fullmatch(r"(\d+)", part)
        if match is None:
            raise ValueError(f"{part!r} is not a non-negative integer or a range like 0-7")
        lo, hi = int(match.group(1)), int(match.groups()[-1])
        if hi < lo:
            raise ValueError(f"range {part!r} runs backwards")
        if hi >= SEED_LIMIT:
            raise ValueError(f"seed {hi} is outside [0, {SEED_LIMIT - 1}] (numpy's RandomState seeds)")
        parts.append((lo, hi))
    count = sum(hi - lo + 1 for lo, hi in parts)
    if count > MAX_IMAGES:
        raise ValueError(f"{count} seeds; one run writes at most {MAX_IMAGES} images (split the range)")
    return [seed for lo, hi in parts for seed in range(lo, hi + 1)]


def to_uint8(img: torch.Tensor) -> torch.Tensor:
    """G's [-1, 1] output -> uint8, same layout, with StyleGAN2-ADA's rounding (x * 127.5 + 128, clamped): the one
    conversion of generated images, so files, grids and metrics see the same pixels."""
    return (img * 127.5 + 128).clamp(0, 255).to(torch.uint8)


def finite_uint8(img: torch.Tensor, what: str) -> np.ndarray:
    """G's [-1, 1] output -> uint8 NHWC; ValueError naming `what` when it is not finite (meaningless images)."""
    if not bool(torch.isfinite(img).all()):
        raise ValueError(f"{what} gives non-finite images (an overflow): nothing was written")
    return to_uint8(img.permute(0, 2, 3, 1)).cpu().numpy()


def class_label(G: torch.nn.Module, class_idx: int | None, device: torch.device) -> torch.Tensor:
    """One-hot [1, c_dim] for a conditional G (class required); [1, 0] for an unconditional one. ValueError (in
    the words of the --class flag) for a class the network does not have."""
    label = torch.zeros([1, G.c_dim], device=device)
    if G.c_dim == 0:
        if class_idx is not None:
            raise ValueError(f"--class={class_idx} given, but the network is unconditional")
        return label
    if class_idx is None:
        raise ValueError(f"the network is conditional ({G.c_dim} classes): pass --class=<0..{G.c_dim - 1}>")
    if not 0 <= class_idx < G.c_dim:
        raise ValueError(f"--class={class_idx} is outside 0..{G.c_dim - 1}")
    label[:, class_idx] = 1
    return label


@torch.no_grad()
def generate_images(
    G: torch.nn.Module,
    seeds: list[int],
    truncation_psi: float = 1.0,
    class_idx: int | None = None,
    noise_mode: str = "const",
    device: torch.device = torch.device("cpu"),
) -> np.ndarray:
    """uint8 images [len(seeds), H, W, C] (NHWC), one per seed."""
    label = class_label(G, class_idx, device)
    images = []
    for done, seed in enumerate(seeds, 1):
        z = torch.from_numpy(np.random.RandomState(seed).randn(1, G.z_dim)).to(device)
        torch.manual_seed(seed)
        img = G(z, label, truncation_psi=truncation_psi, noise_mode=noise_mode)
        images.append(finite_uint8(img, f"--trunc={truncation_psi:g} with seed {seed}")[0])
        if done % PROGRESS_EVERY == 0:
            print(f"Generated {done} of {len(seeds)} images", flush=True)
    return np.stack(images)


@torch.no_grad()
def synthesize_ws(
    G: torch.nn.Module, ws: np.ndarray, noise_mode: str = "const", device: torch.device = torch.device("cpu")
) -> np.ndarray:
    """uint8 images [n, H, W, C] from ws [n, num_ws, w_dim] (e.g. projector.py's projected_w.npz)."""
    expected = (G.num_ws, G.w_dim)
    if ws.ndim != 3 or tuple(ws.shape[1:]) != expected:
        raise ValueError(
            f"projected w has shape {tuple(ws.shape)}; this network needs [n, {expected[0]}, "
            f"{expected[1]}] (num_ws, w_dim)"
        )
    if not np.isfinite(ws).all():
        raise ValueError("projected w holds NaN or infinite values")
    images = []
    for i, w in enumerate(torch.from_numpy(np.asarray(ws, dtype=np.float32)).to(device)):
        img = G.synthesis(w.unsqueeze(0), noise_mode=noise_mode)
        images.append(finite_uint8(img, f"projected w number {i}")[0])
    return np.stack(images)


def load_ws(path: str) -> np.ndarray:
    """The 'w' array of an .npz file, read without pickles."""
    try:
        with np.load(path, allow_pickle=False) as data:
            if "w" not in data:
                raise ValueError(f'{path} has no array named "w" (found: {", ".join(data.files) or "none"})')
            return data["w"]
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read projected w from {path}: {err}") from None
