"""Training speed in s/kimg (thousands of real images shown to D), as the tick lines report it.

Runs the real training loop (all phases, ADA, EMA) on the embedded digits and prints the median with min/max
over the timed ticks (tick 0, which includes warm-up, is excluded) and the configuration. By default:
the `tiny` config on CPU; with a CUDA device also the paper256 networks at 64x64, batch 64 (the RLO paper's
StyleGAN2-ADA log shows 7.8 s/kimg for a 64x64 config on 2x RTX 2080 Ti).

    python benchmarks/bench_training.py                  # tiny on CPU (+ paper256@64 on CUDA when present)
    python benchmarks/bench_training.py --case=tiny --ticks=8
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import rlo  # noqa: E402
from training import options  # noqa: E402
from training.options import AugmentOptions, DataOptions, LossOptions, OptimizerOptions, TrainingOptions  # noqa: E402


def case_options(case: str, run_dir: str, ticks: int, loss: str) -> tuple[TrainingOptions, torch.device]:
    if case == 'tiny':
        spec, resolution, device, steps_per_tick = options.CFG_SPECS['tiny'], 32, torch.device('cpu'), 4
    elif case == 'paper256@64':
        spec, resolution, device, steps_per_tick = options.CFG_SPECS['paper256'], 64, torch.device('cuda'), 32
        spec = dataclasses.replace(spec, mb=64, ref_gpus=1)
    else:
        raise ValueError(f'unknown case {case!r}')
    G_kwargs, D_kwargs = options.network_kwargs(spec, resolution=resolution, channels=3, c_dim=0)
    tick_kimg = spec.mb * steps_per_tick / 1000
    opts = TrainingOptions(
        run_dir=run_dir, cfg=case, data=DataOptions(path=None, resolution=resolution, workers=0 if device.type == 'cpu'
                                                    else 3),
        G_kwargs=G_kwargs, D_kwargs=D_kwargs, G_opt=OptimizerOptions(lr=spec.lrate),
        D_opt=OptimizerOptions(lr=spec.lrate),
        loss=LossOptions(adversarial=rlo.LossConfig(loss, k=2.0), r1_gamma=spec.gamma, style_mixing_prob=0.9 if spec.mixing else 0,
                         pl_weight=2 if spec.pl else 0),
        augment=AugmentOptions(mode='ada'), batch_size=spec.mb, batch_gpu=spec.mb, ema_kimg=spec.ema,
        ema_rampup=spec.ramp, total_kimg=(spec.mb + spec.mb * steps_per_tick * ticks) / 1000, kimg_per_tick=tick_kimg,
        image_snapshot_ticks=None, network_snapshot_ticks=None)
    return opts, device


def run_case(case: str, ticks: int, loss: str) -> None:
    from training.training_loop import training_loop
    with tempfile.TemporaryDirectory() as run_dir:
        opts, device = case_options(case, run_dir, ticks, loss)
        training_loop(opts, device=device)
        with open(os.path.join(run_dir, 'stats.jsonl')) as f:
            stats = [json.loads(line) for line in f]
    timed = [s['Timing/sec_per_kimg']['mean'] for s in stats[1:]]
    where = torch.cuda.get_device_name(device) if device.type == 'cuda' else f'CPU, {torch.get_num_threads()} threads'
    print(f'\n{case}: {statistics.median(timed):.2f} s/kimg (median of {len(timed)} ticks, min {min(timed):.2f}, '
          f'max {max(timed):.2f}) | {where} | batch {opts.batch_size}, {opts.data.resolution}x{opts.data.resolution}, '
          f'loss {loss}, G {opts.G_kwargs["synthesis_kwargs"]}, mapping {opts.G_kwargs["mapping_kwargs"]}, '
          f'z_dim {opts.G_kwargs["z_dim"]}, ADA bgc, R1 gamma {opts.loss.r1_gamma}, pl {opts.loss.pl_weight}', flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--case', choices=['all', 'tiny', 'paper256@64'], default='all')
    parser.add_argument('--ticks', type=int, default=5, help='timed ticks per case')
    parser.add_argument('--loss', choices=['ce', 'rlo', 'rlo-eq9'], default='ce')
    args = parser.parse_args()
    cases = ['tiny', 'paper256@64'] if args.case == 'all' else [args.case]
    for case in cases:
        if case == 'paper256@64' and not torch.cuda.is_available():
            print(f'\n{case}: skipped (no CUDA device)')
            continue
        run_case(case, args.ticks, args.loss)


if __name__ == '__main__':
    main()
