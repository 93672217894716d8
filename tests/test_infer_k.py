"""training.infer_k: k read back from the losses and scores a StyleGAN2-ADA run logs."""

import json
import math

import pytest
import torch
from click.testing import CliRunner

from rlo.family import LossConfig
from rlo.gan import GanObjective
from training import infer_k


def logged_line(k: float | None, real=(2.0, 1.5), fake=(-1.5, 1.2), kimg=4.0, samples=200_000, seed=0, g=None):
    """A stats.jsonl line as the loop writes it: per-sample losses of logits drawn normal, averaged (k None: CE)."""
    gen = torch.Generator().manual_seed(seed)
    r = real[0] + real[1] * torch.randn(samples, generator=gen, dtype=torch.float64)
    f = fake[0] + fake[1] * torch.randn(samples, generator=gen, dtype=torch.float64)
    objective = GanObjective(LossConfig("ce") if k is None else LossConfig("rlo", k=k))
    stats = {
        "Loss/scores/real": {"num": samples, "mean": float(r.mean()), "std": float(r.std())},
        "Loss/scores/fake": {"num": samples, "mean": float(f.mean()), "std": float(f.std())},
        "Loss/G/loss": {"num": samples, "mean": float(objective.g_fake(f).mean()) if g is None else g},
        "Loss/D/loss": {"num": samples, "mean": float((objective.d_fake(f) + objective.d_real(r)).mean())},
        "Progress/kimg": {"num": 1, "mean": kimg},
    }
    return json.dumps(stats)


@pytest.mark.parametrize("k", [0.7, 2.0, 7.0, 20.0])
def test_k_of_a_rooted_run_is_recovered_from_both_losses(k):
    (tick,) = infer_k.read_ticks_from_lines([logged_line(k)], "synthetic")
    fit = infer_k.fit_tick(tick)
    assert fit.fitted_on == "G+D" and fit.residual < infer_k.RESIDUAL_OK
    assert fit.k == pytest.approx(k, rel=0.03)


def test_where_g_overflowed_the_largest_k_that_gives_d_is_taken_and_the_other_root_shown():
    (tick,) = infer_k.read_ticks_from_lines([logged_line(20.0, g=math.inf)], "synthetic")
    fit = infer_k.fit_tick(tick)
    assert fit.fitted_on == "D"
    assert fit.k == pytest.approx(20.0, rel=0.03)
    assert fit.other_roots and max(fit.other_roots) < 1  # k exp(a / k) is U-shaped: a small k gives D's loss too


def test_cross_entropy_logs_fit_no_k_and_the_report_says_so(tmp_path):
    """Eq. 4 with m = k is at least k + nll: CE's losses (nll alone) are below every k's."""
    (tick,) = infer_k.read_ticks_from_lines([logged_line(None)], "synthetic")
    assert infer_k.fit_tick(tick).residual > 0.5
    path = tmp_path / "stats.jsonl"
    path.write_text(logged_line(None) + "\n")
    result = CliRunner().invoke(infer_k.main, [str(path)])
    assert result.exit_code == 0 and "1 ticks fit no k of rlo" in result.output and "median" not in result.output


def test_cli_reports_the_median_over_ticks_and_writes_json(tmp_path):
    path = tmp_path / "stats.jsonl"
    lines = [logged_line(11.0, kimg=i, seed=i) for i in range(3)]
    path.write_text("\n".join(lines) + '\n{"Progress/kimg": {"mean": 9}}\n')  # a line without losses is skipped
    result = CliRunner().invoke(infer_k.main, [str(path), "--compare-k=2", f"--json={tmp_path / 'k.json'}"])
    assert result.exit_code == 0, result.output
    assert "k fitted over 3 ticks: median 11" in result.output
    record = json.loads((tmp_path / "k.json").read_text())
    assert record["summary"]["median_k"] == pytest.approx(11.0, rel=0.03)


@pytest.mark.parametrize(
    "content, message",
    [
        ("not json\n", "line 1: not a stats.jsonl line"),
        ('{"Progress/kimg": {"mean": 1}}\n', "no line logs all of"),
        ('{"Loss/scores/real": 1, "Loss/scores/fake": 1, "Loss/G/loss": 1, "Loss/D/loss": 1}\n', "line 1"),
    ],
)
def test_files_that_say_nothing_about_k_are_one_line_naming_them(tmp_path, content, message):
    path = tmp_path / "stats.jsonl"
    path.write_text(content)
    result = CliRunner().invoke(infer_k.main, [str(path)])
    assert result.exit_code == 1 and message in result.output and str(path) in result.output
    assert "Traceback" not in result.output


def test_a_missing_file_and_an_unknown_member_are_one_line():
    result = CliRunner().invoke(infer_k.main, ["/no/such/stats.jsonl"])
    assert result.exit_code == 1 and "/no/such/stats.jsonl: cannot read it" in result.output
    result = CliRunner().invoke(infer_k.main, ["/dev/null", "--loss=nope"])
    assert result.exit_code == 2 and "--loss=nope" in result.output
