"""Offline metrics for the embedded digits, with our digits classifier (metrics/digits_classifier.py) in place of
Inception-v3. Same machinery as FID/KID/IS: feature statistics from metric_utils (dataset statistics cached per
options), the same Fréchet and kernel distances, the same IS formula.

- fdd<N>[_full], Fréchet Digits Distance: FID's formula on the classifier's 128-d penultimate features.
- kdd<N>[_full], Kernel Digits Distance: KID's estimator on the same features.
- cls<N>: what the classifier thinks of N generated images: the fraction it assigns a class with probability
  >= 0.9 (`_confident`), the IS formula on its 10 class probabilities (`_score`, 1..10), and the entropy of its
  average prediction in nats (`_class_entropy`, ln 10 = 2.30 when all digits are equally frequent).

Only meaningful for the embedded digits: check_digits_dataset() refuses any other dataset (a face set gave
fdd 1008 -> 280 -> 422, numbers that say nothing). The numbers are NOT comparable to FID/KID/IS, nor across
classifier recipes (the recipe hash is part of every cache key).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from metrics import detectors, metric_utils
from metrics.frechet_inception_distance import frechet_distance
from metrics.inception_score import inception_score
from metrics.kernel_inception_distance import kernel_distance
from training.dataset import EMBEDDED_DIGITS

DETECTOR = "digits"
FEATURES = dict(return_features=True)  # [N, 128] penultimate activations
PROBABILITIES: dict = {}  # [N, 10] softmax
CONFIDENCE_THRESHOLD = 0.9


def is_embedded_digits(dataset_kwargs: Mapping | None) -> bool:
    """True when open_dataset(**dataset_kwargs) gives the embedded digits: no kwargs, path None or 'sklearn:digits'."""
    path = (dataset_kwargs or {}).get("path")
    return path is None or path == EMBEDDED_DIGITS


def check_digits_dataset(metric: str, dataset_kwargs: Mapping | None) -> None:
    """Raise MetricDatasetError unless the dataset is the embedded digits, the only one the classifier knows."""
    if is_embedded_digits(dataset_kwargs):
        return
    inception = detectors.INCEPTION_FILES[0]
    raise metric_utils.MetricDatasetError(
        f"{metric} scores images with a classifier of the embedded sklearn digits, so its numbers mean nothing for "
        f"{dataset_kwargs['path']} (for the digits themselves use --data=sklearn:digits). "
        f"Use FID/KID instead (fid50k_full, kid50k_full, or fid5k_full for a quick look): they need the Inception "
        f"file {inception.name} ({inception.url}) in {detectors.cache_detector_dir()} or in a folder given by "
        f"--detector-dir or ${detectors.DETECTOR_DIR_ENV}."
    )


def compute_fdd(opts: metric_utils.MetricOptions, max_real: int | None, num_gen: int) -> float:
    """FDD between `max_real` dataset images (all when None) and `num_gen` generated images; NaN off rank 0."""
    mu_real, sigma_real = metric_utils.compute_feature_stats_for_dataset(
        opts=opts,
        detector=DETECTOR,
        detector_kwargs=FEATURES,
        rel_lo=0,
        rel_hi=0,
        capture_mean_cov=True,
        max_items=max_real,
    ).get_mean_cov()
    mu_gen, sigma_gen = metric_utils.compute_feature_stats_for_generator(
        opts=opts,
        detector=DETECTOR,
        detector_kwargs=FEATURES,
        rel_lo=0,
        rel_hi=1,
        capture_mean_cov=True,
        max_items=num_gen,
    ).get_mean_cov()
    if opts.rank != 0:
        return float("nan")
    return frechet_distance(mu_gen, sigma_gen, mu_real, sigma_real)


def compute_kdd(
    opts: metric_utils.MetricOptions, max_real: int | None, num_gen: int, num_subsets: int, max_subset_size: int
) -> float:
    """KDD between `max_real` dataset images and `num_gen` generated images; NaN off rank 0."""
    real = metric_utils.compute_feature_stats_for_dataset(
        opts=opts, detector=DETECTOR, detector_kwargs=FEATURES, rel_lo=0, rel_hi=0, capture_all=True, max_items=max_real
    ).get_all()
    gen = metric_utils.compute_feature_stats_for_generator(
        opts=opts, detector=DETECTOR, detector_kwargs=FEATURES, rel_lo=0, rel_hi=1, capture_all=True, max_items=num_gen
    ).get_all()
    if opts.rank != 0:
        return float("nan")
    return kernel_distance(real, gen, num_subsets, max_subset_size, np.random.RandomState(opts.seed))


def classifier_scores(probs: np.ndarray) -> tuple[float, float, float]:
    """(confident fraction, IS-formula score, entropy of the mean prediction in nats) of probabilities [N, 10]."""
    probs = np.clip(probs.astype(np.float64), 1e-30, None)  # float32 softmax can underflow to 0: 0 log 0 := 0
    confident = float(np.mean(probs.max(axis=1) >= CONFIDENCE_THRESHOLD))
    score, _std = inception_score(probs, num_splits=1)
    mean = probs.mean(axis=0)
    class_entropy = float(-np.sum(mean * np.log(np.clip(mean, 1e-30, None))))
    return confident, score, class_entropy


def compute_cls(opts: metric_utils.MetricOptions, num_gen: int) -> tuple[float, float, float]:
    """classifier_scores of `num_gen` generated images; NaNs off rank 0."""
    probs = metric_utils.compute_feature_stats_for_generator(
        opts=opts, detector=DETECTOR, detector_kwargs=PROBABILITIES, capture_all=True, max_items=num_gen
    ).get_all()
    if opts.rank != 0:
        return float("nan"), float("nan"), float("nan")
    return classifier_scores(probs)
