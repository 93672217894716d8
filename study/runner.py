"""Running a study: one job per run (score a snapshot left unscored, then train or resume), one slot per GPU group,
every train.py a subprocess that ends with compare.py.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import shlex
import signal
import subprocess
import sys
import time

import click
import torch
from tqdm import tqdm

from study import folder as study_folder
from study import report as study_report
from study.plan import CALC_METRICS_PY, TRAIN_PY, fail
from torch_utils import distributed

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


# ----------------------------------------------------------------------------------------------------
# Running: jobs (score a snapshot left unscored, then train), one slot per GPU group.


@dataclasses.dataclass
class Job:
    run: study_folder.PlannedRun
    steps: list[list[str]]
    action: str  # 'start', 'resume' or 'score'
    start_nimg: int
    note: str


def train_argv(run: study_folder.PlannedRun, detector_dir: str | None, resume: str | None) -> list[str]:
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
    study_dir: str, runs: list[study_folder.PlannedRun], metric: str, detector_dir: str | None, is_main: bool
) -> tuple[list[Job], list[study_folder.PlannedRun]]:
    """(jobs to do, runs already finished). Only the main process scores (torchrun: rank 0)."""
    jobs, finished = [], []
    for run in runs:
        state = study_folder.run_state(study_dir, run, metric)
        steps = []
        latest = study_folder.relpath_within(state.latest.path, study_dir) if state.latest is not None else None
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
        return f"ETA {study_folder.format_duration(left * rate / len(self.slots))}"

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
                    elapsed = study_folder.format_duration(time.time() - started)
                    if code == 0:
                        what = self._finished(job, started)
                        self.bar.update(1)
                        self.say(f"{tag} done   {job.run.name} in {elapsed}: {what}; {self.eta(running)}")
                    else:
                        last = study_report.log_note(job.run.log_path(self.study_dir))
                        self.failed.append((job, last))
                        self.say(
                            f"{tag} FAILED {job.run.name} after {elapsed} (exit {code}): {last} "
                            f"(log: {study_folder.relpath_within(job.run.log_path(self.study_dir), os.getcwd())})"
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
