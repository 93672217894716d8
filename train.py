"""Train a StyleGAN2(-ADA) generator with the CE or a rooted logistic (RLO) adversarial loss.

Examples:

\b
  # Embedded default: scikit-learn digits at 32x32, tiny CPU config (a few minutes on a laptop CPU).
  python train.py --outdir=runs
\b
  # RLO (eq. 4, k = 2) on a dataset prepared with dataset_tool.py, 2 GPUs of one node.
  python train.py --outdir=runs --data=datasets/ffhq256.zip --gpus=2 --cfg=paper256 --mirror=1 --loss=rlo --k=2
\b
  # Several nodes: torchrun sets RANK/WORLD_SIZE/LOCAL_RANK; --batch is the total over all processes.
  torchrun --nnodes=2 --node-rank=0 --nproc-per-node=8 --master-addr=host0 --master-port=29500 train.py ...
  torchrun --nnodes=2 --node-rank=1 --nproc-per-node=8 --master-addr=host0 --master-port=29500 train.py ...
\b
  # Continue a run exactly where its snapshot left off (optimizers, augment p, counters, RNGs).
  python train.py --outdir=runs --kimg=24 --resume=runs/00000-digits32-tiny-ce-ada/network-snapshot-000012.pt

--cfg=auto picks the `tiny` config when no CUDA device is present (32-64 channels, 64-d latents, fp32, batch 16,
12 kimg), and StyleGAN2-ADA's resolution-based heuristic on GPUs.
"""
from __future__ import annotations

import dataclasses
import os
import re
import sys
import tempfile
from typing import Any, Optional

import click
import torch

import rlo

from torch_utils import distributed
from torch_utils.distributed import DistContext
from training import options as options_lib
from training.options import (AugmentOptions, DataOptions, LossOptions, OptimizerOptions, TrainingOptions)

AUG_MODES = ('noaug', 'ada', 'fixed')
LOSS_NAMES = ('ce', 'rlo', 'rlo-eq9')


class UserError(click.UsageError):
    """An invalid flag or flag combination, reported before anything runs."""


def _parse_comma_list(text: str) -> list[str]:
    if text is None or text.lower() == 'none' or text == '':
        return []
    return [item for item in text.split(',') if item]


def check_metrics(metrics: list[str], detector_dir: Optional[str] = None) -> None:
    """Every metric name is valid and its detector weights are on disk (nothing is downloaded)."""
    if not metrics:
        return
    from metrics import detectors, metric_main
    for metric in metrics:
        if not metric_main.is_valid_metric(metric):
            raise UserError(f'--metrics: unknown metric {metric!r}; valid: {", ".join(metric_main.list_valid_metrics())}'
                            ' (or "none")')
        spec = metric_main.parse_metric(metric)
        try:
            detectors.locate_detector(metric_main.detector_kind(metric), detector_dir=detector_dir,
                                      need_lpips=spec.family == 'ppl')
        except detectors.DetectorNotFoundError as err:
            raise UserError(f'--metrics={metric} needs detector weights that are not on this machine:\n{err}\n'
                            'Or train without metrics: --metrics=none') from None


