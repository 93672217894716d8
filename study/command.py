"""compare.py's command line: run a study (plan, then jobs, then the report) or write its report."""

from __future__ import annotations

import os
import shlex
from typing import Any

import click
import torch

from commands import train_flags
from dnnlib.cli import POSITIVE
from study import folder as study_folder
from study import report as study_report
from study.pictures import DEFAULT_PROJ_STEPS, make_report
from study.plan import (
    DEFAULT_SUBSET,
    DEFAULT_VARIANTS,
    StudyOptions,
    fail,
    lock_study,
    open_study_folder,
    plan_study,
    subset_text,
)
from study.runner import Runner, device_slots, plan_jobs
from torch_utils import distributed

# ----------------------------------------------------------------------------------------------------
# The command line.


USAGE = """Compare training objectives: the same train.py runs for several variants and seeds, and a report
with intervals.

Examples:

\b
  # The default study: the embedded digits, 200 training images (the paper's limited-data regime), CE against
  # RLO k = 2 and 20, RLO eq. 9 k = 3, RLO k = 2 with --g-selfnorm=1 and relativistic + R1 + R2, seeds 0-2,
  # fdd2k_full at every snapshot; report in studies/report/
  python compare.py --outdir=studies
\b
  # Your variants (any train.py switches; name=LABEL sets the label), 5 seeds, 200 images of your data, FID
  python compare.py --outdir=studies/dogs --data=~/datasets/dogs256.zip --metric=fid50k_full --seeds=5 \\
      --kimg=5000 --train-args="--cfg=paper256 --mirror=1" --variant=ce --variant="name=RLO-11 rlo --k=11"
\b
  # Rerun the same command to continue: finished runs are skipped, killed ones resume from their last snapshot
  python compare.py --outdir=studies
\b
  # Regenerate the report (Markdown, CSV, PNG) from what the runs wrote
  python compare.py report studies

Variant grammar: `[name=LABEL] [LOSS] [--switch=VALUE | --switch VALUE]...` with LOSS a train.py --loss value
and any train.py switch except those the study sets for every run (--outdir --resume --seed --kimg --tick --snap
--metrics --data --subset --detector-dir). --train-args are switches for every variant; a variant's own switch
replaces a study-wide one. Every run is checked by train.py's own option parser and checks before any run starts.

Every run is an ordinary train.py run (a subprocess, so each starts from fresh RNG and library state, can be
killed and resumed like any train.py run, and gets its own CUDA_VISIBLE_DEVICES). With several GPUs, runs go one
per GPU side by side (--train-args=--gpus=2: two GPUs each). Under torchrun (several nodes), start compare.py
with torchrun on every node like train.py: the runs go one after another, each over all torchrun processes; the
study folder must be on a filesystem all nodes share, and each run rendezvous on MASTER_PORT + 1 + its index in
the plan (those ports must be free on the master node), because torchrun's own store cannot host one process
group after another.
"""


class SubsetType(click.ParamType):
    name = "INT|all"

    def convert(self, value, param, ctx):
        if value is None or isinstance(value, int) or value == "all":
            return value
        try:
            number = int(value)
        except ValueError:
            self.fail(f'{value!r} is neither a number of images nor "all"', param, ctx)
        if number < 1:
            self.fail(f'{number} images: give at least 1, or "all"', param, ctx)
        return number


