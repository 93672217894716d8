"""Shared machinery of the metrics: options, feature statistics, dataset/generator feature extraction, progress.

Mirrors StyleGAN2-ADA's metrics/metric_utils.py (same function names and multi-process scheme: every process
takes every num_gpus-th item and the features are interleaved back into one global order), with three changes:
detectors are local files found by metrics.detectors; dataset statistics are cached as .npz (no pickles);
generated samples are seeded per sample index, so results do not depend on batch size or process count; and G's
noise inputs (noise_mode='random') are seeded by the index of each generator call's first sample, so a metric is a
function of the network and the options, not of the process RNG (a resumed run or calc_metrics.py later gives the
same number), and the caller's RNG is left as it was.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
import time
from typing import Any

import numpy as np
import torch

from dnnlib import util as dnnlib_util
from dnnlib.files import atomic_write
from metrics import detectors
from training import sampling
from training.dataset import open_dataset


class MetricDatasetError(ValueError):
    """A metric asked for on a dataset it cannot score meaningfully; the message says why and what to use instead."""


class MetricOptions:
    """Everything a metric needs. Keyword names follow StyleGAN2-ADA (G, G_kwargs, dataset_kwargs, num_gpus, ...).

    dataset_kwargs: kwargs of training.dataset.open_dataset (path, resolution, use_labels, max_size, xflip, ...).
    detector_dir: folder searched first for detector files. seed: base seed of the generated samples.
    batch_size: images per detector call and per process. num_workers: DataLoader workers (None: 3 on CUDA, else 0).
    """

    def __init__(
        self,
        G: torch.nn.Module | None = None,
        G_kwargs: dict | None = None,
        dataset_kwargs: dict | None = None,
        num_gpus: int = 1,
        rank: int = 0,
        device: torch.device | str | None = None,
        progress: ProgressMonitor | None = None,
        cache: bool = True,
        detector_dir: str | None = None,
        seed: int = 0,
        batch_size: int = 64,
        num_workers: int | None = None,
    ):
        if not 0 <= rank < num_gpus:
            raise ValueError(f"rank must be in [0, num_gpus={num_gpus}), got {rank}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.G = G
        self.G_kwargs = dnnlib_util.EasyDict(G_kwargs or {})
        self.dataset_kwargs = dnnlib_util.EasyDict(copy.deepcopy(dataset_kwargs or {}))
        self.num_gpus = num_gpus
        self.rank = rank
        if device is None:
            device = torch.device("cuda", rank) if torch.cuda.is_available() else torch.device("cpu")
        self.device = torch.device(device)
        self.progress = progress.sub() if progress is not None and rank == 0 else ProgressMonitor()
        self.cache = cache
        self.detector_dir = detector_dir
        self.seed = int(seed)
        self.batch_size = int(batch_size)
        self.num_workers = (3 if self.device.type == "cuda" else 0) if num_workers is None else int(num_workers)


# ----------------------------------------------------------------------------


class ProgressMonitor:
    """Progress of one piece of work: a tqdm bar and a throughput line when verbose, and an optional callback.

    `progress_fn(cur, total)` receives the overall progress mapped into [pfn_lo, pfn_hi] of pfn_total (as the
    official training loop uses it); `sub()` makes a monitor for a sub-range [rel_lo, rel_hi] of this one.
    """

    def __init__(
        self,
        tag: str | None = None,
        num_items: int | None = None,
        verbose: bool = False,
        progress_fn=None,
        pfn_lo: int = 0,
        pfn_hi: int = 1000,
        pfn_total: int = 1000,
    ):
        self.tag = tag
        self.num_items = num_items
        self.verbose = verbose
        self.progress_fn = progress_fn
        self.pfn_lo = pfn_lo
        self.pfn_hi = pfn_hi
        self.pfn_total = pfn_total
        self.start_time = time.time()
        self.batch_items = 0
        self._bar = None
        self._done = False
        if verbose and tag is not None:
            from tqdm import tqdm

            self._bar = tqdm(total=num_items, desc=tag, unit="img", leave=False, dynamic_ncols=True)
        if progress_fn is not None:
            progress_fn(pfn_lo, pfn_total)

    def update(self, cur_items: int) -> None:
        """Report that `cur_items` items are done in total."""
        if self._done:
            return
        if self._bar is not None:
            self._bar.update(max(cur_items - self._bar.n, 0))
        finished = self.num_items is not None and cur_items >= self.num_items
        if finished:
            self._done = True
            elapsed = max(time.time() - self.start_time, 1e-9)
            if self._bar is not None:
                self._bar.close()
            if self.verbose and self.tag is not None:
                print(
                    f"{self.tag}: {cur_items} images in {elapsed:.1f} s ({cur_items / elapsed:.1f} img/s)", flush=True
                )
        if self.progress_fn is not None and self.num_items:
            frac = min(cur_items / self.num_items, 1.0)
            self.progress_fn(int(self.pfn_lo + (self.pfn_hi - self.pfn_lo) * frac), self.pfn_total)

    def sub(
        self, tag: str | None = None, num_items: int | None = None, rel_lo: float = 0, rel_hi: float = 1
    ) -> ProgressMonitor:
        """A monitor for the part [rel_lo, rel_hi] of this one."""
        span = self.pfn_hi - self.pfn_lo
        return ProgressMonitor(
            tag=tag,
            num_items=num_items,
            verbose=self.verbose,
            progress_fn=self.progress_fn,
            pfn_lo=self.pfn_lo + span * rel_lo,
            pfn_hi=self.pfn_lo + span * rel_hi,
            pfn_total=self.pfn_total,
        )


# ----------------------------------------------------------------------------


class FeatureStats:
    """Running statistics of feature vectors [N, D]: all of them (capture_all) and/or float64 sum and sum of
    outer products (capture_mean_cov), for at most `max_items` vectors."""

    def __init__(self, capture_all: bool = False, capture_mean_cov: bool = False, max_items: int | None = None):
        self.capture_all = capture_all
        self.capture_mean_cov = capture_mean_cov
        self.max_items = max_items
        self.num_items = 0
        self.num_features: int | None = None
        self.all_features: list[np.ndarray] | None = None
        self.raw_mean: np.ndarray | None = None
        self.raw_cov: np.ndarray | None = None

    def set_num_features(self, num_features: int) -> None:
        if self.num_features is not None:
            if num_features != self.num_features:
                raise ValueError(f"feature size changed from {self.num_features} to {num_features}")
            return
        self.num_features = num_features
        self.all_features = []
        self.raw_mean = np.zeros([num_features], dtype=np.float64)
        self.raw_cov = np.zeros([num_features, num_features], dtype=np.float64)

    def is_full(self) -> bool:
        return self.max_items is not None and self.num_items >= self.max_items

    def append(self, x: np.ndarray) -> None:
        """Add feature vectors x [n, D] (float32); items beyond max_items are dropped."""
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2:
            raise ValueError(f"features must be [N, D], got shape {list(x.shape)}")
        if self.max_items is not None and self.num_items + x.shape[0] > self.max_items:
            if self.num_items >= self.max_items:
                return
            x = x[: self.max_items - self.num_items]
        self.set_num_features(x.shape[1])
        self.num_items += x.shape[0]
        if self.capture_all:
            self.all_features.append(x)
        if self.capture_mean_cov:
            x64 = x.astype(np.float64)
            self.raw_mean += x64.sum(axis=0)
            self.raw_cov += x64.T @ x64

    def append_torch(self, x: torch.Tensor, num_gpus: int = 1, rank: int = 0) -> None:
        """Add this process's features; with several processes, gather all and interleave them in global order."""
        if x.ndim != 2 or not 0 <= rank < num_gpus:
            raise ValueError(
                f"expected features [N, D] and 0 <= rank < num_gpus, got {list(x.shape)}, {rank}, {num_gpus}"
            )
        if num_gpus > 1:
            ys = []
            for src in range(num_gpus):
                y = x.clone()
                torch.distributed.broadcast(y, src=src)
                ys.append(y)
            x = torch.stack(ys, dim=1).flatten(0, 1)  # item i of process r sits at global position i*num_gpus + r
        self.append(x.detach().cpu().numpy())

    def get_all(self) -> np.ndarray:
        """All captured features, float32 [N, D]."""
        if not self.capture_all:
            raise RuntimeError("FeatureStats was created without capture_all=True")
        if not self.all_features:
            return np.zeros([0, self.num_features or 0], dtype=np.float32)
        return np.concatenate(self.all_features, axis=0)

    def get_all_torch(self) -> torch.Tensor:
        return torch.from_numpy(self.get_all())

    def get_mean_cov(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean [D] and biased covariance [D, D] (divided by N, as in StyleGAN2-ADA), float64."""
        if not self.capture_mean_cov:
            raise RuntimeError("FeatureStats was created without capture_mean_cov=True")
        if self.num_items == 0:
            raise ValueError("no features were collected (empty dataset or num_gen=0)")
        mean = self.raw_mean / self.num_items
        cov = self.raw_cov / self.num_items - np.outer(mean, mean)
        return mean, cov

    def save(self, path: str) -> None:
        """Write to `path` (.npz) all-or-nothing (dnnlib.files.atomic_write)."""
        arrays: dict[str, Any] = dict(
            capture_all=np.array(self.capture_all),
            capture_mean_cov=np.array(self.capture_mean_cov),
            max_items=np.array(-1 if self.max_items is None else self.max_items, dtype=np.int64),
            num_items=np.array(self.num_items, dtype=np.int64),
            num_features=np.array(-1 if self.num_features is None else self.num_features, dtype=np.int64),
        )
        if self.num_features is not None:
            arrays["raw_mean"] = self.raw_mean
            arrays["raw_cov"] = self.raw_cov
            arrays["all_features"] = (
                self.get_all() if self.capture_all else np.zeros([0, self.num_features], np.float32)
            )
        atomic_write(path, lambda file: np.savez(file, **arrays))

    @staticmethod
    def load(path: str) -> FeatureStats:
        with np.load(path, allow_pickle=False) as data:
            max_items = int(data["max_items"])
            stats = FeatureStats(
                capture_all=bool(data["capture_all"]),
                capture_mean_cov=bool(data["capture_mean_cov"]),
                max_items=None if max_items < 0 else max_items,
            )
            num_features = int(data["num_features"])
            if num_features >= 0:
                stats.set_num_features(num_features)
                stats.raw_mean = data["raw_mean"].astype(np.float64)
                stats.raw_cov = data["raw_cov"].astype(np.float64)
                if stats.capture_all:
                    stats.all_features = [data["all_features"].astype(np.float32)]
            stats.num_items = int(data["num_items"])
        return stats


# ----------------------------------------------------------------------------


def open_metric_dataset(opts: MetricOptions):
    """The dataset named by opts.dataset_kwargs (training.dataset.open_dataset kwargs)."""
    kwargs = dict(opts.dataset_kwargs)
    kwargs.pop("class_name", None)
    return open_dataset(**kwargs)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def stats_cache_file(
    opts: MetricOptions, dataset_name: str, files: detectors.DetectorFiles, detector_kwargs: dict, stats_kwargs: dict
) -> str:
    """<cache>/gan-metrics/<dataset>-<detector>-<md5 of the options>.npz: one file per distinct computation."""
    args = dict(
        dataset_kwargs=dict(opts.dataset_kwargs),
        detector=files.tag,
        detector_kwargs=detector_kwargs,
        stats_kwargs=stats_kwargs,
    )
    md5 = hashlib.md5(_canonical(args).encode("utf-8")).hexdigest()
    return dnnlib_util.make_cache_dir_path("gan-metrics", f"{dataset_name}-{files.short_name}-{md5}.npz")


def _broadcast_flag(flag: bool, opts: MetricOptions) -> bool:
    if opts.num_gpus == 1:
        return flag
    value = torch.as_tensor(float(flag), dtype=torch.float32, device=opts.device)
    torch.distributed.broadcast(tensor=value, src=0)
    return float(value.cpu()) != 0


def _locate(opts: MetricOptions, detector: str, detector_kwargs: dict) -> detectors.DetectorFiles:
    return detectors.locate_detector(detector, opts.detector_dir, need_lpips=bool(detector_kwargs.get("return_lpips")))


def _get_detector(opts: MetricOptions, detector: str, detector_kwargs: dict, verbose: bool) -> torch.nn.Module:
    return detectors.get_detector(
        detector, opts.device, opts.detector_dir, need_lpips=bool(detector_kwargs.get("return_lpips")), verbose=verbose
    )


def _to_rgb_uint8_batch(images: torch.Tensor) -> torch.Tensor:
    if images.shape[1] == 1:
        images = images.repeat([1, 3, 1, 1])
    if images.shape[1] != 3:
        raise ValueError(f"images must have 1 or 3 channels for the detectors, got {images.shape[1]}")
    return images


@torch.no_grad()
def compute_feature_stats_for_dataset(
    opts: MetricOptions,
    detector: str,
    detector_kwargs: dict,
    rel_lo: float = 0,
    rel_hi: float = 1,
    batch_size: int | None = None,
    data_loader_kwargs: dict | None = None,
    max_items: int | None = None,
    **stats_kwargs,
) -> FeatureStats:
    """Detector features of the first `max_items` dataset images (all when None), cached on disk by options.

    detector: 'inception' or 'vgg16'. Returns the same FeatureStats in every process.
    """
    batch_size = opts.batch_size if batch_size is None else batch_size
    dataset = open_metric_dataset(opts)
    if data_loader_kwargs is None:
        data_loader_kwargs = dict(pin_memory=opts.device.type == "cuda", num_workers=opts.num_workers)
        if opts.num_workers > 0:
            data_loader_kwargs["prefetch_factor"] = 2

    files = _locate(opts, detector, detector_kwargs)
    cache_file = None
    if opts.cache:
        cache_kwargs = dict(stats_kwargs, max_items=max_items)
        cache_file = stats_cache_file(opts, dataset.name, files, detector_kwargs, cache_kwargs)
        if _broadcast_flag(os.path.isfile(cache_file) if opts.rank == 0 else False, opts):
            if opts.progress.verbose:
                print(f"Using cached dataset features {cache_file}", flush=True)
            return FeatureStats.load(cache_file)

    num_items = len(dataset) if max_items is None else min(len(dataset), max_items)
    if num_items < 1:
        raise ValueError(f"dataset {opts.dataset_kwargs.get('path')!r} has no images to compute features of")
    stats = FeatureStats(max_items=num_items, **stats_kwargs)
    progress = opts.progress.sub(tag="dataset features", num_items=num_items, rel_lo=rel_lo, rel_hi=rel_hi)
    model = _get_detector(opts, detector, detector_kwargs, verbose=progress.verbose)

    # Process r takes items r, r+G, r+2G, ... (wrapping round so all processes do equal work).
    item_subset = [(i * opts.num_gpus + opts.rank) % num_items for i in range((num_items - 1) // opts.num_gpus + 1)]
    loader = torch.utils.data.DataLoader(
        dataset=dataset, sampler=item_subset, batch_size=batch_size, **data_loader_kwargs
    )
    for images, _labels in loader:
        images = _to_rgb_uint8_batch(images.to(opts.device))
        features = model(images, **detector_kwargs)
        stats.append_torch(features, num_gpus=opts.num_gpus, rank=opts.rank)
        progress.update(stats.num_items)
    progress.update(num_items)

    if cache_file is not None and opts.rank == 0:
        stats.save(cache_file)
    return stats


# ----------------------------------------------------------------------------


def sample_rng(seed: int, index: int) -> np.random.Generator:
    """The random stream of generated sample number `index` (independent of batch size and process count)."""
    return np.random.default_rng([int(seed), int(index)])


def sample_latents(
    indices: list[int], z_dim: int, seed: int, dataset=None, c_dim: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Latents z [n, z_dim] (float32, N(0, I)) and labels c [n, c_dim] for the given global sample indices.

    Labels are those of uniformly drawn dataset images (as StyleGAN2-ADA does); with c_dim == 0 they are empty.
    """
    zs = np.zeros([len(indices), z_dim], dtype=np.float32)
    cs = np.zeros([len(indices), c_dim], dtype=np.float32)
    for row, index in enumerate(indices):
        rng = sample_rng(seed, index)
        zs[row] = rng.standard_normal(z_dim)
        if c_dim > 0:
            if dataset is None:
                raise ValueError("a conditional generator needs the dataset (--data) to draw labels from")
            cs[row] = dataset.get_label(int(rng.integers(len(dataset))))
    return zs, cs


def labels_dataset(opts: MetricOptions, G: torch.nn.Module):
    """The dataset to draw labels from, or None for an unconditional generator."""
    if getattr(G, "c_dim", 0) == 0:
        return None
    if not opts.dataset_kwargs:
        raise ValueError("the generator is conditional (c_dim > 0) but no dataset was given to draw labels from")
    return open_metric_dataset(opts)


@contextlib.contextmanager
def seeded_noise(seed: int, index: int, device: torch.device):
    """Inside: the torch RNG of the CPU (and of `device`) seeded by (seed, sample index); outside: unchanged."""
    noise_seed = int(np.random.SeedSequence([int(seed), int(index), 2]).generate_state(1)[0])
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.default_generator.manual_seed(noise_seed)
        if device.type == "cuda":
            with torch.cuda.device(device):
                torch.cuda.manual_seed(noise_seed)
        yield


def generate_images(G: torch.nn.Module, z: torch.Tensor, c: torch.Tensor, G_kwargs: dict) -> torch.Tensor:
    """G(z, c) in [-1, 1] -> uint8 [N, C, H, W] with StyleGAN2-ADA's rounding (x * 127.5 + 128, clamped)."""
    return sampling.to_uint8(G(z, c, **G_kwargs))


@torch.no_grad()
def compute_feature_stats_for_generator(
    opts: MetricOptions,
    detector: str,
    detector_kwargs: dict,
    rel_lo: float = 0,
    rel_hi: float = 1,
    batch_size: int | None = None,
    batch_gen: int | None = None,
    **stats_kwargs,
) -> FeatureStats:
    """Detector features of `max_items` generated images; sample i uses z, c drawn from sample_rng(opts.seed, i)."""
    batch_size = opts.batch_size if batch_size is None else batch_size
    if batch_gen is None:  # at most 4 images per generator call, as StyleGAN2-ADA
        batch_gen = next(b for b in (4, 3, 2, 1) if batch_size % b == 0)
    if batch_size % batch_gen != 0:
        raise ValueError(f"batch_size={batch_size} must be a multiple of batch_gen={batch_gen}")
    G = copy.deepcopy(opts.G).eval().requires_grad_(False).to(opts.device)
    dataset = labels_dataset(opts, G)

    stats = FeatureStats(**stats_kwargs)
    if stats.max_items is None:
        raise ValueError("compute_feature_stats_for_generator needs max_items (the number of images to generate)")
    progress = opts.progress.sub(tag="generator features", num_items=stats.max_items, rel_lo=rel_lo, rel_hi=rel_hi)
    model = _get_detector(opts, detector, detector_kwargs, verbose=progress.verbose)

    step = 0
    per_step = batch_size * opts.num_gpus
    while not stats.is_full():
        # Global index of this process's j-th image in this step: step*B*G + j*G + rank (matches append_torch).
        indices = [step * per_step + j * opts.num_gpus + opts.rank for j in range(batch_size)]
        images = []
        for start in range(0, batch_size, batch_gen):
            z, c = sample_latents(indices[start : start + batch_gen], G.z_dim, opts.seed, dataset, G.c_dim)
            with seeded_noise(opts.seed, indices[start], opts.device):
                images.append(
                    generate_images(
                        G, torch.from_numpy(z).to(opts.device), torch.from_numpy(c).to(opts.device), opts.G_kwargs
                    )
                )
        images = _to_rgb_uint8_batch(torch.cat(images))
        features = model(images, **detector_kwargs)
        stats.append_torch(features, num_gpus=opts.num_gpus, rank=opts.rank)
        progress.update(stats.num_items)
        step += 1
    return stats
