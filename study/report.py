"""The report of a study (compare.py): metric per evaluation with t-intervals over seeds, paired differences
against the first variant, curves against kimg and wall time, as Markdown, CSV and PNG in <study>/report/.

A run killed and resumed is a chain of run directories (training.study.run_chain); its evaluations and times are
stitched along that chain, so a resumed run reads like an uninterrupted one. Only finished runs enter the final,
best and paired numbers (the same training budget for all); the per-evaluation tables count every scored
snapshot and say how many seeds each point has.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import os
import statistics
from collections.abc import Sequence
from typing import Any

import numpy as np
import PIL.Image
import PIL.ImageDraw
import PIL.ImageFont
import scipy.stats

from dnnlib.files import atomic_write
from metrics import metric_main
from metrics.metric_plot import MetricPlotError, read_metric_jsonl
from study import folder as study_folder

CONFIDENCE = 0.95


# ----------------------------------------------------------------------------------------------------
# Which number of a metric a study compares, and which way is better.


@dataclasses.dataclass(frozen=True)
class MetricGoal:
    metric: str
    key: str  # entry of the metric line's "results"
    lower_is_better: bool

    @property
    def direction(self) -> str:
        return "lower is better" if self.lower_is_better else "higher is better"

    def improved(self, difference: float) -> bool:
        """Whether `difference` (variant minus baseline) is an improvement."""
        return difference < 0 if self.lower_is_better else difference > 0


def metric_goal(metric: str) -> MetricGoal:
    """The compared number of a metric: distances (FID, KID, FDD, KDD, PPL, SWD) lower, scores (IS, cls) higher.

    ValueError for an unknown metric or one that gives two numbers of equal standing (precision/recall).
    """
    family = metric_main.parse_metric(metric).family
    if family in ("fid", "kid", "fdd", "kdd", "ppl", "swd"):
        return MetricGoal(metric, metric, lower_is_better=True)
    if family == "is":
        return MetricGoal(metric, f"{metric}_mean", lower_is_better=False)
    if family == "cls":
        return MetricGoal(metric, f"{metric}_score", lower_is_better=False)
    raise ValueError(
        f"{metric} gives precision and recall, two numbers; a study compares one: use a distance "
        "(fid50k_full, kid50k_full, fdd2k_full) or a score (is50k, cls2k)"
    )


# ----------------------------------------------------------------------------------------------------
# Intervals.


@dataclasses.dataclass(frozen=True)
class Interval:
    """Student t-interval of the mean of n values: mean ± half (half is NaN for n < 2)."""

    mean: float
    half: float
    n: int

    @property
    def low(self) -> float:
        return self.mean - self.half

    @property
    def high(self) -> float:
        return self.mean + self.half


def t_multiplier(n: int, confidence: float = CONFIDENCE) -> float:
    """t quantile (1 + confidence) / 2 with n - 1 degrees of freedom (NaN for n < 2)."""
    return float(scipy.stats.t.ppf((1 + confidence) / 2, n - 1)) if n >= 2 else math.nan


def t_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> Interval:
    """mean ± t_{(1+c)/2, n-1} · s / √n, with s the sample standard deviation (n - 1 in the denominator)."""
    values = [float(v) for v in values]
    n = len(values)
    if n == 0:
        return Interval(math.nan, math.nan, 0)
    mean = math.fsum(values) / n
    if n == 1:
        return Interval(mean, math.nan, 1)
    return Interval(mean, t_multiplier(n, confidence) * statistics.stdev(values) / math.sqrt(n), n)


# ----------------------------------------------------------------------------------------------------
# One run, stitched along its chain of run directories.


@dataclasses.dataclass(frozen=True)
class Evaluation:
    stem: str  # the snapshot name's kimg part ('000012', or '000000-496' for short ticks)
    nimg: int
    total_sec: float  # Timing/total_sec when the snapshot was taken (continues across resumes)
    value: float
    snapshot: str  # path of the snapshot file

    @property
    def kimg(self) -> float:
        return self.nimg / 1000


@dataclasses.dataclass
class RunResult:
    variant: str
    seed: int
    status: str  # 'done', 'partial' or 'new' (training.study.RunState)
    evaluations: list[Evaluation]
    run_dirs: list[str]  # the chain, oldest first
    nimg: int  # trained so far
    target_nimg: int
    sec_per_kimg: float  # training ticks only (snapshots and metrics excluded)
    note: str = ""  # why an unfinished run stopped, from its log

    @property
    def finished(self) -> bool:
        return self.status == "done" and bool(self.evaluations) and self.evaluations[-1].nimg >= self.target_nimg

    @property
    def final(self) -> Evaluation | None:
        return self.evaluations[-1] if self.finished else None

    def best(self, goal: MetricGoal) -> Evaluation | None:
        if not self.finished:
            return None
        pick = min if goal.lower_is_better else max
        return pick(self.evaluations, key=lambda e: e.value)


def log_note(path: str) -> str:
    """The reason train.py gave for stopping ('Training stopped: ...'), else the last line of the log."""
    if not os.path.isfile(path):
        return ""
    with open(path, encoding="utf-8", errors="replace") as file:
        lines = [line.strip() for line in file if line.strip()]
    stopped = [line for line in lines if line.startswith("Training stopped:") or line.startswith("Error:")]
    return (stopped or lines or [""])[-1][:300]


def read_run(study_dir: str, run: study_folder.PlannedRun, goal: MetricGoal) -> RunResult:
    state = study_folder.run_state(study_dir, run, goal.metric)
    evaluations: list[Evaluation] = []
    ticks: list[study_folder.Tick] = []
    for segment in state.chain:
        values = {}  # not scored yet: no metric file
        if os.path.isfile(os.path.join(segment.run_dir, f"metric-{goal.metric}.jsonl")):
            try:
                scored = read_metric_jsonl(segment.run_dir, goal.metric, goal.key)
            except MetricPlotError as err:  # a damaged line is named, not read as "unfinished"
                raise study_folder.StudyError(str(err)) from None
            values = {os.path.basename(k): v for k, v in scored.items()}
        for snapshot in segment.snapshots:
            if snapshot.name in values:
                evaluations.append(
                    Evaluation(
                        snapshot.stem,
                        study_folder.snapshot_nimg(snapshot, segment.ticks),
                        study_folder.snapshot_total_sec(snapshot, segment.ticks),
                        values[snapshot.name],
                        snapshot.path,
                    )
                )
        ticks += segment.ticks
    seconds = kimg = 0.0
    for before, after in zip(ticks, ticks[1:]):
        if after.tick != 0 and after.sec_per_tick is not None and after.nimg > before.nimg:
            seconds, kimg = seconds + after.sec_per_tick, kimg + (after.nimg - before.nimg) / 1000
    note = "" if state.status == "done" else log_note(run.log_path(study_dir))
    return RunResult(
        run.variant,
        run.seed,
        state.status,
        evaluations,
        [s.run_dir for s in state.chain],
        state.nimg,
        run.target_nimg,
        seconds / kimg if kimg else math.nan,
        note,
    )


@dataclasses.dataclass
class StudyResults:
    study_dir: str
    manifest: dict[str, Any]
    goal: MetricGoal
    variants: list[str]
    seeds: list[int]
    runs: dict[tuple[str, int], RunResult]

    def of(self, variant: str) -> list[RunResult]:
        return [self.runs[(variant, seed)] for seed in self.seeds if (variant, seed) in self.runs]


def read_study(study_dir: str, manifest: dict[str, Any] | None = None) -> StudyResults:
    manifest = manifest or study_folder.read_manifest(study_dir)
    if manifest is None:
        raise study_folder.StudyError(
            f"{study_dir} holds no {study_folder.MANIFEST_NAME}; it is not a study folder "
            "(make one with compare.py --outdir=...)"
        )
    goal = metric_goal(manifest["study"]["metric"])
    runs = {(r.variant, r.seed): read_run(study_dir, r, goal) for r in study_folder.runs_of_manifest(manifest)}
    return StudyResults(
        study_dir, manifest, goal, [v["label"] for v in manifest["variants"]], list(manifest["study"]["seeds"]), runs
    )


# ----------------------------------------------------------------------------------------------------
# Aggregates.


@dataclasses.dataclass(frozen=True)
class EvaluationSummary:
    stem: str
    kimg: float
    total_sec: Interval
    value: Interval
    values: tuple[float, ...]


def evaluation_summaries(results: StudyResults, variant: str) -> list[EvaluationSummary]:
    """Per evaluation point of a variant (the same snapshot name in every seed): the t-interval over seeds."""
    groups: dict[str, list[Evaluation]] = {}
    for run in results.of(variant):
        for evaluation in run.evaluations:
            groups.setdefault(evaluation.stem, []).append(evaluation)
    out = []
    for stem, items in groups.items():
        out.append(
            EvaluationSummary(
                stem,
                statistics.fmean(e.kimg for e in items),
                t_interval([e.total_sec for e in items]),
                t_interval([e.value for e in items]),
                tuple(e.value for e in items),
            )
        )
    return sorted(out, key=lambda s: s.kimg)


@dataclasses.dataclass(frozen=True)
class PairedDifference:
    variant: str
    seeds: tuple[int, ...]
    final: Interval
    final_improved: int
    best: Interval
    best_improved: int
    final_diffs: tuple[float, ...]
    best_diffs: tuple[float, ...]


def paired_differences(results: StudyResults) -> list[PairedDifference]:
    """Variant minus the first variant, seed by seed, on the final and the best value (finished pairs only)."""
    base, goal, out = results.variants[0], results.goal, []
    for variant in results.variants[1:]:
        seeds, final_d, best_d = [], [], []
        for seed in results.seeds:
            a, b = results.runs.get((variant, seed)), results.runs.get((base, seed))
            if a is None or b is None or not (a.finished and b.finished):
                continue
            seeds.append(seed)
            final_d.append(a.final.value - b.final.value)
            best_d.append(a.best(goal).value - b.best(goal).value)
        out.append(
            PairedDifference(
                variant,
                tuple(seeds),
                t_interval(final_d),
                sum(map(goal.improved, final_d)),
                t_interval(best_d),
                sum(map(goal.improved, best_d)),
                tuple(final_d),
                tuple(best_d),
            )
        )
    return out


# ----------------------------------------------------------------------------------------------------
# Writing.


def fmt(value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.4g}"


def fmt_interval(interval: Interval) -> str:
    if interval.n == 0:
        return "–"
    if interval.n == 1:
        return f"{fmt(interval.mean)} (n = 1)"
    return f"{fmt(interval.mean)} ± {fmt(interval.half)}"


def _write_text(path: str, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode()))


def _write_csv(path: str, header: list[str], rows: list[list[Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows([[("" if isinstance(v, float) and math.isnan(v) else v) for v in row] for row in rows])
    _write_text(path, buffer.getvalue())


def write_csvs(results: StudyResults, folder: str) -> list[str]:
    """evaluations.csv (every scored snapshot), summary.csv (per variant and evaluation), runs.csv, paired.csv."""
    goal = results.goal
    rel = lambda path: study_folder.relpath_within(path, results.study_dir)  # noqa: E731
    rows = [
        [r.variant, r.seed, e.stem, e.nimg, e.kimg, e.total_sec, e.value, rel(e.snapshot)]
        for r in results.runs.values()
        for e in r.evaluations
    ]
    _write_csv(
        os.path.join(folder, "evaluations.csv"),
        ["variant", "seed", "snapshot_stem", "nimg", "kimg", "total_sec", goal.key, "snapshot"],
        rows,
    )
    rows = []
    for variant in results.variants:
        for s in evaluation_summaries(results, variant):
            rows.append(
                [
                    variant,
                    s.stem,
                    s.kimg,
                    s.value.n,
                    s.value.mean,
                    s.value.half,
                    s.value.low,
                    s.value.high,
                    s.total_sec.mean,
                ]
            )
    _write_csv(
        os.path.join(folder, "summary.csv"),
        ["variant", "snapshot_stem", "kimg", "n", "mean", "ci95_half", "ci95_low", "ci95_high", "mean_total_sec"],
        rows,
    )
    rows = []
    for r in results.runs.values():
        best = r.best(goal)
        rows.append(
            [
                r.variant,
                r.seed,
                r.status,
                r.nimg / 1000,
                r.target_nimg / 1000,
                r.final.value if r.final else math.nan,
                best.value if best else math.nan,
                best.kimg if best else math.nan,
                r.final.total_sec if r.final else math.nan,
                r.sec_per_kimg,
                " ".join(rel(d) for d in r.run_dirs),
            ]
        )
    _write_csv(
        os.path.join(folder, "runs.csv"),
        [
            "variant",
            "seed",
            "status",
            "kimg",
            "target_kimg",
            "final",
            "best",
            "best_kimg",
            "total_sec",
            "sec_per_kimg",
            "run_dirs",
        ],
        rows,
    )
    rows = []
    for pair in paired_differences(results):
        for seed, final_d, best_d in zip(pair.seeds, pair.final_diffs, pair.best_diffs):
            rows.append(
                [
                    pair.variant,
                    results.variants[0],
                    seed,
                    final_d,
                    best_d,
                    goal.improved(final_d),
                    goal.improved(best_d),
                ]
            )
    _write_csv(
        os.path.join(folder, "paired.csv"),
        ["variant", "baseline", "seed", "final_diff", "best_diff", "final_improved", "best_improved"],
        rows,
    )
    return ["evaluations.csv", "summary.csv", "runs.csv", "paired.csv"]


def plot_curves(results: StudyResults, path: str, x_axis: str) -> None:
    """Mean over seeds with its 95 % t-interval band, per variant, against kimg or wall time (Figure 4a/c)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summaries = {v: evaluation_summaries(results, v) for v in results.variants}
    max_sec = max([s.total_sec.mean for items in summaries.values() for s in items] or [0])
    unit, scale = ("hours", 3600) if max_sec > 7200 else ("minutes", 60)
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=150)
    for variant, items in summaries.items():
        if not items:
            continue
        xs = np.array([s.kimg if x_axis == "kimg" else s.total_sec.mean / scale for s in items])
        mean = np.array([s.value.mean for s in items])
        half = np.array([s.value.half for s in items])
        n = max(s.value.n for s in items)
        (line,) = ax.plot(xs, mean, marker="o", markersize=3, label=f"{variant} (n = {n})")
        ok = np.isfinite(half)
        if ok.any():  # a distance's band stops at 0, its range (the CSVs keep the raw interval)
            low = np.maximum(mean - half, 0) if results.goal.lower_is_better else mean - half
            ax.fill_between(xs[ok], low[ok], (mean + half)[ok], color=line.get_color(), alpha=0.2, linewidth=0)
    ax.set_xlabel("training progress (kimg)" if x_axis == "kimg" else f"training time ({unit}, Timing/total_sec)")
    ax.set_ylabel(f"{results.goal.key} ({results.goal.direction})")
    clipped = " (clipped at 0)" if results.goal.lower_is_better else ""
    ax.set_title(f"mean over seeds, band: {CONFIDENCE:.0%} t-interval{clipped}")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    atomic_write(path, lambda f: f.write(buffer.getvalue()))


