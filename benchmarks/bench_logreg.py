"""Wall time of the full logistic-regression grid of the paper's Table 1 (all methods, k = 3..20, 5 folds).

    python benchmarks/bench_logreg.py [--repeats 3] [--threads 2] [--device cpu] [--data-dir DIR]

Prints the configuration, then the median (min/max) over repeats of the whole 4-dataset grid and of each dataset.
Data loading is timed once, separately. Target: under 60 s for the grid on 2 CPU cores.
"""

from __future__ import annotations

import os
import pathlib
import statistics
import sys
import time
from types import SimpleNamespace

import click
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # rlo from this checkout

from experiments import logreg_grid as logreg  # noqa: E402
from experiments import uci  # noqa: E402


@click.command(help=__doc__)
@click.option("--repeats", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=2, show_default=True, help="torch intra-op threads")
@click.option("--device", default="cpu", show_default=True)
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=pathlib.Path), default=None)
@click.option("--datasets", default=",".join(logreg.PAPER_ORDER), show_default=True, help="comma-separated")
def main(**kwargs) -> None:
    args = SimpleNamespace(**kwargs)
    args.datasets = [name for name in args.datasets.split(",") if name]
    torch.set_num_threads(args.threads)

    start = time.perf_counter()
    datasets = uci.load_datasets(args.datasets, args.data_dir)
    load_seconds = time.perf_counter() - start
    cfg = logreg.LogRegConfig()
    num_models = len(logreg.model_grid(cfg))
    print(
        f"config: torch {torch.__version__}, device {args.device}, threads {torch.get_num_threads()}, "
        f"float64, {num_models} models (LR, LR-L2, RLO and RLO-L2 x {len(cfg.k_values)} k) x {cfg.n_folds} folds"
    )
    for name, data in datasets.items():
        print(f"  {name}: {data.x.shape[0]} x {data.x.shape[1]}, {cfg.steps_for(name)} GD steps")
    print(f"data loading: {load_seconds:.2f} s (once)")

    logreg.run_dataset(datasets[next(iter(datasets))], logreg.LogRegConfig(steps=2, spectf_steps=2), args.device)
    totals, per_dataset = [], {name: [] for name in datasets}
    for _ in range(args.repeats):
        start = time.perf_counter()
        runs = logreg.run_grid(datasets, cfg, args.device)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        totals.append(time.perf_counter() - start)
        for name, run in runs.items():
            per_dataset[name].append(run.seconds)

    def line(values):
        return f"median {statistics.median(values):.2f} s (min {min(values):.2f}, max {max(values):.2f})"

    print(f"full grid, {args.repeats} repeats: {line(totals)}")
    for name, values in per_dataset.items():
        print(f"  {name}: {line(values)}")


if __name__ == "__main__":
    main()
