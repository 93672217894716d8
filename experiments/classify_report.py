"""Reports of a classifier sweep in the paper's layouts: Table 2 (time per epoch and test accuracy per loss), Table 3
(train and test accuracy per model), Figure 3 (validation loss and accuracy against wall time), and the long
per-loss table with the paired differences against CE, as Markdown, CSV and PNG.

Spread: mean ± the half-width of the 95 % Student-t confidence interval over seeds, t(0.975, n-1) s / sqrt(n) with
the sample standard deviation s (blank for one seed). "− CE, same seed" is the mean and CI of the per-seed
differences to CE's run of that seed (same initial weights and batches), in percentage points.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
from collections.abc import Sequence

import numpy as np
import scipy.special
from matplotlib.figure import Figure

import rlo
from experiments.classify_train import EpochRecord, RunHistory

CE = rlo.LossConfig("ce")


def loss_label(cfg: rlo.LossConfig) -> str:
    """Table/plot label in the paper's spelling: CE, Focal, RLO-5."""
    if cfg.name == "ce":
        return "CE"
    if cfg.name == "focal":
        return f"Focal (γ={cfg.gamma:g}" + ("" if cfg.alpha is None else f", α={cfg.alpha:g}") + ")"
    if cfg.is_rooted:
        return f"{cfg.name.upper()}-{cfg.k:g}" + ("" if cfg.m is None else f" (m={cfg.m:g})")
    return cfg.name


