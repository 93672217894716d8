"""How the benchmarks here time things, written once: a repetition is synchronise, run, synchronise (so CUDA work
is inside it); warm-up runs come first and are not kept; each repetition gives wall seconds and process CPU
seconds (summed over threads, steadier on a shared machine); a spread is the median with min and max.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable

import torch


@dataclasses.dataclass
class Timings:
    wall: list[float]  # seconds per repetition
    cpu: list[float]  # process CPU seconds per repetition

    def ms(self) -> list[float]:
        return [seconds * 1e3 for seconds in self.wall]


def synchronize(device: torch.device | str | None) -> None:
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def measure(
    fn: Callable[[], object],
    reps: int,
    device: torch.device | str | None = None,
    warmup: int = 1,
    before: Callable[[], object] | None = None,
) -> Timings:
    """`reps` timed runs of fn() after `warmup` untimed ones; `before()` runs ahead of each, outside the timing."""
    wall, cpu = [], []
    for rep in range(warmup + reps):
        if before is not None:
            before()
        synchronize(device)
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        synchronize(device)
        if rep >= warmup:
            wall.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
    return Timings(wall, cpu)


def spread(values: list[float]) -> dict[str, float]:
    """{median, min, max} of the values."""
    return dict(median=statistics.median(values), min=min(values), max=max(values))
