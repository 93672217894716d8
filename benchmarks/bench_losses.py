"""Forward+backward time of the loss family against F.cross_entropy, per logits size: a small classifier batch,
where per-op dispatch dominates, and a large one, where arithmetic does.

    python3 benchmarks/bench_losses.py --sizes=64x10,4096x1000 --json=benchmarks/results/losses.json

The cases run round-robin, in a new order each round, so background load and cache state hit each alike; each
repetition is one call and its backward. "rlo eq4, op by op" is the general path every other option takes (class
weights, smoothing, soft targets), timed on the same call, to show what the one-node common path (rlo.fused)
saves. "CE as a Python node" is cross-entropy itself computed the way rlo.fused computes a rooted loss (one Python
autograd node, closed-form backward) without the rooted transform: the least any loss written in Python costs.
"""

from __future__ import annotations

import os
import random
import statistics
import sys

import click
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import rlo  # noqa: E402
from benchmarks import (
    results_file,  # noqa: E402
    timing,  # noqa: E402
)
from dnnlib.cli import verbatim  # noqa: E402
from rlo import functional as RF  # noqa: E402


class PythonNodeCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy in one Python autograd node, backward (softmax - onehot) / N."""

    @staticmethod
    def forward(ctx, logits, target):
        log_p = torch.log_softmax(logits, 1)
        ctx.save_for_backward(target, log_p)
        return F.nll_loss(log_p, target)

    @staticmethod
    def backward(ctx, grad_output):
        target, log_p = ctx.saved_tensors
        coef = (grad_output / log_p.shape[0]).expand(log_p.shape[0], 1)
        grad = log_p.exp().mul_(coef)
        return grad.scatter_add_(1, target.unsqueeze(1), coef.neg()), None


CASES = {
    "F.cross_entropy": lambda x, t: F.cross_entropy(x, t),
    "CE as a Python node": PythonNodeCrossEntropy.apply,
    "rlo.cross_entropy": lambda x, t: rlo.cross_entropy(x, t),
    "rlo.RootedLoss(k=3)": rlo.RootedLoss(k=3),
    "rlo eq4 (k=3)": lambda x, t: rlo.rooted_cross_entropy(x, t, k=3),
    "rlo eq9 (k=3)": lambda x, t: rlo.rooted_cross_entropy(x, t, k=3, form="eq9"),
    "rlo eq4 (k=3), op by op": lambda x, t: RF._rooted_general(x, t, 3.0, 3.0, "eq4", "mean"),
    "focal (gamma=2)": lambda x, t: rlo.focal_loss(x, t, gamma=2.0),
}


def parse_sizes(text: str) -> list[tuple[int, int]]:
    try:
        sizes = [tuple(int(v) for v in part.lower().split("x")) for part in text.split(",")]
    except ValueError:
        sizes = []
    if not sizes or any(len(size) != 2 or min(size) < 1 for size in sizes):
        raise click.BadParameter(f"expected NxC[,NxC...], e.g. 64x10,4096x1000; got {text!r}", param_hint="--sizes")
    return sizes


def time_size(n: int, c: int, reps: int, device: torch.device) -> dict[str, dict]:
    logits = (torch.randn(n, c, device=device) * 3).requires_grad_(True)
    target = torch.randint(0, c, (n,), device=device)
    wall = {name: [] for name in CASES}
    cpu = {name: [] for name in CASES}
    order = list(CASES.items())
    shuffle = random.Random(0).shuffle
    for rep in range(reps + 5):  # round-robin in a new order each round; the first 5 rounds are warm-up
        shuffle(order)  # a case's place in the round (what ran before it, in the caches) would bias it
        for name, fn in order:
            logits.grad = None
            run = timing.measure(lambda fn=fn: fn(logits, target).backward(), 1, device, warmup=0)
            if rep >= 5:
                wall[name].append(run.wall[0] * 1e6)
                cpu[name].append(run.cpu[0] * 1e6)
    base_wall, base_cpu = statistics.median(wall["F.cross_entropy"]), statistics.median(cpu["F.cross_entropy"])
    return {
        name: dict(
            wall_us=timing.spread(wall[name]),
            cpu_us=timing.spread(cpu[name]),
            wall_ratio=statistics.median(wall[name]) / base_wall,
            cpu_ratio=statistics.median(cpu[name]) / base_cpu,
        )
        for name in CASES
    }


@click.command(help=verbatim(__doc__))
@click.option("--sizes", default="64x10,4096x1000", show_default=True, help="logits sizes NxC, comma-separated")
@click.option("--reps", type=click.IntRange(min=1), help="rounds per size  [default: about 2 s of F.ce each]")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--device", default="cpu", show_default=True)
@click.option("--json", "json_path", metavar="PATH", help="Write the figures here (with the command and date)")
def main(sizes, reps, threads, device, json_path):
    torch.set_num_threads(threads)
    device = torch.device(device)
    results = {}
    print(f"fwd+bwd, float32 on {device}, torch {torch.__version__}, {threads} thread(s); median [min, max] per call")
    for n, c in parse_sizes(sizes):
        rounds = reps or max(20, min(3000, int(2e4 / (1 + n * c / 1e4))))
        figures = time_size(n, c, rounds, device)
        results[f"{n}x{c}"] = dict(rounds=rounds, cases=figures)
        print(f"logits {n}x{c}, {rounds} rounds:")
        for name, fig in figures.items():
            w = fig["wall_us"]
            print(
                f"  {name:26s} {w['median']:9.1f} us [{w['min']:.1f}, {w['max']:.1f}]  "
                f"{fig['wall_ratio']:5.2f}x F.ce (CPU time {fig['cpu_ratio']:.2f}x)"
            )
    if json_path:
        results_file.write(
            json_path,
            torch=torch.__version__,
            device=str(device),
            threads=threads,
            cpu_count=os.cpu_count(),
            results=results,
        )


if __name__ == "__main__":
    main()
