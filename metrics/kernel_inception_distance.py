"""Kernel Inception Distance (Binkowski et al. 2018): unbiased MMD^2 with the kernel (x.y / d + 1)^3,
averaged over random subsets, as in StyleGAN2-ADA (subsets are drawn from a seeded generator here)."""

from __future__ import annotations

import numpy as np

from metrics import metric_utils

DETECTOR_KWARGS = dict(return_features=True)


def kernel_distance(
    real: np.ndarray, gen: np.ndarray, num_subsets: int, max_subset_size: int, rng: np.random.RandomState
) -> float:
    """Mean over `num_subsets` subsets of size m = min(n_real, n_gen, max_subset_size) of the unbiased MMD^2."""
    n = real.shape[1]
    m = min(real.shape[0], gen.shape[0], max_subset_size)
    if m < 2:
        raise ValueError(f"KID needs at least 2 real and 2 generated images, got {real.shape[0]} and {gen.shape[0]}")
    t = 0.0
    for _subset in range(num_subsets):
        x = gen[rng.choice(gen.shape[0], m, replace=False)].astype(np.float64)
        y = real[rng.choice(real.shape[0], m, replace=False)].astype(np.float64)
        a = (x @ x.T / n + 1) ** 3 + (y @ y.T / n + 1) ** 3
        b = (x @ y.T / n + 1) ** 3
        t += (a.sum() - np.diag(a).sum()) / (m - 1) - b.sum() * 2 / m
    return float(t / num_subsets / m)


def compute_kid(
    opts: metric_utils.MetricOptions, max_real: int | None, num_gen: int, num_subsets: int, max_subset_size: int
) -> float:
    """KID between `max_real` dataset images and `num_gen` generated images; NaN off rank 0."""
    real = metric_utils.compute_feature_stats_for_dataset(
        opts=opts,
        detector="inception",
        detector_kwargs=DETECTOR_KWARGS,
        rel_lo=0,
        rel_hi=0,
        capture_all=True,
        max_items=max_real,
    ).get_all()
    gen = metric_utils.compute_feature_stats_for_generator(
        opts=opts,
        detector="inception",
        detector_kwargs=DETECTOR_KWARGS,
        rel_lo=0,
        rel_hi=1,
        capture_all=True,
        max_items=num_gen,
    ).get_all()
    if opts.rank != 0:
        return float("nan")
    return kernel_distance(real, gen, num_subsets, max_subset_size, np.random.RandomState(opts.seed))
