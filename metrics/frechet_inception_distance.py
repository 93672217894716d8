"""Fréchet Inception Distance (Heusel et al. 2017), computed as in StyleGAN2-ADA."""

from __future__ import annotations

import numpy as np

from metrics import metric_utils

DETECTOR_KWARGS = dict(return_features=True)  # 2048-d pool_3 features


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """Tr((S1 S2)^(1/2)) for symmetric PSD S1, S2 [D, D].

    S1 S2 is similar to the PSD matrix S1^(1/2) S2 S1^(1/2), so the trace is the sum of square roots of the latter's
    eigenvalues. Same value as StyleGAN2-ADA's Tr(scipy.linalg.sqrtm(S1 @ S2)), about 5x faster at D = 2048 and
    without the complex round-off sqrtm produces on rank-deficient statistics.
    """
    w, v = np.linalg.eigh(sigma1)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    inner = root1 @ sigma2 @ root1
    eig = np.linalg.eigvalsh((inner + inner.T) / 2)
    return float(np.sqrt(np.clip(eig, 0, None)).sum())


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)) for means [D] and covariances [D, D]."""
    m = float(np.square(mu1 - mu2).sum())
    return m + float(np.trace(sigma1) + np.trace(sigma2)) - 2 * trace_sqrt_product(sigma1, sigma2)


def compute_fid(opts: metric_utils.MetricOptions, max_real: int | None, num_gen: int) -> float:
    """FID between `max_real` dataset images (all when None) and `num_gen` generated images; NaN off rank 0."""
    mu_real, sigma_real = metric_utils.compute_feature_stats_for_dataset(
        opts=opts,
        detector="inception",
        detector_kwargs=DETECTOR_KWARGS,
        rel_lo=0,
        rel_hi=0,
        capture_mean_cov=True,
        max_items=max_real,
    ).get_mean_cov()
    mu_gen, sigma_gen = metric_utils.compute_feature_stats_for_generator(
        opts=opts,
        detector="inception",
        detector_kwargs=DETECTOR_KWARGS,
        rel_lo=0,
        rel_hi=1,
        capture_mean_cov=True,
        max_items=num_gen,
    ).get_mean_cov()
    if opts.rank != 0:
        return float("nan")
    return frechet_distance(mu_gen, sigma_gen, mu_real, sigma_real)