def setup_training_options(
    data: Optional[str] = None, gpus: int = 1, batch: Optional[int] = None, batch_gpu: Optional[int] = None,
    cfg: str = 'auto', gamma: Optional[float] = None, kimg: Optional[float] = None, tick: Optional[float] = None,
    snap: int = 50, metrics: Optional[str] = None, detector_dir: Optional[str] = None, seed: int = 0, cond: bool = False, subset: Optional[int] = None,
    mirror: bool = False, aug: str = 'ada', p: Optional[float] = None, target: Optional[float] = None,
    augpipe: Optional[str] = None, resume: Optional[str] = None, freezed: int = 0, fp32: bool = False,
    nhwc: bool = False, allow_tf32: bool = False, nobench: bool = False, workers: Optional[int] = None,
    loss: str = 'ce', k: Optional[float] = None, m: Optional[float] = None, glr: Optional[float] = None,
    dlr: Optional[float] = None,    cbase: Optional[int] = None, cmax: Optional[int] = None, map_depth: Optional[int] = None,
    mbstd_group: Optional[int] = None, blur: float = 0.0, cuda: Optional[bool] = None, local_gpus: bool = True,
) -> tuple[TrainingOptions, str]:
    """CLI values -> (TrainingOptions without run_dir, run description); UserError on any invalid value.

    cuda: whether processes train on CUDA devices (default: if available); local_gpus: --gpus processes are
    spawned on this node (False under torchrun, where --gpus is the world size over all nodes).
    """
    from training.augment import AUGPIPE_SPECS
    from training.dataset import DatasetError, open_dataset
    cuda = torch.cuda.is_available() if cuda is None else cuda

    # Processes and dataset.
    if gpus < 1:
        raise UserError(f'--gpus must be at least 1, got {gpus}')
    if gpus & (gpus - 1):
        raise UserError(f'--gpus must be a power of two, got {gpus}')
    if cuda and local_gpus and gpus > torch.cuda.device_count():
        raise UserError(f'--gpus={gpus}, but only {torch.cuda.device_count()} CUDA devices are visible')
    if subset is not None and subset < 1:
        raise UserError(f'--subset must be at least 1, got {subset}')
    if workers is None:
        workers = 3 if cuda else 0  # in-process loading is cheaper than worker processes on a small CPU
    if workers < 0:
        raise UserError(f'--workers must be >= 0, got {workers}')
    data_opts = DataOptions(path=data, use_labels=cond, max_size=subset, xflip=mirror, random_seed=seed,
                            workers=workers)
    try:
        dataset = open_dataset(**data_opts.dataset_kwargs())
    except (DatasetError, FileNotFoundError, OSError) as err:
        raise UserError(f'--data={data!r}: {err}') from None
    data_opts.resolution = dataset.resolution
    if cond and not dataset.has_labels:
        raise UserError(f'--cond=1 requires labels, but {data or "the embedded dataset"} has none '
                        '(dataset.json with "labels")')
    if subset is not None and subset > len(dataset):
        raise UserError(f'--subset={subset} exceeds the {len(dataset)} images of {dataset.name}')
    desc = dataset.name + ('-cond' if cond else '') + ('-mirror' if mirror else '')

    # Base config.
    if cfg not in options_lib.CFG_NAMES:
        raise UserError(f'--cfg={cfg!r}; choose one of {", ".join(options_lib.CFG_NAMES)}')
    spec = options_lib.auto_spec(dataset.resolution, gpus, cuda) if cfg == 'auto' else options_lib.CFG_SPECS[cfg]
    cfg_name = ('tiny' if not cuda else f'auto{gpus}') if cfg == 'auto' else cfg
    desc += f'-{cfg_name}'
    overrides: dict[str, Any] = {}
    for flag, field, value, low in [('--gamma', 'gamma', gamma, 0), ('--kimg', 'kimg', kimg, None),
                                    ('--tick', 'tick', tick, None), ('--glr', 'lrate', glr, None),
                                    ('--cbase', 'cbase', cbase, None), ('--cmax', 'cmax', cmax, None),
                                    ('--map-depth', 'map', map_depth, None), ('--mbstd-group', 'mbstd', mbstd_group, None)]:
        if value is None:
            continue
        if (low is None and value <= 0) or (low is not None and value < low):
            raise UserError(f'{flag} must be {">= 0" if low == 0 else "> 0"}, got {value}')
        overrides[field] = value
    spec = dataclasses.replace(spec, **overrides)
    if dlr is not None and dlr <= 0:
        raise UserError(f'--dlr must be > 0, got {dlr}')

    # Batch.
    if batch is not None:
        if batch < 1 or batch % gpus != 0:
            raise UserError(f'--batch={batch} must be a positive multiple of --gpus={gpus}')
        spec = dataclasses.replace(spec, mb=batch)
    if batch_gpu is None:
        batch_gpu = spec.mb // spec.ref_gpus if batch is None and gpus <= spec.ref_gpus else spec.mb // gpus
        batch_gpu = max(batch_gpu, 1)
    if batch_gpu < 1 or spec.mb % (batch_gpu * gpus) != 0:
        raise UserError(f'--batch={spec.mb} must be a multiple of --batch-gpu={batch_gpu} times --gpus={gpus}')
    group = min(spec.mbstd, batch_gpu)
    if batch_gpu % group != 0:
        raise UserError(f'--batch-gpu={batch_gpu} must be a multiple of the minibatch-stddev group '
                        f'(--mbstd-group={spec.mbstd})')
    if batch is not None:
        desc += f'-batch{batch}'

    # Loss.
    if loss not in LOSS_NAMES:
        raise UserError(f'--loss={loss!r}; choose one of {", ".join(LOSS_NAMES)}')
    if loss == 'ce' and (k is not None or m is not None):
        raise UserError('--k and --m set the rooted losses; use them with --loss=rlo or --loss=rlo-eq9')
    try:
        adversarial = rlo.LossConfig(loss, k=2.0 if k is None else k, m=m)
    except ValueError as err:
        raise UserError(f'--loss={loss} --k={k} --m={m}: {err}') from None
    loss_opts = LossOptions(adversarial=adversarial, r1_gamma=spec.gamma,
                            style_mixing_prob=0.9 if spec.mixing else 0.0, pl_weight=2.0 if spec.pl else 0.0)
    if blur < 0:
        raise UserError(f'--blur must be >= 0, got {blur}')
    if blur > 0:
        loss_opts.blur_init_sigma, loss_opts.blur_fade_kimg = blur, spec.mb * 200 / 32
    desc += f'-{adversarial.describe()}'
    if gamma is not None:
        desc += f'-gamma{gamma:g}'
    if kimg is not None:
        desc += f'-kimg{kimg:g}'

    # Augmentation.
    if aug not in AUG_MODES:
        raise UserError(f'--aug={aug!r}; choose one of {", ".join(AUG_MODES)}')
    if p is not None and aug != 'fixed':
        raise UserError('--p can only be given with --aug=fixed')
    if p is not None and not 0 <= p <= 1:
        raise UserError(f'--p must be between 0 and 1, got {p}')
    if target is not None and aug != 'ada':
        raise UserError('--target can only be given with --aug=ada')
    if target is not None and not 0 <= target <= 1:
        raise UserError(f'--target must be between 0 and 1, got {target}')
    if augpipe is not None and aug == 'noaug':
        raise UserError('--augpipe cannot be given with --aug=noaug')
    if augpipe is not None and augpipe not in AUGPIPE_SPECS:
        raise UserError(f'--augpipe={augpipe!r}; choose one of {", ".join(AUGPIPE_SPECS)}')
    if aug == 'fixed' and p is None:
        raise UserError('--aug=fixed needs --p')
    aug_opts = AugmentOptions(mode=aug, pipe=augpipe or 'bgc', p=p or 0.0, target=0.6 if target is None else target)
    desc += f'-{aug}' + (f'-p{p:g}' if p is not None else '') + (f'-target{target:g}' if target is not None else '')
    desc += f'-{augpipe}' if augpipe is not None else ''

    # Networks.
    if freezed < 0:
        raise UserError(f'--freezed must be >= 0, got {freezed}')
    G_kwargs, D_kwargs = options_lib.network_kwargs(spec, dataset.resolution, dataset.num_channels, dataset.label_dim
                                                    if cond else 0, fp32=fp32, nhwc=nhwc, freezed=freezed)
    desc += f'-freezed{freezed}' if freezed else ''
    desc += '-fp32' if fp32 and spec.fp16_res else ''

    # Metrics, snapshots, resume.
    if snap < 1:
        raise UserError(f'--snap must be at least 1, got {snap}')
    if metrics is None:  # FID on GPUs; on the CPU config the offline digits metric, when training on digits
        metrics = ('fdd2k_full' if data is None else 'none') if cfg_name == 'tiny' else 'fid50k_full'
    metric_list = _parse_comma_list(metrics)
    check_metrics(metric_list, detector_dir)
    ema_rampup, ada_kimg = spec.ramp, 500.0
    if resume is not None:
        from training import checkpoint
        try:
            resume_data = checkpoint.load_network(resume)
        except (checkpoint.CheckpointError, FileNotFoundError, OSError) as err:
            raise UserError(f'--resume={resume}: {err}') from None
        if resume_data.get('resume_state') is None:  # fine-tuning from weights, as StyleGAN2-ADA does
            ema_rampup, ada_kimg = None, 100.0
        desc += '-resume'
    aug_opts.kimg = ada_kimg

    opts = TrainingOptions(
        cfg=cfg_name, data=data_opts, G_kwargs=G_kwargs, D_kwargs=D_kwargs,
        G_opt=OptimizerOptions(lr=spec.lrate), D_opt=OptimizerOptions(lr=dlr if dlr is not None else spec.lrate),
        loss=loss_opts, augment=aug_opts, num_gpus=gpus, batch_size=spec.mb, batch_gpu=batch_gpu,
        ema_kimg=spec.ema, ema_rampup=ema_rampup, total_kimg=spec.kimg, kimg_per_tick=spec.tick,
        image_snapshot_ticks=snap, network_snapshot_ticks=snap, metrics=metric_list, detector_dir=detector_dir,
        random_seed=seed,
        resume=resume, cudnn_benchmark=not nobench, allow_tf32=allow_tf32,
        repair_nonfinite_grads=bool(spec.fp16_res) and not fp32)
    return opts, desc


