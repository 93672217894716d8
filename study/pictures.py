"""The report's pictures and its assembly: sample grids of each variant's latest scored snapshot, a projection
of one training image through each (the Figure 5 of the paper), and the report folder they join.
"""

from __future__ import annotations

import json
import os

import click
import numpy as np
import PIL.Image
import torch

from metrics import detectors
from study import folder as study_folder
from study import report as study_report
from training import checkpoint, projection, sampling
from training.dataset import open_dataset
from training.image_grid import save_png

PROJECTION_SEED = 303  # projector.py's default
SAMPLE_SEEDS = 8  # z of generate.py's seeds 0..7 in the sample grids
DEFAULT_PROJ_STEPS = 1000  # projector.py's default


# ----------------------------------------------------------------------------------------------------
# The report: tables and curves (study.report), sample grids and projections (training.sampling, training.projection).


def _device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def _latest_scored(run: study_report.RunResult) -> study_report.Evaluation | None:
    return run.evaluations[-1] if run.evaluations else None


def sample_section(results: study_report.StudyResults, folder: str, num: int = SAMPLE_SEEDS) -> str:
    """samples_seed<s>.png per training seed: z of generate.py's seeds 0..num-1 through each variant's G_ema."""
    device, figures = _device(), []
    for seed in results.seeds:
        rows, labels = [], []
        for variant in results.variants:
            run = results.runs.get((variant, seed))
            last = _latest_scored(run) if run is not None else None
            if last is None:
                continue
            G = checkpoint.load_network(last.snapshot, device=device)["G_ema"]
            rows.append(sampling.generate_images(G, list(range(num)), 1.0, 0 if G.c_dim else None, "const", device))
            labels.append(f"{variant} {last.kimg:g} kimg" + ("" if run.finished else " (unfinished)"))
        if rows:
            name = f"samples_seed{seed}.png"
            save_png(
                os.path.join(folder, name),
                study_report.labelled_rows(
                    rows,
                    labels,
                    header=f"training seed {seed}: the same z (generate.py seeds 0-{num - 1}) in every row",
                ),
            )
            figures.append((seed, name))
    if not figures:
        return "## Samples\n\nNo snapshots yet.\n"
    lines = [
        "## Samples",
        "",
        f"The same z through the G_ema of each variant's last snapshot (truncation 1, constant "
        f"noise; z of seed s is generate.py's np.random.RandomState(s), s = 0..{num - 1}; class 0 for "
        "conditional networks): one row per variant, one figure per training seed.",
        "",
    ]
    lines += [f"![samples, training seed {figures[0][0]}]({figures[0][1]})", ""]
    if len(figures) > 1:
        lines += ["Other training seeds: " + ", ".join(f"[seed {s}]({n})" for s, n in figures[1:]), ""]
    return "\n".join(lines)


def _dataset_image(snapshot: str) -> np.ndarray:
    """The first training image of the run's dataset, uint8 [H, W, C]."""
    kwargs = dict(checkpoint.load_network(snapshot)["training_set_kwargs"] or {})
    image = open_dataset(**kwargs)[0][0]
    return np.asarray(image).transpose(1, 2, 0)


