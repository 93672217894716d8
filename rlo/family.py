"""One typed description of a loss in the family, and the modules built from it.

Experiments, classifiers and the GAN loss all pick a loss through :class:`LossConfig`, so switching between
``ce``, ``focal``, ``rlo``, ``rlo-eq9`` and ``unhinged`` is one string on the command line and nothing else.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Optional

import torch
from torch import nn

from rlo import functional as RF

LOSS_NAMES = ("ce", "focal", "rlo", "rlo-eq9", "unhinged")
ROOTED_FORM_OF = {"rlo": "eq4", "rlo-eq9": "eq9"}


@dataclasses.dataclass(frozen=True)
class LossConfig:
    """A member of the loss family. ``k``/``m`` apply to the rooted losses, ``gamma``/``alpha`` to focal."""

    name: str = "ce"
    k: float = 3.0
    m: Optional[float] = None  # None means m = k, as in eq. 4
    gamma: float = 3.0
    alpha: Optional[float] = 0.25

    def __post_init__(self):
        if self.name not in LOSS_NAMES:
            raise ValueError(f"unknown loss {self.name!r}; choose one of {', '.join(LOSS_NAMES)}")
        if self.is_rooted:
            RF.check_k(self.k)
            RF.resolve_m(self.k, self.m)

    @property
    def is_rooted(self) -> bool:
        return self.name in ROOTED_FORM_OF

    def describe(self) -> str:
        """Short label for logs, plots and run-directory names, e.g. ``rlo-k2`` or ``rlo-eq9-k3-m5``."""
        if not self.is_rooted:
            return self.name
        label = f"{self.name}-k{self.k:g}"
        return label if self.m is None else f"{label}-m{self.m:g}"

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "LossConfig":
        return cls(**json.loads(text))


def classification_loss(cfg: LossConfig, logits: torch.Tensor, target: torch.Tensor,
                        reduction: str = "mean") -> torch.Tensor:
    """Multi-class loss: logits [N, C, ...], integer target [N, ...]."""
    if cfg.is_rooted:
        return RF.rooted_cross_entropy(logits, target, cfg.k, cfg.m, ROOTED_FORM_OF[cfg.name], reduction)
    if cfg.name == "focal":
        return RF.focal_loss(logits, target, cfg.gamma, cfg.alpha, reduction)
    if cfg.name == "unhinged":
        return RF.unhinged_loss(logits, target, reduction)
    return RF.cross_entropy(logits, target, reduction)


def binary_loss(cfg: LossConfig, logits: torch.Tensor, target: RF.Target, reduction: str = "mean") -> torch.Tensor:
    """Binary loss on logits of any shape; target in {0, 1}, {-1, +1}, bool, or one scalar for all."""
    if cfg.is_rooted:
        return RF.rooted_logistic(logits, target, cfg.k, cfg.m, ROOTED_FORM_OF[cfg.name], reduction)
    if cfg.name == "focal":
        return RF.binary_focal_loss(logits, target, cfg.gamma, cfg.alpha, reduction)
    if cfg.name == "unhinged":
        return RF.binary_unhinged_loss(logits, target, reduction)
    return RF.logistic(logits, target, reduction)


class FamilyLoss(nn.Module):
    """``nn.CrossEntropyLoss``-style module for any member of the family: ``loss(logits [N, C], target [N])``."""

    def __init__(self, cfg: LossConfig, reduction: str = "mean"):
        super().__init__()
        if reduction not in RF.REDUCTIONS:
            raise ValueError(f"reduction must be one of {RF.REDUCTIONS}, got reduction={reduction!r}")
        self.cfg = cfg
        self.reduction = reduction

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return classification_loss(self.cfg, logits, target, self.reduction)

    def extra_repr(self) -> str:
        return f"{self.cfg}, reduction={self.reduction!r}"


class RootedLoss(FamilyLoss):
    """Drop-in for ``nn.CrossEntropyLoss``: ``RootedLoss(k=3)(logits, target)``. form 'eq4' (default) or 'eq9'."""

    def __init__(self, k: float, m: Optional[float] = None, form: str = "eq4", reduction: str = "mean"):
        names = {form_: name for name, form_ in ROOTED_FORM_OF.items()}
        if form not in names:
            raise ValueError(f"form must be one of {tuple(names)}, got form={form!r}")
        super().__init__(LossConfig(name=names[form], k=k, m=m), reduction)


def get_loss(name: str, reduction: str = "mean", **kwargs) -> FamilyLoss:
    """Build a family member by name: ``get_loss('rlo', k=3)``, ``get_loss('focal', gamma=2)``."""
    return FamilyLoss(LossConfig(name=name, **kwargs), reduction)