def next_run_dir(outdir: str, desc: str) -> str:
    """<outdir>/<NNNNN>-<desc> with NNNNN one above the highest existing run number."""
    existing = os.listdir(outdir) if os.path.isdir(outdir) else []
    ids = [int(match.group()) for name in existing if (match := re.match(r'^\d+', name))
           and os.path.isdir(os.path.join(outdir, name))]
    return os.path.join(outdir, f'{max(ids, default=-1) + 1:05d}-{desc}')


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


def run_process(ctx: DistContext, opts: TrainingOptions, init_method: str = 'env://', outdir: str = '',
                desc: str = '') -> None:
    """One training process: device, process group, run directory (rank 0 when not made yet), log.txt, loop."""
    from training.training_loop import NonFiniteError, training_loop
    cuda = torch.cuda.is_available()
    device = torch.device('cuda', ctx.local_rank) if cuda else torch.device('cpu')
    if cuda:
        torch.cuda.set_device(device)
    elif ctx.world_size > 1:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // ctx.world_size))
    distributed.init_process_group(ctx, device, init_method)
    log_file, saved = None, (sys.stdout, sys.stderr)
    try:
        if not opts.run_dir:  # torchrun: every process parsed the CLI; rank 0 names the run for all
            if ctx.is_main:
                create_run_dir(opts, outdir, desc)
                print_summary(opts)
            opts.run_dir = distributed.broadcast_object(opts.run_dir)
        if ctx.is_main:
            log_file = open(os.path.join(opts.run_dir, 'log.txt'), 'at')
            sys.stdout, sys.stderr = _Tee(sys.stdout, log_file), _Tee(sys.stderr, log_file)
        training_loop(opts, ctx, device)
    except NonFiniteError as err:
        if ctx.is_main:
            print(f'\nTraining stopped: {err}', file=sys.stderr, flush=True)
        raise SystemExit(3) from None
    finally:
        sys.stdout, sys.stderr = saved
        if log_file is not None:
            log_file.close()
        distributed.destroy_process_group()


