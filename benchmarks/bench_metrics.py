"""Metric building blocks: detector throughput (Inception-v3 features, VGG16 fc2 features and LPIPS embeddings)
and the FID matrix step (our eigenvalue form vs scipy.linalg.sqrtm at D=2048).

    python benchmarks/bench_metrics.py [--device cpu] [--batch 16] [--res 256] [--reps 5] [--skip-vgg] [--skip-fid]

Detectors have random weights (speed does not depend on the values); images are uint8 at --res.
"""

import os
import statistics
import sys

import click
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import timing  # noqa: E402
from dnnlib.cli import verbatim  # noqa: E402
from metrics.frechet_inception_distance import trace_sqrt_product  # noqa: E402
from metrics.inception import InceptionV3  # noqa: E402
from metrics.vgg16 import VGG16  # noqa: E402


def _randomize(model: torch.nn.Module) -> torch.nn.Module:
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("var"):
                param.copy_(0.5 + torch.rand(param.shape, generator=gen))
            elif name.startswith("lpips"):
                param.copy_(torch.rand(param.shape, generator=gen))
            else:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.05)
    return model.eval().requires_grad_(False)


def _time(fn, device, reps, warmup=1):
    return timing.measure(fn, reps, device, warmup).wall


def _report(name, samples, items=None):
    med, lo, hi = statistics.median(samples), min(samples), max(samples)
    rate = f"  {items / med:8.1f} img/s (median)" if items else ""
    print(f"  {name:34s} median {med * 1e3:9.1f} ms  (min {lo * 1e3:9.1f}, max {hi * 1e3:9.1f}){rate}")


@click.command(help=verbatim(__doc__))
@click.option("--device", default="cuda" if torch.cuda.is_available() else "cpu", show_default=True)
@click.option("--batch", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--res", type=click.IntRange(min=1), default=256, show_default=True)
@click.option("--reps", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--skip-vgg", is_flag=True)
@click.option("--skip-fid", is_flag=True)
def main(device, batch, res, reps, skip_vgg, skip_fid):
    device = torch.device(device)
    print(
        f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}, batch {batch}, "
        f"images {res}x{res} uint8, {reps} reps"
    )
    images = torch.randint(0, 256, (batch, 3, res, res), dtype=torch.uint8, device=device)

    with torch.no_grad():
        inception = _randomize(InceptionV3()).to(device)
        _report(
            "inception features (299x299)", _time(lambda: inception(images, return_features=True), device, reps), batch
        )
        if not skip_vgg:
            vgg = _randomize(VGG16()).to(device)
            _report(
                "vgg16 fc2 features (224x224)", _time(lambda: vgg(images, return_features=True), device, reps), batch
            )
            _report(
                f"vgg16 lpips embedding ({res}x{res})",
                _time(lambda: vgg(images, resize_images=False, return_lpips=True), device, reps),
                batch,
            )

    if not skip_fid:
        import scipy.linalg

        rng = np.random.default_rng(0)
        x, y = rng.standard_normal((4096, 2048)), rng.standard_normal((4096, 2048)) * 1.1
        s1, s2 = np.cov(x, rowvar=False, bias=True), np.cov(y, rowvar=False, bias=True)
        reps = max(1, min(reps, 3))
        print(f"FID matrix step, D=2048 ({reps} reps):")
        ours = _time(lambda: trace_sqrt_product(s1, s2), torch.device("cpu"), reps, warmup=0)
        _report("eigenvalue form (ours)", ours)
        ref = _time(lambda: np.trace(scipy.linalg.sqrtm(s1 @ s2)).real, torch.device("cpu"), reps, warmup=0)
        _report("scipy.linalg.sqrtm (StyleGAN2-ADA)", ref)
        diff = abs(trace_sqrt_product(s1, s2) - np.trace(scipy.linalg.sqrtm(s1 @ s2)).real)
        print(f"  |difference of Tr sqrt| = {diff:.3e}")


if __name__ == "__main__":
    main()
