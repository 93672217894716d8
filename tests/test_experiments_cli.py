"""The three experiment command lines: outputs default to ./rlo-results under the working directory, a bad flag is a
usage error (exit 2) whose one error line names the flag and the value, and `python -m experiments.NAME` runs
the click command."""

import os
import subprocess
import sys

import pytest
from click.testing import CliRunner
from conftest import REPO

from experiments import classify, logreg, spiral

TINY_RUNS = {
    "logreg": (
        logreg.main,
        ["--datasets", "wine", "--steps", "1"],
        ["logreg_convergence.png", "logreg_table1.csv", "logreg_table1.md"],
    ),
    "spiral": (
        spiral.main,
        ["--iterations", "1", "1", "1", "--seeds", "1"],
        ["spiral_boundaries.png", "spiral_results.csv", "spiral_results.md"],
    ),
    "classify": (
        classify.main,
        ["--epochs", "0", "--seeds", "1", "--max-images", "20", "--losses", "ce", "--device", "cpu"],
        ["classify_digits.csv", "classify_digits.md", "classify_digits.png", "classify_digits_epochs.csv"],
    ),
}


@pytest.mark.parametrize("name", TINY_RUNS)
def test_default_out_is_rlo_results_under_the_working_directory(name, tmp_path, monkeypatch):
    main, args, files = TINY_RUNS[name]
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert [p.name for p in tmp_path.iterdir()] == ["rlo-results"]
    assert sorted(p.name for p in (tmp_path / "rlo-results").iterdir()) == files
    assert f"wrote rlo-results{os.sep}{files[-1]}" in result.stdout


BAD_FLAGS = [  # (command, arguments, what the error line must name)
    (logreg.main, ["--steps", "-1"], ["'--steps'", "-1"]),
    (logreg.main, ["--l2", "abc"], ["'--l2'", "'abc'"]),
    (logreg.main, ["--datasets", "wine,iris"], ["'--datasets'", "'iris'"]),
    (logreg.main, ["--datasets", "wine", "ionosphere"], ["ionosphere"]),  # the old space-separated list
    (logreg.main, ["--bogus"], ["'--bogus'"]),
    (spiral.main, ["--seeds", "0"], ["'--seeds'", "0"]),
    (spiral.main, ["--iterations", "1", "-1", "1"], ["'--iterations'", "-1"]),
    (spiral.main, ["--iterations", "1", "1"], ["'--iterations'", "3 arguments"]),
    (classify.main, ["--data", "mnist"], ["'--data'", "'mnist'"]),
    (classify.main, ["--model", "vgg"], ["'--model'", "'vgg'"]),
    (classify.main, ["--lr", "0"], ["'--lr'", "0"]),
    (classify.main, ["--epochs", "-2"], ["'--epochs'", "-2"]),
    (classify.main, ["--max-images", "1"], ["'--max-images'", "1"]),
    (classify.main, ["--losses", "ce,rlo-0"], ["--losses", "'rlo-0'"]),
    (classify.main, ["--data", "cifar10", "--max-images", "50"], ["--max-images", "--data=digits"]),
]


@pytest.mark.parametrize("main, args, named", BAD_FLAGS, ids=[f"{m.name}{' '.join(a)}" for m, a, _ in BAD_FLAGS])
def test_a_bad_flag_is_a_one_line_usage_error_naming_flag_and_value(main, args, named, tmp_path):
    result = CliRunner().invoke(main, ["--out", str(tmp_path / "out")] + args, catch_exceptions=False)
    assert result.exit_code == 2 and result.stdout == ""
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and result.stderr.rstrip().endswith(errors[0])
    assert all(part in errors[0] for part in named), errors[0]
    assert not (tmp_path / "out").exists()  # rejected before anything ran


@pytest.mark.parametrize("name", TINY_RUNS)
def test_python_m_runs_the_click_command(name, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO))  # this checkout's rlo, whatever else is installed
    run = subprocess.run(
        [sys.executable, "-m", f"experiments.{name}", "--no-such-flag"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2, run.stderr
    assert run.stderr.startswith(f"Usage: python -m experiments.{name} [OPTIONS]")
    assert run.stderr.rstrip().splitlines()[-1].startswith("Error: No such option '--no-such-flag'")