def _spawned(rank: int, opts: TrainingOptions, init_method: str) -> None:
    run_process(DistContext(rank=rank, world_size=opts.num_gpus, local_rank=rank), opts, init_method)


def create_run_dir(opts: TrainingOptions, outdir: str, desc: str) -> None:
    opts.run_dir = next_run_dir(outdir, desc)
    os.makedirs(opts.run_dir)
    from training.checkpoint import atomic_write
    atomic_write(os.path.join(opts.run_dir, 'training_options.json'), lambda f: f.write(opts.to_json().encode()))


def print_summary(opts: TrainingOptions) -> None:
    print('\nTraining options:')
    print(opts.to_json())
    print()
    print(f'Output directory:    {opts.run_dir or "(set at launch)"}')
    print(f'Training data:       {opts.data.path or "embedded sklearn digits"} ({opts.data.resolution}px)')
    print(f'Config:              {opts.cfg}')
    print(f'Loss:                {opts.loss.adversarial.describe()}')
    print(f'Training duration:   {opts.total_kimg:g} kimg')
    print(f'Number of processes: {opts.num_gpus} ({"CUDA" if torch.cuda.is_available() else "CPU"})')
    print(f'Batch:               {opts.batch_size} total, {opts.batch_gpu} per process and pass')
    print(f'Metrics:             {", ".join(opts.metrics) or "none"}')
    print()


@click.command(help=__doc__)
@click.option('--outdir', help='Where to save the results', metavar='DIR', required=True)
@click.option('--data', help='Training data (folder or zip from dataset_tool.py) [default: embedded digits]', metavar='PATH')
@click.option('--gpus', help='Processes on this node (GPUs; CPU processes without CUDA) [default: 1]', type=int, default=1, metavar='INT')
@click.option('--batch', help='Total batch size over all processes [default: per --cfg]', type=int, metavar='INT')
@click.option('--batch-gpu', help='Batch per process and pass (gradient accumulation) [default: --batch/--gpus]', type=int, metavar='INT')
@click.option('--cfg', help='Base config [default: auto]', type=click.Choice(options_lib.CFG_NAMES), default='auto')
@click.option('--gamma', help='R1 regularization weight [default: per --cfg]', type=float)
@click.option('--kimg', help='Training duration in thousands of real images [default: per --cfg]', type=float)
@click.option('--tick', help='Thousands of images per progress tick [default: per --cfg]', type=float, metavar='KIMG')
@click.option('--snap', help='Snapshot interval in ticks [default: 50]', type=int, default=50, metavar='INT')
@click.option('--metrics', help='Comma-separated metrics or "none" [default: fid50k_full; tiny config: fdd2k_full on '
              'the embedded digits, else none]', metavar='LIST')
@click.option('--detector-dir', help='Folder with the metric detector files (searched before $RLO_DETECTOR_DIR and '
              'the cache)', type=click.Path(file_okay=False), metavar='DIR')
