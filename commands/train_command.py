"""train.py's command: the click parser of its flags, the run directory, and the training processes it starts.
compare.py checks every run of a study with the same parser."""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import sys
import tempfile
from typing import Any

import click
import torch

import rlo
from commands.train_flags import (
    AUG_MODES,
    DEFAULTS,
    LOSS_NAMES,
    OPTIMIZER_SNAPSHOTS,
    TrainFlags,
    UserError,
    open_resume,
    replay_flags,
    setup_training_options,
    warn_if_slow_on_cpu,
)
from dnnlib import files
from dnnlib.cli import NON_NEGATIVE, POSITIVE, PROBABILITY, SEED_RANGE
from dnnlib.files import FileWriteError
from metrics.snapshot_evaluator import SnapshotEvaluator
from torch_utils import distributed, host_memory
from torch_utils.distributed import DistContext
from training import checkpoint
from training import options as options_lib
from training.augment import AUGPIPE_SPECS
from training.dataset import DatasetError
from training.diffaugment import DEFAULT_POLICY
from training.options import (
    LossOptions,
    TrainingOptions,
)
from training.training_loop import NonFiniteError, training_loop

USAGE = """Train a StyleGAN2(-ADA) generator with the CE or a rooted logistic (RLO) adversarial loss.

Examples:

\b
  # Embedded default: scikit-learn digits at 32x32 with their labels (one row per digit in the grids), tiny CPU
  # config (a few minutes on a laptop CPU). Without --cond=1 the same run is unconditional.
  python train.py --outdir=runs --cond=1
\b
  # RLO (eq. 4, k = 2) on a dataset prepared with dataset_tool.py, 2 GPUs of one node.
  python train.py --outdir=runs --data=datasets/ffhq256.zip --gpus=2 --cfg=paper256 --mirror=1 --loss=rlo --k=2
\b
  # Several nodes: torchrun sets RANK/WORLD_SIZE/LOCAL_RANK; --batch is the total over all processes.
  torchrun --nnodes=2 --node-rank=0 --nproc-per-node=8 --master-addr=host0 --master-port=29500 train.py ...
  torchrun --nnodes=2 --node-rank=1 --nproc-per-node=8 --master-addr=host0 --master-port=29500 train.py ...
\b
  # Continue a run where its snapshot left off: its own data, loss, config and seed, 12 kimg more.
  python train.py --outdir=runs --kimg=36 --resume=runs/00000-digits32-cond-tiny-ce-noaug/network-snapshot-000024.pt
\b
  # Fine-tune an official StyleGAN2-ADA pickle with RLO: the networks come from the pickle's own kwargs.
  python train.py --outdir=runs --data=datasets/dogs256.zip --loss=rlo --k=2 \\
      --resume=ffhq-res256-mirror-paper256-noaug.pkl

--cfg=auto picks the `tiny` config when no CUDA device is present (16 channels at 32x32 and 32 below, 64-d latents,
fp32, batch 16, lr 0.01, R1 gamma 0.3, no augmentation, 24 kimg), and StyleGAN2-ADA's resolution-based heuristic on
GPUs. With --resume of one of our snapshots, every flag not given on the command line is taken from the run that
wrote the snapshot.
"""

# ----------------------------------------------------------------------------------------------------
# Run directories and processes.


def next_run_dir(outdir: str, desc: str) -> str:
    """<outdir>/<NNNNN>-<desc> with NNNNN one above the highest existing run number."""
    existing = os.listdir(outdir) if os.path.isdir(outdir) else []
    ids = [
        int(match.group())
        for name in existing
        if (match := re.match(r"^\d+", name)) and os.path.isdir(os.path.join(outdir, name))
    ]
    return os.path.join(outdir, f"{max(ids, default=-1) + 1:05d}-{desc}")


@contextlib.contextmanager
def _outdir_lock(outdir: str):
    """Processes started together in one --outdir take run numbers one after the other, never the same one."""
    fd = os.open(outdir, os.O_RDONLY)  # a lock on the folder itself: nothing is left behind in it
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def create_run_dir(opts: TrainingOptions, outdir: str, desc: str) -> None:
    try:
        os.makedirs(outdir, exist_ok=True)
        with _outdir_lock(outdir):
            opts.run_dir = next_run_dir(outdir, desc)
            os.makedirs(opts.run_dir)
        files.atomic_write(
            os.path.join(opts.run_dir, "training_options.json"), lambda f: f.write(opts.to_json().encode())
        )
    except OSError as err:
        raise UserError(f"--outdir={outdir}: cannot create the run directory there ({err.strerror or err})") from None
    except FileWriteError as err:
        raise UserError(f"--outdir={outdir}: {err}") from None


