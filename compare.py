"""Compare training objectives: the same train.py runs for several variants and seeds, and a report with intervals.

Examples:

\b
  # The default study: the embedded digits, 200 training images (the paper's limited-data regime), CE against
  # RLO k = 2, 11 and 20 and RLO eq. 9 k = 3, seeds 0-2, fdd2k_full at every snapshot; report in studies/report/
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

from __future__ import annotations

import collections
import dataclasses
import fcntl
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from typing import Any

import click
import numpy as np
import PIL.Image
import torch
from tqdm import tqdm

from commands import train_command, train_flags
from dnnlib import util as dnnlib_util
from dnnlib.cli import POSITIVE
from metrics import detectors, metric_main, study_report
from torch_utils import distributed
from training import checkpoint, projection, sampling
from training import study as study_lib
from training.dataset import open_dataset
from training.image_grid import save_png

REPO = os.path.dirname(os.path.abspath(__file__))
TRAIN_PY = os.path.join(REPO, "train.py")
CALC_METRICS_PY = os.path.join(REPO, "calc_metrics.py")
# The paper's two stated GAN settings of k, the k = 20 its public FFHQ run's logs imply (docs/authors_ffhq_k.md),
# its bounded eq. 9, and the strongest peer recipe (R3GAN's relativistic pairing with R1 + R2), all against CE.
DEFAULT_VARIANTS = (
    "ce",
    "rlo --k=2",
    "rlo --k=11",
    "rlo --k=20",
    "rlo-eq9 --k=3",
    "name=rpgan-r1r2 ce --pairing=relativistic --r2=1",
)
DEFAULT_SUBSET = 200
PROJECTION_SEED = 303  # projector.py's default
SAMPLE_SEEDS = 8  # z of generate.py's seeds 0..7 in the sample grids
DEFAULT_PROJ_STEPS = 1000  # projector.py's default

# Started by compare.py, a train.py process ends when compare.py ends (also on SIGKILL): PR_SET_PDEATHSIG, set
# before exec; a parent already gone by then means exit. Otherwise an orphan would train on while a rerun
# resumes the same run.
_DIE_WITH_PARENT = (
    "import ctypes, os, signal, sys\n"
    "ctypes.CDLL(None).prctl(1, signal.SIGTERM)\n"
    "if os.getppid() != int(sys.argv[1]):\n"
    "    sys.exit(1)\n"
    "os.execv(sys.executable, [sys.executable] + sys.argv[2:])\n"
)


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


def _where_variant(variant: study_lib.Variant) -> str:
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
) -> tuple[dict[str, Any], list[study_lib.PlannedRun], Any]:
    """(manifest, runs, the first run's TrainingOptions), every run checked by train.py; UsageError otherwise."""
    try:
        variants = study_lib.parse_variants(opts.variants)
        common = study_lib.split_switches(opts.train_args, "--train-args")
        study_lib.refuse_study_flags(common, "--train-args")
    except study_lib.StudyError as err:
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
    snap = opts.snap or study_lib.default_snap(kimg, tick)
    flags = study_flags(kimg, tick, snap)
    checked = []
    for variant in variants:
        args = study_lib.merge_args(common, variant.args) + flags
        run_opts, desc = check_train_args(
            args + [f"--seed={opts.seeds - 1}"] + machine, _where_variant(variant), cuda, ctx
        )
        checked.append((variant, args, run_opts, desc))
    runs = [
        study_lib.PlannedRun(
            index=0,
            variant=variant.label,
            seed=seed,
            outdir=study_lib.run_outdir(variant.label, seed),
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
    return study_lib.manifest_dict(study, variants, runs, command, opts.detector_dir, code), runs, checked[0][2]


def open_study_folder(outdir: str, manifest: dict[str, Any], write: bool) -> dict[str, Any]:
    """Create the study folder with its manifest, or grow the one there by this command's new seeds and
    variants (study_lib.merge_manifests); the study's manifest either way."""
    stored = None
    if os.path.isdir(outdir):
        try:
            stored = study_lib.read_manifest(outdir)
        except study_lib.StudyError as err:
            raise fail(f"--outdir={outdir}: {err}") from None
        if stored is None and os.listdir(outdir):
            raise fail(
                f"--outdir={outdir} exists and is not a study folder (no {study_lib.MANIFEST_NAME}); give a "
                "new or empty folder"
            )
    elif os.path.exists(outdir):
        raise fail(f"--outdir={outdir} is a file, not a folder")
    if stored is not None:
        manifest, problems = study_lib.merge_manifests(stored, manifest)
        if problems:
            raise fail(
                f"--outdir={outdir} holds another study (made by: {stored.get('command')}): "
                f"{'; '.join(problems)}. A study grows only by seeds and variants; rerun that command to continue "
                "it, or give a new --outdir"
            )
    if write:
        try:
            os.makedirs(outdir, exist_ok=True)
            study_lib.write_manifest(outdir, manifest)
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


# ----------------------------------------------------------------------------------------------------
# Running: jobs (score a snapshot left unscored, then train), one slot per GPU group.


@dataclasses.dataclass
class Job:
    run: study_lib.PlannedRun
    steps: list[list[str]]
    action: str  # 'start', 'resume' or 'score'
    start_nimg: int
    note: str


def train_argv(run: study_lib.PlannedRun, detector_dir: str | None, resume: str | None) -> list[str]:
    command = [sys.executable, TRAIN_PY, f"--outdir={run.outdir}", *run.args]
    command += [f"--detector-dir={detector_dir}"] if detector_dir else []
    command += [f"--resume={resume}"] if resume else []
    return command


def score_command(snapshot: str, metric: str, detector_dir: str | None) -> list[str]:
    """calc_metrics.py on a snapshot a kill left unscored; it writes the metric line the run would have written
    (the metrics are a function of the network, whatever the process)."""
    command = [sys.executable, CALC_METRICS_PY, f"--metrics={metric}", f"--network={snapshot}"]
    return command + ([f"--detector-dir={detector_dir}"] if detector_dir else [])


def plan_jobs(
    study_dir: str, runs: list[study_lib.PlannedRun], metric: str, detector_dir: str | None, is_main: bool
) -> tuple[list[Job], list[study_lib.PlannedRun]]:
    """(jobs to do, runs already finished). Only the main process scores (torchrun: rank 0)."""
    jobs, finished = [], []
    for run in runs:
        state = study_lib.run_state(study_dir, run, metric)
        steps = []
        latest = study_lib.relpath_within(state.latest.path, study_dir) if state.latest is not None else None
        if state.unscored and is_main:
            steps.append(score_command(latest, metric, detector_dir))
        if state.status == "done":
            if not steps:
                finished.append(run)
                continue
            jobs.append(Job(run, steps, "score", state.nimg, f"its last snapshot {latest} has no {metric} yet"))
            continue
        steps.append(train_argv(run, detector_dir, latest))
        if state.status == "new":
            jobs.append(Job(run, steps, "start", 0, f"{run.total_kimg:g} kimg"))
        else:
            jobs.append(
                Job(
                    run,
                    steps,
                    "resume",
                    state.nimg,
                    f"from {latest} ({state.nimg / 1000:g} of {run.total_kimg:g} kimg)",
                )
            )
    return jobs, finished


def visible_cuda_ids() -> list[str]:
    """The CUDA device ids this process sees, as CUDA_VISIBLE_DEVICES would name them to a child."""
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        ids = [part.strip() for part in listed.split(",") if part.strip()]
        return ids[:count]
    return [str(i) for i in range(count)]


def device_slots(devices: str, gpus_per_run: int, ctx: distributed.DistContext | None) -> list[str | None]:
    """CUDA_VISIBLE_DEVICES of each slot (None: leave the environment as it is). One slot on a CPU."""
    if ctx is not None:
        return [None]  # under torchrun every run uses every process, one run after another
    if devices == "auto":
        ids = visible_cuda_ids()
    elif devices == "cpu":
        return [None]
    else:
        ids = [part.strip() for part in devices.split(",") if part.strip()]
        known = visible_cuda_ids()
        unknown = [i for i in ids if i not in known]
        if unknown:
            raise fail(
                f"--devices={devices}: no CUDA device {', '.join(unknown)} here (visible: {', '.join(known) or 'none'})"
            )
    if not ids:
        return [None]
    if len(ids) < gpus_per_run:
        raise fail(f"--devices={devices}: {len(ids)} devices for runs of --gpus={gpus_per_run}")
    return [",".join(ids[i : i + gpus_per_run]) for i in range(0, len(ids) - gpus_per_run + 1, gpus_per_run)]


class Runner:
    """Runs jobs in slots, prints a line when a run starts and ends with an ETA, keeps a bar over the runs."""

    def __init__(
        self,
        study_dir: str,
        jobs: list[Job],
        slots: list[str | None],
        total_runs: int,
        done_runs: int,
        lock_fd: int | None,
        ctx: distributed.DistContext | None,
        goal: study_report.MetricGoal,
        verbose: bool,
    ):
        self.study_dir, self.slots, self.lock_fd, self.ctx, self.goal = study_dir, slots, lock_fd, ctx, goal
        self.pending = collections.deque(jobs)
        self.total_runs, self.verbose = total_runs, verbose
        self.failed: list[tuple[Job, str]] = []
        self.trained_sec = self.trained_kimg = 0.0
        self.bar = tqdm(
            total=total_runs,
            initial=done_runs,
            unit="run",
            desc="study",
            dynamic_ncols=True,
            disable=None if verbose else True,
            leave=False,
            file=sys.stderr,
        )

    def say(self, text: str) -> None:
        if self.verbose:
            self.bar.write(text, file=sys.stdout)
            sys.stdout.flush()

    def eta(self, running: dict[int, tuple]) -> str:
        if not self.trained_kimg:
            return "ETA: after the first run"
        rate = self.trained_sec / self.trained_kimg
        left = sum(job.run.total_kimg - job.start_nimg / 1000 for job in self.pending)
        now = time.time()
        for job, _proc, _step, started, _log in running.values():
            left += max(0.0, job.run.total_kimg - job.start_nimg / 1000 - (now - started) / rate)
        return f"ETA {study_lib.format_duration(left * rate / len(self.slots))}"

    def _launch(self, job: Job, step: int, slot: str | None, log) -> subprocess.Popen:
        env = dict(os.environ)
        if slot is not None:
            env["CUDA_VISIBLE_DEVICES"] = slot
        if self.ctx is not None:  # a fresh rendezvous store for each run (see the module help)
            env["MASTER_PORT"] = str(int(os.environ.get("MASTER_PORT", "29500")) + 1 + job.run.index)
            env.pop("TORCHELASTIC_USE_AGENT_STORE", None)
        command = job.steps[step]
        log.write(f"\n=== compare.py, {time.strftime('%Y-%m-%d %H:%M:%S')}: {shlex.join(command)}\n")
        log.flush()
        if sys.platform.startswith("linux"):
            command = [sys.executable, "-c", _DIE_WITH_PARENT, str(os.getpid()), *command[1:]]
        return subprocess.Popen(
            command,
            cwd=self.study_dir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            pass_fds=() if self.lock_fd is None else (self.lock_fd,),
        )

    def _finished(self, job: Job, started: float) -> str:
        result = study_report.read_run(self.study_dir, job.run, self.goal)
        trained = (result.nimg - job.start_nimg) / 1000
        if trained > 0:
            self.trained_sec += time.time() - started
            self.trained_kimg += trained
        final, best = result.final, result.best(self.goal)
        what = (
            f"{self.goal.key} {final.value:.4g} at {final.kimg:g} kimg (best {best.value:.4g} at {best.kimg:g})"
            if final
            else f"stopped at {result.nimg / 1000:g} kimg"
        )
        return what

    def run(self) -> None:
        running: dict[int, tuple] = {}  # slot index -> (job, process, step, started, log file)
        free = list(range(len(self.slots)))
        try:
            while self.pending or running:
                while self.pending and free:
                    slot = free.pop(0)
                    job = self.pending.popleft()
                    os.makedirs(os.path.dirname(job.run.log_path(self.study_dir)), exist_ok=True)
                    log = open(job.run.log_path(self.study_dir), "a", encoding="utf-8")
                    where = f" on CUDA {self.slots[slot]}" if self.slots[slot] is not None else ""
                    running[slot] = (job, self._launch(job, 0, self.slots[slot], log), 0, time.time(), log)
                    self.say(
                        f"[{job.run.index + 1:>{len(str(self.total_runs))}}/{self.total_runs}] {job.action:<6} "
                        f"{job.run.name} {job.note}{where}; {self.eta(running)}"
                    )
                time.sleep(0.2)
                for slot, (job, proc, step, started, log) in list(running.items()):
                    code = proc.poll()
                    if code is None:
                        continue
                    if code == 0 and step + 1 < len(job.steps):
                        running[slot] = (
                            job,
                            self._launch(job, step + 1, self.slots[slot], log),
                            step + 1,
                            started,
                            log,
                        )
                        continue
                    log.close()
                    del running[slot]
                    free.append(slot)
                    tag = f"[{job.run.index + 1:>{len(str(self.total_runs))}}/{self.total_runs}]"
                    elapsed = study_lib.format_duration(time.time() - started)
                    if code == 0:
                        what = self._finished(job, started)
                        self.bar.update(1)
                        self.say(f"{tag} done   {job.run.name} in {elapsed}: {what}; {self.eta(running)}")
                    else:
                        last = study_report.log_note(job.run.log_path(self.study_dir))
                        self.failed.append((job, last))
                        self.say(
                            f"{tag} FAILED {job.run.name} after {elapsed} (exit {code}): {last} "
                            f"(log: {study_lib.relpath_within(job.run.log_path(self.study_dir), os.getcwd())})"
                        )
        except KeyboardInterrupt:
            for _, proc, *_ in running.values():
                proc.send_signal(signal.SIGINT)
            for _, proc, *_ in running.values():
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
            self.bar.close()
            raise click.ClickException("interrupted; rerun the same command to continue the study") from None
        self.bar.close()


# ----------------------------------------------------------------------------------------------------
# The report: tables and curves (metrics.study_report), sample grids and projections (generate.py, projector.py).


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
    rel = [study_lib.relpath_within(path, results.study_dir) for _, path in networks]
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
    folder = os.path.join(study_dir, study_lib.REPORT_DIR)
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


# ----------------------------------------------------------------------------------------------------
# The command line.


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


@click.group(invoke_without_command=True, help=__doc__)
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
    runs = study_lib.runs_of_manifest(manifest)
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
            + os.path.join(opts.outdir, study_lib.LOGS_DIR)
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
            manifest = study_lib.read_manifest(study) or {}
            proj_steps = int((manifest.get("report") or {}).get("proj_steps", DEFAULT_PROJ_STEPS))
        path = make_report(study, proj_steps=proj_steps, proj_target=proj_target, detector_dir=detector_dir)
    except study_lib.StudyError as err:
        raise click.ClickException(str(err)) from None
    click.echo(f"Wrote {path}")


if __name__ == "__main__":
    cli()  # pylint: disable=no-value-for-parameter
