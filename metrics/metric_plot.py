"""Metric-vs-training-time curves of training runs (the RLO paper's Figure 4: FID vs time, CE vs RLO).

A run directory holds metric-<name>.jsonl (StyleGAN2-ADA lines: {"results": {...}, "metric", "snapshot_pkl", ...})
and the training log: stats.jsonl (one line per tick with "Progress/kimg" and "Timing/total_sec") or log.txt
("tick 3 kimg 12.0 time 5m 02s ..."). A snapshot network-snapshot-<kimg>.<ext> is placed on the time axis by
interpolating the run's total training seconds at its kimg.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re

import numpy as np

from dnnlib.files import atomic_write

SNAPSHOT_KIMG_RE = re.compile(r"network-snapshot-(\d+)(?:-(\d{3}))?\.[A-Za-z0-9]+$")  # -III: images, sub-kimg ticks
TICK_LINE_RE = re.compile(r"^tick\s+\d+\s+kimg\s+([0-9.]+)\s+time\s+(.+?)\s+sec/tick")
_TIME_PART_RE = re.compile(r"(\d+)([dhms])")
_UNIT_SEC = {"d": 86400, "h": 3600, "m": 60, "s": 1}


class MetricPlotError(ValueError):
    """A run directory that cannot be plotted; the message names the file and what is missing."""


@dataclasses.dataclass(frozen=True)
class MetricPoint:
    """One scored snapshot: training progress (kimg, seconds when known) and the metric value."""

    snapshot: str
    kimg: float
    value: float
    train_sec: float | None


def snapshot_kimg(snapshot: str) -> float:
    """kimg of 'network-snapshot-001200.pt' (any extension) -> 1200; 'network-snapshot-000000-496.pt' -> 0.496."""
    match = SNAPSHOT_KIMG_RE.search(os.path.basename(snapshot))
    if match is None:
        raise MetricPlotError(f"{snapshot!r} is not named network-snapshot-<kimg>.<ext>")
    return int(match.group(1)) + int(match.group(2) or 0) / 1000


def parse_time_str(text: str) -> float:
    """'2h 01m 09s' / '3d 04h 05m' / '7s' (dnnlib.util.format_time) -> seconds."""
    parts = _TIME_PART_RE.findall(text)
    if not parts or "".join(f"{n}{u}" for n, u in parts) != text.replace(" ", ""):
        raise ValueError(f'not a duration like "1h 02m 03s": {text!r}')
    return float(sum(int(n) * _UNIT_SEC[u] for n, u in parts))


def read_metric_jsonl(run_dir: str, metric: str, key: str | None = None) -> dict[str, float]:
    """{snapshot_pkl: value} from <run_dir>/metric-<metric>.jsonl; a re-scored snapshot keeps its last value.

    key: which entry of "results" to take; by default the only one (e.g. 'fid50k_full').
    """
    path = os.path.join(run_dir, f"metric-{metric}.jsonl")
    if not os.path.isfile(path):
        raise MetricPlotError(
            f"{path} not found; score the run first: python calc_metrics.py --metrics={metric} --run-dir={run_dir}"
        )
    values: dict[str, float] = {}
    with open(path, encoding="utf-8") as file:
        for number, line in enumerate(file, 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                results = entry["results"]
                snapshot = entry["snapshot_pkl"]
            except (json.JSONDecodeError, KeyError, TypeError) as err:
                raise MetricPlotError(f"{path}:{number}: not a metric line ({err})") from None
            if snapshot is None:
                continue
            chosen = key
            if chosen is None:
                if len(results) != 1:
                    raise MetricPlotError(
                        f"{path}: results have several values ({', '.join(sorted(results))}); choose one with --key"
                    )
                chosen = next(iter(results))
            if chosen not in results:
                raise MetricPlotError(f"{path}:{number}: no result {chosen!r} (has {', '.join(sorted(results))})")
            try:
                value = float(results[chosen])
            except (TypeError, ValueError):
                value = math.nan
            if not math.isfinite(value):
                raise MetricPlotError(f"{path}:{number}: {chosen} = {results[chosen]!r} is not a finite number")
            values[os.path.normpath(snapshot)] = value
    return values


def read_training_time(run_dir: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(kimg [T], total training seconds [T]) per tick from stats.jsonl, else log.txt; None when neither has it."""
    stats_path = os.path.join(run_dir, "stats.jsonl")
    kimg, sec = [], []
    if os.path.isfile(stats_path):
        with open(stats_path, encoding="utf-8") as file:
            for line in file:
                try:
                    entry = json.loads(line)
                    kimg.append(float(entry["Progress/kimg"]["mean"]))
                    sec.append(float(entry["Timing/total_sec"]["mean"]))
                except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                    continue
    if not kimg:
        log_path = os.path.join(run_dir, "log.txt")
        if os.path.isfile(log_path):
            with open(log_path, encoding="utf-8", errors="replace") as file:
                for line in file:
                    match = TICK_LINE_RE.match(line.strip())
                    if match:
                        try:
                            sec.append(parse_time_str(match.group(2)))
                        except ValueError:
                            continue
                        kimg.append(float(match.group(1)))
    if not kimg:
        return None
    order = np.argsort(kimg, kind="stable")
    return np.asarray(kimg)[order], np.asarray(sec)[order]


