"""calc_metrics.py's command line (the usage text, USAGE, is what --help prints)."""

from __future__ import annotations

import copy
import glob
import json
import os
import re
import tempfile
from typing import Any

import click
import torch

from metrics import detectors, metric_main, metric_utils
from metrics.detectors import DetectorNotFoundError
from metrics.weight_files import DetectorFormatError
from torch_utils.script_device import script_device
from training.checkpoint import CheckpointError, load_network
from training.dataset import DatasetError

USAGE = """Compute quality metrics (FID, KID, precision/recall, PPL, IS) of a snapshot, or of every snapshot of a run.

Examples:

\b
  # FID of one snapshot against the dataset it was trained on (metric-fid50k_full.jsonl is written beside it)
  python calc_metrics.py --metrics=fid50k_full --network=runs/00003-ffhq-rlo/network-snapshot-001000.pt
\b
  # A quick look: 5k generated images (reported as fid5k_full), detectors from a folder
  python calc_metrics.py --metrics=fid50k_full --num-gen=5000 --network=snap.pt --detector-dir=~/detectors
\b
  # Every snapshot of a run (skips those already scored), e.g. for plot_metrics.py
  python calc_metrics.py --metrics=fid50k_full --run-dir=runs/00003-ffhq-rlo --data=~/datasets/ffhq.zip --mirror=1

Metrics: fid50k_full, kid50k_full, pr50k3_full, ppl2_wend, is50k; legacy fid50k, kid50k, pr50k3, ppl_zfull,
ppl_wfull, ppl_zend, ppl_wend; the same with other counts (fid5k_full, kid1k, is10k, ppl2_wend_5k, ...).
Offline, for the embedded digits: fdd2k_full, kdd2k_full, cls2k (a digits classifier trained here on first use;
not comparable to FID/KID/IS). Offline, for any images: swd16k, swd2k (sliced Wasserstein distance, no file).
The detectors are local files, never downloaded: see `--detector-dir` and docs/metrics.md.
"""

SNAPSHOT_RE = re.compile(r"^network-snapshot-(\d+)(?:-(\d{3}))?\.(pt|pkl)$")  # kimg, and images for sub-kimg ticks


def parse_metric_list(text: str, num_gen: int | None) -> list[str]:
    """'fid50k_full,kid50k_full' -> validated names, renamed for --num-gen; 'none' -> []."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if names == ["none"]:
        return []
    out = []
    for name in names:
        metric_main.parse_metric(name)  # ValueError naming the valid metrics
        out.append(metric_main.with_num_gen(name, num_gen) if num_gen is not None else name)
    return out


def detector_needs(metric: str) -> tuple[str, bool]:
    """(detector kind, needs LPIPS weights) of a metric name."""
    return metric_main.detector_kind(metric), metric_main.parse_metric(metric).family == "ppl"


def check_detectors(metrics: list[str], detector_dir: str | None) -> None:
    """Fail before any heavy work when a detector file is missing (DetectorNotFoundError with the full story)."""
    for kind, need_lpips in sorted({detector_needs(metric) for metric in metrics}):
        detectors.locate_detector(kind, detector_dir, need_lpips=need_lpips)


def list_snapshots(run_dir: str) -> list[str]:
    """network-snapshot-<kimg>.pt/.pkl files of a run, in kimg order."""
    found = []
    for path in glob.glob(os.path.join(glob.escape(run_dir), "network-snapshot-*")):
        match = SNAPSHOT_RE.match(os.path.basename(path))
        if match:
            found.append((int(match.group(1)), int(match.group(2) or 0), path))
    return [path for _kimg, _img, path in sorted(found)]


def already_scored(run_dir: str, metric: str) -> set[str]:
    """snapshot_pkl values (relative to run_dir) already in metric-<metric>.jsonl."""
    path = os.path.join(run_dir, f"metric-{metric}.jsonl")
    done = set()
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as file:
            for line in file:
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if entry.get("snapshot_pkl"):
                    done.add(os.path.normpath(entry["snapshot_pkl"]))
    return done


def dataset_kwargs_for(
    G: torch.nn.Module, training_set_kwargs: dict | None, data: str | None, mirror: bool | None, where: str
) -> dict:
    """Dataset options as StyleGAN2-ADA's calc_metrics: --data or the snapshot's, at G's resolution and labels."""
    if data is not None:
        kwargs: dict[str, Any] = dict(path=data)
    elif training_set_kwargs:
        kwargs = copy.deepcopy(dict(training_set_kwargs))
        kwargs.pop("class_name", None)
    else:
        raise click.ClickException(f"{where} does not record its dataset; pass --data")
    kwargs["resolution"] = G.img_resolution
    kwargs["use_labels"] = G.c_dim != 0
    if mirror is not None:
        kwargs["xflip"] = bool(mirror)
    return kwargs


