"""Full-batch gradient descent for many linear binary classifiers at once: every loss, k, L2 strength and fold.

The weights live in one tensor ``W`` [M, F, D] (M models, F folds, D features incl. bias). Each step computes
all logits ``z = einsum('fnd,mfd->mfn')`` on every sample (training and test part), the per-sample loss of each
model through the ``rlo`` loss family, the masked training mean per (model, fold), and one autograd gradient
of the sum (models and folds do not interact, so each slice gets its own gradient). The only Python loop is over
GD steps.

Different k in one call: the rooted members' functions take a tensor of k values (one per model, broadcast over
the samples), so models that differ only in k share one call; :class:`BatchedFamilyLoss` is checked against
``rlo.binary_loss`` for each k in the tests.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch

import rlo


@dataclasses.dataclass
class GDHistory:
    """Result of :func:`batched_gd`. T = steps; entry t is the iterate after t updates (t = 0: initial)."""

    weights: torch.Tensor  # [M, F, D] final weights
    objective: torch.Tensor  # [T+1, M, F] each model's own training objective (loss + L2 term)
    train_ce: torch.Tensor  # [T+1, M, F] training logistic loss (cross-entropy) of the iterates
    test_acc: torch.Tensor  # [T+1, M, F] accuracy on the fold's held-out part, in [0, 1]
    train_acc: torch.Tensor  # [T+1, M, F] accuracy on the fold's training part, in [0, 1]


class BatchedFamilyLoss:
    """Per-sample loss of model i under ``losses[i]``, for all models in as few ``rlo`` calls as possible.

    Models are grouped once: every rooted loss with m = k and the same form shares one call whatever its k;
    other configs share a call when they are equal.
    """

    def __init__(self, losses: Sequence[rlo.LossConfig]):
        groups: dict[rlo.LossConfig, list[int]] = {}
        for index, cfg in enumerate(losses):
            key = dataclasses.replace(cfg, k=1.0) if cfg.is_rooted and cfg.m is None else cfg
            groups.setdefault(key, []).append(index)
        self.num_models = len(losses)
        self.groups = [
            (key, torch.tensor(indices), torch.tensor([float(losses[i].k) for i in indices]))
            for key, indices in groups.items()
        ]
        order = torch.cat([indices for _, indices, _ in self.groups])
        self.inverse = torch.empty_like(order)
        self.inverse[order] = torch.arange(order.numel())

    def __call__(self, z: torch.Tensor, y: torch.Tensor, nll: torch.Tensor | None = None) -> torch.Tensor:
        """z [M, ...] logits, y [...] in {-1, +1} or bool (broadcast over models) -> [M, ...] per-sample losses.

        ``nll``: ``rlo.logistic(z, y.expand_as(z), reduction='none')`` if the caller has it already; members with
        a ``from_nll`` form reuse it.
        """
        if z.shape[0] != self.num_models:
            raise ValueError(f"built for {self.num_models} models, got z of shape {tuple(z.shape)}")
        positive = positives(y).expand_as(z)  # checked once; bool targets skip the per-call value checks
        if nll is None:
            nll = rlo.logistic(z, positive, reduction="none")
        parts = []
        for key, indices, k in self.groups:
            indices = indices.to(z.device)
            params = key.parameters()
            if key.is_rooted and key.m is None:
                params["k"] = k.to(device=z.device, dtype=nll.dtype).view(-1, *([1] * (z.ndim - 1)))
            if key.member.from_nll is not None:
                part = key.member.from_nll(nll.index_select(0, indices), input_dtype=z.dtype, **params)
            else:
                part = key.member.binary(
                    z.index_select(0, indices), positive.index_select(0, indices), reduction="none", **params
                )
            parts.append(part)
        merged = parts[0] if len(parts) == 1 else torch.cat(parts)
        return merged.index_select(0, self.inverse.to(z.device))


def positives(y: torch.Tensor) -> torch.Tensor:
    """Binary targets ({-1, +1}, {0, 1} or bool, any shape) -> bool 'is positive', values checked."""
    return rlo.functional.binary_sign(y, y.to(torch.float32)) > 0


def family_binary_loss(losses: Sequence[rlo.LossConfig], z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample loss of model i under ``losses[i]``. z [M, ...] logits, y [...] in {-1, +1} -> [M, ...]."""
    return BatchedFamilyLoss(losses)(z, y)


def batched_gd(
    features: torch.Tensor,
    y: torch.Tensor,
    train_mask: torch.Tensor,
    losses: Sequence[rlo.LossConfig],
    l2: Sequence[float],
    steps: int,
    lr: float,
) -> GDHistory:
    """Train M = len(losses) linear models on F folds with full-batch GD from zero weights.

    features [F, N, D]: fold f's (standardised) copy of all N samples; the last column is the bias, which is not
    penalised. y [N] in {-1, +1}. train_mask [F, N] bool. Objective of model m on fold f:
    ``mean over f's training samples of loss_m(z) + 0.5 * l2[m] * ||w without bias||^2``.
    """
    num_folds, num_samples, dim = features.shape
    if y.shape != (num_samples,) or train_mask.shape != (num_folds, num_samples):
        raise ValueError(
            f"shape mismatch: features {tuple(features.shape)}, y {tuple(y.shape)}, "
            f"train_mask {tuple(train_mask.shape)}"
        )
    if len(l2) != len(losses):
        raise ValueError(f"got {len(l2)} L2 strengths for {len(losses)} models")
    if steps < 0 or not lr > 0:
        raise ValueError(f"need steps >= 0 and lr > 0, got steps={steps}, lr={lr}")
    dtype, device = features.dtype, features.device
    y = y.to(device=device, dtype=dtype)
    positive = positives(y)
    train = train_mask.to(device=device, dtype=dtype)  # [F, N]
    test = 1 - train
    n_train, n_test = train.sum(dim=1), test.sum(dim=1).clamp_min(1)  # [F]
    l2_strength = torch.tensor(list(l2), dtype=dtype, device=device).view(-1, 1)  # [M, 1]
    weights = torch.zeros(len(losses), num_folds, dim, dtype=dtype, device=device)
    family_loss = BatchedFamilyLoss(losses)

    records = {name: [] for name in ("objective", "train_ce", "test_acc", "train_acc")}
    for step in range(steps + 1):
        weights.requires_grad_(True)
        z = torch.einsum("fnd,mfd->mfn", features, weights)  # [M, F, N]
        nll = rlo.logistic(z, positive.expand_as(z), reduction="none")  # [M, F, N] CE of every model
        data_loss = (family_loss(z, positive, nll) * train).sum(dim=-1) / n_train  # [M, F]
        objective = data_loss + 0.5 * l2_strength * weights[..., :-1].square().sum(dim=-1)
        with torch.no_grad():
            correct = ((z > 0) == (y > 0)).to(dtype)
            records["objective"].append(objective.detach())
            records["train_ce"].append((nll.detach() * train).sum(dim=-1) / n_train)
            records["test_acc"].append((correct * test).sum(dim=-1) / n_test)
            records["train_acc"].append((correct * train).sum(dim=-1) / n_train)
        if step == steps:
            break
        (grad,) = torch.autograd.grad(objective.sum(), weights)
        weights = (weights - lr * grad).detach()
    return GDHistory(weights=weights.detach(), **{name: torch.stack(v) for name, v in records.items()})
