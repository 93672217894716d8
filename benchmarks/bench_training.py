"""Training speed in s/kimg (thousands of real images shown to D), as the tick lines report it.

Runs the real training loop (all phases, ADA, EMA) on the embedded digits and prints the median with min/max
over the timed ticks (tick 0, which includes warm-up, is excluded) and the configuration. By default:
the `tiny` config on CPU; with a CUDA device also the paper256 networks at 64x64, batch 64 (the RLO paper's
StyleGAN2-ADA log shows 7.8 s/kimg for a 64x64 config on 2x RTX 2080 Ti). `--switches` times the baseline and
each training switch of train.py alone (RLO, relativistic pairing, R2, LeCam, DiffAugment), in rounds that run
every setting once so that background load hits them alike, and prints each one's cost relative to it.

    python benchmarks/bench_training.py                  # tiny on CPU (+ paper256@64 on CUDA when present)
    python benchmarks/bench_training.py --case=tiny --ticks=8
    python benchmarks/bench_training.py --case=tiny --switches --ticks=4
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import sys
import tempfile

import click
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import rlo  # noqa: E402
from benchmarks import results_file  # noqa: E402
from dnnlib.cli import verbatim  # noqa: E402
from torch_utils import host_memory  # noqa: E402
from training import options  # noqa: E402
from training.options import AugmentOptions, DataOptions, LossOptions, OptimizerOptions, TrainingOptions  # noqa: E402
from training.training_loop import training_loop  # noqa: E402

CASES = ("tiny", "paper256@64")

# Each switch as train.py would set it, applied to the CE baseline alone (the flag in docs/training.md's table).
SWITCHES: dict[str, dict] = {
    "baseline (ce, ada)": {},
    "--loss=rlo --k=2": {"adversarial": rlo.LossConfig("rlo", k=2.0)},
    "--pairing=relativistic": {"pairing": "relativistic"},
    "--r2=1": {"r2_gamma": 1.0},
    "--lecam=0.3": {"lecam_weight": 0.3},
    "--aug=diffaug": {"augment": AugmentOptions(mode="diffaug")},
}


def case_options(case: str, run_dir: str, ticks: int, loss: rlo.LossConfig) -> tuple[TrainingOptions, torch.device]:
    if case == "tiny":
        spec, resolution, device, steps_per_tick = options.CFG_SPECS["tiny"], 32, torch.device("cpu"), 4
    else:
        spec, resolution, device, steps_per_tick = options.CFG_SPECS["paper256"], 64, torch.device("cuda"), 32
        spec = dataclasses.replace(spec, mb=64, ref_gpus=1)
    G_kwargs, D_kwargs = options.network_kwargs(spec, resolution=resolution, channels=3, c_dim=0)
    tick_kimg = spec.mb * steps_per_tick / 1000
    opts = TrainingOptions(
        run_dir=run_dir,
        cfg=case,
        data=DataOptions(path=None, resolution=resolution, workers=0 if device.type == "cpu" else 3),
        G_kwargs=G_kwargs,
        D_kwargs=D_kwargs,
        G_opt=OptimizerOptions(lr=spec.lrate),
        D_opt=OptimizerOptions(lr=spec.lrate),
        loss=LossOptions(
            adversarial=loss,
            r1_gamma=spec.gamma,
            style_mixing_prob=0.9 if spec.mixing else 0,
            pl_weight=2 if spec.pl else 0,
        ),
        augment=AugmentOptions(mode="ada"),
        batch_size=spec.mb,
        batch_gpu=spec.mb,
        ema_kimg=spec.ema,
        ema_rampup=spec.ramp,
        total_kimg=(spec.mb + spec.mb * steps_per_tick * ticks) / 1000,
        kimg_per_tick=tick_kimg,
        image_snapshot_ticks=None,
        network_snapshot_ticks=None,
    )
    return opts, device


def with_switch(opts: TrainingOptions, switch: dict) -> TrainingOptions:
    switch = dict(switch)
    augment = switch.pop("augment", opts.augment)
    return dataclasses.replace(opts, augment=augment, loss=dataclasses.replace(opts.loss, **switch))


def timed_ticks(opts: TrainingOptions, device: torch.device) -> list[float]:
    """s/kimg of every tick but the first (which includes warm-up and compilation)."""
    with tempfile.TemporaryDirectory() as run_dir:
        training_loop(dataclasses.replace(opts, run_dir=run_dir), device=device)
        with open(os.path.join(run_dir, "stats.jsonl")) as f:
            stats = [json.loads(line) for line in f]
    return [s["Timing/sec_per_kimg"]["mean"] for s in stats[1:]]


def describe(opts: TrainingOptions, device: torch.device) -> str:
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    return (
        f"{where} | batch {opts.batch_size}, {opts.data.resolution}x{opts.data.resolution}, "
        f"G {opts.G_kwargs['synthesis_kwargs']}, mapping {opts.G_kwargs['mapping_kwargs']}, "
        f"z_dim {opts.G_kwargs['z_dim']}, R1 gamma {opts.loss.r1_gamma}, pl {opts.loss.pl_weight}"
    )


def spread(values: list[float]) -> dict[str, float]:
    return dict(median=statistics.median(values), min=min(values), max=max(values))


def run_case(case: str, ticks: int, loss: str) -> dict:
    opts, device = case_options(case, "", ticks, rlo.LossConfig(loss, k=2.0))
    timed = timed_ticks(opts, device)
    print(
        f"\n{case}: {statistics.median(timed):.2f} s/kimg (median of {len(timed)} ticks, min {min(timed):.2f}, "
        f"max {max(timed):.2f}) | loss {loss}, ADA bgc | {describe(opts, device)}",
        flush=True,
    )
    return dict(setup=describe(opts, device), loss=loss, s_per_kimg=spread(timed))


def run_switches(case: str, ticks: int, rounds: int) -> dict:
    """Runs every switch `rounds` times in turn; the cost of a switch is its median over the baseline's."""
    opts, device = case_options(case, "", ticks, rlo.LossConfig("ce"))
    print(
        f"{case}, {len(SWITCHES)} settings x {rounds} rounds x {ticks} timed ticks | {describe(opts, device)}",
        flush=True,
    )
    times: dict[str, list[float]] = {name: [] for name in SWITCHES}
    for round_index in range(rounds):
        for name, switch in SWITCHES.items():
            times[name] += timed_ticks(with_switch(opts, switch), device)
            print(
                f"  round {round_index + 1}/{rounds} {name}: {statistics.median(times[name]):.2f} s/kimg so far",
                flush=True,
            )
    base = statistics.median(times["baseline (ce, ada)"])
    print(f"\n{'setting':<24} {'s/kimg':>8} {'min':>7} {'max':>7} {'vs baseline':>12}")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:<24} {median:8.2f} {min(values):7.2f} {max(values):7.2f} {median / base:11.2f}x")
    settings = {name: dict(s_per_kimg=spread(v), vs_baseline=statistics.median(v) / base) for name, v in times.items()}
    return dict(setup=describe(opts, device), rounds=rounds, ticks=ticks, settings=settings)


