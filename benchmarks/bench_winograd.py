"""3x3 convolutions on CPU: oneDNN against this project's routes (conv2d_winograd), for a grid of layer widths and
sizes, and the route conv2d_gradfix takes. --op=forward: F.conv2d(padding=1) against conv2d_winograd.conv3x3 (the
input gradient is the same computation); --op=weight: torch.nn.grad.conv2d_weight against the Winograd (stride 1)
and im2col (stride 2) weight gradients; --op=transpose: F.conv_transpose2d(stride=2) (the generator's upsampling
convolutions, the input gradient of each downsampling one) against conv_transpose3x3_stride2. --max-tile=2 keeps
F(2x2, 3x3) where F(4x4, 3x3) would be taken. --op=rounding: each route's float32 error against float64, as a
fraction of conv2d_winograd.rounding_bound and of the largest output, beside oneDNN's (no timing).

The cost rules `conv2d_winograd.forward_pays`, `pays` and `transpose_pays` come from this table: rerun it on another
CPU before trusting them there. Times are process CPU time, the two kernels interleaved rep by rep so that background
load hits both alike, with freed host memory kept as train.py keeps it on CPU (--host-memory=system: glibc's
defaults).

    python benchmarks/bench_winograd.py                       # one thread, batch 16, every op
    python benchmarks/bench_winograd.py --op=forward --channels=64,512 --sizes=8,32 --threads=2
    ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 python benchmarks/bench_winograd.py --json=...  # AVX2 kernels

--json writes every row, the command, the date and the CPU kernels used (benchmarks/results/winograd_*.json).
"""

from __future__ import annotations

import os
import statistics
import sys
import time

import click
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import results_file  # noqa: E402
from dnnlib.cli import CommaList, verbatim  # noqa: E402
from torch_utils import host_memory as host_memory_module  # noqa: E402
from torch_utils.ops import conv2d_1x1, conv2d_gradfix, conv2d_winograd  # noqa: E402


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


def compare(
    channels: int, size: int, stride: int, batch: int, reps: int, layout: str = "nchw"
) -> tuple[str, float, float, str]:
    """(route geometry, oneDNN ms, ours ms, route taken) for one layer: its input is `size` px (+1 for stride 2,
    the padded output of the FIR filter before a downsampling convolution), in `layout`; oneDNN gets what
    conv2d_gradfix hands it (a dense copy of a channels_last tensor, timed with it)."""
    side, padding = (size + 1, 0) if stride == 2 else (size, 1)
    x = in_layout(torch.randn(batch, channels, side, side), layout)
    w_shape = (channels, channels, 3, 3)
    grad_out = torch.randn_like(torch.nn.functional.conv2d(x, torch.randn(w_shape), stride=stride, padding=padding))
    geometry = conv2d_winograd._geometry(x, grad_out, (stride, stride), (padding, padding))
    dense = conv2d_gradfix._dense_for_onednn
    onednn = lambda: torch.nn.grad.conv2d_weight(dense(x), w_shape, dense(grad_out), stride=stride, padding=padding)
    ours = lambda: conv2d_winograd.weight_grad(x, grad_out, w_shape, (stride, stride), (padding, padding))
    a, b = interleaved_medians(onednn, ours, reps)
    taken = conv2d_winograd.route(x, grad_out, w_shape, (stride, stride), (padding, padding), (1, 1), 1) or "oneDNN"
    return geometry, a, b, taken


def in_layout(t: torch.Tensor, layout: str) -> torch.Tensor:
    return t.contiguous(memory_format=torch.channels_last) if layout == "channels_last" else t