@click.option('--seed', help='Random seed [default: 0]', type=int, default=0, metavar='INT')
@click.option('--cond', help='Train a conditional model on the dataset labels [default: false]', type=bool, default=False, metavar='BOOL')
@click.option('--subset', help='Train with only N images [default: all]', type=int, metavar='INT')
@click.option('--mirror', help='Add x-flipped copies of the images [default: false]', type=bool, default=False, metavar='BOOL')
@click.option('--aug', help='Augmentation mode [default: ada]', type=click.Choice(AUG_MODES), default='ada')
@click.option('--p', help='Augmentation probability for --aug=fixed', type=float)
@click.option('--target', help='ADA target value for --aug=ada [default: 0.6]', type=float)
@click.option('--augpipe', help='Augmentation pipeline [default: bgc]', type=click.Choice(
    ['blit', 'geom', 'color', 'filter', 'noise', 'cutout', 'bg', 'bgc', 'bgcf', 'bgcfn', 'bgcfnc']))
@click.option('--resume', help='Our snapshot (continues the run exactly) or official .pkl (fine-tunes)', metavar='PATH')
@click.option('--freezed', help='Freeze the first N layers of D [default: 0]', type=int, default=0, metavar='INT')
@click.option('--fp32', help='Disable mixed-precision training', type=bool, default=False, metavar='BOOL')
@click.option('--nhwc', help='Use NHWC memory format with FP16', type=bool, default=False, metavar='BOOL')
@click.option('--allow-tf32', help='Allow PyTorch to use TF32 internally', type=bool, default=False, metavar='BOOL')
@click.option('--nobench', help='Disable cuDNN benchmarking', type=bool, default=False, metavar='BOOL')
@click.option('--workers', help='DataLoader worker processes [default: 3 with CUDA, else 0]', type=int, metavar='INT')
@click.option('--loss', 'loss', help='Adversarial loss: ce, rlo (eq. 4) or rlo-eq9 [default: ce]', type=click.Choice(LOSS_NAMES), default='ce')
@click.option('--k', help='Root k of the rooted losses [default: 2]', type=float)
@click.option('--m', help='Multiplier m of the rooted losses [default: k]', type=float)
@click.option('--glr', help='G learning rate [default: per --cfg]', type=float)
@click.option('--dlr', help='D learning rate [default: per --cfg]', type=float)
@click.option('--cbase', help='Capacity multiplier (channel_base) [default: per --cfg]', type=int)
@click.option('--cmax', help='Max. feature maps (channel_max) [default: per --cfg]', type=int)
@click.option('--map-depth', help='Mapping network depth [default: per --cfg]', type=int)
@click.option('--mbstd-group', help='Minibatch std group size [default: per --cfg]', type=int)
@click.option('--blur', help='Initial blur sigma of D inputs (px), faded out over 200 kimg x batch/32 [default: 0]', type=float, default=0.0)
@click.option('--dry-run', help='Print training options and exit', is_flag=True)
def main(outdir: str, dry_run: bool, **kwargs: Any) -> None:
    ctx = distributed.torchrun_context()
    if ctx is not None:  # launched by torchrun: the world size is the process count, over all nodes
        if kwargs['gpus'] not in (1, ctx.world_size):
            raise UserError(f'--gpus={kwargs["gpus"]} but torchrun started WORLD_SIZE={ctx.world_size} processes; '
                            'leave --gpus out under torchrun')
        if torch.cuda.is_available() and ctx.local_rank >= torch.cuda.device_count():
            raise UserError(f'LOCAL_RANK={ctx.local_rank} but only {torch.cuda.device_count()} CUDA devices are visible')
        kwargs['gpus'] = ctx.world_size
    opts, desc = setup_training_options(**kwargs, cuda=torch.cuda.is_available(), local_gpus=ctx is None)
    if dry_run:
        print_summary(opts)
        print('Dry run; exiting.')
        return
    if ctx is not None:
        run_process(ctx, opts, 'env://', outdir, desc)
        return
    create_run_dir(opts, outdir, desc)
    print_summary(opts)
    if opts.num_gpus == 1:
        run_process(DistContext(), opts)
        return
    with tempfile.TemporaryDirectory() as tmp:
        init_method = 'file://' + os.path.abspath(os.path.join(tmp, '.torch_distributed_init'))
        try:
            torch.multiprocessing.spawn(fn=_spawned, args=(opts, init_method), nprocs=opts.num_gpus)
        except torch.multiprocessing.ProcessExitedException as err:
            raise SystemExit(err.exit_code if err.exit_code else 1) from None


if __name__ == '__main__':
    main()
