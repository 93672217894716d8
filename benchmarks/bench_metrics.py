"""Metric building blocks: detector throughput (Inception-v3 features, VGG16 fc2 features and LPIPS embeddings)
and the FID matrix step (our eigenvalue form vs scipy.linalg.sqrtm at D=2048).

    python benchmarks/bench_metrics.py [--device cpu] [--batch 16] [--res 256] [--reps 5] [--skip-vgg] [--skip-fid]

Detectors have random weights (speed does not depend on the values); images are uint8 at --res.
"""
import argparse
import statistics
import time

import numpy as np
import torch

from metrics.frechet_inception_distance import trace_sqrt_product
from metrics.inception import InceptionV3
from metrics.vgg16 import VGG16


def _randomize(model: torch.nn.Module) -> torch.nn.Module:
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith('var'):
                param.copy_(0.5 + torch.rand(param.shape, generator=gen))
            elif name.startswith('lpips'):
                param.copy_(torch.rand(param.shape, generator=gen))
            else:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.05)
    return model.eval().requires_grad_(False)


def _time(fn, device, reps, warmup=1):
    samples = []
    for rep in range(reps + warmup):
        if device.type == 'cuda':
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == 'cuda':
            torch.cuda.synchronize()
        if rep >= warmup:
            samples.append(time.perf_counter() - start)
    return samples


def _report(name, samples, items=None):
    med, lo, hi = statistics.median(samples), min(samples), max(samples)
    rate = f'  {items / med:8.1f} img/s (median)' if items else ''
    print(f'  {name:34s} median {med * 1e3:9.1f} ms  (min {lo * 1e3:9.1f}, max {hi * 1e3:9.1f}){rate}')


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--batch', type=int, default=16)
    parser.add_argument('--res', type=int, default=256)
    parser.add_argument('--reps', type=int, default=5)
    parser.add_argument('--skip-vgg', action='store_true')
    parser.add_argument('--skip-fid', action='store_true')
    args = parser.parse_args()
    device = torch.device(args.device)
    print(f'device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}, batch {args.batch}, '
          f'images {args.res}x{args.res} uint8, {args.reps} reps')
    images = torch.randint(0, 256, (args.batch, 3, args.res, args.res), dtype=torch.uint8, device=device)

    with torch.no_grad():
        inception = _randomize(InceptionV3()).to(device)
        _report('inception features (299x299)', _time(lambda: inception(images, return_features=True), device,
                                                      args.reps), args.batch)
        if not args.skip_vgg:
            vgg = _randomize(VGG16()).to(device)
            _report('vgg16 fc2 features (224x224)', _time(lambda: vgg(images, return_features=True), device,
                                                          args.reps), args.batch)
            _report(f'vgg16 lpips embedding ({args.res}x{args.res})',
                    _time(lambda: vgg(images, resize_images=False, return_lpips=True), device, args.reps), args.batch)

    if not args.skip_fid:
        import scipy.linalg
        rng = np.random.default_rng(0)
        x, y = rng.standard_normal((4096, 2048)), rng.standard_normal((4096, 2048)) * 1.1
        s1, s2 = np.cov(x, rowvar=False, bias=True), np.cov(y, rowvar=False, bias=True)
        reps = max(1, min(args.reps, 3))
        print(f'FID matrix step, D=2048 ({reps} reps):')
        ours = _time(lambda: trace_sqrt_product(s1, s2), torch.device('cpu'), reps, warmup=0)
        _report('eigenvalue form (ours)', ours)
        ref = _time(lambda: np.trace(scipy.linalg.sqrtm(s1 @ s2)).real, torch.device('cpu'), reps, warmup=0)
        _report('scipy.linalg.sqrtm (StyleGAN2-ADA)', ref)
        diff = abs(trace_sqrt_product(s1, s2) - np.trace(scipy.linalg.sqrtm(s1 @ s2)).real)
        print(f'  |difference of Tr sqrt| = {diff:.3e}')


if __name__ == '__main__':
    main()
