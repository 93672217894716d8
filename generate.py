"""Generate images with a trained generator (our snapshot or an official StyleGAN2-ADA .pkl).

Examples:

\b
  # Seeds 0..7 of a digits run, truncation 0.7: seed0000.png ... seed0007.png and grid.png
  python generate.py --network=runs/00000-digits32-tiny-ce-ada/network-snapshot-000008.pt --seeds=0-7 \\
      --trunc=0.7 --outdir=out
\b
  # Class 3 of a conditional network
  python generate.py --network=snapshot.pt --seeds=0-15 --class=3 --outdir=out
\b
  # Render the w that projector.py found (projected_w.npz, w [n, num_ws, w_dim]): proj00.png, ...
  python generate.py --network=snapshot.pt --projected-w=proj/projected_w.npz --outdir=out

Latent z of seed s is np.random.RandomState(s).randn(1, z_dim), as in StyleGAN2-ADA's generate.py, so the same
weights give the same images there and here. With --noise-mode=random, torch is seeded with s as well.
"""

from __future__ import annotations

import math
import os
import re

import click
import numpy as np
import torch

from dnnlib.cli import FiniteFloat
from training import checkpoint
from training.image_grid import save_image_grid, save_png

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


def to_uint8(img: torch.Tensor, what: str) -> np.ndarray:
    """G's [-1, 1] output -> uint8 NHWC; ValueError naming `what` when it is not finite (meaningless images)."""
    if not bool(torch.isfinite(img).all()):
        raise ValueError(f"{what} gives non-finite images (an overflow): nothing was written")
    return (img.permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8).cpu().numpy()


def class_label(G: torch.nn.Module, class_idx: int | None, device: torch.device) -> torch.Tensor:
    """One-hot [1, c_dim] for a conditional G (class required); [1, 0] for an unconditional one."""
    label = torch.zeros([1, G.c_dim], device=device)
    if G.c_dim == 0:
        if class_idx is not None:
            raise click.UsageError(f"--class={class_idx} given, but the network is unconditional")
        return label
    if class_idx is None:
        raise click.UsageError(f"the network is conditional ({G.c_dim} classes): pass --class=<0..{G.c_dim - 1}>")
    if not 0 <= class_idx < G.c_dim:
        raise click.UsageError(f"--class={class_idx} is outside 0..{G.c_dim - 1}")
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
        images.append(to_uint8(img, f"--trunc={truncation_psi:g} with seed {seed}")[0])
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
        images.append(to_uint8(img, f"projected w number {i}")[0])
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


def save_outputs(images: np.ndarray, names: list[str], outdir: str) -> list[str]:
    """<name>.png per image and grid.png (up to 8 columns, unused cells black); returns the paths."""
    os.makedirs(outdir, exist_ok=True)
    paths = []
    for image, name in zip(images, names):
        path = os.path.join(outdir, f"{name}.png")
        save_png(path, image)
        paths.append(path)
    gw = min(len(images), 8)
    gh = math.ceil(len(images) / gw)
    cells = np.zeros([gw * gh, *images.shape[1:]], dtype=np.uint8)
    cells[: len(images)] = images
    grid_path = os.path.join(outdir, "grid.png")
    save_image_grid(cells.transpose(0, 3, 1, 2), grid_path, drange=(0, 255), grid_size=(gw, gh))
    return paths + [grid_path]


@click.command(help=__doc__)
@click.option("--network", "network_path", help="Snapshot (.pt) or official .pkl", required=True, metavar="PATH")
@click.option("--seeds", help="Seeds, e.g. 0-7 or 1,5,9-11", metavar="LIST")
@click.option("--projected-w", help="Render the ws of this .npz (projector.py output) instead of seeds", metavar="FILE")
@click.option("--trunc", "truncation_psi", help="Truncation psi [default: 1]", type=FiniteFloat(), default=1.0)
@click.option("--class", "class_idx", help="Class index (conditional networks)", type=int, metavar="INT")
@click.option("--noise-mode", help="Noise mode [default: const]", type=click.Choice(NOISE_MODES), default="const")
@click.option("--outdir", help="Where to save the images", required=True, metavar="DIR")
def main(
    network_path: str,
    seeds: str | None,
    projected_w: str | None,
    truncation_psi: float,
    class_idx: int | None,
    noise_mode: str,
    outdir: str,
) -> None:
    if (seeds is None) == (projected_w is None):
        raise click.UsageError("give exactly one of --seeds and --projected-w")
    ws = None
    if projected_w is not None:
        try:
            ws = load_ws(projected_w)
        except ValueError as err:
            raise click.BadParameter(str(err), param_hint="--projected-w") from None
    else:
        try:
            seed_list = parse_range(seeds)
        except ValueError as err:
            raise click.BadParameter(str(err), param_hint="--seeds") from None
        if not seed_list:
            raise click.BadParameter("no seeds given", param_hint="--seeds")
    device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    print(f'Loading networks from "{network_path}"...')
    try:
        G = checkpoint.load_network(network_path, device=device)["G_ema"]
    except (checkpoint.CheckpointError, FileNotFoundError, OSError) as err:
        raise click.BadParameter(str(err), param_hint="--network") from None
    if G is None:
        raise click.BadParameter(f"{network_path} holds no G_ema", param_hint="--network")
    if ws is not None:
        try:
            images = synthesize_ws(G, ws, noise_mode, device)
        except ValueError as err:
            raise click.BadParameter(str(err), param_hint="--projected-w") from None
        names = [f"proj{i:02d}" for i in range(len(images))]
    else:
        try:
            images = generate_images(G, seed_list, truncation_psi, class_idx, noise_mode, device)
        except ValueError as err:
            raise click.BadParameter(str(err), param_hint="--trunc") from None
        names = [f"seed{seed:04d}" for seed in seed_list]
    paths = save_outputs(images, names, outdir)
    print(f"Wrote {len(paths) - 1} images and {paths[-1]}")


if __name__ == "__main__":
    main()
