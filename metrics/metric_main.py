"""Metric names, dispatch and reporting, as in StyleGAN2-ADA's metrics/metric_main.py.

Names are the official ones (fid50k_full, kid50k_full, pr50k3_full, ppl2_wend, is50k; legacy fid50k, kid50k,
pr50k3, ppl_zfull, ppl_wfull, ppl_zend, ppl_wend) and the same families with another sample count for quick
looks: fid5k_full, fid500_full, kid10k, pr5k3_full (last digit = neighbourhood size), is5k, ppl2_wend_5k.
Offline digits metrics (ours, classifier trained here; NOT comparable to FID/KID/IS): fdd2k_full, kdd2k_full,
cls2k (metrics/digits_metrics.py), refused on any dataset but the embedded digits (check_metric_dataset).
Offline for any image data, no detector file: swd16k (Progressive GAN's sliced Wasserstein distance, 16000
images) and swd2k, a quick look (metrics/sliced_wasserstein.py).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import sys
import time
from collections.abc import Mapping

import numpy as np
import torch

from dnnlib import files
from dnnlib import util as dnnlib_util
from metrics import (
    detectors,
    digits_metrics,
    frechet_inception_distance,
    inception_score,
    kernel_inception_distance,
    metric_utils,
    perceptual_path_length,
    precision_recall,
    sliced_wasserstein,
)

PRIMARY_METRICS = ["fid50k_full", "kid50k_full", "pr50k3_full", "ppl2_wend", "is50k"]
LEGACY_METRICS = ["fid50k", "kid50k", "pr50k3", "ppl_zfull", "ppl_wfull", "ppl_zend", "ppl_wend"]
DIGITS_METRICS = ["fdd2k_full", "kdd2k_full", "cls2k"]
OFFLINE_METRICS = ["swd16k", "swd2k"]  # any data, no detector file
# Offline default where no detector file is at hand: the quick SWD (train.py, compare.py on non-digits data).
OFFLINE_DEFAULT = "swd2k"

_COUNT = r"(?P<count>\d+k?)"
_PATTERNS = {
    "fid": re.compile(rf"^fid{_COUNT}(?P<full>_full)?$"),
    "kid": re.compile(rf"^kid{_COUNT}(?P<full>_full)?$"),
    "pr": re.compile(rf"^pr{_COUNT}(?P<nhood>\d)(?P<full>_full)?$"),
    "is": re.compile(rf"^is{_COUNT}$"),
    "ppl": re.compile(r"^(?P<base>ppl2_wend|ppl_zfull|ppl_wfull|ppl_zend|ppl_wend)(?:_(?P<count>\d+k?))?$"),
    "fdd": re.compile(rf"^fdd{_COUNT}(?P<full>_full)?$"),
    "kdd": re.compile(rf"^kdd{_COUNT}(?P<full>_full)?$"),
    "cls": re.compile(rf"^cls{_COUNT}$"),
    "swd": re.compile(rf"^swd{_COUNT}$"),
}
_DETECTORS = {
    "fid": "inception",
    "kid": "inception",
    "is": "inception",
    "pr": "vgg16",
    "ppl": "vgg16",
    "fdd": "digits",
    "kdd": "digits",
    "cls": "digits",
    "swd": "none",
}
# base name -> (space, sampling, crop); "ppl2" is StyleGAN2's variant without the face crop.
_PPL_VARIANTS = {
    "ppl2_wend": ("w", "end", False),
    "ppl_zfull": ("z", "full", True),
    "ppl_wfull": ("w", "full", True),
    "ppl_zend": ("z", "end", True),
    "ppl_wend": ("w", "end", True),
}
_DEFAULT_COUNT = 50000


@dataclasses.dataclass(frozen=True)
class MetricSpec:
    """A parsed metric name: family ('fid', 'kid', 'pr', 'is', 'ppl', 'fdd', 'kdd', 'cls'), sample count and
    variant options."""

    name: str
    family: str
    num_gen: int
    full: bool = False
    nhood_size: int = 3
    ppl_base: str | None = None


def format_count(num: int) -> str:
    """50000 -> '50k', 500 -> '500' (the count part of metric names)."""
    return f"{num // 1000}k" if num % 1000 == 0 and num >= 1000 else str(num)


def _parse_count(text: str) -> int:
    return int(text[:-1]) * 1000 if text.endswith("k") else int(text)


def parse_metric(name: str) -> MetricSpec:
    """MetricSpec of a metric name; ValueError listing the valid names when it is not one."""
    for family, pattern in _PATTERNS.items():
        match = pattern.match(name)
        if match is None:
            continue
        count = match.group("count")
        num_gen = _DEFAULT_COUNT if count is None else _parse_count(count)
        if num_gen < 1:
            break
        if family == "ppl":
            return MetricSpec(name, family, num_gen, ppl_base=match.group("base"))
        if family == "pr":
            return MetricSpec(
                name, family, num_gen, full=bool(match.group("full")), nhood_size=int(match.group("nhood"))
            )
        return MetricSpec(name, family, num_gen, full=bool(match.groupdict().get("full")))
    raise ValueError(
        f"unknown metric {name!r}; valid: {', '.join(list_valid_metrics())} "
        f"(or the same with another count, e.g. fid5k_full, kid1k, pr5k3_full, is5k, ppl2_wend_5k, "
        f"fdd500_full)"
    )


def default_metric(digits: bool, quick: bool, detector_dir: str | None = None) -> tuple[str, str]:
    """(metric, why) when none is asked for: the offline digits metric on the embedded digits; elsewhere SWD on
    quick (CPU) runs, and FID where its Inception file is on this machine, else SWD, which needs no file."""
    if digits:
        return "fdd2k_full", "the offline digits metric of the embedded digits"
    if quick:
        return OFFLINE_DEFAULT, "the quick offline metric: no detector file, and FID on a CPU takes hours"
    try:
        detectors.locate_detector("inception", detector_dir)
    except detectors.DetectorNotFoundError:
        inception = detectors.INCEPTION_FILES[0]
        return "swd16k", (
            f"FID's Inception file {inception.name} is not on this machine (--detector-dir, "
            f"${detectors.DETECTOR_DIR_ENV}); SWD needs none"
        )
    return "fid50k_full", "FID, its Inception file found"


def is_valid_metric(metric: str) -> bool:
    try:
        parse_metric(metric)
    except ValueError:
        return False
    return True


def list_valid_metrics() -> list[str]:
    return PRIMARY_METRICS + LEGACY_METRICS + DIGITS_METRICS + OFFLINE_METRICS


def detector_kind(metric: str) -> str:
    """The detector a metric needs: 'inception', 'vgg16' (files on disk), 'digits' (trained here on first use) or
    'none' (SWD)."""
    return _DETECTORS[parse_metric(metric).family]


def with_num_gen(metric: str, num_gen: int) -> str:
    """The name of `metric` computed from `num_gen` generated samples (fid50k_full, 5000 -> fid5k_full)."""
    spec = parse_metric(metric)
    count = format_count(num_gen)
    if spec.family == "ppl":
        return spec.ppl_base if num_gen == _DEFAULT_COUNT else f"{spec.ppl_base}_{count}"
    if spec.family == "pr":
        return f"pr{count}{spec.nhood_size}" + ("_full" if spec.full else "")
    if spec.family in ("is", "cls", "swd"):
        return f"{spec.family}{count}"
    return f"{spec.family}{count}" + ("_full" if spec.full else "")


def _run(spec: MetricSpec, opts: metric_utils.MetricOptions) -> dict[str, float]:
    n = spec.num_gen
    if spec.family != "ppl":
        opts.dataset_kwargs.update(max_size=None)
        if spec.full or spec.family in ("is", "cls", "swd"):
            opts.dataset_kwargs.update(xflip=False)
    if spec.family == "fid":
        return {spec.name: frechet_inception_distance.compute_fid(opts, max_real=None if spec.full else n, num_gen=n)}
    if spec.family == "kid":
        kid = kernel_inception_distance.compute_kid(
            opts, max_real=1000000 if spec.full else n, num_gen=n, num_subsets=100, max_subset_size=1000
        )
        return {spec.name: kid}
    if spec.family == "pr":
        precision, recall = precision_recall.compute_pr(
            opts,
            max_real=200000 if spec.full else n,
            num_gen=n,
            nhood_size=spec.nhood_size,
            row_batch_size=10000,
            col_batch_size=10000,
        )
        return {f"{spec.name}_precision": precision, f"{spec.name}_recall": recall}
    if spec.family == "is":
        mean, std = inception_score.compute_is(opts, num_gen=n, num_splits=10)
        return {f"{spec.name}_mean": mean, f"{spec.name}_std": std}
    if spec.family == "fdd":
        return {spec.name: digits_metrics.compute_fdd(opts, max_real=None if spec.full else n, num_gen=n)}
    if spec.family == "kdd":
        kdd = digits_metrics.compute_kdd(
            opts, max_real=1000000 if spec.full else n, num_gen=n, num_subsets=100, max_subset_size=1000
        )
        return {spec.name: kdd}
    if spec.family == "cls":
        confident, score, class_entropy = digits_metrics.compute_cls(opts, num_gen=n)
        return {
            f"{spec.name}_confident": confident,
            f"{spec.name}_score": score,
            f"{spec.name}_class_entropy": class_entropy,
        }
    if spec.family == "swd":
        per_level = sliced_wasserstein.compute_swd(opts, num_images=n)
        results = {f"{spec.name}_{res}": value for res, value in per_level.items()}
        return {spec.name: float(np.mean(list(per_level.values()))), **results}
    space, sampling, crop = _PPL_VARIANTS[spec.ppl_base]
    ppl = perceptual_path_length.compute_ppl(
        opts, num_samples=n, epsilon=1e-4, space=space, sampling=sampling, crop=crop, batch_size=2
    )
    return {spec.name: ppl}


MetricDatasetError = metric_utils.MetricDatasetError


def check_metric_dataset(metric: str, dataset_kwargs: Mapping | None) -> None:
    """Raise MetricDatasetError when `metric` cannot mean anything on the dataset that `dataset_kwargs` names
    (open_dataset kwargs; None or {} is the embedded digits). Today: fdd/kdd/cls only on the embedded digits.

    Cheap (opens nothing): call it with the other option checks, before creating a run directory.
    """
    if parse_metric(metric).family in ("fdd", "kdd", "cls"):
        digits_metrics.check_digits_dataset(metric, dataset_kwargs)


def calc_metric(metric: str, **kwargs) -> dnnlib_util.EasyDict:
    """Compute one metric; kwargs are MetricOptions' (G, G_kwargs, dataset_kwargs, num_gpus, rank, device, ...).

    Returns {results: {name: value}, metric, total_time, total_time_str, num_gpus}, identical in every process.
    Raises MetricDatasetError (check_metric_dataset) before any work when the metric does not fit the dataset.
    """
    spec = parse_metric(metric)
    check_metric_dataset(metric, kwargs.get("dataset_kwargs"))
    opts = metric_utils.MetricOptions(**kwargs)
    start_time = time.time()
    results = _run(spec, opts)
    total_time = time.time() - start_time
    for key, value in list(results.items()):
        if opts.num_gpus > 1:
            value = torch.as_tensor(value, dtype=torch.float64, device=opts.device)
            torch.distributed.broadcast(tensor=value, src=0)
            value = float(value.cpu())
        results[key] = value
    return dnnlib_util.EasyDict(
        results=dnnlib_util.EasyDict(results),
        metric=metric,
        total_time=total_time,
        total_time_str=dnnlib_util.format_time(total_time),
        num_gpus=opts.num_gpus,
    )


def report_metric(result_dict: dict, run_dir: str | None = None, snapshot_pkl: str | None = None) -> str:
    """Print the JSON line of a result and append it to <run_dir>/metric-<name>.jsonl (when run_dir exists).

    The line is the official one: the result fields plus snapshot_pkl (relative to run_dir) and timestamp.
    """
    metric = result_dict["metric"]
    parse_metric(metric)
    if run_dir is not None and snapshot_pkl is not None:
        snapshot_pkl = os.path.relpath(snapshot_pkl, run_dir)
    jsonl_line = json.dumps(dict(result_dict, snapshot_pkl=snapshot_pkl, timestamp=time.time()))
    print(jsonl_line, flush=True)
    if run_dir is not None and os.path.isdir(run_dir):
        path = os.path.join(run_dir, f"metric-{metric}.jsonl")
        existed = os.path.exists(path)
        try:
            files.append_line(path, jsonl_line)
        except OSError as err:  # a read-only or full folder loses the record, not the result printed above
            reason = files.write_error(err, path, run_dir, None, existed)
            print(f"warning: {reason}; the result is the line above", file=sys.stderr, flush=True)
    return jsonl_line
