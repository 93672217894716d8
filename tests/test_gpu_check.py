"""tools/gpu_check.py on CPU: arguments, budgets, failure rows, the table and the JSON, and the dry run."""

import importlib.util
import json
import subprocess
import sys
import time

import click
import pytest
import torch
from conftest import REPO

spec = importlib.util.spec_from_file_location("gpu_check", REPO / "tools" / "gpu_check.py")
gpu_check = importlib.util.module_from_spec(spec)
sys.modules["gpu_check"] = gpu_check  # dataclasses resolve annotations through sys.modules
spec.loader.exec_module(gpu_check)


def test_default_budgets_fit_in_eight_minutes_and_the_quick_ones_in_one():
    assert sum(gpu_check.BUDGETS.values()) <= 8 * 60
    assert sum(gpu_check.QUICK_BUDGETS.values()) <= 60
    assert set(gpu_check.BUDGETS) == set(gpu_check.QUICK_BUDGETS) == set(gpu_check.STEPS)


def test_arguments_budget_overrides_and_refusals():
    args = gpu_check.parse_args(["--device=cpu", "--quick", "--steps=ops,nets", "--budget", "nets=3"])
    assert args.steps == ["ops", "nets"] and args.budgets["nets"] == 3.0
    assert args.total_budget == gpu_check.QUICK_BUDGETS["ops"] + 3.0
    for bad, message in (
        [["--budget", "fly=3"], "unknown step 'fly'"],
        [["--budget", "ops=soon"], "not a number"],
        [["--device=tpu"], "expected cuda or cpu"],
        [["--steps=ops,fly"], "fly not in build"],
    ):
        with pytest.raises(click.UsageError) as refused:
            gpu_check.parse_args(["--device=cpu"] + bad)
        assert message in refused.value.format_message()
    if not torch.cuda.is_available():
        with pytest.raises(click.UsageError, match="--device=cpu --quick"):
            gpu_check.parse_args([])


def test_a_failing_step_is_a_row_and_the_next_steps_still_run(monkeypatch, tmp_path):
    def boom(ctx, budget):
        raise RuntimeError("nvcc exploded")

    monkeypatch.setitem(gpu_check.STEP_FUNCTIONS, "build", boom)
    monkeypatch.setitem(gpu_check.STEP_FUNCTIONS, "ops", lambda ctx, budget: [gpu_check.Row("ops", "x", "ok", "1 ms")])
    ctx = gpu_check.Context(device=torch.device("cpu"), quick=True, workdir=tmp_path)
    rows = gpu_check.run_steps(ctx, ["build", "ops"], dict(build=5, ops=5), total=10)
    assert [(r.step, r.status) for r in rows] == [("build", "FAILED"), ("ops", "ok")]
    assert "nvcc exploded" in rows[0].value and "Traceback" in rows[0].data["traceback"]


def test_spent_total_budget_skips_the_remaining_steps(monkeypatch, tmp_path):
    def slow(ctx, budget):
        time.sleep(0.3)
        return [gpu_check.Row("build", "slow", "ok")]

    monkeypatch.setitem(gpu_check.STEP_FUNCTIONS, "build", slow)
    ctx = gpu_check.Context(device=torch.device("cpu"), quick=True, workdir=tmp_path)
    rows = gpu_check.run_steps(ctx, ["build", "ops"], dict(build=5, ops=5), total=0.2)
    assert [(r.step, r.status) for r in rows] == [("build", "ok"), ("ops", "budget")]


def test_a_subprocess_past_its_budget_is_a_timeout_row():
    proc, out = gpu_check.run_subprocess(
        [sys.executable, "-c", "import time; print('started', flush=True); time.sleep(30)"], gpu_check.Budget(1.5)
    )
    assert proc is None


def test_pytest_summary_is_parsed():
    assert gpu_check.parse_pytest_summary("...\n3 failed, 80 passed, 2 skipped, 1 error in 12.3s\n") == dict(
        failed=3, passed=80, skipped=2, error=1
    )
    assert gpu_check.parse_pytest_summary("76 skipped, 29 deselected in 7.34s") == dict(skipped=76, deselected=29)
    assert gpu_check.parse_pytest_summary("no summary") == {}


def test_table_lists_every_row_with_aligned_columns():
    rows = [
        gpu_check.Row("build", "pytest -m cuda", "ok", "80 passed", 12.34),
        gpu_check.Row("nccl", "train.py --gpus=2", "skipped", "needs 2 CUDA GPUs, found 1"),
    ]
    lines = gpu_check.format_table(rows).splitlines()
    assert lines[0].split() == ["step", "item", "status", "value", "time", "s"]
    assert len(lines) == 4 and "12.3" in lines[2] and "skipped" in lines[3]
    assert lines[2].index("ok") == lines[3].index("skipped")


def test_steps_that_run_in_process_work_on_cpu(tmp_path, capsys):
    """ops and nets for real (tiny sizes), the rest skipped or not applicable, one table and the JSON."""
    out = tmp_path / "check.json"
    gpu_check.run(gpu_check.parse_args(["--device=cpu", "--quick", "--steps=ops,nets,nccl", f"--json={out}"]))
    printed = capsys.readouterr().out
    report = json.loads(out.read_text())
    rows = report["rows"]
    assert {r["step"] for r in rows} == {"ops", "nets", "nccl"}
    assert all(r["status"] in ("ok", "budget") for r in rows if r["step"] in ("ops", "nets"))
    assert any(r["status"] == "ok" and r["step"] == "nets" for r in rows)
    assert [r["status"] for r in rows if r["step"] == "nccl"] == ["skipped"]
    assert report["environment"]["device"] == "cpu" and report["total_budget_s"] == pytest.approx(15)
    for r in rows:
        assert r["item"] in printed


def test_make_dataset_writes_square_pngs(tmp_path):
    from PIL import Image

    folder = gpu_check.make_dataset(tmp_path / "d", 3, resolution=16)
    files = sorted(folder.iterdir())
    assert len(files) == 3 and Image.open(files[0]).size == (16, 16) and Image.open(files[0]).mode == "RGB"


@pytest.mark.slow
def test_cpu_dry_run_of_every_step_prints_the_table(tmp_path):
    """The whole --device=cpu --quick run (pytest -m cuda and train.py as subprocesses): ~55-70 s on the shared
    2-core machine, its budgets add up to 60 s; allowed 150 s here so that load from others cannot fail it."""
    start = time.perf_counter()
    proc = subprocess.run(
        [
            sys.executable,
            "tools/gpu_check.py",
            "--device=cpu",
            "--quick",
            f"--json={tmp_path / 'check.json'}",
            f"--workdir={tmp_path / 'work'}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert time.perf_counter() - start < 150
    rows = json.loads((tmp_path / "check.json").read_text())["rows"]
    assert {r["step"] for r in rows} == set(gpu_check.STEPS)
    assert "pytest -m cuda" in proc.stdout and "train.py 64px" in proc.stdout
