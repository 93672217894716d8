"""Time the custom ops (forward + backward) at StyleGAN2-like sizes; prints median/min/max in ms.

    python benchmarks/bench_ops.py                      # CPU: our reference vs the naive definition
    python benchmarks/bench_ops.py --device cuda        # GPU: reference vs plugin (when it builds)

"naive" is the textbook upfirdn2d (materialise the zero-stuffed, padded image, depthwise 2-D conv),
i.e. what the official reference does; "ref" is ours; "cuda" is our plugin.
"""

from __future__ import annotations

import os
import statistics
import sys

import click
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import timing  # noqa: E402
from dnnlib.cli import verbatim  # noqa: E402
from torch_utils.ops import bias_act, conv2d_resample, upfirdn2d  # noqa: E402


def naive_upfirdn2d(x, f, up=1, down=1, padding=0, flip_filter=False, gain=1):
    """Zero-stuff, pad, depthwise 2-D conv, decimate (square factors, 2-D filter)."""
    n, c, h, w = x.shape
    px0, px1, py0, py1 = upfirdn2d._parse_padding(padding)
    x = x.reshape(n, c, h, 1, w, 1)
    x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1]).reshape(n, c, h * up, w * up)
    x = F.pad(x, [px0, px1, py0, py1])
    k = (f * gain).to(x.dtype)
    k = k if flip_filter else k.flip([0, 1])
    x = F.conv2d(x, k[None, None].repeat(c, 1, 1, 1), groups=c)
    return x[:, :, ::down, ::down]


def naive_upsample2d(x, f):
    fw = f.shape[-1]
    return naive_upfirdn2d(x, f, up=2, padding=[(fw + 1) // 2, (fw - 2) // 2] * 2, gain=4)


def naive_downsample2d(x, f):
    fw = f.shape[-1]
    return naive_upfirdn2d(x, f, down=2, padding=[(fw - 1) // 2, (fw - 2) // 2] * 2)


def time_fwd_bwd(fn, inputs, device, repeats: int, warmup: int = 2) -> list[float]:
    def run():
        y = fn(*inputs)
        y.backward(torch.ones_like(y))

    def clear():
        for t in inputs:
            t.grad = None

    return timing.measure(run, repeats, device, warmup, before=clear).ms()


@click.command(help=verbatim(__doc__))
@click.option("--device", default="cpu", show_default=True, help="cpu or cuda")
@click.option("--batch", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--channels", type=click.IntRange(min=1), default=128, show_default=True)
@click.option(
    "--res", type=click.IntRange(min=1), default=32, show_default=True, help="feature-map size before resampling (px)"
)
@click.option("--repeats", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--threads", type=int, default=None, help="torch CPU threads [default: torch's]")
def main(device: str, batch: int, channels: int, res: int, repeats: int, threads: int | None) -> None:
    if threads:
        torch.set_num_threads(threads)
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda given but torch.cuda.is_available() is False")

    n, c, r = batch, channels, res
    gen = torch.Generator(device="cpu").manual_seed(0)
    mk = lambda *shape: torch.randn(*shape, generator=gen).to(device).requires_grad_(True)
    f = upfirdn2d.setup_filter([1, 3, 3, 1], device=device)
    x = mk(n, c, r, r)
    b = mk(c)
    w3 = mk(c, c, 3, 3)
    impls = ["naive", "ref"] + (["cuda"] if device.type == "cuda" else [])

    cases = []
    for impl in impls:
        if impl == "naive":
            cases.append(("upsample2d [1,3,3,1] x2", impl, lambda x: naive_upsample2d(x, f), (x,)))
            cases.append(("downsample2d [1,3,3,1] /2", impl, lambda x: naive_downsample2d(x, f), (x,)))
            continue
        cases.append(("upsample2d [1,3,3,1] x2", impl, lambda x, i=impl: upfirdn2d.upsample2d(x, f, impl=i), (x,)))
        cases.append(("downsample2d [1,3,3,1] /2", impl, lambda x, i=impl: upfirdn2d.downsample2d(x, f, impl=i), (x,)))
        cases.append(
            (
                "bias_act lrelu clamp=256",
                impl,
                lambda x, b, i=impl: bias_act.bias_act(x, b, act="lrelu", clamp=256, impl=i),
                (x, b),
            )
        )
    cases.append(
        (
            "conv2d_resample 3x3 up=2",
            "default",
            lambda x, w: conv2d_resample.conv2d_resample(x, w, f, up=2, padding=1),
            (x, w3),
        )
    )
    cases.append(
        (
            "conv2d_resample 3x3 down=2",
            "default",
            lambda x, w: conv2d_resample.conv2d_resample(x, w, f, down=2, padding=1),
            (x, w3),
        )
    )

    print(
        f"config: device={device} batch={n} channels={c} res={r} repeats={repeats} "
        f"threads={torch.get_num_threads()} torch={torch.__version__}"
    )
    print(f"{'op':32s} {'impl':8s} {'median_ms':>10s} {'min_ms':>10s} {'max_ms':>10s}")
    for name, impl, fn, inputs in cases:
        t = time_fwd_bwd(fn, inputs, device, repeats)
        print(f"{name:32s} {impl:8s} {statistics.median(t):10.3f} {min(t):10.3f} {max(t):10.3f}")


if __name__ == "__main__":
    main()