def metric_series(run_dir: str, metric: str, key: str | None = None) -> list[MetricPoint]:
    """The scored snapshots of a run in kimg order, with training seconds when the run's log has them."""
    values = read_metric_jsonl(run_dir, metric, key)
    timing = read_training_time(run_dir)
    points = []
    for snapshot, value in values.items():
        kimg = snapshot_kimg(snapshot)
        train_sec = None
        if timing is not None:
            train_sec = float(np.interp(kimg, timing[0], timing[1]))
        points.append(MetricPoint(snapshot=snapshot, kimg=float(kimg), value=value, train_sec=train_sec))
    return sorted(points, key=lambda p: p.kimg)


def resumed_from(run_dir: str) -> str | None:
    """The snapshot a run directory was resumed from (its training_options.json), when that file still exists."""
    try:
        with open(os.path.join(run_dir, "training_options.json"), encoding="utf-8") as file:
            resume = json.load(file).get("resume")
    except (OSError, ValueError, AttributeError, RecursionError):
        return None
    return resume if isinstance(resume, str) and os.path.isfile(resume) else None


def stitched_series(
    run_dir: str, metric: str, key: str | None = None, limit: int = 100
) -> tuple[list[MetricPoint], list[str]]:
    """(one curve, its run directories oldest first) for a run resumed from another run's snapshot, as often as it
    was: the earlier run's points up to the resume snapshot, then this run's after it. Times continue across
    resumes (Timing/total_sec is carried over), so the curve is one run's."""
    points = metric_series(run_dir, metric, key)
    resume = resumed_from(run_dir)
    if resume is None or limit <= 0:
        return points, [run_dir]
    earlier_dir = os.path.dirname(os.path.abspath(resume))
    if earlier_dir == os.path.abspath(run_dir) or not os.path.isfile(
        os.path.join(earlier_dir, f"metric-{metric}.jsonl")
    ):
        return points, [run_dir]
    at = snapshot_kimg(resume)
    earlier, dirs = stitched_series(earlier_dir, metric, key, limit - 1)
    return [p for p in earlier if p.kimg <= at] + [p for p in points if p.kimg > at], dirs + [run_dir]


def plot_metric_curves(
    series: dict[str, list[MetricPoint]],
    out_path: str,
    x_axis: str = "time",
    ylabel: str = "FID",
    title: str | None = None,
    log_y: bool = False,
) -> None:
    """One PNG with a curve per run: `ylabel` vs training time in hours (x_axis='time') or kimg ('kimg')."""
    if x_axis not in ("time", "kimg"):
        raise ValueError(f"x_axis must be 'time' or 'kimg', got {x_axis!r}")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=150)
    for label, points in series.items():
        if not points:
            continue
        if x_axis == "time":
            missing = [p.snapshot for p in points if p.train_sec is None]
            if missing:
                raise MetricPlotError(
                    f"run {label!r} has no training time (stats.jsonl or log.txt) for {missing[0]}; "
                    "plot against kimg instead (--x=kimg)"
                )
            xs = [p.train_sec / 3600 for p in points]
        else:
            xs = [p.kimg for p in points]
        ax.plot(xs, [p.value for p in points], marker="o", markersize=3, label=label)
    ax.set_xlabel("training time (hours)" if x_axis == "time" else "training progress (kimg)")
    ax.set_ylabel(ylabel)
    if log_y:
        ax.set_yscale("log")
    if title:
        ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    try:
        atomic_write(out_path, lambda file: fig.savefig(file, format="png"))
    finally:
        plt.close(fig)


def format_table(series: dict[str, list[MetricPoint]]) -> str:
    """Tab-separated run, snapshot, kimg, hours, value lines (what the figure shows)."""
    rows = ["run\tsnapshot\tkimg\thours\tvalue"]
    for label, points in series.items():
        for p in points:
            hours = "" if p.train_sec is None else f"{p.train_sec / 3600:.4f}"
            value = "nan" if math.isnan(p.value) else f"{p.value:.6g}"
            rows.append(f"{label}\t{p.snapshot}\t{p.kimg:g}\t{hours}\t{value}")
    return "\n".join(rows)
