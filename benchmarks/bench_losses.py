"""Forward+backward time of the loss family vs F.cross_entropy (target: rooted CE <= 1.2x CE's time).

python benchmarks/bench_losses.py [--n 4096] [--c 1000] [--reps 30] [--device cpu]
"""

import os
import statistics
import sys

import click
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import rlo  # noqa: E402
from benchmarks import timing  # noqa: E402
from dnnlib.cli import verbatim  # noqa: E402


def time_once(fn, logits, target, device):
    x = logits.detach().requires_grad_(True)
    return timing.measure(lambda: fn(x, target).backward(), 1, device, warmup=0).ms()[0]


@click.command(help=verbatim(__doc__))
@click.option("--n", type=click.IntRange(min=1), default=4096, show_default=True, help="rows (samples)")
@click.option("--c", type=click.IntRange(min=2), default=1000, show_default=True, help="classes")
@click.option("--reps", type=click.IntRange(min=1), default=30, show_default=True)
@click.option("--device", default="cpu", show_default=True)
def main(n, c, reps, device):
    device = torch.device(device)
    logits = torch.randn(n, c, device=device) * 3
    target = torch.randint(0, c, (n,), device=device)
    cases = {
        "F.cross_entropy": lambda x, t: F.cross_entropy(x, t),
        "rlo ce": lambda x, t: rlo.cross_entropy(x, t),
        "rlo eq4 (k=3)": lambda x, t: rlo.rooted_cross_entropy(x, t, k=3),
        "rlo eq9 (k=3)": lambda x, t: rlo.rooted_cross_entropy(x, t, k=3, form="eq9"),
        "focal (g=3)": lambda x, t: rlo.focal_loss(x, t),
        "unhinged": lambda x, t: rlo.unhinged_loss(x, t),
    }
    print(
        f"fwd+bwd, logits {n}x{c} float32 on {device}, torch {torch.__version__}, "
        f"threads {torch.get_num_threads()}, {reps} reps"
    )
    times = {name: [] for name in cases}
    for rep in range(reps + 3):  # round-robin so that background load hits every case alike
        for name, fn in cases.items():
            elapsed = time_once(fn, logits, target, device)
            if rep >= 3:  # warm-up
                times[name].append(elapsed)
    base = statistics.median(times["F.cross_entropy"])
    base_min = min(times["F.cross_entropy"])
    for name, samples in times.items():
        med, lo, hi = statistics.median(samples), min(samples), max(samples)
        print(
            f"  {name:18s} median {med:8.2f} ms  (min {lo:8.2f}, max {hi:8.2f})  "
            f"{med / base:5.2f}x CE median, {lo / base_min:5.2f}x CE min"
        )


if __name__ == "__main__":
    main()
