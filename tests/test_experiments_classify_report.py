"""Classifier reports on hand-made histories: the 95 % Student-t interval against its formula, paired differences
against CE by seed, the Table 2 and Table 3 layouts, and Figure 3 (a row of three panels per model)."""

import csv
import io
import math

import numpy as np
import pytest

import rlo
from experiments import classify_report as report
from experiments.classify_train import EpochRecord, RunHistory

CE, RLO10, FOCAL = rlo.LossConfig("ce"), rlo.LossConfig("rlo", k=10), rlo.LossConfig("focal")


def _run(loss, seed, final_acc, model="resnet34", epoch_time=2.0, train_acc=0.9, params=21_300_000):
    records = [EpochRecord(0, math.nan, math.nan, math.nan, 0.1, 2.3, 2.0, 1e-3, 0.0, 0.0)]
    for epoch in (1, 2):
        acc = final_acc if epoch == 2 else final_acc / 2
        records.append(
            EpochRecord(
                epoch,
                1.0 / epoch,
                0.9 / epoch,
                train_acc,
                acc,
                1.0 / epoch,
                0.5 / epoch,
                1e-3,
                epoch_time + 0.1 * epoch,
                epoch * epoch_time + 0.1 * (epoch * (epoch + 1) / 2),
            )
        )
    return RunHistory(loss, seed, records, model, params)


CE_ACC = [0.80, 0.82, 0.78]
RLO_ACC = [0.83, 0.82, 0.80]
RUNS = [_run(CE, s, a) for s, a in enumerate(CE_ACC)] + [
    _run(RLO10, s, a, train_acc=0.95) for s, a in enumerate(RLO_ACC)
]


def test_ci95_is_student_t_times_the_standard_error():
    mean, half = report.mean_ci95([1.0, 2.0, 4.0, 7.0, 6.0])
    s = np.std([1.0, 2.0, 4.0, 7.0, 6.0], ddof=1)
    assert mean == 4.0 and half == pytest.approx(2.7764451052 * s / math.sqrt(5))  # t(0.975, 4), from tables
    assert math.isnan(report.mean_ci95([3.0])[1]) and report.mean_ci95([3.0])[0] == 3.0


def test_paired_differences_are_taken_seed_by_seed():
    rows = {row["loss"]: row for row in report.summary_rows(RUNS)}
    diffs = 100 * (np.array(RLO_ACC) - np.array(CE_ACC))
    assert rows["rlo-k10"]["diff_vs_ce_mean"] == pytest.approx(diffs.mean())
    assert rows["rlo-k10"]["diff_vs_ce_ci95"] == pytest.approx(report.mean_ci95(diffs)[1])
    # the paired CI is narrower than the unpaired spread would suggest here
    assert rows["rlo-k10"]["diff_vs_ce_ci95"] < rows["rlo-k10"]["test_acc_ci95"] + rows["ce"]["test_acc_ci95"]
    assert rows["ce"]["diff_vs_ce_mean"] == 0 and rows["rlo-k10"]["epoch_time_s_mean"] == pytest.approx(2.15)
    assert rows["rlo-k10"]["train_acc_mean"] == pytest.approx(95.0)


def test_without_ce_the_paired_column_is_blank():
    rows = report.summary_rows([_run(RLO10, 0, 0.5), _run(RLO10, 1, 0.6)])
    assert math.isnan(rows[0]["diff_vs_ce_mean"])
    assert "| resnet34 | RLO-10 | 55.00 ± 63.53 (n=2) |  |" in report.results_table(
        [_run(RLO10, 0, 0.5), _run(RLO10, 1, 0.6)]
    )
    assert list(csv.DictReader(io.StringIO(report.results_csv([_run(RLO10, 0, 0.5)]))))[0]["diff_vs_ce_mean"] == ""


def test_table2_layout_has_a_time_and_accuracy_pair_per_loss():
    table = report.table2(RUNS, "cifar10").splitlines()
    assert table[0] == "| Dataset | Model | CE time (s) | CE acc. (%) | RLO-10 time (s) | RLO-10 acc. (%) |"
    ce_mean, ce_half = report.mean_ci95(100 * np.array(CE_ACC))
    assert table[2].startswith(f"| cifar10 | resnet34 | 2.150 ± 0.000 | {ce_mean:.2f} ± {ce_half:.2f} | ")


def test_table3_layout_has_parameters_and_train_test_pairs_per_model():
    runs = RUNS + [_run(loss, s, 0.7, model="vit-s", params=21_342_346) for loss in (CE, RLO10) for s in range(3)]
    lines = report.table3(runs).splitlines()
    assert lines[0] == "| Model | # Param | CE train | CE test | RLO-10 train | RLO-10 test |"
    assert lines[2].startswith("| resnet34 | 21.30M | 90.00 ± 0.00 | 80.00 ± ")
    assert lines[3] == "| vit-s | 21.34M | 90.00 ± 0.00 | 70.00 ± 0.00 | 90.00 ± 0.00 | 70.00 ± 0.00 |"


def test_figure3_has_three_panels_per_model_against_wall_time():
    runs = RUNS + [_run(FOCAL, s, 0.6, model="vit-s") for s in range(3)]
    figure = report.figure3(runs, "title")
    axes = figure.get_axes()
    assert len(axes) == 6
    assert [ax.get_xlabel() for ax in axes] == ["training wall time (s)"] * 6
    assert [len(ax.lines) for ax in axes] == [2, 2, 2, 1, 1, 1]
    x, y = axes[0].lines[0].get_data()
    assert list(x) == pytest.approx([0.0, 2.1, 4.3]) and list(y) == pytest.approx(
        [10.0, 100 * np.mean(CE_ACC) / 2, 100 * np.mean(CE_ACC)]
    )
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    assert buffer.getvalue()[:8] == b"\x89PNG\r\n\x1a\n"
