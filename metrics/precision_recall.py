"""Improved precision and recall (Kynkäänniemi et al. 2019) on VGG16 fc2 features, as in StyleGAN2-ADA.

Precision: fraction of generated samples inside the real manifold (the union of balls around each real feature
reaching its k-th nearest real neighbour); recall: the same with the roles swapped.
"""

from __future__ import annotations

import torch

from metrics import metric_utils

DETECTOR_KWARGS = dict(return_features=True)  # 4096-d fc2 features of images resized to 224x224


def compute_distances(
    row_features: torch.Tensor, col_features: torch.Tensor, num_gpus: int, rank: int, col_batch_size: int
) -> torch.Tensor | None:
    """Pairwise L2 distances [rows, cols], column batches split over processes; the result only on rank 0."""
    num_cols = col_features.shape[0]
    num_batches = ((num_cols - 1) // col_batch_size // num_gpus + 1) * num_gpus
    col_batches = torch.nn.functional.pad(col_features, [0, 0, 0, -num_cols % num_batches]).chunk(num_batches)
    dist_batches = []
    for col_batch in col_batches[rank::num_gpus]:
        dist_batch = torch.cdist(row_features.unsqueeze(0), col_batch.unsqueeze(0))[0]
        for src in range(num_gpus):
            dist_broadcast = dist_batch.clone()
            if num_gpus > 1:
                torch.distributed.broadcast(dist_broadcast, src=src)
            dist_batches.append(dist_broadcast.cpu() if rank == 0 else None)
    return torch.cat(dist_batches, dim=1)[:, :num_cols] if rank == 0 else None


def precision_recall(
    real: torch.Tensor,
    gen: torch.Tensor,
    nhood_size: int,
    row_batch_size: int,
    col_batch_size: int,
    num_gpus: int = 1,
    rank: int = 0,
) -> tuple[float, float]:
    """(precision, recall) of point clouds real [N, D] and gen [M, D]; NaNs off rank 0."""
    results = {}
    for name, manifold, probes in [("precision", real, gen), ("recall", gen, real)]:
        if manifold.shape[0] <= nhood_size:
            raise ValueError(
                f"{name} needs more than nhood_size={nhood_size} points in its manifold, got {manifold.shape[0]}"
            )
        kth = []
        for manifold_batch in manifold.split(row_batch_size):
            dist = compute_distances(manifold_batch, manifold, num_gpus, rank, col_batch_size)
            # k+1: the nearest point of the manifold to itself is itself, at distance 0.
            kth.append(dist.to(torch.float32).kthvalue(nhood_size + 1).values.to(dist.dtype) if rank == 0 else None)
        kth = torch.cat(kth) if rank == 0 else None
        pred = []
        for probes_batch in probes.split(row_batch_size):
            dist = compute_distances(probes_batch, manifold, num_gpus, rank, col_batch_size)
            pred.append((dist <= kth).any(dim=1) if rank == 0 else None)
        results[name] = float(torch.cat(pred).to(torch.float32).mean()) if rank == 0 else float("nan")
    return results["precision"], results["recall"]


def compute_pr(
    opts: metric_utils.MetricOptions,
    max_real: int | None,
    num_gen: int,
    nhood_size: int,
    row_batch_size: int,
    col_batch_size: int,
) -> tuple[float, float]:
    """Precision and recall of `num_gen` generated images against `max_real` dataset images."""
    # Half precision halves the memory of the distance matrices on GPUs, as in StyleGAN2-ADA; CPUs keep float32.
    dtype = torch.float16 if opts.device.type == "cuda" else torch.float32
    real = (
        metric_utils.compute_feature_stats_for_dataset(
            opts=opts,
            detector="vgg16",
            detector_kwargs=DETECTOR_KWARGS,
            rel_lo=0,
            rel_hi=0,
            capture_all=True,
            max_items=max_real,
        )
        .get_all_torch()
        .to(dtype)
        .to(opts.device)
    )
    gen = (
        metric_utils.compute_feature_stats_for_generator(
            opts=opts,
            detector="vgg16",
            detector_kwargs=DETECTOR_KWARGS,
            rel_lo=0,
            rel_hi=1,
            capture_all=True,
            max_items=num_gen,
        )
        .get_all_torch()
        .to(dtype)
        .to(opts.device)
    )
    return precision_recall(real, gen, nhood_size, row_batch_size, col_batch_size, opts.num_gpus, opts.rank)