def pointwise_rows(pairs: list[tuple[int, int]], sizes: list[int], batch: int, reps: int) -> list[dict[str, object]]:
    """1x1 layers (C -> K channels) in both layouts: forward and weight gradient, oneDNN as conv2d_gradfix calls it
    (with its dense copies) against conv2d_1x1's products, and the route the rules take."""
    print(
        f"\n1x1 layers\n{'op':<7} {'C':>5} {'K':>5} {'px':>4} {'layout':<14} {'oneDNN ms':>10} {'ours ms':>9} "
        f"{'ours/oneDNN':>12}  taken"
    )
    dense = conv2d_gradfix._dense_for_onednn
    rows = []
    for c, k in pairs:
        for size in sizes:
            for layout in ("nchw", "channels_last"):
                x = in_layout(torch.randn(batch, c, size, size), layout)
                g = in_layout(torch.randn(batch, k, size, size), layout)
                w, b = torch.randn(k, c, 1, 1), torch.randn(k)
                cases = {
                    "forward": (
                        lambda: torch.nn.functional.conv2d(dense(x, wide=c >= 256), w, b),
                        lambda: conv2d_1x1.conv1x1(x, w, b),
                        conv2d_1x1.product_pays(x),
                    ),
                    "weight": (
                        lambda: torch.nn.grad.conv2d_weight(dense(x), w.shape, dense(g)),
                        lambda: conv2d_1x1.weight_grad(x, g),
                        conv2d_1x1.weight_grad_pays(x),
                    ),
                }
                for op, (onednn, ours, pays) in cases.items():
                    a, o = interleaved_medians(onednn, ours, reps)
                    taken = "product" if pays else "oneDNN"
                    print(
                        f"{op:<7} {c:>5} {k:>5} {size:>4} {layout:<14} {a:>10.2f} {o:>9.2f} {o / a:>11.2f}x  {taken}",
                        flush=True,
                    )
                    rows.append(
                        dict(
                            op=op,
                            channels=c,
                            out_channels=k,
                            px=size,
                            layout=layout,
                            onednn_ms=a,
                            ours_ms=o,
                            ratio=o / a,
                            taken=taken,
                        )
                    )
    return rows


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


def print_grid(
    title: str, compare_fn, channels: list[int], sizes: list[int], batch: int, reps: int
) -> list[dict[str, object]]:
    print(f"\n{title}\n{'C':>5} {'px':>4} {'oneDNN ms':>10} {'ours ms':>9} {'ours/oneDNN':>12}  taken")
    rows = []
    for c in channels:
        for size in sizes:
            a, b, taken = compare_fn(c, size, batch, reps)
            print(f"{c:>5} {size:>4} {a:>10.2f} {b:>9.2f} {b / a:>11.2f}x  {taken}", flush=True)
            rows.append(dict(channels=c, px=size, onednn_ms=a, ours_ms=b, ratio=b / a, taken=taken))
    return rows


def rounding_rows(channels: list[int], sizes: list[int], batch: int) -> list[dict[str, object]]:
    """Each tiling's max float32 error over float64 as a fraction of its derived bound and of the largest output,
    and oneDNN's relative error beside it (forward, and weight gradient), on standard normal data."""
    print(f"\n{'op':<8} {'C':>5} {'px':>4} {'tiling':<12} {'err/bound':>10} {'err/max':>9} {'oneDNN err/max':>15}")
    rows = []
    for c in channels:
        for size in sizes:
            gen = torch.Generator().manual_seed(c * 1000 + size)
            x = torch.randn(batch, c, size, size, generator=gen)
            w = torch.randn(c, c, 3, 3, generator=gen) / (3 * c**0.5)
            g = torch.randn(batch, c, size, size, generator=gen)
            exact_y = torch.nn.functional.conv2d(x.double(), w.double(), padding=1)
            exact_dw = torch.nn.grad.conv2d_weight(x.double(), w.shape, g.double(), 1, 1)
            onednn_y = torch.nn.functional.conv2d(x, w, padding=1)
            onednn_dw = torch.nn.grad.conv2d_weight(x, w.shape, g, 1, 1)
            tilings = [conv2d_winograd.F2] + ([conv2d_winograd.F4] if size % 4 == 0 and size >= 8 else [])
            for op, exact, onednn in (("forward", exact_y, onednn_y), ("weight", exact_dw, onednn_dw)):
                scale = float(exact.abs().max())
                onednn_rel = float((onednn.double() - exact).abs().max()) / scale
                for tiling in tilings:
                    if op == "forward":
                        ours = conv2d_winograd.conv3x3(x, w, tiling=tiling)
                        bound = conv2d_winograd.rounding_bound(x, w, op="forward", tiling=tiling)
                    else:
                        ours = conv2d_winograd.weight_grad_3x3(x, g, tiling)
                        bound = conv2d_winograd.rounding_bound(x, g, op="weight", tiling=tiling)
                    err = (ours.double() - exact).abs()
                    row = dict(
                        op=op,
                        channels=c,
                        px=size,
                        tiling=tiling.name,
                        err_over_bound=float((err / bound).max()),
                        err_over_max=float(err.max()) / scale,
                        onednn_err_over_max=onednn_rel,
                    )
                    rows.append(row)
                    print(
                        f"{op:<8} {c:>5} {size:>4} {tiling.name:<12} {row['err_over_bound']:>10.2e} "
                        f"{row['err_over_max']:>9.2e} {onednn_rel:>15.2e}",
                        flush=True,
                    )
    return rows


