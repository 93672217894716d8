"""Data-parallel helpers over torch.distributed: process-group setup and gradient averaging.

Launch either with `torchrun` (any number of nodes: RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT come from the
environment) or with `train.py --gpus=N`, which spawns N processes on this node. Gradients are averaged with one
flat all-reduce per optimiser step (what DistributedDataParallel does, done by hand as in StyleGAN3): the R1 and
path-length terms differentiate twice and G/D alternate between trainable and frozen, which DDP's bucketed
reducer handles only with workarounds.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import socket
from collections.abc import Iterable
from typing import Any

import torch
import torch.distributed as dist

TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


@dataclasses.dataclass(frozen=True)
class DistContext:
    """Where this process sits: global rank, world size, rank on its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def torchrun_context() -> DistContext | None:
    """The context torchrun (or any env:// launcher) put in the environment, else None."""
    present = [name for name in TORCHRUN_VARS if name in os.environ]
    if not present:
        return None
    missing = [name for name in TORCHRUN_VARS if name not in os.environ]
    if missing:
        raise RuntimeError(
            f"distributed launch: {', '.join(present)} set but {', '.join(missing)} missing; "
            "start with torchrun, which sets all of RANK, WORLD_SIZE, LOCAL_RANK"
        )
    try:
        ctx = DistContext(
            rank=int(os.environ["RANK"]),
            world_size=int(os.environ["WORLD_SIZE"]),
            local_rank=int(os.environ["LOCAL_RANK"]),
        )
    except ValueError:
        raise RuntimeError(
            f"distributed launch: RANK/WORLD_SIZE/LOCAL_RANK must be integers, got "
            f"{[os.environ[n] for n in TORCHRUN_VARS]}"
        ) from None
    if not 0 <= ctx.rank < ctx.world_size:
        raise RuntimeError(f"distributed launch: RANK={ctx.rank} is outside WORLD_SIZE={ctx.world_size}")
    return ctx


def free_port() -> int:
    """A TCP port that was free a moment ago (rendezvous for processes spawned on this node)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def backend_for(device: torch.device) -> str:
    return "nccl" if device.type == "cuda" else "gloo"


def init_process_group(
    ctx: DistContext, device: torch.device, init_method: str = "env://", timeout_s: float = 1800
) -> None:
    """Join the process group (no-op for one process). init_method 'env://' reads MASTER_ADDR/MASTER_PORT."""
    if ctx.world_size == 1:
        return
    kwargs: dict[str, Any] = {}
    if device.type == "cuda":
        kwargs["device_id"] = device
    dist.init_process_group(
        backend=backend_for(device),
        init_method=init_method,
        rank=ctx.rank,
        world_size=ctx.world_size,
        timeout=datetime.timedelta(seconds=timeout_s),
        **kwargs,
    )


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def destroy_process_group() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@torch.no_grad()
def broadcast_module(module: torch.nn.Module, src: int = 0) -> None:
    """Make every parameter and buffer equal to rank `src`'s copy."""
    if not is_distributed():
        return
    for tensor in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(tensor.data, src=src)


def all_gather_object(obj: Any) -> list[Any]:
    """[obj of rank 0, obj of rank 1, ...] on every rank ([obj] without a process group)."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank `src`'s obj on every rank."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """In-place sum over processes; returns the tensor."""
    if is_distributed():
        dist.all_reduce(tensor)
    return tensor


@torch.no_grad()
def average_gradients(params: Iterable[torch.nn.Parameter], extra: torch.Tensor | None = None) -> torch.Tensor:
    """Average .grad over processes in one all-reduce; returns the flat averaged vector.

    `extra` (a scalar, e.g. a count of non-finite losses) rides along at the end of the vector, so its
    average over processes costs no second collective.
    """
    params = [p for p in params if p.grad is not None]
    parts = [p.grad.flatten() for p in params]
    if extra is not None:
        parts.append(extra.reshape(1).to(parts[0].dtype if parts else torch.float32))
    if not parts:
        return torch.zeros([0])
    flat = torch.cat(parts)
    if is_distributed():
        dist.all_reduce(flat)
        flat /= dist.get_world_size()
        grads = flat[: sum(p.numel() for p in params)].split([p.numel() for p in params])
        for param, grad in zip(params, grads):
            param.grad.copy_(grad.reshape(param.shape))
    return flat


@torch.no_grad()
def average_buffers(module: torch.nn.Module, suffix: str = "w_avg") -> None:
    """Average the buffers whose name ends with `suffix` over processes.

    Each process moves G.mapping.w_avg towards its own latents; the update is linear, so averaging at any time
    gives exactly the value one process would hold after seeing the whole batch.
    """
    if not is_distributed():
        return
    for name, buffer in module.named_buffers():
        if name.endswith(suffix) and buffer.is_floating_point():
            dist.all_reduce(buffer)
            buffer /= dist.get_world_size()
