"""generate.py's command line (the usage text, USAGE, is what --help prints)."""

from __future__ import annotations

import math
import os

import click
import numpy as np
import torch

from dnnlib.cli import FiniteFloat
from training import checkpoint
from training.image_grid import save_image_grid, save_png
from training.output_folder import OutputError, staged_output
from training.sampling import NOISE_MODES, class_label, generate_images, load_ws, parse_range, synthesize_ws

USAGE = """Generate images with a trained generator (our snapshot or an official StyleGAN2-ADA .pkl).

Examples:

\b
  # Seeds 0..7 of digit 3 from README's first run, truncation 0.7: seed0000.png ... seed0007.png and grid.png
  python generate.py --network=runs/00000-digits32-cond-tiny-ce-noaug/network-snapshot-000024.pt --seeds=0-7 \\
      --class=3 --trunc=0.7 --outdir=out
\b
  # An unconditional network takes no --class
  python generate.py --network=snapshot.pt --seeds=0-15 --outdir=out
\b
  # Render the w that projector.py found (projected_w.npz, w [n, num_ws, w_dim]): proj00.png, ...
  python generate.py --network=snapshot.pt --projected-w=proj/projected_w.npz --outdir=out

Latent z of seed s is np.random.RandomState(s).randn(1, z_dim), as in StyleGAN2-ADA's generate.py, so the same
weights give the same images there and here. With --noise-mode=random, torch is seeded with s as well.
"""


def save_outputs(images: np.ndarray, names: list[str], outdir: str) -> list[str]:
    """<name>.png per image and grid.png (up to 8 columns, unused cells black), all or none; returns the paths."""
    gw = min(len(images), 8)
    gh = math.ceil(len(images) / gw)
    cells = np.zeros([gw * gh, *images.shape[1:]], dtype=np.uint8)
    cells[: len(images)] = images
    with staged_output(outdir) as place:
        for image, name in zip(images, names):
            save_png(place(f"{name}.png"), image)
        save_image_grid(cells.transpose(0, 3, 1, 2), place("grid.png"), drange=(0, 255), grid_size=(gw, gh))
    return [os.path.join(outdir, f"{name}.png") for name in [*names, "grid"]]


@click.command(help=USAGE)
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
    print(f'Loading networks from "{network_path}"...', flush=True)
    try:
        G = checkpoint.load_network(network_path, device=device)["G_ema"]
    except (checkpoint.CheckpointError, FileNotFoundError, OSError) as err:
        raise click.BadParameter(str(err), param_hint="--network") from None
    if G is None:
        raise click.BadParameter(f"{network_path} holds no G_ema", param_hint="--network")
    if ws is None:
        try:
            class_label(G, class_idx, device)
        except ValueError as err:
            raise click.UsageError(str(err)) from None
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
    try:
        paths = save_outputs(images, names, outdir)
    except OutputError as err:
        raise click.ClickException(str(err)) from None
    print(f"Wrote {len(paths) - 1} images and {paths[-1]}")