class _Tee:
    """Copies everything written to a stream into log.txt as well."""

    def __init__(self, stream, file):
        self.stream, self.file = stream, file

    def write(self, text: str) -> int:
        self.file.write(text)
        self.file.flush()
        return self.stream.write(text)

    def flush(self) -> None:
        self.file.flush()
        self.stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def print_summary(opts: TrainingOptions, notes: list[str] = ()) -> None:
    print("\nTraining options:")
    print(opts.to_json())
    print()
    print(f"Output directory:    {opts.run_dir or '(set at launch)'}")
    print(f"Training data:       {opts.data.path or 'embedded sklearn digits'} ({opts.data.resolution}px)")
    print(f"Config:              {opts.cfg}")
    print(f"Loss:                {opts.loss.adversarial.describe()}")
    print(f"Training duration:   {opts.total_kimg:g} kimg")
    print(f"Number of processes: {opts.num_gpus} ({'CUDA' if torch.cuda.is_available() else 'CPU'})")
    print(f"Batch:               {opts.batch_size} total, {opts.batch_gpu} per process and pass")
    print(f"Metrics:             {', '.join(opts.metrics) or 'none'}")
    if opts.resume:
        print(f"Resume:              {opts.resume}")
    for note in notes:
        print(f"Note: {note}")
    print()