def projection_section(
    results: study_report.StudyResults, folder: str, steps: int, target_path: str | None, detector_dir: str | None
) -> str:
    """Figure 5: one target projected into the first and last snapshot of each variant's first-seed run."""
    title = "## Projection (Figure 5)"
    if steps == 0:
        return f"{title}\n\nSkipped (--proj-steps=0).\n"
    try:
        detectors.locate_detector("vgg16", detector_dir, need_lpips=True)
    except detectors.DetectorNotFoundError:
        return (
            f"{title}\n\nSkipped: projector.py's LPIPS distance needs the VGG16 file (`vgg16.pt`, or "
            "`vgg16-397923af.pth` + `vgg.pth`), which is not on this machine (see docs/metrics.md), "
            "then rerun `compare.py report`.\n"
        )
    seed = results.seeds[0]
    networks = []
    for variant in results.variants:
        run = results.runs.get((variant, seed))
        if run is not None and run.evaluations:
            ends = [run.evaluations[0], run.evaluations[-1]] if len(run.evaluations) > 1 else run.evaluations
            networks += [(f"{variant} {e.kimg:g} kimg", e.snapshot) for e in ends]
    if not networks:
        return f"{title}\n\nNo snapshots yet.\n"
    if target_path is None:
        target, target_label = _dataset_image(networks[0][1]), "target: training image 0"
    else:
        G0 = checkpoint.load_network(networks[0][1])["G_ema"]
        try:
            target = projection.load_target(target_path, G0.img_resolution, G0.img_channels)
        except projection.TargetError as err:
            raise click.BadParameter(str(err), param_hint="--proj-target") from None
        target_label = f"target\n{os.path.basename(target_path)}"
    rel = [study_folder.relpath_within(path, results.study_dir) for _, path in networks]
    wanted = dict(networks=rel, steps=steps, target=target_path or "training image 0", seed=PROJECTION_SEED)
    records_path = os.path.join(folder, "projection.jsonl")
    records = _read_records(records_path)
    if not (
        records
        and [r.get("network") for r in records] == rel
        and all(r.get("num_steps") == steps and r.get("target") == wanted["target"] for r in records)
    ):
        device = _device()
        vgg16 = detectors.get_detector(
            "vgg16", device, detector_dir, need_lpips=True, purpose="compare.py report (the projection figure)"
        )
        target_tensor = torch.from_numpy(target.transpose(2, 0, 1).copy())
        records = []
        for (label, path), relative in zip(networks, rel):
            G = checkpoint.load_network(path, device=device)["G_ema"]
            result = projection.project(
                G,
                target_tensor,
                vgg16,
                opts=projection.ProjectionOptions(num_steps=steps),
                seed=PROJECTION_SEED,
                device=device,
                progress=False,
                desc=label,
            )
            proj = projection.synthesize_uint8(G, result.w_steps[-1].unsqueeze(0))[0]
            save_png(os.path.join(folder, f"projection_{len(records):02d}.png"), proj)
            records.append(
                dict(
                    network=relative,
                    label=label,
                    target=wanted["target"],
                    lpips=result.final_distance,
                    initial_lpips=result.initial_distance,
                    num_steps=steps,
                    seed=PROJECTION_SEED,
                    seconds=result.seconds,
                    image=f"projection_{len(records):02d}.png",
                )
            )
            projection.write_jsonl(records_path, records)
    projections = [np.asarray(_read_png(os.path.join(folder, r["image"]))) for r in records]
    grid = projection.compare_grid(
        target,
        projections,
        [f"{r['label']}\nLPIPS = {r['lpips']:.4f}" for r in records],
        target_label=target_label,
        cols=2,
    )
    save_png(os.path.join(folder, "projection.png"), grid)
    return (
        f"{title}\n\n![projection](projection.png)\n\nThe target projected ({steps} steps, projector.py's "
        f"optimisation, seed {PROJECTION_SEED}) into the first and last snapshot of each variant's seed-{seed} "
        "run, labelled with the final LPIPS distance (lower: the generator can make an image closer to the target). "
        "Distances per network in projection.jsonl.\n"
    )


def _read_records(path: str) -> list[dict]:
    if not os.path.isfile(path):
        return []
    with open(path, encoding="utf-8") as file:
        try:
            return [json.loads(line) for line in file if line.strip()]
        except json.JSONDecodeError:
            return []


def _read_png(path: str) -> np.ndarray:
    with PIL.Image.open(path) as image:
        array = np.asarray(image)
    return array[:, :, None] if array.ndim == 2 else array


def make_report(
    study_dir: str,
    proj_steps: int = DEFAULT_PROJ_STEPS,
    proj_target: str | None = None,
    samples: bool = True,
    detector_dir: str | None = None,
) -> str:
    """Everything in <study>/report/; the VGG16 file for the projection is searched in `detector_dir`, else the
    study's --detector-dir, then the usual places."""
    results = study_report.read_study(study_dir)
    folder = os.path.join(study_dir, study_folder.REPORT_DIR)
    os.makedirs(folder, exist_ok=True)
    sections = []
    if samples:
        sections.append(sample_section(results, folder))
    sections.append(
        projection_section(
            results, folder, proj_steps, proj_target, detector_dir or results.manifest.get("detector_dir")
        )
    )
    return study_report.write_report(study_dir, results, sections)