def labelled_rows(
    rows: list[np.ndarray], labels: list[str], header: str | None = None, min_cell: int = 64, label_width: int = 140
) -> np.ndarray:
    """uint8 RGB image: one row of images [N, H, W, C] per label, the label written to the left of its row.

    Images are pixel-replicated to at least `min_cell` pixels; `header` is a line of text above the rows.
    """
    res = rows[0].shape[1]
    factor = max(1, -(-min_cell // res))
    cell, cols = res * factor, max(len(r) for r in rows)
    top = 16 if header else 0
    canvas = PIL.Image.new("RGB", (label_width + cols * cell, top + len(rows) * cell), (255, 255, 255))
    draw, font = PIL.ImageDraw.Draw(canvas), PIL.ImageFont.load_default()
    if header:
        draw.text((4, 2), header, fill=(0, 0, 0), font=font)
    for row_index, (images, label) in enumerate(zip(rows, labels)):
        y = top + row_index * cell
        words, lines = label.split(" "), [""]
        for word in words:  # wrap the label at spaces to the label column
            trial = f"{lines[-1]} {word}".strip()
            if draw.textlength(trial, font=font) > label_width - 8 and lines[-1]:
                lines.append(word)
            else:
                lines[-1] = trial
        for k, line in enumerate(lines[: max(1, cell // 12)]):
            draw.text((4, y + 4 + 12 * k), line, fill=(0, 0, 0), font=font)
        for col, image in enumerate(images):
            rgb = np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image
            big = rgb.repeat(factor, axis=0).repeat(factor, axis=1)
            canvas.paste(PIL.Image.fromarray(big, "RGB"), (label_width + col * cell, y))
    return np.asarray(canvas)


def _study_lines(results: StudyResults) -> list[str]:
    study, manifest = results.manifest["study"], results.manifest
    data = study.get("data") or "the embedded digits"
    subset = study.get("subset")
    n = len(results.seeds)
    done = sum(r.finished for r in results.runs.values())
    lines = [
        f"# Study `{os.path.basename(os.path.abspath(results.study_dir))}`",
        "",
        f"- **Data:** {data}" + (f", {subset} training images (`--subset={subset}`)" if subset else ""),
        f"- **Metric:** `{results.goal.key}` ({results.goal.direction}), scored at every snapshot",
        f"- **Training:** {fmt(study['kimg'])} kimg per run; ticks of {fmt(study['tick'])} kimg; a snapshot and "
        f"score every {study['snap']} ticks",
        f"- **Seeds:** n = {n} ({', '.join(map(str, results.seeds))}); every variant runs every seed, so "
        "differences are paired by seed",
        f"- **Runs finished:** {done} of {len(results.runs)}",
        f"- **Study-wide train.py switches:** `{' '.join(study.get('train_args') or []) or '(none)'}`",
        f"- **Command:** `{manifest.get('command') or ''}`",
        f"- **Code:** {manifest.get('code') or 'not recorded (not a git checkout, or an older compare.py)'}",
        "",
        "| variant | train.py switches |",
        "|---|---|",
    ]
    lines += [f"| {v['label']} | `{' '.join(v['args']) or '(defaults)'}` |" for v in manifest["variants"]]
    mult = t_multiplier(n)
    lines += [
        "",
        f"Intervals are {CONFIDENCE:.0%} Student t-intervals over seeds: mean ± t·s/√n with "
        f"t = {fmt(mult)} for n = {n} (n − 1 = {n - 1} degrees of freedom)."
        if n >= 2
        else f"With n = {n} seed there is no interval.",
    ]
    if 2 <= n <= 5:
        lines.append(
            f"With n = {n} these intervals are wide: only a difference much larger than the seed-to-seed "
            "spread shows, and an interval that contains 0 means the study cannot tell the two apart."
        )
    lines.append("Every run is reported as it came out: none was repeated, dropped or chosen, in either direction.")
    return lines


def render_markdown(results: StudyResults, figures: dict[str, str], sections: Sequence[str] = ()) -> str:
    goal, base = results.goal, results.variants[0]
    lines = _study_lines(results)
    lines += [
        "",
        "## Final and best values (finished runs)",
        "",
        f"| variant | n | final {goal.key} | best {goal.key} | best at kimg | s/kimg (training) | "
        "wall time per run (train.py's Timing/total_sec: training, snapshots, metrics) |",
        "|---|---|---|---|---|---|---|",
    ]
    for variant in results.variants:
        runs = [r for r in results.of(variant) if r.finished]
        finals = t_interval([r.final.value for r in runs])
        bests = [r.best(goal) for r in runs]
        speed = t_interval([r.sec_per_kimg for r in runs if math.isfinite(r.sec_per_kimg)])
        wall = t_interval([r.final.total_sec for r in runs])
        lines.append(
            f"| {variant} | {len(runs)} | {fmt_interval(finals)} | "
            f"{fmt_interval(t_interval([b.value for b in bests]))} | "
            f"{', '.join(fmt(b.kimg) for b in bests) or '–'} | {fmt_interval(speed)} | "
            f"{study_folder.format_duration(wall.mean) if wall.n else '–'} |"
        )
    if len(results.variants) > 1:
        lines += [
            "",
            f"## Paired differences against `{base}`",
            "",
            f"Each seed's value minus `{base}`'s value at the same seed; for `{goal.key}` "
            f"{'a negative' if goal.lower_is_better else 'a positive'} difference is an improvement.",
            "",
            "| variant | pairs | final Δ | seeds improved (final) | best Δ | seeds improved (best) "
            "| per seed (final Δ) |",
            "|---|---|---|---|---|---|---|",
        ]
        for pair in paired_differences(results):
            per_seed = ", ".join(f"s{s}: {d:+.4g}" for s, d in zip(pair.seeds, pair.final_diffs)) or "–"
            lines.append(
                f"| {pair.variant} | {len(pair.seeds)} | {fmt_interval(pair.final)} | "
                f"{pair.final_improved} of {len(pair.seeds)} | {fmt_interval(pair.best)} | "
                f"{pair.best_improved} of {len(pair.seeds)} | {per_seed} |"
            )
    lines += ["", "## Curves", ""]
    for caption, name in figures.items():
        lines += [f"![{caption}]({name})", "", f"*{caption}*", ""]
    lines += ["## Every evaluation", ""]
    for variant in results.variants:
        lines += [
            f"**{variant}**",
            "",
            f"| kimg | n | {goal.key} | min | max | wall time (mean) |",
            "|---|---|---|---|---|---|",
        ]
        for s in evaluation_summaries(results, variant):
            lines.append(
                f"| {fmt(s.kimg)} | {s.value.n} | {fmt_interval(s.value)} | {fmt(min(s.values))} | "
                f"{fmt(max(s.values))} | {study_folder.format_duration(s.total_sec.mean)} |"
            )
        lines.append("")
    unfinished = [r for r in results.runs.values() if not r.finished]
    if unfinished:
        lines += ["## Unfinished runs", "", "Not in the final, best and paired numbers above:", ""]
        for r in unfinished:
            where = (
                f"at {fmt(r.nimg / 1000)} of {fmt(r.target_nimg / 1000)} kimg" if r.status != "new" else "not started"
            )
            lines.append(f"- {r.variant} seed {r.seed}: {where}" + (f" — log: `{r.note}`" if r.note else ""))
        lines.append("")
    lines += list(sections)
    lines += [
        "## Files",
        "",
        "`evaluations.csv` every scored snapshot of every run; `summary.csv` the intervals per evaluation; "
        "`runs.csv` one line per run (status, final, best, s/kimg, its chain of run directories); "
        "`paired.csv` the per-seed differences. The runs themselves are ordinary train.py run directories "
        "under `runs/`.",
        "",
    ]
    return "\n".join(lines)


def write_report(study_dir: str, results: StudyResults | None = None, sections: Sequence[str] = ()) -> str:
    """Tables, CSVs and the two curve figures into <study>/report/; returns report.md's path.

    `sections`: further Markdown (compare.py's sample grids and projections) placed before the file list.
    """
    results = results or read_study(study_dir)
    folder = os.path.join(study_dir, study_folder.REPORT_DIR)
    os.makedirs(folder, exist_ok=True)
    write_csvs(results, folder)
    figures = {
        f"{results.goal.key} against training progress": "curves_kimg.png",
        f"{results.goal.key} against wall-clock training time": "curves_time.png",
    }
    plot_curves(results, os.path.join(folder, "curves_kimg.png"), "kimg")
    plot_curves(results, os.path.join(folder, "curves_time.png"), "time")
    path = os.path.join(folder, "report.md")
    _write_text(path, render_markdown(results, figures, sections))
    return path
