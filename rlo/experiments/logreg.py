"""Shallow logistic regression vs rooted logistic regression (the paper's Table 1 and Figure 1): the command line.

    python -m rlo.experiments.logreg [--data-dir DIR] [--out rlo-results] [--datasets wine ionosphere ...]

The protocol and the batched grid are :mod:`rlo.experiments.logreg_grid`, the tables and the figure
:mod:`rlo.experiments.logreg_report`, and where the UCI files are looked for :mod:`rlo.experiments.uci`.
"""
from __future__ import annotations

import argparse
import pathlib
import sys
import time
from typing import Optional, Sequence

from rlo.experiments import logreg_report, uci
from rlo.experiments.logreg_grid import PAPER_ORDER, LogRegConfig, run_grid
from rlo.experiments.logreg_grid import model_grid, run_dataset  # noqa: F401  (benchmarks/bench_logreg.py uses them)
from rlo.experiments.outputs import DEFAULT_OUT


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    defaults = LogRegConfig()
    parser = argparse.ArgumentParser(prog="python -m rlo.experiments.logreg", description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=pathlib.Path, default=None,
                        help=f"the only folder searched for the UCI files (default: search ${uci.DATA_DIR_ENV}, "
                             f"${uci.SHARED_DIR_ENV}/data/uci, then {uci.SHARED_FALLBACK} from the current directory)")
    parser.add_argument("--out", type=pathlib.Path, default=DEFAULT_OUT, help="output folder (default: ./rlo-results)")
    parser.add_argument("--datasets", nargs="+", default=list(PAPER_ORDER), metavar="NAME",
                        help=f"subset of {', '.join(PAPER_ORDER)} (default: all)")
    parser.add_argument("--steps", type=int, default=defaults.steps, help="GD iterations (default: 200)")
    parser.add_argument("--spectf-steps", type=int, default=defaults.spectf_steps,
                        help="GD iterations for SPECTF heart (default: 1000)")
    parser.add_argument("--l2", type=float, default=defaults.l2, help="L2 strength of LR-L2 / RLO-L2 (default: 1e-2)")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="seed of the fold assignment")
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    cfg = LogRegConfig(steps=args.steps, spectf_steps=args.spectf_steps, l2=args.l2, seed=args.seed)
    try:
        datasets = uci.load_datasets(args.datasets, args.data_dir)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    runs = run_grid(datasets, cfg, args.device)
    seconds = time.perf_counter() - start
    paths = logreg_report.write_outputs(runs, cfg, args.out, seconds)
    print(logreg_report.console_summary(runs, cfg, seconds))
    for path in paths:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
