"""plot_metrics.py's command line (the usage text, USAGE, is what --help prints)."""

from __future__ import annotations

import os

import click

from dnnlib import files
from metrics.metric_plot import MetricPlotError, format_table, plot_metric_curves, stitched_series

USAGE = """Plot a metric against training time (or kimg) for one or more training runs on one PNG.

This is the RLO paper's Figure 4 (FID vs training time, cross-entropy vs RLO). Score the runs first:

\b
  python calc_metrics.py --metrics=fid50k_full --run-dir=runs/00000-ffhq-ce
  python calc_metrics.py --metrics=fid50k_full --run-dir=runs/00001-ffhq-rlo
  python plot_metrics.py --run-dir=runs/00000-ffhq-ce --label=CE --run-dir=runs/00001-ffhq-rlo --label=RLO \\
      --metric=fid50k_full --out=fid_vs_time.png

Times come from each run's stats.jsonl (Timing/total_sec at Progress/kimg), or its log.txt tick lines. A run
resumed from another run's snapshot is drawn as one curve with the runs before it (give the last directory).
"""


@click.command(help=USAGE)
@click.option("--run-dir", "run_dirs", multiple=True, required=True, metavar="DIR", help="Training run (repeatable)")
@click.option("--label", "labels", multiple=True, metavar="TEXT", help="Legend label per --run-dir, in order")
@click.option("--metric", default="fid50k_full", show_default=True, help="Metric name (metric-<name>.jsonl)")
@click.option("--key", metavar="NAME", help="Result to plot when a metric has several (e.g. pr50k3_full_recall)")
@click.option("--x", "x_axis", type=click.Choice(["time", "kimg"]), default="time", show_default=True)
@click.option("--out", "out_path", default="metric_vs_time.png", show_default=True, metavar="PNG")
@click.option("--title", metavar="TEXT", help="Figure title")
@click.option("--log-y", is_flag=True, help="Logarithmic y axis")
def main(run_dirs, labels, metric, key, x_axis, out_path, title, log_y):
    if labels and len(labels) != len(run_dirs):
        raise click.BadParameter(
            f"{len(labels)} labels for {len(run_dirs)} run dirs; give one per --run-dir", param_hint="--label"
        )
    labels = labels or [os.path.basename(os.path.normpath(d)) for d in run_dirs]
    if len(set(labels)) != len(labels):
        raise click.BadParameter(f"labels must differ, got {list(labels)}", param_hint="--label")
    try:
        series = {}
        for label, run_dir in zip(labels, run_dirs):
            if not os.path.isdir(run_dir):
                raise click.BadParameter(f"not a folder: {run_dir}", param_hint="--run-dir")
            series[label], chain = stitched_series(run_dir, metric, key)
            if len(chain) > 1:
                click.echo(f"{label}: one curve over the resumed runs {' -> '.join(chain)}")
        ylabel = key or metric
        plot_metric_curves(series, out_path, x_axis=x_axis, ylabel=ylabel, title=title, log_y=log_y)
    except (MetricPlotError, files.FileWriteError) as err:
        raise click.ClickException(str(err)) from None
    click.echo(format_table(series))
    click.echo(f"Wrote {out_path}")
