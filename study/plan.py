"""A study's plan: variants and seeds -> train.py commands, each checked by train.py's own parser before
anything runs; the study folder opened (new, continued or grown) and locked.
"""

from __future__ import annotations

import dataclasses
import fcntl
import os
import shlex
import sys
from typing import Any

import click

from commands import train_command, train_flags
from dnnlib import util as dnnlib_util
from metrics import detectors, metric_main
from study import folder as study_folder
from study import report as study_report
from torch_utils import distributed

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_PY = os.path.join(REPO, "train.py")
CALC_METRICS_PY = os.path.join(REPO, "calc_metrics.py")
# Against CE: the k = 2 the paper states for FFHQ, the k = 20 its public FFHQ run's logs imply
# (docs/authors_ffhq_k.md), the bounded eq. 9 of the authors' classifier code, k = 2 with G's loss self-normalised
# (the remedy for eq. 4's exploding generator weights, docs/rlo_derivation.md), and the strongest peer recipe
# (R3GAN's relativistic pairing with R1 + R2).
DEFAULT_VARIANTS = (
    "ce",
    "rlo --k=2",
    "rlo --k=20",
    "rlo-eq9 --k=3",
    "name=rlo-k2-selfnorm rlo --k=2 --g-selfnorm=1",
    "name=rpgan-r1r2 ce --pairing=relativistic --r2=1",
)
DEFAULT_SUBSET = 200


def fail(message: str) -> click.UsageError:
    return click.UsageError(message)


# ----------------------------------------------------------------------------------------------------
# Planning: variants -> checked train.py commands.


@dataclasses.dataclass
class StudyOptions:
    outdir: str
    data: str | None
    subset: int | None
    variants: list[str]
    seeds: int
    kimg: float | None
    tick: float | None
    snap: int | None
    metric: str | None
    detector_dir: str | None
    train_args: list[str]


def _where_variant(variant: study_folder.Variant) -> str:
    return f"--variant {variant.spec!r}"


def check_train_args(args: list[str], where: str, cuda: bool, ctx: distributed.DistContext | None) -> tuple[Any, str]:
    """train.py's parser and checks on one run's switches (nothing written): (TrainingOptions, run description)."""
    try:
        parsed = train_command.main.make_context("train.py", ["--outdir=.", *args])
    except click.ClickException as err:
        raise fail(f"{where}: {err.format_message()}") from None
    given = {
        key: value for key, value in parsed.params.items() if value is not None and key not in ("outdir", "dry_run")
    }
    if ctx is not None:  # as train.py does under torchrun
        if given.get("gpus", 1) not in (1, ctx.world_size):
            raise fail(f"{where}: --gpus={given['gpus']} but torchrun started WORLD_SIZE={ctx.world_size} processes")
        given["gpus"] = ctx.world_size
    try:
        return train_flags.setup_training_options(train_flags.TrainFlags(**given), cuda=cuda, local_gpus=ctx is None)
    except click.ClickException as err:
        raise fail(f"{where}: {err.format_message()}") from None


def check_metric(metric: str, data: str | None, detector_dir: str | None) -> study_report.MetricGoal:
    """The study's metric is known, gives one number, fits the dataset and has its detector file here."""
    try:
        goal = study_report.metric_goal(metric)
        metric_main.check_metric_dataset(metric, {"path": data})
    except (ValueError, metric_main.MetricDatasetError) as err:
        raise fail(f"--metric={metric}: {err}") from None
    spec = metric_main.parse_metric(metric)
    try:
        detectors.locate_detector(
            metric_main.detector_kind(metric),
            detector_dir,
            need_lpips=spec.family == "ppl",
            purpose=f"compare.py --metric={metric}",
        )
    except detectors.DetectorNotFoundError as err:
        raise fail(
            f"--metric={metric} needs a detector file that is not on this machine (nothing was run):\n{err}"
        ) from None
    return goal


