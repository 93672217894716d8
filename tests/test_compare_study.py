"""A real tiny study through compare.py (subprocesses, as a user runs it): manifest, runs, report; SIGKILL of compare.py
and its train.py mid-run, then the same command again, ends with the numbers and weights of an uninterrupted study.

2 variants x 2 seeds of 32 images each on the embedded digits: a few minutes on a 2-core CPU, hence slow.
"""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import REPO

from study import folder as study_folder
from training import checkpoint

pytestmark = pytest.mark.slow

METRIC = "fdd100_full"
ARGS = [
    "--variant=ce",
    "--variant=rlo --k=2",
    "--seeds=2",
    "--kimg=0.032",
    "--tick=0.008",
    "--snap=1",
    f"--metric={METRIC}",
    "--train-args=--cbase=64 --cmax=16 --batch=8 --aug=noaug",
    "--proj-steps=0",
]


def command(outdir):
    return [sys.executable, str(REPO / "compare.py"), f"--outdir={outdir}", *ARGS]


def environment():
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")


def run_compare(outdir):
    result = subprocess.run(command(outdir), capture_output=True, text=True, env=environment(), timeout=1800)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def evaluations(study):
    with open(study / "report" / "evaluations.csv") as file:
        return [(r["variant"], r["seed"], r["nimg"], r["snapshot_stem"], r[METRIC]) for r in csv.DictReader(file)]


def final_weights(study, variant, seed):
    chain = study_folder.run_chain(str(study / "runs" / variant / f"seed{seed}"))
    snapshot = chain[-1].snapshots[-1]
    assert snapshot.name == "network-snapshot-000000-032.pt"
    return checkpoint.load_network(snapshot.path)["G_ema"].state_dict()


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    study = tmp_path_factory.mktemp("uninterrupted") / "study"
    output = run_compare(study)
    return study, output


def test_study_writes_manifest_ordinary_runs_and_report(uninterrupted):
    study, output = uninterrupted
    assert "4 runs of 0.032 kimg" in output and output.count(" done   ") == 4 and "ETA" in output
    manifest = json.loads((study / "study.json").read_text())
    assert [(r["variant"], r["seed"]) for r in manifest["runs"]] == [("ce", 0), ("rlo-k2", 0), ("ce", 1), ("rlo-k2", 1)]
    for run in manifest["runs"]:
        (run_dir,) = (study / run["outdir"]).iterdir()  # one ordinary train.py run directory each
        for name in [
            "training_options.json",
            "log.txt",
            "stats.jsonl",
            f"metric-{METRIC}.jsonl",
            "reals.png",
            "network-snapshot-000000-032.pt",
        ]:
            assert (run_dir / name).is_file(), (run_dir, name)
    for name in [
        "report.md",
        "evaluations.csv",
        "summary.csv",
        "runs.csv",
        "paired.csv",
        "curves_kimg.png",
        "curves_time.png",
        "samples_seed0.png",
        "samples_seed1.png",
    ]:
        assert (study / "report" / name).is_file(), name
    assert len(evaluations(study)) == 4 * 4  # snapshots after 8, 16, 24 and 32 images
    report = (study / "report" / "report.md").read_text()
    assert "Runs finished:** 4 of 4" in report and "n = 2" in report and "rlo-k2 | 2 |" in report


def test_rerunning_a_finished_study_trains_nothing(uninterrupted):
    study, _ = uninterrupted
    before = sorted(p.name for p in (study / "runs" / "ce" / "seed0").iterdir())
    output = run_compare(study)
    assert "4 finished, 0 to resume, 0 to start" in output and " start " not in output
    assert sorted(p.name for p in (study / "runs" / "ce" / "seed0").iterdir()) == before


def test_killed_study_rerun_ends_with_the_numbers_of_an_uninterrupted_one(uninterrupted, tmp_path):
    reference, _ = uninterrupted
    study = tmp_path / "study"
    proc = subprocess.Popen(
        command(study), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=environment(), start_new_session=True
    )  # its own process group: compare.py and the train.py it runs
    target = study / "runs" / "rlo-k2" / "seed0"
    deadline = time.time() + 1200
    try:
        while not list(target.glob("*/network-snapshot-000000-016.pt")):  # the second run, half-way
            assert proc.poll() is None and time.time() < deadline, "the study ended before it could be killed"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    output = run_compare(study)
    assert "1 finished, 1 to resume, 2 to start" in output and "resume rlo-k2 seed 0" in output
    assert len(study_folder.run_chain(str(target))) == 2  # the killed run directory and the one resuming it
    assert evaluations(study) == evaluations(reference)
    for variant, seed in [("ce", 0), ("rlo-k2", 0), ("ce", 1), ("rlo-k2", 1)]:
        want, got = final_weights(reference, variant, seed), final_weights(study, variant, seed)
        assert all(torch.equal(want[k], got[k]) for k in want), (variant, seed)
