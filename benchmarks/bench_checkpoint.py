"""Save / load time and file size of a --cfg=cifar snapshot (G, D, G_ema, augment pipe, full resume state).

Prints median / min / max seconds over --reps repetitions for save_snapshot and load_network (file in the page
cache), the time spent on tensor digests alone, and the file size with and without the optimizer state.

    python3 benchmarks/bench_checkpoint.py                 # cifar config, 5 reps, files in a temp folder
    python3 benchmarks/bench_checkpoint.py --reps 9 --dir /mnt/fast

On a shared machine the process CPU time (also printed) is the steadier figure.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import click
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import timing  # noqa: E402
from dnnlib.cli import verbatim  # noqa: E402
from training import checkpoint, options  # noqa: E402
from training.augment import AUGPIPE_SPECS, AugmentPipe  # noqa: E402
from training.networks import Discriminator, Generator  # noqa: E402


def cifar_training_state() -> tuple[dict, dict]:
    """Networks and a resume_state shaped like training_loop.gather_resume_state's, after one Adam step."""
    G_kwargs, D_kwargs = options.network_kwargs(options.CFG_SPECS["cifar"], resolution=32, channels=3, c_dim=10)
    torch.manual_seed(0)
    G, D = Generator(**G_kwargs), Discriminator(**D_kwargs)
    G_ema = Generator(**G_kwargs).eval()
    G_ema.load_state_dict(G.state_dict())
    optimizers = {}
    for name, net in (("G_opt", G), ("D_opt", D)):
        opt = torch.optim.Adam(net.parameters(), lr=0.0025, betas=(0.0, 0.99), eps=1e-8)
        for p in net.parameters():
            p.grad = torch.randn_like(p)
        opt.step()
        optimizers[name] = opt.state_dict()
        net.requires_grad_(False)
    resume_state = dict(
        version=1,
        cur_nimg=1000,
        cur_tick=1,
        batch_idx=10,
        **optimizers,
        pl_mean=torch.zeros([]),
        ada=None,
        latent_gen=torch.Generator().get_state(),
        rng=[checkpoint.capture_rng_state()],
    )
    nets = dict(G=G, D=D, G_ema=G_ema, augment_pipe=AugmentPipe(**AUGPIPE_SPECS["bgc"]))
    return nets, resume_state


def timed(fn: Callable[[], object], reps: int) -> tuple[list[float], list[float]]:
    result = timing.measure(fn, reps, warmup=0)
    return result.wall, result.cpu


def report(label: str, wall: list[float], cpu: list[float]) -> None:
    print(
        f"{label:<34s} wall median {statistics.median(wall):6.3f} s (min {min(wall):.3f}, max {max(wall):.3f})"
        f"   cpu median {statistics.median(cpu):6.3f} s"
    )


@click.command(help=verbatim(__doc__))
@click.option("--reps", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--dir", "folder", default=None, help="folder for the snapshot files [default: a temp folder]")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True)
def main(reps: int, folder: str | None, threads: int) -> None:
    torch.set_num_threads(threads)
    nets, resume_state = cifar_training_state()
    counts = {k: sum(t.numel() for t in v.state_dict().values()) for k, v in nets.items()}
    print(
        f"config: --cfg=cifar 32x32 c_dim=10, elements {counts}, torch {torch.__version__}, "
        f"{threads} thread(s), snapshot version {checkpoint.SNAPSHOT_VERSION}"
    )
    with tempfile.TemporaryDirectory(dir=folder) as folder:
        path = os.path.join(folder, "network-snapshot-000000.pt")
        save_kwargs = dict(overwrite=True) if "overwrite" in checkpoint.save_snapshot.__code__.co_varnames else {}
        report(
            "save_snapshot (full resume state)",
            *timed(
                lambda: checkpoint.save_snapshot(
                    path, nets, training_set_kwargs={}, resume_state=resume_state, **save_kwargs
                ),
                reps,
            ),
        )
        full_size = os.path.getsize(path)
        report("load_network (full resume state)", *timed(lambda: checkpoint.load_network(path), reps))
        if hasattr(checkpoint, "tensor_digests"):
            payload = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            report("  of which: tensor digests", *timed(lambda: checkpoint.tensor_digests(payload), reps))
            del payload
        print(f"file size with optimizer state:    {full_size / 2**20:8.1f} MiB")
        if hasattr(checkpoint, "strip_optimizer_state"):
            report("strip_optimizer_state", *timed(lambda: checkpoint.strip_optimizer_state(path), 1))
            print(f"file size without optimizer state: {os.path.getsize(path) / 2**20:8.1f} MiB")
            report("load_network (no optimizer state)", *timed(lambda: checkpoint.load_network(path), reps))
        weights_only = os.path.join(folder, "weights.pt")
        checkpoint.save_snapshot(weights_only, nets)
        print(f"file size of the networks alone:   {os.path.getsize(weights_only) / 2**20:8.1f} MiB")


if __name__ == "__main__":
    main()
