"""Time DiffAugment per policy, forward and forward+backward; prints median [min, max] in ms over repeats.

    python benchmarks/bench_diffaugment.py                       # CPU, batch 64 at 32 and 256 px
    python benchmarks/bench_diffaugment.py --device cuda --threads 0

For scale, the last row of each size is ADA's default pipe (AugmentPipe 'bgc' at p = 1, i.e. every
augmentation on every image), the augmentation DiffAugment replaces.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from training.augment import AUGPIPE_SPECS, AugmentPipe  # noqa: E402
from training.diffaugment import DEFAULT_POLICY, DiffAugment  # noqa: E402


def sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def time_ms(fn, x: torch.Tensor, backward: bool, repeats: int, warmup: int = 2) -> list[float]:
    times = []
    for i in range(warmup + repeats):
        x.grad = None
        sync(x.device)
        start = time.perf_counter()
        y = fn(x)
        if backward:
            y.square().sum().backward()
        sync(x.device)
        if i >= warmup:
            times.append((time.perf_counter() - start) * 1e3)
    return times


def fmt(times: list[float]) -> str:
    return f'{statistics.median(times):9.2f} [{min(times):8.2f}, {max(times):8.2f}]'


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--batch', type=int, default=64)
    parser.add_argument('--res', type=int, nargs='+', default=[32, 256])
    parser.add_argument('--channels', type=int, default=3)
    parser.add_argument('--repeats', type=int, default=7)
    parser.add_argument('--threads', type=int, default=1, help='torch CPU threads (0: leave torch default)')
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    print(f'device={device} batch={args.batch} channels={args.channels} repeats={args.repeats} '
          f'threads={torch.get_num_threads()} torch={torch.__version__}; ms: median [min, max]')
    ada = AugmentPipe(**AUGPIPE_SPECS['bgc']).to(device)
    ada.p.fill_(1.0)
    candidates = [(f'diffaug {p}', DiffAugment(p)) for p in ['color', 'translation', 'cutout', DEFAULT_POLICY]]
    candidates.append(('ADA bgc p=1 (reference)', ada))
    print(f'{"res":>4} {"augmentation":<36} {"forward":>30} {"forward+backward":>30}')
    for res in args.res:
        x = torch.randn([args.batch, args.channels, res, res], device=device).clamp(-1, 1).requires_grad_(True)
        for name, module in candidates:
            with torch.no_grad():
                fwd = time_ms(module, x, backward=False, repeats=args.repeats)
            both = time_ms(module, x, backward=True, repeats=args.repeats)
            print(f'{res:>4} {name:<36} {fmt(fwd):>30} {fmt(both):>30}', flush=True)


if __name__ == '__main__':
    main()
