"""The `--device=auto|cpu|cuda` flag of the scripts that run networks (projector.py, calc_metrics.py)."""

from __future__ import annotations

import click
import torch

from torch_utils import host_memory


def script_device(choice: str) -> torch.device:
    """`--device=auto|cpu|cuda` as a torch.device, with CPU runs set up as train.py sets them up (freed host memory
    kept, see host_memory). Usage errors name the flag or the variable."""
    if choice == "auto":
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    if choice == "cuda" and not torch.cuda.is_available():
        raise click.BadParameter("CUDA is not available on this machine", param_hint="--device")
    device = torch.device(choice)
    if device.type == "cpu":
        try:
            host_memory.keep_freed_host_memory()
        except ValueError as err:  # RLO_KEEP_HOST_MEMORY unreadable
            raise click.UsageError(str(err)) from None
    return device
