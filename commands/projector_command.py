"""projector.py's command line (the usage text, USAGE, is what --help prints)."""

from __future__ import annotations

import os
import re

import click
import numpy as np
import torch

from dnnlib.cli import SEED_RANGE, Parsed
from metrics.detectors import DetectorNotFoundError, get_detector
from metrics.weight_files import DetectorFormatError
from torch_utils.script_device import script_device
from training import checkpoint, image_convert, projection
from training.image_grid import save_png
from training.output_folder import OutputError, staged_output

USAGE = """Project a target image into the W space of one or more generators (StyleGAN2-ADA's projector.py).

Examples:

\b
  # One network: target.png, proj.png, projected_w.npz, proj.mp4 (when imageio-ffmpeg is installed)
  python projector.py --network=runs/00003-ffhq-rlo/network-snapshot-001000.pt --target=face.png --outdir=out
\b
  # The paper's Figure 5: the same target projected into snapshots from the start and end of CE and RLO runs
  python projector.py --target=face.png --outdir=fig5 --compare-cols=2 --save-video=0 \\
      --network=runs/00000-ffhq-ce/network-snapshot-000000.pt --network=runs/00000-ffhq-ce/network-snapshot-005000.pt \\
      --network=runs/00001-ffhq-rlo/network-snapshot-000000.pt --network=runs/00001-ffhq-rlo/network-snapshot-005000.pt

The target is center-cropped to a square (the shorter side), resized to the network's resolution with Lanczos and
converted to its channels (RGB or greyscale; alpha is dropped). The optimisation is the official one: w starts at
the mean of 10k mapped z, Adam on w (one w broadcast to all layers) and on the per-layer noise maps, learning rate
ramped up over the first 5% and down (cosine) over the last 25% of the steps, decaying Gaussian noise added to w
over the first 75%, multi-scale autocorrelation penalty on the noise maps, which are renormalised after each step.
The distance is the LPIPS distance (squared distance of the VGG16 LPIPS embeddings), images box-downsampled to
256x256 when larger (as official) and pixel-replicated up to 32x32 when smaller (the least VGG16's five 2x2 max
pools accept). As in the official script, proj.png, the video and the reported distance use the projected w with
the network's own constant noise, so projected_w.npz alone reproduces proj.png.

Every run also writes compare.png (target left, then each projection labelled with its network file name and
final LPIPS distance) and projection.jsonl (one line per network: distances, steps, seconds). With several
--network, each network's proj.png, projected_w.npz and proj.mp4 go to a folder <outdir>/NN-<network name>/.
projected_w.npz holds w [1, num_ws, w_dim] as official (its generate.py --projected-w reads it).
"""


def _folder_name(index: int, label: str) -> str:
    """'01-00000-ffhq-ce_network-snapshot-000000' for label '00000-ffhq-ce/network-snapshot-000000.pt'."""
    stem = os.path.splitext(label)[0]
    return f"{index:02d}-" + (re.sub(r"[^A-Za-z0-9.-]+", "_", stem).strip("_") or "network")


# ----------------------------------------------------------------------------
# Command line.


def _load_generator(path: str) -> torch.nn.Module:
    """G_ema of a snapshot or official pickle, on the CPU (moved to the device only while it is projected)."""
    if not os.path.exists(path) and "://" not in path:
        raise click.BadParameter(f"no such file: {path}", param_hint="--network")
    try:
        G = checkpoint.load_network(path, device="cpu")["G_ema"]
    except (checkpoint.CheckpointError, FileNotFoundError, OSError) as err:
        raise click.BadParameter(str(err), param_hint="--network") from None
    if G is None:
        raise click.BadParameter(f"{path} holds no G_ema", param_hint="--network")
    return G


