"""The metrics a training run computes at each snapshot, handed to the training loop by train.py.

The loop knows nothing of metrics: it calls an evaluator with G_ema and the snapshot path and logs what comes
back. Keeping the evaluator a small dataclass makes it picklable for the processes that --gpus spawns.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from metrics import metric_main
from torch_utils.distributed import DistContext


@dataclasses.dataclass
class SnapshotEvaluator:
    """Computes `metrics` on G_ema (collective: every process calls it), appends metric-<name>.jsonl lines."""

    metrics: list[str]
    dataset_kwargs: dict[str, Any]
    run_dir: str
    detector_dir: str | None = None

    def __call__(
        self, G_ema: torch.nn.Module, snapshot_path: str, ctx: DistContext, device: torch.device
    ) -> dict[str, float]:
        if ctx.is_main:
            print("Evaluating metrics...")
        values: dict[str, float] = {}
        for metric in self.metrics:
            result = metric_main.calc_metric(
                metric=metric,
                G=G_ema,
                dataset_kwargs=self.dataset_kwargs,
                num_gpus=ctx.world_size,
                rank=ctx.rank,
                device=device,
                detector_dir=self.detector_dir,
            )
            if ctx.is_main:
                metric_main.report_metric(result, run_dir=self.run_dir, snapshot_pkl=snapshot_path)
            values.update(result.results)
        return values