def plan_study(
    opts: StudyOptions, cuda: bool, ctx: distributed.DistContext | None
) -> tuple[dict[str, Any], list[study_folder.PlannedRun], Any]:
    """(manifest, runs, the first run's TrainingOptions), every run checked by train.py; UsageError otherwise."""
    try:
        variants = study_folder.parse_variants(opts.variants)
        common = study_folder.split_switches(opts.train_args, "--train-args")
        study_folder.refuse_study_flags(common, "--train-args")
    except study_folder.StudyError as err:
        raise fail(str(err)) from None
    metric = opts.metric
    if metric is None:
        metric, why = metric_main.default_metric(opts.data is None, not cuda, opts.detector_dir)
        if ctx is None or ctx.is_main:
            print(f"Metric: {metric} by default ({why}); --metric chooses another", flush=True)
    check_metric(metric, opts.data, opts.detector_dir)

    def study_flags(kimg, tick, snap) -> list[str]:
        flags = [f"--metrics={metric}"]
        flags += [f"--data={opts.data}"] if opts.data is not None else []
        flags += [f"--subset={opts.subset}"] if opts.subset is not None else []
        flags += [f"--kimg={kimg:.12g}"] if kimg is not None else []
        flags += [f"--tick={tick:.12g}"] if tick is not None else []
        flags += [f"--snap={snap}"] if snap is not None else []
        return flags

    machine = [f"--detector-dir={opts.detector_dir}"] if opts.detector_dir else []
    first, _ = check_train_args(
        common + study_flags(opts.kimg, opts.tick, opts.snap) + machine,
        "the study options (--data/--subset/--kimg/--tick/--snap/--train-args)",
        cuda,
        ctx,
    )
    kimg, tick = first.total_kimg, first.kimg_per_tick  # one budget for every variant, even one with another --cfg
    snap = opts.snap or study_folder.default_snap(kimg, tick)
    flags = study_flags(kimg, tick, snap)
    checked = []
    for variant in variants:
        args = study_folder.merge_args(common, variant.args) + flags
        run_opts, desc = check_train_args(
            args + [f"--seed={opts.seeds - 1}"] + machine, _where_variant(variant), cuda, ctx
        )
        checked.append((variant, args, run_opts, desc))
    runs = [
        study_folder.PlannedRun(
            index=0,
            variant=variant.label,
            seed=seed,
            outdir=study_folder.run_outdir(variant.label, seed),
            args=tuple(args + [f"--seed={seed}"]),
            total_kimg=kimg,
            kimg_per_tick=tick,
            desc=desc,
        )
        for seed in range(opts.seeds)
        for variant, args, _, desc in checked
    ]
    runs = [dataclasses.replace(run, index=i) for i, run in enumerate(runs)]
    study = dict(
        data=opts.data,
        subset=opts.subset,
        kimg=kimg,
        tick=tick,
        snap=snap,
        metric=metric,
        seeds=list(range(opts.seeds)),
        train_args=common,
    )
    command = shlex.join(["compare.py", *sys.argv[1:]])
    code = dnnlib_util.source_version(TRAIN_PY)
    return study_folder.manifest_dict(study, variants, runs, command, opts.detector_dir, code), runs, checked[0][2]


def open_study_folder(outdir: str, manifest: dict[str, Any], write: bool) -> dict[str, Any]:
    """Create the study folder with its manifest, or grow the one there by this command's new seeds and
    variants (study_folder.merge_manifests); the study's manifest either way."""
    stored = None
    if os.path.isdir(outdir):
        try:
            stored = study_folder.read_manifest(outdir)
        except study_folder.StudyError as err:
            raise fail(f"--outdir={outdir}: {err}") from None
        if stored is None and os.listdir(outdir):
            raise fail(
                f"--outdir={outdir} exists and is not a study folder (no {study_folder.MANIFEST_NAME}); give a "
                "new or empty folder"
            )
    elif os.path.exists(outdir):
        raise fail(f"--outdir={outdir} is a file, not a folder")
    if stored is not None:
        manifest, problems = study_folder.merge_manifests(stored, manifest)
        if problems:
            raise fail(
                f"--outdir={outdir} holds another study (made by: {stored.get('command')}): "
                f"{'; '.join(problems)}. A study grows only by seeds and variants; rerun that command to continue "
                "it, or give a new --outdir"
            )
    if write:
        try:
            os.makedirs(outdir, exist_ok=True)
            study_folder.write_manifest(outdir, manifest)
        except OSError as err:
            raise fail(f"--outdir={outdir}: cannot write the study manifest there ({err.strerror or err})") from None
    return manifest


def subset_text(study: dict[str, Any]) -> str:
    """'200 images (--subset) of the embedded digits' for the plan line."""
    data = study.get("data") or "the embedded digits"
    subset = study.get("subset")
    return f"{subset} images (--subset) of {data}" if subset is not None else f"all images of {data}"


def lock_study(outdir: str) -> int:
    """An exclusive lock on the study folder, held by compare.py and the processes it starts."""
    fd = os.open(outdir, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise fail(
            f"--outdir={outdir}: another compare.py (or a train.py it started) is running this study; "
            "wait for it to end or stop it"
        ) from None
    return fd
