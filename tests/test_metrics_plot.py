"""plot_metrics.py / metrics.metric_plot: metric lines placed on the training-time axis from stats.jsonl or log.txt."""

from __future__ import annotations

import json

import PIL.Image
import pytest
from click.testing import CliRunner

from commands import plot_metrics_command as plot_metrics
from dnnlib.util import format_time
from metrics import metric_plot


def _metric_line(snapshot, value, name="fid50k_full", extra=None):
    results = {name: value, **(extra or {})}
    return json.dumps(
        dict(
            results=results,
            metric=name,
            total_time=1.0,
            total_time_str="1s",
            num_gpus=1,
            snapshot_pkl=snapshot,
            timestamp=0.0,
        )
    )


def _make_run(folder, ticks, scores, log_only=False):
    folder.mkdir()
    if log_only:
        lines = [
            f"tick {i:<5d} kimg {k:<8.3f} time {format_time(s):<12s} sec/tick 1.0     sec/kimg 1.00    "
            f"maintenance 0.0    cpumem 1.00   gpumem 0.00   augment 0.000"
            for i, (k, s) in enumerate(ticks)
        ]
        (folder / "log.txt").write_text("Loading...\n" + "\n".join(lines) + "\n")
    else:
        (folder / "stats.jsonl").write_text(
            "".join(
                json.dumps(
                    {
                        "Progress/kimg": {"num": 1, "mean": k, "std": 0},
                        "Timing/total_sec": {"num": 1, "mean": s, "std": 0},
                        "timestamp": 0,
                    }
                )
                + "\n"
                for k, s in ticks
            )
        )
    (folder / "metric-fid50k_full.jsonl").write_text("".join(_metric_line(snap, v) + "\n" for snap, v in scores))
    return folder


@pytest.mark.parametrize("seconds", [0, 7, 59, 60, 185, 3600, 7269, 86399, 3 * 86400 + 4 * 3600 + 5 * 60])
def test_parse_time_str_inverts_format_time(seconds):
    assert metric_plot.parse_time_str(format_time(seconds)) == seconds


def test_series_interpolates_training_time_and_keeps_last_rescore(tmp_path):
    run = _make_run(
        tmp_path / "ce",
        ticks=[(0, 10), (4, 110), (8, 210), (12, 310)],
        scores=[
            ("network-snapshot-000008.pt", 50.0),
            ("network-snapshot-000000.pt", 300.0),
            ("network-snapshot-000010.pt", 40.0),
            ("network-snapshot-000008.pt", 45.0),
        ],
    )
    points = metric_plot.metric_series(str(run), "fid50k_full")
    assert [(p.kimg, p.value, p.train_sec) for p in points] == [(0, 300.0, 10), (8, 45.0, 210), (10, 40.0, 260)]


def test_log_txt_is_used_without_stats_jsonl(tmp_path):
    run = _make_run(
        tmp_path / "rlo",
        ticks=[(0, 20), (4, 3620), (8, 7220)],
        log_only=True,
        scores=[("network-snapshot-000004.pkl", 30.0), ("network-snapshot-000006.pkl", 20.0)],
    )
    points = metric_plot.metric_series(str(run), "fid50k_full")
    assert [(p.kimg, p.train_sec) for p in points] == [(4, 3620), (6, 5420)]


def test_cli_plots_two_runs_on_one_png(tmp_path):
    ce = _make_run(
        tmp_path / "ce",
        [(0, 0), (10, 3600)],
        [("network-snapshot-000000.pt", 200.0), ("network-snapshot-000010.pt", 80.0)],
    )
    rlo = _make_run(
        tmp_path / "rlo",
        [(0, 0), (10, 3000)],
        [("network-snapshot-000000.pt", 190.0), ("network-snapshot-000010.pt", 60.0)],
    )
    out = tmp_path / "fig" / "fid.png"
    result = CliRunner().invoke(
        plot_metrics.main,
        ["--run-dir", str(ce), "--label", "CE", "--run-dir", str(rlo), "--label", "RLO", "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    with PIL.Image.open(out) as image:
        assert image.format == "PNG" and image.size == (900, 600)
    assert "RLO\tnetwork-snapshot-000010.pt\t10\t0.8333\t60" in result.output
    assert [p.name for p in out.parent.iterdir()] == ["fid.png"]


def test_errors_name_the_problem(tmp_path):
    run = _make_run(tmp_path / "run", [], [("network-snapshot-000004.pt", 1.0)])
    result = CliRunner().invoke(plot_metrics.main, ["--run-dir", str(run), "--out", str(tmp_path / "a.png")])
    assert result.exit_code != 0 and "--x=kimg" in result.output
    result = CliRunner().invoke(plot_metrics.main, ["--run-dir", str(run), "--metric", "kid50k_full"])
    assert result.exit_code != 0 and "metric-kid50k_full.jsonl not found" in result.output
    assert "calc_metrics.py --metrics=kid50k_full" in result.output
    (run / "metric-pr50k3_full.jsonl").write_text(
        _metric_line("network-snapshot-000004.pt", 0.5, "pr50k3_full_precision", {"pr50k3_full_recall": 0.4}).replace(
            '"metric": "pr50k3_full_precision"', '"metric": "pr50k3_full"'
        )
        + "\n"
    )
    with pytest.raises(metric_plot.MetricPlotError, match="pr50k3_full_precision, pr50k3_full_recall"):
        metric_plot.metric_series(str(run), "pr50k3_full")
    points = metric_plot.metric_series(str(run), "pr50k3_full", key="pr50k3_full_recall")
    assert points[0].value == 0.4


def test_sub_kimg_snapshot_names_give_fractional_kimg():
    assert metric_plot.snapshot_kimg("runs/x/network-snapshot-000000-496.pt") == pytest.approx(0.496)
    assert metric_plot.snapshot_kimg("network-snapshot-001200.pkl") == 1200


def test_a_resumed_run_is_one_curve_with_the_run_it_resumed(tmp_path):
    first = _make_run(
        tmp_path / "00000-run",
        [(0, 0), (4, 400), (8, 800)],
        [
            ("network-snapshot-000000.pt", 300.0),
            ("network-snapshot-000004.pt", 200.0),
            ("network-snapshot-000008.pt", 150.0),
        ],
    )
    (first / "network-snapshot-000004.pt").write_bytes(b"")  # the snapshot the second run resumed from
    second = _make_run(
        tmp_path / "00001-run-resume",
        [(4, 400), (8, 790), (12, 1200)],
        [
            ("network-snapshot-000004.pt", 200.0),
            ("network-snapshot-000008.pt", 140.0),
            ("network-snapshot-000012.pt", 100.0),
        ],
    )
    (second / "training_options.json").write_text(json.dumps({"resume": str(first / "network-snapshot-000004.pt")}))
    points, chain = metric_plot.stitched_series(str(second), "fid50k_full")
    assert chain == [str(first), str(second)]
    assert [(p.kimg, p.value) for p in points] == [(0, 300.0), (4, 200.0), (8, 140.0), (12, 100.0)]
    out = tmp_path / "fid.png"
    result = CliRunner().invoke(plot_metrics.main, ["--run-dir", str(second), "--label", "CE", "--out", str(out)])
    assert result.exit_code == 0 and "CE: one curve over the resumed runs" in result.output
