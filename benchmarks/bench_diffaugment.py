"""Time DiffAugment per policy, forward and forward+backward; prints median [min, max] in ms over repeats.

    python benchmarks/bench_diffaugment.py                       # CPU, batch 64 at 32 and 256 px
    python benchmarks/bench_diffaugment.py --device=cuda --threads=0 --res=64,128,256   # --res: comma-separated

For scale, the last row of each size is ADA's default pipe (AugmentPipe 'bgc' at p = 1, i.e. every
augmentation on every image), the augmentation DiffAugment replaces.
"""

from __future__ import annotations

import os
import statistics
import sys

import click
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import timing  # noqa: E402
from dnnlib.cli import CommaList, verbatim  # noqa: E402
from training.augment import AUGPIPE_SPECS, AugmentPipe  # noqa: E402
from training.diffaugment import DEFAULT_POLICY, DiffAugment  # noqa: E402


def time_ms(fn, x: torch.Tensor, backward: bool, repeats: int, warmup: int = 2) -> list[float]:
    def run():
        y = fn(x)
        if backward:
            y.square().sum().backward()

    return timing.measure(run, repeats, x.device, warmup, before=lambda: setattr(x, "grad", None)).ms()


def fmt(times: list[float]) -> str:
    return f"{statistics.median(times):9.2f} [{min(times):8.2f}, {max(times):8.2f}]"


@click.command(help=verbatim(__doc__))
@click.option("--device", default="cpu", show_default=True)
@click.option("--batch", type=click.IntRange(min=1), default=64, show_default=True)
@click.option(
    "--res",
    type=CommaList(click.IntRange(min=1)),
    default="32,256",
    show_default=True,
    help="comma-separated image sizes",
)
@click.option("--channels", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--repeats", type=click.IntRange(min=1), default=7, show_default=True)
@click.option(
    "--threads",
    type=click.IntRange(min=0),
    default=1,
    show_default=True,
    help="torch CPU threads (0: leave torch default)",
)
def main(device: str, batch: int, res: list[int], channels: int, repeats: int, threads: int) -> None:
    if threads:
        torch.set_num_threads(threads)
    device = torch.device(device)
    torch.manual_seed(0)
    print(
        f"device={device} batch={batch} channels={channels} repeats={repeats} "
        f"threads={torch.get_num_threads()} torch={torch.__version__}; ms: median [min, max]"
    )
    ada = AugmentPipe(**AUGPIPE_SPECS["bgc"]).to(device)
    ada.p.fill_(1.0)
    candidates = [(f"diffaug {p}", DiffAugment(p)) for p in ["color", "translation", "cutout", DEFAULT_POLICY]]
    candidates.append(("ADA bgc p=1 (reference)", ada))
    print(f"{'res':>4} {'augmentation':<36} {'forward':>30} {'forward+backward':>30}")
    for size in res:
        x = torch.randn([batch, channels, size, size], device=device).clamp(-1, 1).requires_grad_(True)
        for name, module in candidates:
            with torch.no_grad():
                fwd = time_ms(module, x, backward=False, repeats=repeats)
            both = time_ms(module, x, backward=True, repeats=repeats)
            print(f"{size:>4} {name:<36} {fmt(fwd):>30} {fmt(both):>30}", flush=True)


if __name__ == "__main__":
    main()