def run_options(function):
    options = [
        click.option(
            "--outdir", metavar="DIR", help="The study folder (made if new; continued if it holds this study)"
        ),
        click.option(
            "--data",
            metavar="PATH",
            help="Training data (folder or zip from dataset_tool.py) [default: embedded digits]",
        ),
        click.option(
            "--subset",
            type=SubsetType(),
            default=str(DEFAULT_SUBSET),
            show_default=True,
            help="Train on N images (train.py --subset: chosen by the run's seed, so runs of one seed share them), "
            'or "all"',
        ),
        click.option(
            "--variant",
            "variants",
            multiple=True,
            metavar="SPEC",
            help='"[name=LABEL] [LOSS] [--switch=VALUE]..." (repeatable; the first is the baseline) '
            f"[default: {' | '.join(DEFAULT_VARIANTS)}]",
        ),
        click.option(
            "--seeds", type=click.IntRange(min=1), default=3, show_default=True, help="Seeds per variant (0..N-1)"
        ),
        click.option("--kimg", type=POSITIVE, help="Training length of every run [default: per --cfg]"),
        click.option("--tick", type=POSITIVE, metavar="KIMG", help="kimg per tick [default: per --cfg]"),
        click.option(
            "--snap",
            type=click.IntRange(min=1),
            metavar="TICKS",
            help="Snapshot and metric interval in ticks [default: about 6 evaluations after the first]",
        ),
        click.option(
            "--metric",
            metavar="NAME",
            help="Metric scored at every snapshot [default: fdd2k_full on the embedded digits; else swd2k on a "
            "CPU, fid50k_full where the Inception file is found, else swd16k]",
        ),
        click.option(
            "--detector-dir",
            type=click.Path(file_okay=False),
            metavar="DIR",
            help="Folder with the detector files (FID/KID: Inception; projection: VGG16)",
        ),
        click.option(
            "--train-args",
            "train_args",
            multiple=True,
            metavar="SWITCHES",
            help='train.py switches for every variant, e.g. "--cbase=64 --cmax=16" (repeatable)',
        ),
        click.option(
            "--devices",
            default="auto",
            show_default=True,
            metavar="auto|cpu|IDS",
            help="CUDA devices to spread runs over (auto: all visible)",
        ),
        click.option(
            "--report/--no-report",
            "write_report_at_end",
            default=True,
            show_default=True,
            help="Write the report when the runs are done",
        ),
        click.option(
            "--proj-steps",
            type=click.IntRange(min=0),
            default=DEFAULT_PROJ_STEPS,
            show_default=True,
            help="Projection steps for the report's Figure 5 (needs the VGG16 file; 0: skip)",
        ),
        click.option("--verbose/--quiet", default=True, show_default=True, help="Print a line per run"),
    ]
    for option in reversed(options):
        function = option(function)
    return function


@click.group(invoke_without_command=True, help=USAGE)
@run_options
@click.pass_context
def cli(ctx: click.Context, **kwargs: Any) -> None:
    if ctx.invoked_subcommand is not None:
        given = [
            name
            for name, value in kwargs.items()
            if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE
        ]
        if given:
            raise fail(
                f"--{given[0].replace('_', '-')} belongs to running a study; give it without `{ctx.invoked_subcommand}`"
            )
        return
    run_study(**kwargs)


