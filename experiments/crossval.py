"""K-fold splits and per-fold standardisation, laid out as one tensor so every fold trains at once.

Folds are stratified (each class is shuffled with a seeded generator and dealt round-robin over the folds), so the
fold sizes differ by at most one per class. Standardisation statistics come from each fold's training part only;
the test part is transformed with them. A constant feature (zero training std) is centred and left unscaled.
"""

from __future__ import annotations

import numpy as np
import torch


def stratified_fold_ids(y: np.ndarray, n_folds: int, seed: int = 0) -> np.ndarray:
    """Fold index in [0, n_folds) for each sample. y [N] class labels -> [N] int64."""
    y = np.asarray(y)
    if n_folds < 2:
        raise ValueError(f"n_folds must be at least 2, got {n_folds}")
    if y.shape[0] < n_folds:
        raise ValueError(f"cannot split {y.shape[0]} samples into {n_folds} folds")
    rng = np.random.default_rng(seed)
    fold_ids = np.empty(y.shape[0], dtype=np.int64)
    offset = 0
    for label in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == label))
        fold_ids[members] = (np.arange(members.size) + offset) % n_folds
        offset += members.size  # continue the deal where the last class stopped, to balance fold sizes
    return fold_ids


def train_masks(fold_ids: np.ndarray, n_folds: int) -> torch.Tensor:
    """[F, N] bool: True where the sample trains fold f (i.e. is not in fold f's test part)."""
    ids = torch.as_tensor(np.asarray(fold_ids))
    return ids.unsqueeze(0) != torch.arange(n_folds).unsqueeze(1)


def standardize_per_fold(
    x: np.ndarray, train_mask: torch.Tensor, add_bias: bool = True, dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    """x [N, d], train_mask [F, N] -> [F, N, d (+1)]: fold f's copy of x standardised with f's training statistics.

    With ``add_bias`` a constant-1 column is appended, so a linear model's last weight is its bias.
    """
    features = torch.as_tensor(np.asarray(x), dtype=dtype)
    weights = train_mask.to(dtype)
    counts = weights.sum(dim=1, keepdim=True)  # [F, 1]
    if bool((counts < 2).any()):
        raise ValueError("every fold needs at least two training samples to standardise")
    mean = weights @ features / counts  # [F, d]
    centred = features.unsqueeze(0) - mean.unsqueeze(1)  # [F, N, d]
    var = torch.einsum("fn,fnd->fd", weights, centred.square()) / counts
    std = var.sqrt()
    std = torch.where(std > 0, std, torch.ones_like(std))
    standardized = centred / std.unsqueeze(1)
    if add_bias:
        standardized = torch.cat([standardized, torch.ones_like(standardized[..., :1])], dim=-1)
    return standardized