def run_process(
    ctx: DistContext,
    opts: TrainingOptions,
    init_method: str = "env://",
    outdir: str = "",
    desc: str = "",
    notes: list[str] = (),
    resume_data: dict[str, Any] | None = None,
) -> None:
    """One training process: device, process group, run directory (rank 0 when not made yet), log.txt, loop.

    Errors the user can act on (non-finite loss, a dataset image that does not decode, a full disk) end the run
    with one line and the last good snapshot intact.
    """
    cuda = torch.cuda.is_available()
    device = torch.device("cuda", ctx.local_rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    else:
        host_memory.keep_freed_host_memory()  # activations are host memory here: no page faults per step
        if ctx.world_size > 1:
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // ctx.world_size))
    distributed.init_process_group(ctx, device, init_method)
    log_file, saved = None, (sys.stdout, sys.stderr)
    try:
        if not opts.run_dir:  # torchrun: every process parsed the CLI; rank 0 names the run for all
            if ctx.is_main:
                create_run_dir(opts, outdir, desc)
            opts.run_dir = distributed.broadcast_object(opts.run_dir)
        if ctx.is_main:
            log_file = open(os.path.join(opts.run_dir, "log.txt"), "a")
            sys.stdout, sys.stderr = _Tee(sys.stdout, log_file), _Tee(sys.stderr, log_file)
            print_summary(opts, notes)
        evaluate = None
        if opts.metrics:
            evaluate = SnapshotEvaluator(opts.metrics, opts.data.dataset_kwargs(), opts.run_dir, opts.detector_dir)
        training_loop(opts, ctx, device, resume_data=resume_data, evaluate=evaluate)
    except (NonFiniteError, DatasetError, checkpoint.CheckpointError, FileWriteError) as err:
        if ctx.is_main:
            print(f"\nTraining stopped: {err}", file=sys.stderr, flush=True)
        raise SystemExit(3 if isinstance(err, NonFiniteError) else 1) from None
    finally:
        sys.stdout, sys.stderr = saved
        if log_file is not None:
            log_file.close()
        distributed.destroy_process_group()


def _spawned(rank: int, opts: TrainingOptions, init_method: str, notes: list[str]) -> None:
    run_process(DistContext(rank=rank, world_size=opts.num_gpus, local_rank=rank), opts, init_method, notes=notes)


# ----------------------------------------------------------------------------------------------------
# The command line.

_bool = dict(type=bool, metavar="BOOL")


@click.command(help=USAGE)
@click.option("--outdir", help="Where to save the results", metavar="DIR", required=True)
@click.option(
    "--data", help="Training data (folder or zip from dataset_tool.py) [default: embedded digits]", metavar="PATH"
)
@click.option(
    "--gpus",
    help=f"Processes on this node (GPUs; CPU processes without CUDA) [default: {DEFAULTS.gpus}]",
    type=click.IntRange(min=1),
    metavar="INT",
)
@click.option(
    "--batch",
    help="Total batch size over all processes [default: per --cfg]",
    type=click.IntRange(min=1),
    metavar="INT",
)
@click.option(
    "--batch-gpu",
    help="Batch per process and pass (gradient accumulation) [default: --batch/--gpus]",
    type=click.IntRange(min=1),
    metavar="INT",
)
@click.option("--cfg", help=f"Base config [default: {DEFAULTS.cfg}]", type=click.Choice(options_lib.CFG_NAMES))
@click.option("--gamma", help="R1 regularization weight [default: per --cfg]", type=NON_NEGATIVE)
@click.option("--kimg", help="Training duration in thousands of real images [default: per --cfg]", type=POSITIVE)
@click.option(
    "--tick", help="Thousands of images per progress tick [default: per --cfg]", type=POSITIVE, metavar="KIMG"
)
@click.option(
    "--snap", help=f"Snapshot interval in ticks [default: {DEFAULTS.snap}]", type=click.IntRange(min=1), metavar="INT"
)
@click.option(
    "--metrics",
    help='Comma-separated metrics or "none" [default: fdd2k_full on the embedded digits; else swd2k on the tiny '
    "config, fid50k_full where the Inception file is found, else swd16k]",
    metavar="LIST",
)
@click.option(
    "--detector-dir",
    help="Folder with the metric detector files (searched before $RLO_DETECTOR_DIR and the cache)",
    type=click.Path(file_okay=False),
    metavar="DIR",
)
@click.option("--seed", help=f"Random seed [default: {DEFAULTS.seed}]", type=SEED_RANGE, metavar="INT")
@click.option("--cond", help="Train a conditional model on the dataset labels [default: false]", **_bool)
@click.option("--subset", help="Train with only N images [default: all]", type=int, metavar="INT")
@click.option("--mirror", help="Add x-flipped copies of the images [default: false]", **_bool)
@click.option(
    "--aug",
    help=f"Augmentation mode [default: per --cfg: {options_lib.CFG_SPECS['paper256'].aug}; "
    f"{options_lib.CFG_SPECS['tiny'].aug} for tiny]",
    type=click.Choice(AUG_MODES),
)
@click.option(
    "--diffaug-policy", help=f"DiffAugment parts for --aug=diffaug [default: {DEFAULT_POLICY}]", metavar="LIST"
)
@click.option("--p", help="Augmentation probability for --aug=fixed", type=PROBABILITY)
@click.option("--target", help="ADA target value for --aug=ada [default: 0.6]", type=PROBABILITY)
@click.option("--augpipe", help="Augmentation pipeline [default: bgc]", type=click.Choice(list(AUGPIPE_SPECS)))
@click.option(
    "--resume",
    help="Our snapshot (continues its run: same data, loss, config and seed unless given) or "
    "an official .pkl (fine-tunes it)",
    metavar="PATH",
)
@click.option(
    "--freezed", help="Freeze the first N layers of D [default: 0]", type=click.IntRange(min=0), metavar="INT"
)
@click.option("--fp32", help="Disable mixed-precision training", **_bool)
@click.option("--nhwc", help="Use NHWC memory format with FP16", **_bool)
@click.option("--allow-tf32", help="Allow PyTorch to use TF32 internally", **_bool)
@click.option("--nobench", help="Disable cuDNN benchmarking", **_bool)
@click.option(
    "--workers",
    help="DataLoader worker processes [default: 3 with CUDA, else 0]",
    type=click.IntRange(min=0),
    metavar="INT",
)
@click.option("--loss", "loss", help=f"Adversarial loss [default: {DEFAULTS.loss}]", type=click.Choice(LOSS_NAMES))
@click.option("--k", help=f"Root k of the rooted losses [default: {LossOptions().adversarial.k:g}]", type=POSITIVE)
@click.option("--m", help="Multiplier m of the rooted losses [default: k]", type=POSITIVE)
@click.option("--glr", help="G learning rate [default: per --cfg]", type=POSITIVE)
@click.option("--dlr", help="D learning rate [default: per --cfg]", type=POSITIVE)
@click.option("--cbase", help="Capacity multiplier (channel_base) [default: per --cfg]", type=int)
@click.option("--cmax", help="Max. feature maps (channel_max) [default: per --cfg]", type=int)
@click.option("--map-depth", help="Mapping network depth [default: per --cfg]", type=int)
@click.option("--mbstd-group", help="Minibatch std group size [default: per --cfg]", type=int)
@click.option(
    "--blur",
    help="Initial blur sigma of D inputs (px), faded out over 200 kimg x batch/32 [default: 0]",
    type=NON_NEGATIVE,
)
@click.option(
    "--ema",
    help="Half-life of G_ema, the generator that snapshots and metrics use, in thousands of images "
    "[default: per --cfg]",
    type=POSITIVE,
    metavar="KIMG",
)
@click.option(
    "--ema-rampup",
    help="Cap G_ema's half-life at this fraction of the images seen so far; 0 = no cap [default: per --cfg]",
    type=NON_NEGATIVE,
    metavar="FRACTION",
)
@click.option(
    "--pairing",
    help=f"Pairing of the adversarial loss: standard, or relativistic (RpGAN: the loss on "
    f"D(real) - D(fake)) [default: {DEFAULTS.pairing}]",
    type=click.Choice(rlo.PAIRINGS),
)
@click.option(
    "--g-selfnorm",
    help="Divide G's loss by its batch-mean weight relative to CE: the member's direction at CE's scale, so "
    "eq. 4 at small k cannot explode [default: false]",
    **_bool,
)
@click.option(
    "--r2",
    help="R2 weight: gradient penalty on generated images, lazily with R1 (R3GAN: --r2 = --gamma) [default: 0]",
    type=NON_NEGATIVE,
    metavar="GAMMA",
)
@click.option(
    "--lecam",
    help="LeCam regularisation weight (Tseng et al. 2021; their StyleGAN2 runs: 3e-7) [default: 0]",
    type=NON_NEGATIVE,
    metavar="LAMBDA",
)
@click.option(
    "--optim-state",
    help="Snapshots that keep the optimizer state: the latest only (older ones shrink "
    f"to weights and counters) or all [default: {DEFAULTS.optim_state}]",
    type=click.Choice(OPTIMIZER_SNAPSHOTS),
)
@click.option("--dry-run", help="Print training options and exit", is_flag=True)
def main(outdir: str, dry_run: bool, **kwargs: Any) -> None:
    given = {key: value for key, value in kwargs.items() if value is not None}  # flags on the command line
    try:
        host_memory.requested()
    except ValueError as err:
        raise UserError(str(err)) from None
    ctx = distributed.torchrun_context()
    if ctx is not None:  # launched by torchrun: the world size is the process count, over all nodes
        if given.get("gpus", 1) not in (1, ctx.world_size):
            raise UserError(
                f"--gpus={given['gpus']} but torchrun started WORLD_SIZE={ctx.world_size} processes; "
                "leave --gpus out under torchrun"
            )
        if torch.cuda.is_available() and ctx.local_rank >= torch.cuda.device_count():
            raise UserError(
                f"LOCAL_RANK={ctx.local_rank} but only {torch.cuda.device_count()} CUDA devices are visible"
            )
        given["gpus"] = ctx.world_size

    resume = open_resume(given["resume"]) if "resume" in given else None
    if resume is not None and resume.kind == "snapshot" and not dry_run:  # that run was killed: its half-writes go
        for path in files.remove_stale_temp_files(os.path.dirname(os.path.abspath(resume.path))):
            click.echo(f"Removed {path}, left by a write that was killed")
    values = replay_flags(resume, given) if resume is not None and resume.stored is not None else given
    opts, desc = setup_training_options(
        TrainFlags(**values), cuda=torch.cuda.is_available(), local_gpus=ctx is None, resume_source=resume
    )
    notes = resume.notes if resume is not None else []
    if resume is not None and resume.cur_nimg >= round(opts.total_kimg * 1000):
        click.echo(
            f"{resume.path} is at {resume.kimg_text}, already at or past --kimg={opts.total_kimg:g}: nothing "
            "to train. Pass a larger --kimg to continue the run."
        )
        return
    warn_if_slow_on_cpu(opts, torch.cuda.is_available())
    if dry_run:
        print_summary(opts, notes)
        print("Dry run; exiting.")
        return
    resume_data = resume.networks if resume is not None else None
    if ctx is not None:
        run_process(ctx, opts, "env://", outdir, desc, notes=notes, resume_data=resume_data)
        return
    create_run_dir(opts, outdir, desc)
    if opts.num_gpus == 1:
        run_process(DistContext(), opts, notes=notes, resume_data=resume_data)
        return
    with tempfile.TemporaryDirectory() as tmp:
        init_method = "file://" + os.path.abspath(os.path.join(tmp, ".torch_distributed_init"))
        try:
            torch.multiprocessing.spawn(fn=_spawned, args=(opts, init_method, notes), nprocs=opts.num_gpus)
        except torch.multiprocessing.ProcessExitedException as err:
            raise SystemExit(err.exit_code if err.exit_code else 1) from None