def mean_ci95(values: Sequence[float]) -> tuple[float, float]:
    """(mean, half-width of the two-sided 95 % Student-t interval); the half-width is nan for fewer than 2 values."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return math.nan, math.nan
    if x.size < 2:
        return float(x.mean()), math.nan
    return float(x.mean()), float(scipy.special.stdtrit(x.size - 1, 0.975) * x.std(ddof=1) / math.sqrt(x.size))


def _pm(mean: float, half: float, digits: int = 2, sign: bool = False) -> str:
    text = f"{mean:+.{digits}f}" if sign else f"{mean:.{digits}f}"
    return text if math.isnan(half) else f"{text} ± {half:.{digits}f}"


def _groups(runs: Sequence[RunHistory]) -> dict[tuple[str, rlo.LossConfig], list[RunHistory]]:
    grouped: dict[tuple[str, rlo.LossConfig], list[RunHistory]] = {}
    for run in runs:
        grouped.setdefault((run.model, run.loss), []).append(run)
    return grouped


def _models(runs: Sequence[RunHistory]) -> list[str]:
    return list(dict.fromkeys(run.model for run in runs))


def _losses(runs: Sequence[RunHistory]) -> list[rlo.LossConfig]:
    return list(dict.fromkeys(run.loss for run in runs))


def summary_rows(runs: Sequence[RunHistory]) -> list[dict]:
    """One dict per (model, loss): accuracies in %, times in seconds, mean and 95 % CI half-width over seeds.

    ``diff_vs_ce_*``: last-epoch test accuracy minus CE's on the same seed and model, in percentage points; nan
    when CE was not run. ``best_epoch_*`` picks the epoch on the test set (optimistic; for reference only).
    """
    rows = []
    ce_final = {(run.model, run.seed): run.epochs[-1].test_acc for run in runs if run.loss == CE}
    for (model, cfg), group in _groups(runs).items():
        final = [100 * run.epochs[-1].test_acc for run in group]
        paired = [
            100 * (run.epochs[-1].test_acc - ce_final[model, run.seed])
            for run in group
            if (model, run.seed) in ce_final
        ]
        best = [
            100 * max(r.test_acc for r in run.epochs[1:]) if len(run.epochs) > 1 else 100 * run.epochs[0].test_acc
            for run in group
        ]
        # time per epoch: each seed's mean over its epochs, then mean and CI over seeds
        times = [
            float(np.mean([r.epoch_time_s for r in run.epochs[1:]])) if len(run.epochs) > 1 else 0.0 for run in group
        ]
        row = dict(
            model=model,
            parameters=group[0].parameters,
            loss=cfg.describe(),
            label=loss_label(cfg),
            k=f"{cfg.k:g}" if cfg.is_rooted else "",
            seeds=len(group),
        )
        for key, values in (
            ("test_acc", final),
            ("diff_vs_ce", paired),
            ("best_epoch_acc", best),
            ("train_acc", [100 * run.epochs[-1].train_acc for run in group]),
            ("epoch_time_s", times),
        ):
            row[f"{key}_mean"], row[f"{key}_ci95"] = mean_ci95(values)
        row["total_train_time_mean_s"] = float(np.mean([run.epochs[-1].wall_s for run in group]))
        row["final_train_ce_mean"] = float(np.mean([run.epochs[-1].train_ce for run in group]))
        row["final_test_ce_mean"] = float(np.mean([run.epochs[-1].test_ce for run in group]))
        rows.append(row)
    return rows


def results_table(runs: Sequence[RunHistory]) -> str:
    """The long table: one line per (model, loss)."""
    lines = [
        "| Model | Loss | test acc. (%), last epoch | − CE, same seed (pp) | best-epoch test acc. (%) | "
        "train time / epoch (s) | train time, total (s) | train CE, last epoch | test CE, last epoch |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in summary_rows(runs):
        paired = (
            "" if math.isnan(row["diff_vs_ce_mean"]) else _pm(row["diff_vs_ce_mean"], row["diff_vs_ce_ci95"], sign=True)
        )
        lines.append(
            f"| {row['model']} | {row['label']} | {_pm(row['test_acc_mean'], row['test_acc_ci95'])} "
            f"(n={row['seeds']}) | {paired} | {_pm(row['best_epoch_acc_mean'], row['best_epoch_acc_ci95'])} "
            f"| {_pm(row['epoch_time_s_mean'], row['epoch_time_s_ci95'], 3)} | "
            f"{row['total_train_time_mean_s']:.1f} | {row['final_train_ce_mean']:.4f} | "
            f"{row['final_test_ce_mean']:.4f} |"
        )
    return "\n".join(lines)


def table2(runs: Sequence[RunHistory], dataset: str) -> str:
    """Table 2's layout: a row per model, a (Time, Acc) pair of columns per loss; time = training seconds per
    epoch, Acc = last-epoch test accuracy (%), both mean ± 95 % CI over seeds."""
    losses = _losses(runs)
    rows = {(row["model"], row["loss"]): row for row in summary_rows(runs)}
    head = "| Dataset | Model | " + " | ".join(f"{loss_label(c)} time (s) | {loss_label(c)} acc. (%)" for c in losses)
    lines = [head + " |", "|---|---|" + "---|---|" * len(losses)]
    for model in _models(runs):
        cells = []
        for cfg in losses:
            row = rows.get((model, cfg.describe()))
            cells += (
                ["", ""]
                if row is None
                else [
                    _pm(row["epoch_time_s_mean"], row["epoch_time_s_ci95"], 3),
                    _pm(row["test_acc_mean"], row["test_acc_ci95"]),
                ]
            )
        lines.append(f"| {dataset} | {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def table3(runs: Sequence[RunHistory]) -> str:
    """Table 3's layout: a row per model with its parameter count, a (Train, Test) accuracy pair per loss (%; train
    is the running accuracy over the last epoch's augmented batches, as the paper's code reports it)."""
    losses = _losses(runs)
    rows = {(row["model"], row["loss"]): row for row in summary_rows(runs)}
    head = "| Model | # Param | " + " | ".join(f"{loss_label(c)} train | {loss_label(c)} test" for c in losses)
    lines = [head + " |", "|---|---|" + "---|---|" * len(losses)]
    for model in _models(runs):
        cells, params = [], ""
        for cfg in losses:
            row = rows.get((model, cfg.describe()))
            if row is None:
                cells += ["", ""]
                continue
            params = f"{row['parameters'] / 1e6:.2f}M"
            cells += [
                _pm(row["train_acc_mean"], row["train_acc_ci95"]),
                _pm(row["test_acc_mean"], row["test_acc_ci95"]),
            ]
        lines.append(f"| {model} | {params} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def results_csv(runs: Sequence[RunHistory]) -> str:
    rows = summary_rows(runs)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(
            {
                key: ("" if math.isnan(value) else f"{value:.6f}") if isinstance(value, float) else value
                for key, value in row.items()
            }
        )
    return buffer.getvalue()


def epochs_csv(runs: Sequence[RunHistory]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    fields = [f.name for f in dataclasses.fields(EpochRecord)]
    writer.writerow(["model", "loss", "seed"] + fields)
    for run in runs:
        for record in run.epochs:
            writer.writerow(
                [run.model, run.loss.describe(), run.seed]
                + [
                    f"{getattr(record, f):.6f}" if isinstance(getattr(record, f), float) else getattr(record, f)
                    for f in fields
                ]
            )
    return buffer.getvalue()


def figure3(runs: Sequence[RunHistory], title: str) -> Figure:
    """Figure 3's layout, a row per model: validation (test-split) accuracy, validation CE (comparable across
    losses) and validation loss in each run's own objective (what the paper's code logs) against cumulative
    training wall time; one line per loss, the mean over seeds, band = min..max of the accuracy."""
    models = _models(runs)
    figure = Figure(figsize=(16, 4.4 * len(models)))
    axes = np.atleast_2d(figure.subplots(len(models), 3, squeeze=False))
    groups = _groups(runs)
    longest = max((run.epochs[-1].wall_s for run in runs), default=0.0)
    unit, scale = ("min", 60.0) if longest > 300 else ("s", 1.0)
    for row, model in zip(axes, models):
        for cfg in _losses(runs):
            group = groups.get((model, cfg))
            if not group:
                continue
            wall = np.array([[r.wall_s for r in run.epochs] for run in group]).mean(axis=0) / scale
            acc = 100 * np.array([[r.test_acc for r in run.epochs] for run in group])
            ce = np.array([[r.test_ce for r in run.epochs] for run in group]).mean(axis=0)
            own = np.array([[r.test_loss for r in run.epochs] for run in group]).mean(axis=0)
            (line,) = row[0].plot(wall, acc.mean(axis=0), marker=".", label=loss_label(cfg))
            row[0].fill_between(wall, acc.min(axis=0), acc.max(axis=0), color=line.get_color(), alpha=0.15)
            row[1].plot(wall, ce, marker=".", color=line.get_color(), label=loss_label(cfg))
            row[2].plot(wall, own, marker=".", color=line.get_color(), label=loss_label(cfg))
        row[0].set(
            xlabel=f"training wall time ({unit})",
            ylabel="validation accuracy (%)",
            title=f"{model}: validation accuracy",
        )
        row[1].set(
            xlabel=f"training wall time ({unit})",
            ylabel="validation CE",
            yscale="log",
            title=f"{model}: validation cross-entropy",
        )
        row[2].set(
            xlabel=f"training wall time ({unit})",
            ylabel="validation loss (own objective)",
            title=f"{model}: validation loss, each run's objective",
        )
        for ax in row:
            ax.grid(alpha=0.3)
            if ax.lines:
                ax.legend(fontsize=8)
    figure.suptitle(title)
    return figure