@click.command(help=USAGE)
@click.option(
    "--network",
    "network_paths",
    multiple=True,
    required=True,
    metavar="PATH",
    help="Snapshot (.pt) or official .pkl; give it several times to compare networks",
)
@click.option("--target", "target_path", required=True, metavar="FILE", help="Target image file to project to")
@click.option(
    "--num-steps", type=click.IntRange(min=1), default=1000, show_default=True, help="Number of optimization steps"
)
@click.option("--seed", type=SEED_RANGE, default=303, show_default=True, help="Random seed")
@click.option(
    "--save-video",
    type=bool,
    default=True,
    show_default=True,
    metavar="BOOL",
    help="Save an mp4 video of optimization progress (needs imageio-ffmpeg)",
)
@click.option("--outdir", required=True, metavar="DIR", help="Where to save the output images")
@click.option(
    "--class",
    "class_idx",
    type=int,
    metavar="INT",
    help="Class for the w statistics of a conditional network  [default: all classes]",
)
@click.option(
    "--compare-cols",
    type=click.IntRange(min=1),
    metavar="INT",
    help="Projections per row in compare.png  [default: all in one row]",
)
@click.option(
    "--detector-dir",
    type=click.Path(file_okay=False),
    metavar="DIR",
    help="Folder with vgg16.pt (or vgg16-397923af.pth + vgg.pth); searched before $RLO_DETECTOR_DIR",
)
@click.option(
    "--background",
    type=Parsed(image_convert.parse_colour, "colour"),
    default="white",
    show_default=True,
    metavar="COLOUR",
    help="What a transparent --target is composited over (dataset_tool.py's --background of the training set)",
)
@click.option("--device", type=click.Choice(["auto", "cuda", "cpu"]), default="auto", show_default=True)
def main(
    network_paths: tuple[str, ...],
    target_path: str,
    num_steps: int,
    seed: int,
    save_video: bool,
    outdir: str,
    class_idx: int | None,
    compare_cols: int | None,
    detector_dir: str | None,
    background: tuple[int, int, int],
    device: str,
) -> None:
    torch_device = script_device(device)

    # Everything that can fail fast does so before the first projection.
    networks = [_load_generator(path) for path in network_paths]
    shape = (networks[0].img_channels, networks[0].img_resolution)
    for path, G in zip(network_paths, networks):
        if (G.img_channels, G.img_resolution) != shape:
            raise click.BadParameter(
                f"{path} makes {G.img_channels}x{G.img_resolution}px images but "
                f"{network_paths[0]} makes {shape[0]}x{shape[1]}px; compared networks must match",
                param_hint="--network",
            )
        if class_idx is not None and not 0 <= class_idx < G.c_dim:
            raise click.BadParameter(
                f"--class={class_idx} is outside 0..{G.c_dim - 1} of {path}"
                if G.c_dim
                else f"--class given, but {path} is unconditional",
                param_hint="--class",
            )
    if shape[0] not in (1, 3):
        raise click.ClickException(f"the network makes {shape[0]}-channel images; the projector handles 1 or 3")
    try:
        target = projection.load_target(target_path, resolution=shape[1], channels=shape[0], background=background)
    except projection.TargetError as err:
        raise click.BadParameter(str(err), param_hint="--target") from None
    try:
        vgg16 = get_detector(
            "vgg16",
            torch_device,
            None if detector_dir is None else os.path.expanduser(detector_dir),
            need_lpips=True,
            verbose=True,
            purpose="projector.py (its LPIPS image distance)",
        )
    except (DetectorNotFoundError, DetectorFormatError) as err:
        raise click.ClickException(str(err)) from None

    if save_video and projection.video_support() is not None:
        print(f"Skipping proj.mp4: --save-video {projection.video_support()}; the other outputs are written.")
        save_video = False

    # Every output is staged and appears only when all are written: a full disk or a read-only folder leaves
    # --outdir as it was (training/output_folder.py).
    try:
        with staged_output(outdir) as place:
            save_png(place("target.png"), target)
            target_tensor = torch.from_numpy(target.transpose(2, 0, 1).copy())
            labels = projection.network_labels(list(network_paths))
            opts = projection.ProjectionOptions(num_steps=num_steps)
            records: list[dict] = []
            projections: list[np.ndarray] = []
            for index, (path, G, label) in enumerate(zip(network_paths, networks, labels)):
                folder = "" if len(networks) == 1 else _folder_name(index, label)
                print(f"Projecting {target_path} into {path} ({num_steps} steps)...")
                G = G.to(torch_device)
                result = projection.project(
                    G, target_tensor, vgg16, opts=opts, class_idx=class_idx, seed=seed, device=torch_device, desc=label
                )
                projected_w = result.w_steps[-1]
                proj = projection.synthesize_uint8(G, projected_w.unsqueeze(0))[0]
                save_png(place(os.path.join(folder, "proj.png")), proj)
                projection.save_projected_w(place(os.path.join(folder, "projected_w.npz")), projected_w)
                video = (
                    projection.write_video(
                        place(os.path.join(folder, "proj.mp4")), target, projection.iter_frames(G, result.w_steps)
                    )
                    if save_video
                    else False
                )
                print(
                    f"{label}: LPIPS {result.initial_distance:.4f} (w_avg) -> {result.final_distance:.4f} "
                    f"in {result.seconds:.1f} s"
                )
                projections.append(proj)
                records.append(
                    dict(
                        network=path,
                        label=label,
                        target=target_path,
                        outdir=folder or ".",
                        lpips=result.final_distance,
                        initial_lpips=result.initial_distance,
                        last_step_lpips=result.last_step_distance,
                        num_steps=num_steps,
                        seed=seed,
                        class_idx=class_idx,
                        seconds=result.seconds,
                        device=str(torch_device),
                        video=video,
                    )
                )
                projection.write_jsonl(place("projection.jsonl"), records)
                G.cpu()

            grid = projection.compare_grid(
                target,
                projections,
                [f"{r['label']}\nLPIPS = {r['lpips']:.4f}" for r in records],
                target_label=f"target\n{os.path.basename(target_path)}",
                cols=compare_cols,
            )
            save_png(place("compare.png"), grid)
    except OutputError as err:
        raise click.ClickException(str(err)) from None
    print(f"Wrote {outdir}/compare.png and projection.jsonl")
