"""Run the official StyleGAN2-ADA training loop on the CPU, for bench_vs_official.py's whole-tick timing.

The official `training_loop` names its device `torch.device('cuda', rank)` and times phases with CUDA events, so it
cannot start on a CPU. Here its module-level `torch` is replaced by a view of torch in which a CUDA device is the
CPU and CUDA events, streams and memory counters are inert, and `Tensor.pin_memory` returns the tensor (there is no
accelerator to pin for). One shim is for newer torch, not the CPU: `Sampler.__init__` no longer takes the dataset
that the official `InfiniteSampler` passes, so it gets an `__init__` that ignores it. Nothing else changes: the
official train.py builds the options (`--cfg`, `--batch`, `--aug`, `--fp32`, `--workers` as its own flags mean),
and its networks, loss, reference ops, dataset reader, EMA and statistics run as shipped. Only the tick length and
the run length are set directly, as floats (its train.py takes whole kimg and has no tick flag), and its snapshots
are off (they are not timed).

Run it as a script (not as a module of this repository): the official packages share our top-level names.

    python benchmarks/official_train_cpu.py --official=PATH --outdir=DIR --data=ZIP --tick=0.256 --ticks=2
"""

from __future__ import annotations

import argparse
import os
import sys
import types

import torch


class _InertEvent:
    def __init__(self, *args, **kwargs):
        pass

    def record(self, *args, **kwargs) -> None:
        pass

    def synchronize(self) -> None:
        pass

    def elapsed_time(self, other) -> float:
        return 0.0


def cpu_view_of_torch() -> types.ModuleType:
    """torch, except that torch.device('cuda', ...) is the CPU and the CUDA calls the loop makes do nothing."""
    view = types.ModuleType("torch_on_cpu")
    view.__dict__.update(torch.__dict__)

    def device(kind, *args, **kwargs):
        return torch.device("cpu") if str(kind).startswith("cuda") else torch.device(kind, *args, **kwargs)

    view.device = device
    view.cuda = types.SimpleNamespace(
        Event=_InertEvent,
        current_stream=lambda *args, **kwargs: None,
        max_memory_allocated=lambda *args, **kwargs: 0,
        reset_peak_memory_stats=lambda *args, **kwargs: None,
        is_available=lambda: False,
    )
    return view


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official", required=True, help="NVlabs/stylegan2-ada-pytorch checkout")
    parser.add_argument("--outdir", required=True)
    parser.add_argument("--data", required=True, help="dataset zip (dataset_tool.py output)")
    parser.add_argument("--cfg", default="cifar")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--aug", default="noaug")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--tick", type=float, required=True, help="kimg per tick")
    parser.add_argument("--ticks", type=int, required=True, help="ticks after tick 0")
    args = parser.parse_args()

    sys.path.insert(0, os.path.abspath(args.official))
    import train as official_train  # noqa: PLC0415 (the checkout is on the path only now)
    from training import training_loop  # noqa: PLC0415

    if not os.path.abspath(training_loop.__file__).startswith(os.path.abspath(args.official)):
        raise SystemExit(f"imported {training_loop.__file__}, not the official checkout at {args.official}")
    torch.set_num_threads(os.cpu_count() or 1)  # what our train.py does with one process on a CPU
    torch.Tensor.pin_memory = lambda self, *a, **k: self
    torch.utils.data.Sampler.__init__ = lambda self, *a, **k: None
    training_loop.torch = cpu_view_of_torch()

    _, kwargs = official_train.setup_training_loop_kwargs(
        gpus=1,
        snap=10**6,
        metrics=[],
        seed=0,
        data=args.data,
        cfg=args.cfg,
        batch=args.batch,
        aug=args.aug,
        fp32=True,
        workers=args.workers,
    )
    kwargs.kimg_per_tick = args.tick
    kwargs.total_kimg = args.tick * args.ticks + args.batch / 1000  # tick 0 is one batch; then `ticks` whole ticks
    kwargs.image_snapshot_ticks = kwargs.network_snapshot_ticks = None  # snapshots are not timed; they only cost
    kwargs.run_dir = args.outdir
    os.makedirs(args.outdir, exist_ok=True)
    official_train.subprocess_fn(rank=0, args=kwargs, temp_dir=args.outdir)


if __name__ == "__main__":
    main()
