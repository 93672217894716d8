"""Processes of a multi-process classifier run: torchrun's environment, a ``--gpus N`` spawn on this machine, and
the two collectives the training loop needs (a summed gradient, summed counters).

One process per device; every process builds the same initial network (same seed), takes its rows of each global
batch (:mod:`experiments.classify_data`), and the gradients of the per-process sums are summed, so N processes
step exactly as one process with the whole batch would (up to float summation order). BatchNorm statistics stay
per process, as in DDP without SyncBatchNorm.
"""

from __future__ import annotations

import dataclasses
import os
import socket
from collections.abc import Callable, Iterable

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


@dataclasses.dataclass(frozen=True)
class Dist:
    """This process's place: rank in 0..world-1; world 1 means no process group."""

    rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        """All-reduce (sum) in place over the processes; a no-op for one process."""
        if self.world > 1:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def sum_gradients_(self, parameters: Iterable[torch.nn.Parameter]) -> None:
        """Sum the gradients over the processes, as one flat buffer per dtype (one collective, not one per tensor)."""
        if self.world == 1:
            return
        grads = [p.grad for p in parameters if p.grad is not None]
        for dtype in {g.dtype for g in grads}:
            group = [g for g in grads if g.dtype == dtype]
            flat = torch.cat([g.reshape(-1) for g in group])
            dist.all_reduce(flat, op=dist.ReduceOp.SUM)
            for g, part in zip(group, flat.split([g.numel() for g in group])):
                g.copy_(part.view_as(g))

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()


def from_torchrun() -> bool:
    """Whether this process was started by torchrun (which sets RANK, WORLD_SIZE, MASTER_ADDR, ...)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1


def init_torchrun(backend: str) -> Dist:
    dist.init_process_group(backend=backend)
    return Dist(dist.get_rank(), dist.get_world_size())


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawned(rank: int, world: int, port: int, backend: str, fn: Callable, args: tuple) -> None:
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        if backend == "nccl":
            torch.cuda.set_device(rank)
        fn(Dist(rank, world), *args)
    finally:
        dist.destroy_process_group()


def spawn(world: int, backend: str, fn: Callable, *args) -> None:
    """Run ``fn(Dist(rank, world), *args)`` in ``world`` fresh processes on this machine (a ``--gpus N`` run; tests
    use gloo on the CPU). ``fn`` and ``args`` must be picklable; an exception in any process is raised here."""
    mp.spawn(_spawned, args=(world, free_port(), backend, fn, args), nprocs=world, join=True)