def cpu_kernels() -> dict[str, str | None]:
    """Which kernels ran: torch's dispatch level and the oneDNN / MKL caps from the environment."""
    return dict(
        torch_cpu_capability=torch.backends.cpu.get_cpu_capability(),
        ONEDNN_MAX_CPU_ISA=os.environ.get("ONEDNN_MAX_CPU_ISA"),
        MKL_ENABLE_INSTRUCTIONS=os.environ.get("MKL_ENABLE_INSTRUCTIONS"),
    )


@click.command(help=verbatim(__doc__))
@click.option(
    "--op",
    type=CommaList(choices=["forward", "weight", "transpose", "rounding", "pointwise"]),
    default="forward,weight,transpose",
    show_default=True,
)
@click.option("--max-tile", type=click.Choice(["2", "4"]), default="4", show_default=True, help="largest Winograd tile")
@click.option("--channels", type=CommaList(int), default="16,32,64,128,256,512", show_default=True)
@click.option("--sizes", type=CommaList(int), default="4,8,16,32", show_default=True, help="input sizes in px")
@click.option(
    "--layout",
    type=click.Choice(["nchw", "channels_last"]),
    default="nchw",
    show_default=True,
    help="layout of the weight gradient's input (--op=weight); the networks' layers hand it channels_last",
)
@click.option("--batch", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--reps", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--host-memory", type=click.Choice(["keep", "system"]), default="keep", show_default=True)
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="write every row here as JSON")
def main(
    op: list[str],
    max_tile: str,
    channels: list[int],
    sizes: list[int],
    layout: str,
    batch: int,
    reps: int,
    threads: int,
    host_memory: str,
    json_path: str | None,
) -> None:
    conv2d_winograd.max_tile = int(max_tile)
    kept = host_memory_module.keep_freed_host_memory() if host_memory == "keep" else False
    torch.set_num_threads(threads)
    print(
        f"batch {batch}, {threads} thread(s), torch {torch.__version__}, median of {reps} reps (CPU time), host "
        f"memory {'kept' if kept else 'glibc defaults'}, Winograd tiles up to {max_tile}x{max_tile} outputs"
    )
    results: dict[str, object] = {}
    if "forward" in op:
        results["forward"] = print_grid(
            "forward (= input gradient), stride 1", compare_forward, channels, sizes, batch, reps
        )
    if "transpose" in op:
        results["transpose"] = print_grid("stride-2 transposed conv", compare_transpose, channels, sizes, batch, reps)
    if "weight" in op:
        results["weight"] = []
        print(
            f"\nweight gradient\n{'route':<9} {'stride':>6} {'C':>5} {'px':>4} {'oneDNN ms':>10} {'ours ms':>9} "
            f"{'ours/oneDNN':>12}  taken"
        )
        for stride in (1, 2):
            for c in channels:
                for size in sizes:
                    if stride == 2 and size < 8:
                        continue
                    geometry, a, b, taken = compare(c, size, stride, batch, reps, layout)
                    results["weight"].append(
                        dict(route=geometry, stride=stride, channels=c, px=size, onednn_ms=a, ours_ms=b, ratio=b / a)
                    )
                    print(
                        f"{geometry:<9} {stride:>6} {c:>5} {size:>4} {a:>10.2f} {b:>9.2f} {b / a:>11.2f}x  {taken}",
                        flush=True,
                    )
    if "rounding" in op:
        results["rounding"] = rounding_rows(channels, sizes, batch)
    if "pointwise" in op:
        pairs = [(c, 3) for c in channels] + [(3, c) for c in channels] + [(c, c) for c in channels]
        results["pointwise"] = pointwise_rows(pairs, sizes, batch, reps)
    if json_path:
        results_file.write(
            json_path,
            kernels=cpu_kernels(),
            batch=batch,
            threads=threads,
            reps=reps,
            host_memory="kept" if kept else "glibc defaults",
            max_tile=int(max_tile),
            layout=layout,
            results=results,
        )


if __name__ == "__main__":
    main()
