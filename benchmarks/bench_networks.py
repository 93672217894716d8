"""Forward+backward time of the StyleGAN2 generator and discriminator (training mode).

Prints median / min / max seconds over --reps repetitions for a tiny config, the full --cfg=cifar 32x32
networks and a 64x64 config. On CUDA it also compares the reference ops with the CUDA plugins.

    python3 benchmarks/bench_networks.py                      # CPU, all configs, batch 16
    python3 benchmarks/bench_networks.py --configs=cifar --reps=5 --profile   # --configs: comma-separated
    python3 benchmarks/bench_networks.py --device cuda        # ref vs cuda ops

Reference point (2-core CPU, fp32, batch 16, cifar config): official code takes ~11 s (G) and ~3.8 s (D).
On a shared machine the process CPU time (also printed) is the steadier figure.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import statistics
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import click
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import timing  # noqa: E402
from dnnlib.cli import CommaList, verbatim  # noqa: E402
from torch_utils.ops import bias_act, upfirdn2d  # noqa: E402
from training.networks import Discriminator, Generator  # noqa: E402

CONFIGS: dict[str, dict] = {
    "tiny": dict(
        G=dict(
            z_dim=64,
            c_dim=0,
            w_dim=64,
            img_resolution=32,
            img_channels=3,
            mapping_kwargs=dict(num_layers=2),
            synthesis_kwargs=dict(channel_base=4096, channel_max=128),
        ),
        D=dict(
            c_dim=0,
            img_resolution=32,
            img_channels=3,
            architecture="orig",
            channel_base=4096,
            channel_max=128,
            epilogue_kwargs=dict(mbstd_group_size=32),
        ),
    ),
    "cifar": dict(  # train.py --cfg=cifar, 32x32, fp32
        G=dict(
            z_dim=512,
            c_dim=0,
            w_dim=512,
            img_resolution=32,
            img_channels=3,
            mapping_kwargs=dict(num_layers=2),
            synthesis_kwargs=dict(channel_base=32768, channel_max=512, num_fp16_res=0, conv_clamp=None),
        ),
        D=dict(
            c_dim=0,
            img_resolution=32,
            img_channels=3,
            architecture="orig",
            channel_base=32768,
            channel_max=512,
            num_fp16_res=0,
            conv_clamp=None,
            epilogue_kwargs=dict(mbstd_group_size=32),
        ),
    ),
    "64px": dict(
        G=dict(
            z_dim=512,
            c_dim=0,
            w_dim=512,
            img_resolution=64,
            img_channels=3,
            mapping_kwargs=dict(num_layers=2),
            synthesis_kwargs=dict(channel_base=16384, channel_max=512),
        ),
        D=dict(
            c_dim=0,
            img_resolution=64,
            img_channels=3,
            channel_base=16384,
            channel_max=512,
            epilogue_kwargs=dict(mbstd_group_size=4),
        ),
    ),
}


@contextlib.contextmanager
def ops_impl(impl: str) -> Iterator[None]:
    """Route the networks' bias_act / upfirdn2d calls to one implementation ('ref' or 'cuda')."""
    saved = (bias_act.bias_act, upfirdn2d.upfirdn2d)
    bias_act.bias_act = functools.partial(saved[0], impl=impl)
    upfirdn2d.upfirdn2d = functools.partial(saved[1], impl=impl)
    try:
        yield
    finally:
        bias_act.bias_act, upfirdn2d.upfirdn2d = saved


def time_reps(fn: Callable[[], None], reps: int, device: torch.device) -> tuple[list[float], list[float]]:
    """(wall seconds, process CPU seconds summed over threads) per repetition, after one warm-up (allocator, plugin
    builds, algorithm selection)."""
    result = timing.measure(fn, reps, device, warmup=1)
    return result.wall, result.cpu


def g_step(G: Generator, batch: int, device: torch.device) -> Callable[[], None]:
    def step() -> None:
        z = torch.randn([batch, G.z_dim], device=device)
        c = torch.zeros([batch, G.c_dim], device=device)
        G(z, c).square().mean().backward()
        G.zero_grad(set_to_none=True)

    return step


def d_step(D: Discriminator, batch: int, device: torch.device) -> Callable[[], None]:
    def step() -> None:
        img = torch.randn([batch, D.img_channels, D.img_resolution, D.img_resolution], device=device)
        c = torch.zeros([batch, D.c_dim], device=device)
        torch.nn.functional.softplus(D(img, c)).mean().backward()
        D.zero_grad(set_to_none=True)

    return step


def summary(times: list[float]) -> str:
    return f"median {statistics.median(times):7.3f} s  min {min(times):7.3f}  max {max(times):7.3f}"


@click.command(help=verbatim(__doc__))
@click.option(
    "--configs", type=CommaList(choices=CONFIGS), default=",".join(CONFIGS), show_default=True, help="comma-separated"
)
@click.option("--batch", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--reps", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--device", default="cpu", show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=None, help="torch.set_num_threads (CPU)")
@click.option("--profile", is_flag=True, help="print the top ops of one fwd+bwd")
def main(configs: list[str], batch: int, reps: int, device: str, threads: int | None, profile: bool) -> None:
    device = torch.device(device)
    if threads is not None:
        torch.set_num_threads(threads)
    impls = ["ref", "cuda"] if device.type == "cuda" else ["ref"]
    print(
        f"torch {torch.__version__}  device {device}"
        f"{' (' + torch.cuda.get_device_name(device) + ')' if device.type == 'cuda' else ''}"
        f"  threads {torch.get_num_threads()}  batch {batch}  fp32  training mode"
        f"  load average {os.getloadavg()[0]:.1f} (other processes distort wall times)"
    )
    for name in configs:
        cfg = CONFIGS[name]
        torch.manual_seed(0)
        G = Generator(**cfg["G"]).train().requires_grad_(True).to(device)
        D = Discriminator(**cfg["D"]).train().requires_grad_(True).to(device)
        print(f"\n[{name}] G {json.dumps(cfg['G'])}\n[{name}] D {json.dumps(cfg['D'])}")
        for impl in impls:
            with ops_impl(impl):
                for label, step in [("G", g_step(G, batch, device)), ("D", d_step(D, batch, device))]:
                    wall, cpu = time_reps(step, reps, device)
                    print(f"  {label} fwd+bwd  impl={impl:4s}  wall {summary(wall)}  (n={len(wall)})", flush=True)
                    if device.type == "cpu":
                        print(f"  {label} fwd+bwd  impl={impl:4s}  cpu  {summary(cpu)}  (process CPU, all threads)")
                    if profile:
                        with torch.profiler.profile() as prof:
                            step()
                        sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
                        print(prof.key_averages().table(sort_by=sort, row_limit=15))


if __name__ == "__main__":
    main()
