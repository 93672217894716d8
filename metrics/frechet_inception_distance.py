"""Fréchet Inception Distance (Heusel et al. 2017), computed as in StyleGAN2-ADA."""
from __future__ import annotations

import numpy as np
import scipy.linalg

from metrics import metric_utils

DETECTOR_KWARGS = dict(return_features=True)  # 2048-d pool_3 features


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)) for means [D] and covariances [D, D]."""
    m = np.square(mu1 - mu2).sum()
    s = scipy.linalg.sqrtm(np.dot(sigma1, sigma2))
    return float(np.real(m + np.trace(sigma1 + sigma2 - s * 2)))


def compute_fid(opts: metric_utils.MetricOptions, max_real: int | None, num_gen: int) -> float:
    """FID between `max_real` dataset images (all when None) and `num_gen` generated images; NaN off rank 0."""
    mu_real, sigma_real = metric_utils.compute_feature_stats_for_dataset(
        opts=opts, detector='inception', detector_kwargs=DETECTOR_KWARGS,
        rel_lo=0, rel_hi=0, capture_mean_cov=True, max_items=max_real).get_mean_cov()
    mu_gen, sigma_gen = metric_utils.compute_feature_stats_for_generator(
        opts=opts, detector='inception', detector_kwargs=DETECTOR_KWARGS,
        rel_lo=0, rel_hi=1, capture_mean_cov=True, max_items=num_gen).get_mean_cov()
    if opts.rank != 0:
        return float('nan')
    return frechet_distance(mu_gen, sigma_gen, mu_real, sigma_real)
