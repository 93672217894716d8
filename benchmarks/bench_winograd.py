"""3x3 convolutions on CPU: oneDNN against this project's routes (conv2d_winograd), for a grid of layer widths and
sizes, and the route conv2d_gradfix takes. --op=forward: F.conv2d(padding=1) against conv2d_winograd.conv3x3 (the
input gradient is the same computation); --op=weight: torch.nn.grad.conv2d_weight against the Winograd (stride 1)
and im2col (stride 2) weight gradients; --op=transpose: F.conv_transpose2d(stride=2) (the generator's upsampling
convolutions, the input gradient of each downsampling one) against conv_transpose3x3_stride2. --max-tile=2 keeps
F(2x2, 3x3) where F(4x4, 3x3) would be taken.

The cost rules `conv2d_winograd.forward_pays`, `pays` and `transpose_pays` come from this table: rerun it on another
CPU before trusting them there. Times are process CPU time, the two kernels interleaved rep by rep so that background
load hits both alike, with freed host memory kept as train.py keeps it on CPU (--host-memory=system: glibc's
defaults).

    python benchmarks/bench_winograd.py                       # one thread, batch 16, both ops
    python benchmarks/bench_winograd.py --op=forward --channels=64,512 --sizes=8,32 --threads=2
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
from torch_utils import host_memory as host_memory_module  # noqa: E402
from torch_utils.ops import conv2d_winograd  # noqa: E402


def cpu_ms(fn) -> float:
    start = time.process_time()
    fn()
    return (time.process_time() - start) * 1e3


def interleaved_medians(onednn, ours, reps: int) -> tuple[float, float]:
    """Median CPU ms of each after one warm-up call each, the two alternating rep by rep (load hits both alike)."""
    onednn(), ours()
    a, b = [], []
    for _ in range(reps):
        a.append(cpu_ms(onednn))
        b.append(cpu_ms(ours))
    return statistics.median(a), statistics.median(b)


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
    a, b = interleaved_medians(onednn, ours, reps)
    taken = conv2d_winograd.route(x, grad_out, w_shape, (stride, stride), (padding, padding), (1, 1), 1) or "oneDNN"
    return geometry, a, b, taken


def compare_forward(channels: int, size: int, batch: int, reps: int) -> tuple[float, float, str]:
    """(oneDNN ms, Winograd ms, route taken) of one stride-1 3x3 layer on a `size` px input."""
    x = torch.randn(batch, channels, size, size)
    w = torch.randn(channels, channels, 3, 3) / (3 * channels**0.5)
    b = torch.randn(channels)
    onednn = lambda: torch.nn.functional.conv2d(x, w, b, padding=1)
    ours = lambda: conv2d_winograd.conv3x3(x, w, b)
    taken = "winograd" if conv2d_winograd.forward_route(x, w, b, (1, 1), (1, 1), (1, 1), 1) else "oneDNN"
    return (*interleaved_medians(onednn, ours, reps), taken)


def compare_transpose(channels: int, size: int, batch: int, reps: int) -> tuple[float, float, str]:
    """(oneDNN ms, ours ms, route taken) of one stride-2 3x3 transposed conv on a `size` px input."""
    x = torch.randn(batch, channels, size, size)
    w = torch.randn(channels, channels, 3, 3) / (3 * channels**0.5)
    b = torch.randn(channels)
    onednn = lambda: torch.nn.functional.conv_transpose2d(x, w, b, stride=2)
    ours = lambda: conv2d_winograd.conv_transpose3x3_stride2(x, w, b, (0, 0), (0, 0))
    taken = "col2im" if conv2d_winograd.transpose_route(x, w, b, (2, 2), (1, 1), 1) else "oneDNN"
    return (*interleaved_medians(onednn, ours, reps), taken)


def print_grid(title: str, compare_fn, channels: list[int], sizes: list[int], batch: int, reps: int) -> None:
    print(f"\n{title}\n{'C':>5} {'px':>4} {'oneDNN ms':>10} {'ours ms':>9} {'ours/oneDNN':>12}  taken")
    for c in channels:
        for size in sizes:
            a, b, taken = compare_fn(c, size, batch, reps)
            print(f"{c:>5} {size:>4} {a:>10.2f} {b:>9.2f} {b / a:>11.2f}x  {taken}", flush=True)


@click.command(help=verbatim(__doc__))
@click.option(
    "--op",
    type=CommaList(choices=["forward", "weight", "transpose"]),
    default="forward,weight,transpose",
    show_default=True,
)
@click.option("--max-tile", type=click.Choice(["2", "4"]), default="4", show_default=True, help="largest Winograd tile")
@click.option("--channels", type=CommaList(int), default="16,32,64,128,256,512", show_default=True)
@click.option("--sizes", type=CommaList(int), default="4,8,16,32", show_default=True, help="input sizes in px")
@click.option("--batch", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--reps", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--host-memory", type=click.Choice(["keep", "system"]), default="keep", show_default=True)
def main(
    op: list[str],
    max_tile: str,
    channels: list[int],
    sizes: list[int],
    batch: int,
    reps: int,
    threads: int,
    host_memory: str,
) -> None:
    conv2d_winograd.max_tile = int(max_tile)
    kept = host_memory_module.keep_freed_host_memory() if host_memory == "keep" else False
    torch.set_num_threads(threads)
    print(
        f"batch {batch}, {threads} thread(s), torch {torch.__version__}, median of {reps} reps (CPU time), host "
        f"memory {'kept' if kept else 'glibc defaults'}, Winograd tiles up to {max_tile}x{max_tile} outputs"
    )
    if "forward" in op:
        print_grid("forward (= input gradient), stride 1", compare_forward, channels, sizes, batch, reps)
    if "transpose" in op:
        print_grid("stride-2 transposed conv", compare_transpose, channels, sizes, batch, reps)
    if "weight" in op:
        print(
            f"\nweight gradient\n{'route':<9} {'stride':>6} {'C':>5} {'px':>4} {'oneDNN ms':>10} {'ours ms':>9} "
            f"{'ours/oneDNN':>12}  taken"
        )
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
