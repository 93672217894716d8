"""3x3 weight-gradient time on CPU: oneDNN's kernel (torch.nn.grad.conv2d_weight) against this project's Winograd
(stride 1) and im2col (stride 2) routes, for a grid of layer widths and sizes, and the route conv2d_gradfix takes.

The cost rule `conv2d_winograd.pays` comes from this table: rerun it on another CPU before trusting the rule there.
Times are process CPU time, the two kernels interleaved rep by rep so that background load hits both alike.

    python benchmarks/bench_weight_grad.py                       # one thread, batch 16
    python benchmarks/bench_weight_grad.py --channels=64,512 --sizes=8,32 --threads=2
"""

from __future__ import annotations

import os
import statistics
import sys
import time

import click
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dnnlib.cli import CommaList, verbatim  # noqa: E402
from torch_utils.ops import conv2d_winograd  # noqa: E402


def cpu_ms(fn) -> float:
    start = time.process_time()
    fn()
    return (time.process_time() - start) * 1e3


def compare(channels: int, size: int, stride: int, batch: int, reps: int) -> tuple[str, float, float, str]:
    """(route geometry, oneDNN ms, ours ms, route taken) for one layer: its input is `size` px (+1 for stride 2,
    the padded output of the FIR filter before a downsampling convolution)."""
    side, padding = (size + 1, 0) if stride == 2 else (size, 1)
    x = torch.randn(batch, channels, side, side)
    w_shape = (channels, channels, 3, 3)
    grad_out = torch.randn_like(torch.nn.functional.conv2d(x, torch.randn(w_shape), stride=stride, padding=padding))
    geometry = conv2d_winograd._geometry(x, grad_out, (stride, stride), (padding, padding))
    onednn = lambda: torch.nn.grad.conv2d_weight(x, w_shape, grad_out, stride=stride, padding=padding)
    ours = lambda: conv2d_winograd.weight_grad(x, grad_out, w_shape, (stride, stride), (padding, padding))
    onednn(), ours()
    a, b = [], []
    for _ in range(reps):
        a.append(cpu_ms(onednn))
        b.append(cpu_ms(ours))
    taken = conv2d_winograd.route(x, grad_out, w_shape, (stride, stride), (padding, padding), (1, 1), 1) or "oneDNN"
    return geometry, statistics.median(a), statistics.median(b), taken


@click.command(help=verbatim(__doc__))
@click.option("--channels", type=CommaList(int), default="16,32,64,128,256,512", show_default=True)
@click.option("--sizes", type=CommaList(int), default="4,8,16,32", show_default=True, help="input sizes in px")
@click.option("--batch", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--reps", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True)
def main(channels: list[int], sizes: list[int], batch: int, reps: int, threads: int) -> None:
    torch.set_num_threads(threads)
    print(f"batch {batch}, {threads} thread(s), torch {torch.__version__}, median of {reps} reps (CPU time)")
    print(f"{'route':<9} {'stride':>6} {'C':>5} {'px':>4} {'oneDNN ms':>10} {'ours ms':>9} {'ours/oneDNN':>12}  taken")
    for stride in (1, 2):
        for c in channels:
            for size in sizes:
                if stride == 2 and size < 8:
                    continue
                geometry, a, b, taken = compare(c, size, stride, batch, reps)
                print(
                    f"{geometry:<9} {stride:>6} {c:>5} {size:>4} {a:>10.2f} {b:>9.2f} {b / a:>11.2f}x  {taken}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