def run_study(
    outdir: str | None,
    data: str | None,
    subset: Any,
    variants: tuple[str, ...],
    seeds: int,
    kimg: float | None,
    tick: float | None,
    snap: int | None,
    metric: str | None,
    detector_dir: str | None,
    train_args: tuple[str, ...],
    devices: str,
    write_report_at_end: bool,
    proj_steps: int,
    verbose: bool,
) -> None:
    if not outdir:
        raise fail("give the study folder: --outdir=DIR (or `compare.py report DIR` for a report)")
    dist_ctx = distributed.torchrun_context()
    is_main = dist_ctx is None or dist_ctx.is_main
    verbose = verbose and is_main
    if data is not None and os.path.exists(os.path.expanduser(data)):
        data = os.path.abspath(os.path.expanduser(data))
    if detector_dir is not None:
        detector_dir = os.path.abspath(os.path.expanduser(detector_dir))
    try:
        switches = [token for text in train_args for token in shlex.split(text)]
    except ValueError as err:
        raise fail(f"--train-args: {err}") from None
    opts = StudyOptions(
        outdir=os.path.abspath(outdir),
        data=data,
        subset=None if subset == "all" else int(subset),
        variants=list(variants or DEFAULT_VARIANTS),
        seeds=seeds,
        kimg=kimg,
        tick=tick,
        snap=snap,
        metric=metric,
        detector_dir=detector_dir,
        train_args=switches,
    )
    cuda = torch.cuda.is_available()
    manifest, _, first_opts = plan_study(opts, cuda, dist_ctx)
    manifest["report"] = dict(proj_steps=proj_steps)  # what `compare.py report` uses unless told otherwise
    manifest = open_study_folder(opts.outdir, manifest, write=is_main)
    runs = study_folder.runs_of_manifest(manifest)
    slots = device_slots(devices, first_opts.num_gpus if dist_ctx is None else 1, dist_ctx)
    lock_fd = lock_study(opts.outdir) if is_main else None
    goal = study_report.metric_goal(manifest["study"]["metric"])
    jobs, finished = plan_jobs(opts.outdir, runs, goal.metric, detector_dir, is_main)
    if verbose:
        train_flags.warn_if_slow_on_cpu(first_opts, cuda)
        resumes = sum(job.action == "resume" for job in jobs)
        where = (
            f"{len(slots)} at a time on CUDA {' | '.join(slots)}"
            if slots[0] is not None
            else "one after another"
            + (f" over {dist_ctx.world_size} torchrun processes" if dist_ctx else " (CPU)" if not cuda else "")
        )
        print(
            f"Study {opts.outdir}: {len(manifest['variants'])} variants x {len(manifest['study']['seeds'])} seeds "
            f"= {len(runs)} runs of {runs[0].total_kimg:g} kimg "
            f"({', '.join(v['label'] for v in manifest['variants'])}) on {subset_text(manifest['study'])}, "
            f"{goal.metric} every {manifest['study']['snap']} ticks of {runs[0].kimg_per_tick:g} kimg; "
            f"{len(finished)} finished, {resumes} to resume, {len(jobs) - resumes} to start; {where}",
            flush=True,
        )
    runner = Runner(opts.outdir, jobs, slots, len(runs), len(finished), lock_fd, dist_ctx, goal, verbose)
    runner.run()
    if not is_main:
        return
    if write_report_at_end:
        path = make_report(opts.outdir, proj_steps=proj_steps)
        if verbose:
            print(f"Report: {path}")
    if runner.failed:
        raise click.ClickException(
            f"{len(runner.failed)} of {len(runs)} runs failed ("
            + ", ".join(job.run.name for job, _ in runner.failed)
            + "); their logs are in "
            + os.path.join(opts.outdir, study_folder.LOGS_DIR)
            + "; rerun the same command to retry them"
        )


@cli.command(help="Write the report of a study folder: report/report.md, CSV tables, curves, samples, projection.")
@click.argument("study", type=click.Path(file_okay=False))
@click.option(
    "--proj-steps",
    type=click.IntRange(min=0),
    default=None,
    help="Projection steps for Figure 5 (needs the VGG16 file; 0: skip) [default: the study's own --proj-steps]",
)
@click.option(
    "--proj-target",
    type=click.Path(dir_okay=False, exists=True),
    metavar="FILE",
    help="Image to project [default: the first training image]",
)
@click.option(
    "--detector-dir",
    type=click.Path(file_okay=False),
    metavar="DIR",
    help="Folder with the VGG16 file [default: the study's --detector-dir, then the usual places]",
)
def report(study: str, proj_steps: int | None, proj_target: str | None, detector_dir: str | None) -> None:
    try:
        if proj_steps is None:
            manifest = study_folder.read_manifest(study) or {}
            proj_steps = int((manifest.get("report") or {}).get("proj_steps", DEFAULT_PROJ_STEPS))
        path = make_report(study, proj_steps=proj_steps, proj_target=proj_target, detector_dir=detector_dir)
    except study_folder.StudyError as err:
        raise click.ClickException(str(err)) from None
    click.echo(f"Wrote {path}")