@click.command(help=verbatim(__doc__))
@click.option("--case", type=click.Choice(["all", *CASES]), default="all", show_default=True)
@click.option("--ticks", type=click.IntRange(min=1), default=5, show_default=True, help="timed ticks per run")
@click.option("--loss", type=click.Choice(["ce", "rlo", "rlo-eq9"]), default="ce", show_default=True)
@click.option("--switches", is_flag=True, help="time each training switch against the CE baseline")
@click.option("--rounds", type=click.IntRange(min=1), default=2, show_default=True, help="with --switches")
@click.option("--json", "json_path", metavar="PATH", help="Write the figures here (with the command and date)")
def main(case: str, ticks: int, loss: str, switches: bool, rounds: int, json_path: str | None) -> None:
    if not torch.cuda.is_available():  # as train.py does on CPU; RLO_KEEP_HOST_MEMORY=0 measures glibc's defaults
        kept = host_memory.keep_freed_host_memory()
        print(f"host memory: {'freed blocks kept' if kept else 'glibc defaults'}")
    results = {}
    for name in CASES if case == "all" else [case]:
        if name == "paper256@64" and not torch.cuda.is_available():
            print(f"\n{name}: skipped (no CUDA device)")
            continue
        results[name] = run_switches(name, ticks, rounds) if switches else run_case(name, ticks, loss)
    if json_path:
        results_file.write(json_path, torch=torch.__version__, cpu_count=os.cpu_count(), results=results)


if __name__ == "__main__":
    main()
