"""Inception Score (Salimans et al. 2016) over splits, as in StyleGAN2-ADA (softmax without the output bias,
matching the original TF implementation)."""

from __future__ import annotations

import numpy as np

from metrics import metric_utils

DETECTOR_KWARGS = dict(no_output_bias=True)  # class probabilities [N, 1008]


def inception_score(probs: np.ndarray, num_splits: int) -> tuple[float, float]:
    """Mean and std over `num_splits` consecutive splits of exp(E_x KL(p(y|x) || p(y)))."""
    num = probs.shape[0]
    if num < num_splits:
        raise ValueError(f"Inception Score needs at least num_splits={num_splits} images, got {num}")
    scores = []
    for i in range(num_splits):
        part = probs[i * num // num_splits : (i + 1) * num // num_splits].astype(np.float64)
        kl = part * (np.log(part) - np.log(np.mean(part, axis=0, keepdims=True)))
        scores.append(np.exp(np.mean(np.sum(kl, axis=1))))
    return float(np.mean(scores)), float(np.std(scores))


def compute_is(opts: metric_utils.MetricOptions, num_gen: int, num_splits: int) -> tuple[float, float]:
    """IS mean and std of `num_gen` generated images; NaNs off rank 0."""
    probs = metric_utils.compute_feature_stats_for_generator(
        opts=opts, detector="inception", detector_kwargs=DETECTOR_KWARGS, capture_all=True, max_items=num_gen
    ).get_all()
    if opts.rank != 0:
        return float("nan"), float("nan")
    return inception_score(probs, num_splits)
