"""style_mixing.py's command line (the usage text, USAGE, is what --help prints)."""

from __future__ import annotations

import os

import click
import numpy as np
import torch

from dnnlib.cli import FiniteFloat
from training import checkpoint
from training.image_grid import save_png
from training.output_folder import OutputError, staged_output
from training.sampling import NOISE_MODES, class_label, finite_uint8, parse_range

USAGE = """Style mixing: the w of each row seed with some of its layers taken from each column seed (StyleGAN2-ADA's
style_mixing.py, same options and outputs).

Examples:

\b
  # The official example: rows 85,100,75, columns 55,821,1789, coarse styles 0-6 from the columns
  python style_mixing.py --network=runs/00000-digits32-cond-tiny-ce-noaug/network-snapshot-000024.pt \\
      --class=3 --rows=85,100,75 --cols=55,821,1789 --styles=0-6 --outdir=out
\b
  # An official pickle, fine styles only
  python style_mixing.py --network=ffhq.pkl --rows=85,100,75 --cols=55,821,1789 --styles=8-13 --outdir=out

Writes <row>-<col>.png for every crossover (the row seed's w, layers --styles from the column seed's w),
<s>-<s>.png for every seed alone, and grid.png: the column seeds' images along the top, the row seeds' down the
left, the crossovers in between (top-left cell black). z of seed s is generate.py's: np.random.RandomState(s), so
<s>-<s>.png is generate.py's image of seed s with the same --trunc and --noise-mode. With --noise-mode=random the
noise of every image is drawn after torch.manual_seed(row seed), as generate.py seeds it.
"""


def _seed_list(ctx: click.Context, param: click.Parameter, value: str | None) -> list[int] | None:
    if value is None:
        return None
    try:
        values = parse_range(value)
    except ValueError as err:
        raise click.BadParameter(str(err)) from None
    if not values:
        raise click.BadParameter("empty")
    return values


@torch.no_grad()
def style_mix(
    G: torch.nn.Module,
    row_seeds: list[int],
    col_seeds: list[int],
    col_styles: list[int],
    truncation_psi: float = 1.0,
    noise_mode: str = "const",
    class_idx: int | None = None,
    device: torch.device = torch.device("cpu"),
) -> dict[tuple[int, int], np.ndarray]:
    """{(row, col): uint8 [H, W, C]}: (s, s) for every seed alone, (row, col) the row's w with layers
    `col_styles` from the column's w. Each image is made on its own (batch 1), as generate.py makes it."""
    bad = [layer for layer in col_styles if not 0 <= layer < G.num_ws]
    if bad:
        raise ValueError(f"layer {bad[0]} is outside 0..{G.num_ws - 1} of this network (num_ws = {G.num_ws})")
    label = class_label(G, class_idx, device)
    ws = {}
    for seed in dict.fromkeys(row_seeds + col_seeds):
        z = torch.from_numpy(np.random.RandomState(seed).randn(1, G.z_dim)).to(device)
        ws[seed] = G.mapping(z, label, truncation_psi=truncation_psi)

    def synthesize(w: torch.Tensor, noise_seed: int) -> np.ndarray:
        torch.manual_seed(noise_seed)
        return finite_uint8(G.synthesis(w, noise_mode=noise_mode), f"--trunc={truncation_psi:g}")[0]

    images = {(seed, seed): synthesize(w, seed) for seed, w in ws.items()}
    for row in row_seeds:
        for col in col_seeds:
            w = ws[row].clone()
            w[:, col_styles] = ws[col][:, col_styles]
            images[(row, col)] = synthesize(w, row)
    return images


def mixing_grid(images: dict[tuple[int, int], np.ndarray], row_seeds: list[int], col_seeds: list[int]) -> np.ndarray:
    """uint8 [(rows + 1) H, (cols + 1) W, C]: column seeds on top, row seeds on the left, crossovers inside."""
    height, width, channels = next(iter(images.values())).shape
    grid = np.zeros([(len(row_seeds) + 1) * height, (len(col_seeds) + 1) * width, channels], dtype=np.uint8)
    for j, col in enumerate(col_seeds, 1):
        grid[:height, j * width : (j + 1) * width] = images[(col, col)]
    for i, row in enumerate(row_seeds, 1):
        grid[i * height : (i + 1) * height, :width] = images[(row, row)]
        for j, col in enumerate(col_seeds, 1):
            grid[i * height : (i + 1) * height, j * width : (j + 1) * width] = images[(row, col)]
    return grid


@click.command(help=USAGE)
@click.option("--network", "network_path", help="Snapshot (.pt) or official .pkl", required=True, metavar="PATH")
@click.option(
    "--rows",
    "row_seeds",
    callback=_seed_list,
    required=True,
    metavar="LIST",
    help="Seeds of the rows, e.g. 85,100,75 or 0-3",
)
@click.option(
    "--cols",
    "col_seeds",
    callback=_seed_list,
    required=True,
    metavar="LIST",
    help="Seeds of the columns, e.g. 55,821,1789",
)
@click.option(
    "--styles",
    "col_styles",
    callback=_seed_list,
    default="0-6",
    show_default=True,
    metavar="LIST",
    help="Layers (ws) taken from the column seed",
)
@click.option("--trunc", "truncation_psi", type=FiniteFloat(), default=1.0, show_default=True, help="Truncation psi")
@click.option("--noise-mode", type=click.Choice(NOISE_MODES), default="const", show_default=True, help="Noise mode")
@click.option("--class", "class_idx", type=int, metavar="INT", help="Class index (conditional networks)")
@click.option("--outdir", required=True, metavar="DIR", help="Where to save the images")
def main(
    network_path: str,
    row_seeds: list[int],
    col_seeds: list[int],
    col_styles: list[int],
    truncation_psi: float,
    noise_mode: str,
    class_idx: int | None,
    outdir: str,
) -> None:
    device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    print(f'Loading networks from "{network_path}"...', flush=True)
    try:
        G = checkpoint.load_network(network_path, device=device)["G_ema"]
    except (checkpoint.CheckpointError, FileNotFoundError, OSError) as err:
        raise click.BadParameter(str(err), param_hint="--network") from None
    if G is None:
        raise click.BadParameter(f"{network_path} holds no G_ema", param_hint="--network")
    try:
        class_label(G, class_idx, device)
    except ValueError as err:
        raise click.UsageError(str(err)) from None
    bad = [layer for layer in col_styles if not 0 <= layer < G.num_ws]
    if bad:
        raise click.BadParameter(
            f"layer {bad[0]} is outside 0..{G.num_ws - 1} of this network (num_ws = {G.num_ws})", param_hint="--styles"
        )
    try:
        images = style_mix(G, row_seeds, col_seeds, col_styles, truncation_psi, noise_mode, class_idx, device)
    except ValueError as err:  # non-finite images
        raise click.BadParameter(str(err), param_hint="--trunc") from None
    try:
        with staged_output(outdir) as place:
            for (row, col), image in images.items():
                save_png(place(f"{row}-{col}.png"), image)
            save_png(place("grid.png"), mixing_grid(images, row_seeds, col_seeds))
    except OutputError as err:
        raise click.ClickException(str(err)) from None
    print(f"Wrote {len(images)} images and {os.path.join(outdir, 'grid.png')}")