def metrics_process(rank: int, args: dict, temp_dir: str) -> list[dict]:
    """Compute every metric in one process (rank); returns the results (meaningful on rank 0)."""
    num_gpus, device = args["num_gpus"], torch.device(args["device"])
    if num_gpus > 1:
        backend = "nccl" if device.type == "cuda" else "gloo"
        init_file = os.path.abspath(os.path.join(temp_dir, ".torch_distributed_init"))
        torch.distributed.init_process_group(
            backend=backend, init_method=f"file://{init_file}", rank=rank, world_size=num_gpus
        )
    if device.type == "cuda":
        device = torch.device("cuda", rank)
        torch.cuda.set_device(device)
    results = []
    try:
        progress = metric_utils.ProgressMonitor(verbose=args["verbose"])
        for metric in args["metrics"]:
            if rank == 0 and args["verbose"]:
                print(f"Calculating {metric}...", flush=True)
            result = metric_main.calc_metric(
                metric=metric,
                G=args["G"],
                dataset_kwargs=args["dataset_kwargs"],
                num_gpus=num_gpus,
                rank=rank,
                device=device,
                progress=progress,
                detector_dir=args["detector_dir"],
            )
            if rank == 0:
                metric_main.report_metric(result, run_dir=args["run_dir"], snapshot_pkl=args["snapshot"])
            results.append(result)
    finally:
        if num_gpus > 1:
            torch.distributed.destroy_process_group()
    return results


def _spawn_target(rank: int, args: dict, temp_dir: str) -> None:
    metrics_process(rank, args, temp_dir)


def score_snapshot(
    snapshot: str,
    metrics: list[str],
    data: str | None,
    mirror: bool | None,
    gpus: int,
    device: str,
    detector_dir: str | None,
    verbose: bool,
    flag: str = "--network",
) -> list[dict]:
    """Load a snapshot's G_ema and compute `metrics`, appending to metric-<name>.jsonl beside the snapshot.

    `flag` is the option that named the snapshot (--network, or --run-dir for its snapshots), named in refusals.
    """
    try:
        network = load_network(snapshot)
    except (CheckpointError, OSError) as err:  # a damaged or hostile file: its one-line reason, no traceback
        raise click.ClickException(f"{flag}: {err}") from None  # one line: the file is wrong, not the usage
    G = network["G_ema"] if network.get("G_ema") is not None else network["G"]
    if G is None:
        raise click.ClickException(f"{snapshot} holds no generator (G_ema or G)")
    needs_data = any(not m.startswith("ppl") for m in metrics) or G.c_dim > 0  # PPL alone needs no images
    dataset_kwargs = (
        dataset_kwargs_for(G, network.get("training_set_kwargs"), data, mirror, snapshot) if needs_data else {}
    )
    for metric in metrics:  # a digits-only metric on other data means nothing: refuse before any work
        try:
            metric_main.check_metric_dataset(metric, dataset_kwargs)
        except metric_main.MetricDatasetError as err:
            raise click.ClickException(f"--metrics={metric}: {err}") from None
    run_dir = os.path.dirname(os.path.abspath(snapshot)) if os.path.isfile(snapshot) else None
    if run_dir is not None and not os.access(run_dir, os.W_OK):  # said before the work, not after it
        print(f"note: {run_dir} is not writable: the results are printed, not appended to metric-*.jsonl")
        run_dir = None
    args = dict(
        G=G.eval().requires_grad_(False).cpu(),
        metrics=metrics,
        dataset_kwargs=dataset_kwargs,
        num_gpus=gpus,
        device=device,
        detector_dir=detector_dir,
        verbose=verbose,
        run_dir=run_dir,
        snapshot=os.path.abspath(snapshot),
    )
    if verbose:
        unit = (
            ("GPU" if device == "cuda" else "process") if gpus == 1 else ("GPUs" if device == "cuda" else "processes")
        )
        print(f"Scoring {snapshot} ({', '.join(metrics)}) on {gpus} {unit}", flush=True)
    with tempfile.TemporaryDirectory() as temp_dir:
        if gpus == 1:
            return metrics_process(0, args, temp_dir)
        torch.multiprocessing.spawn(fn=_spawn_target, args=(args, temp_dir), nprocs=gpus)
    return []


