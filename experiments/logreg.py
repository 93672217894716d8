"""Shallow logistic regression vs rooted logistic regression (the paper's Table 1 and Figure 1): the command line.

    python -m experiments.logreg [--data-dir DIR] [--out rlo-results] [--datasets wine,ionosphere,madelon,spectf]

The protocol and the batched grid are :mod:`experiments.logreg_grid`, the tables and the figure
:mod:`experiments.logreg_report`, and where the UCI files are looked for :mod:`experiments.uci`.
"""

from __future__ import annotations

import pathlib
import time

import click

from experiments import logreg_report, uci
from experiments.logreg_grid import PAPER_ORDER, LogRegConfig, run_grid
from experiments.outputs import out_option

DEFAULTS = LogRegConfig()


def parse_datasets(ctx: click.Context, param: click.Parameter, text: str) -> list[str]:
    """``--datasets``: comma-separated names -> their :data:`uci.LOADERS` keys in order; an unknown, repeated or
    empty list is a bad value."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    try:
        keys = [uci.canonical_name(name) for name in names]
    except ValueError as err:
        raise click.BadParameter(str(err)) from None
    if not keys:
        raise click.BadParameter(f"no dataset named in {text!r}; choose from {', '.join(uci.DATASET_NAMES)}")
    if len(set(keys)) != len(keys):
        raise click.BadParameter(f"a dataset is named twice in {text!r}")
    return keys


@click.command(
    help="Shallow logistic regression vs rooted logistic regression (the paper's Table 1 and Figure 1): "
    "every method, k = 3..20 and 5 folds, trained as one batched program; writes "
    f"{logreg_report.TABLE_NAME}, {logreg_report.CSV_NAME} and {logreg_report.FIGURE_NAME}."
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=pathlib.Path),
    default=None,
    metavar="DIR",
    help=f"the only folder searched for the UCI files [default: search ${uci.DATA_DIR_ENV}, "
    f"${uci.SHARED_DIR_ENV}/data/uci, then {uci.SHARED_FALLBACK} from the current directory]",
)
@out_option
@click.option(
    "--datasets",
    default=",".join(PAPER_ORDER),
    show_default=True,
    callback=parse_datasets,
    metavar="LIST",
    help="comma-separated subset ('specheart' = spectf)",
)
@click.option("--steps", type=click.IntRange(min=0), default=DEFAULTS.steps, show_default=True, help="GD iterations")
@click.option(
    "--spectf-steps",
    type=click.IntRange(min=0),
    default=DEFAULTS.spectf_steps,
    show_default=True,
    help="GD iterations for SPECTF heart",
)
@click.option(
    "--l2", type=click.FloatRange(min=0), default=DEFAULTS.l2, show_default=True, help="L2 strength of LR-L2 / RLO-L2"
)
@click.option("--seed", type=int, default=DEFAULTS.seed, show_default=True, help="seed of the fold assignment")
@click.option("--device", default="cpu", show_default=True, help="torch device")
def main(
    data_dir: pathlib.Path | None,
    out: pathlib.Path,
    datasets: list[str],
    steps: int,
    spectf_steps: int,
    l2: float,
    seed: int,
    device: str,
) -> None:
    cfg = LogRegConfig(steps=steps, spectf_steps=spectf_steps, l2=l2, seed=seed)
    try:
        loaded = uci.load_datasets(datasets, data_dir)
    except (FileNotFoundError, ValueError) as error:  # a missing or malformed file, named in the message
        raise click.UsageError(str(error)) from None
    start = time.perf_counter()
    runs = run_grid(loaded, cfg, device)
    seconds = time.perf_counter() - start
    paths = logreg_report.write_outputs(runs, cfg, out, seconds)
    click.echo(logreg_report.console_summary(runs, cfg, seconds))
    for path in paths:
        click.echo(f"wrote {path}")


if __name__ == "__main__":
    main()
