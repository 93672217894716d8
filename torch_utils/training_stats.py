"""Cheap statistics reporting across processes (StyleGAN2-ADA's `training_stats` API).

`report(name, values)` adds the values' count, sum and sum of squares to a per-device accumulator without a
device sync. A `Collector` turns everything reported since its previous `update()` into mean / std / count,
summed over all processes (one all-reduce per update, so every process must call `update()` together).
"""

from __future__ import annotations

import re
import weakref
from typing import Any

import numpy as np
import torch

_COUNTER_DTYPE = torch.float64
_rank: int = 0
_sync_device: torch.device | None = None
_moments: dict[str, dict[torch.device, torch.Tensor]] = {}  # name -> device -> [count, sum, sum of squares]
_collectors: weakref.WeakSet[Collector] = weakref.WeakSet()


def init_multiprocessing(rank: int, sync_device: torch.device | None) -> None:
    """Call once per process before any Collector.update() when torch.distributed is initialised.

    sync_device: where the all-reduce happens ('cuda' device for NCCL, None/CPU for gloo).
    """
    global _rank, _sync_device
    _rank = rank
    _sync_device = sync_device


def reset() -> None:
    """Forget everything reported and synced (tests; a fresh run in the same process)."""
    _moments.clear()
    for collector in list(_collectors):
        collector._inbox.clear()


def report(name: str, value: Any) -> Any:
    """Add a scalar, sequence or tensor of values (NaNs included) to the statistic `name`; returns `value`."""
    elems = torch.as_tensor(value).detach().flatten().to(_COUNTER_DTYPE)
    moments = torch.stack([torch.ones_like(elems).sum(), elems.sum(), elems.square().sum()])
    per_device = _moments.setdefault(name, {})
    if elems.device in per_device:
        per_device[elems.device].add_(moments)
    else:
        per_device[elems.device] = moments
    return value


def report0(name: str, value: Any) -> Any:
    """Like report(), but only rank 0's values count (e.g. timings, where every rank would say the same)."""
    report(name, value if _rank == 0 else [])
    return value


def _all_names() -> list[str]:
    names = set(_moments)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        gathered: list[Any] = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(gathered, sorted(names))
        names = set().union(*gathered)
    return sorted(names)


def _sync() -> None:
    """Move every process's pending moments (summed over processes) into each live Collector's inbox."""
    names = _all_names()
    device = _sync_device if _sync_device is not None else torch.device("cpu")
    pending = torch.zeros([len(names), 3], dtype=_COUNTER_DTYPE, device=device)
    for row, name in enumerate(names):
        for moments in _moments.get(name, {}).values():
            pending[row] += moments.to(device)
            moments.zero_()
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(pending)
    pending = pending.cpu()
    for collector in list(_collectors):
        collector._receive(names, pending)


class Collector:
    """Statistics whose names match `regex`, as reported (by all processes) between two update() calls.

    keep_previous=True keeps the last values of a statistic that got no new reports since.
    """

    def __init__(self, regex: str = ".*", keep_previous: bool = True):
        self._regex = re.compile(regex)
        self._keep_previous = keep_previous
        self._inbox: dict[str, torch.Tensor] = {}
        self._moments: dict[str, torch.Tensor] = {}
        _sync()  # what was reported before this collector existed is not its business
        _collectors.add(self)

    def _receive(self, names: list[str], pending: torch.Tensor) -> None:
        for row, name in enumerate(names):
            if self._regex.fullmatch(name) and pending[row, 0] > 0:
                self._inbox[name] = self._inbox[name] + pending[row] if name in self._inbox else pending[row].clone()

    def names(self) -> list[str]:
        return sorted(self._moments)

    def update(self) -> None:
        """Collective: take in everything reported since the previous update (all processes must call it)."""
        _sync()
        if not self._keep_previous:
            self._moments.clear()
        self._moments.update(self._inbox)
        self._inbox = {}

    def num(self, name: str) -> int:
        return int(self._moments[name][0]) if name in self._moments else 0

    def mean(self, name: str) -> float:
        if self.num(name) == 0:
            return float("nan")
        count, total, _ = self._moments[name].tolist()
        return total / count

    def std(self, name: str) -> float:
        if self.num(name) == 0:
            return float("nan")
        count, total, squares = self._moments[name].tolist()
        mean = total / count
        return float(np.sqrt(max(squares / count - mean**2, 0.0)))

    def as_dict(self) -> dict[str, dict[str, float]]:
        """{name: {'num', 'mean', 'std'}} for every statistic seen at the last update (stats.jsonl format)."""
        return {name: dict(num=self.num(name), mean=self.mean(name), std=self.std(name)) for name in self.names()}

    def __getitem__(self, name: str) -> float:
        return self.mean(name)