@click.command(help=USAGE)
@click.option("--network", "network_pkl", metavar="PATH", help="Snapshot to score (ours .pt or StyleGAN2-ADA .pkl)")
@click.option("--run-dir", metavar="DIR", help="Score every network-snapshot-* of this training run instead")
@click.option(
    "--metrics",
    "metrics_text",
    default="fid50k_full",
    show_default=True,
    metavar="LIST",
    help='Comma-separated metric names, or "none"',
)
@click.option("--data", metavar="PATH", help="Dataset to compare with  [default: the one recorded in the snapshot]")
@click.option("--mirror", type=bool, metavar="BOOL", help="Dataset x-flips, as in training  [default: as recorded]")
@click.option(
    "--gpus", type=click.IntRange(min=1), default=1, show_default=True, help="Number of GPUs (on CPU: processes) to use"
)
@click.option(
    "--num-gen",
    type=click.IntRange(min=2),
    metavar="INT",
    help="Generate this many images instead (renames the metric: fid50k_full -> fid5k_full)",
)
@click.option(
    "--detector-dir",
    type=click.Path(file_okay=False),
    metavar="DIR",
    help="Folder with the detector files (searched before $RLO_DETECTOR_DIR and the cache)",
)
@click.option("--device", type=click.Choice(["auto", "cuda", "cpu"]), default="auto", show_default=True)
@click.option(
    "--skip-done/--no-skip-done",
    default=True,
    show_default=True,
    help="With --run-dir: skip snapshots already in metric-<name>.jsonl",
)
@click.option("--verbose", type=bool, default=True, show_default=True, metavar="BOOL", help="Print progress")
def main(network_pkl, run_dir, metrics_text, data, mirror, gpus, num_gen, detector_dir, device, skip_done, verbose):
    if (network_pkl is None) == (run_dir is None):
        raise click.UsageError("pass exactly one of --network and --run-dir")
    try:
        metrics = parse_metric_list(metrics_text, num_gen)
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="--metrics") from None
    device = script_device(device).type
    if device == "cuda" and gpus > torch.cuda.device_count():
        raise click.BadParameter(f"{gpus} GPUs requested, {torch.cuda.device_count()} available", param_hint="--gpus")
    if detector_dir is not None:
        detector_dir = os.path.expanduser(detector_dir)
    try:
        check_detectors(metrics, detector_dir)
    except DetectorNotFoundError as err:
        raise click.ClickException(str(err)) from None

    if network_pkl is not None:
        if not os.path.exists(network_pkl) and "://" not in network_pkl:
            raise click.BadParameter(f"no such file: {network_pkl}", param_hint="--network")
        jobs = [(network_pkl, metrics)]
    else:
        if not os.path.isdir(run_dir):
            raise click.BadParameter(f"not a folder: {run_dir}", param_hint="--run-dir")
        snapshots = list_snapshots(run_dir)
        if not snapshots:
            raise click.ClickException(f"{run_dir} holds no network-snapshot-<kimg>.pt/.pkl files")
        jobs = []
        for snapshot in snapshots:
            todo = [
                m
                for m in metrics
                if not (
                    skip_done and os.path.normpath(os.path.relpath(snapshot, run_dir)) in already_scored(run_dir, m)
                )
            ]
            if todo:
                jobs.append((snapshot, todo))
            elif verbose:
                print(f"{os.path.basename(snapshot)}: already scored, skipping")
    for snapshot, todo in jobs:
        try:
            flag = "--network" if network_pkl is not None else "--run-dir"
            score_snapshot(snapshot, todo, data, mirror, gpus, device, detector_dir, verbose, flag)
        except (DatasetError, DetectorFormatError) as err:  # a damaged image or detector file: one line naming it
            raise click.ClickException(str(err)) from None
