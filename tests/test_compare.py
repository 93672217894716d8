"""compare.py: variant grammar and checks before any run, the study folder, resume/skip planning on pre-made runs,
the report's arithmetic (against scipy.stats.t), and runs spread one per device."""

import csv
import json
import math
import os
import shutil
import sys

import click
import metrics_support
import numpy as np
import PIL.Image
import pytest
import scipy.stats
import torch
from click.testing import CliRunner
from conftest import perturbed

from commands import calc_metrics_command, train_command
from study import command as study_command
from study import folder as study_folder
from study import pictures as study_pictures
from study import plan as study_plan
from study import report as study_report
from study import runner as study_runner
from torch_utils import distributed
from training import checkpoint
from training.networks import Generator
from training.options import CFG_SPECS

TINY = "--cbase=64 --cmax=16 --batch=8 --aug=noaug"
METRIC = "fdd100_full"


@pytest.fixture(scope="module")
def compare():
    return study_command


def invoke(compare, args):
    return CliRunner().invoke(compare.cli, [str(a) for a in args], catch_exceptions=False)


# ----------------------------------------------------------------------------------------------------
# Intervals.


@pytest.mark.parametrize(
    "values",
    [
        [1.0, 2.0],
        [523.6, 498.1, 560.2],
        [3.0, 3.5, 2.0, 9.0, 4.4, 1.25, 7.0],
        list(np.random.RandomState(0).randn(20) * 30 + 100),
    ],
)
def test_t_interval_equals_scipy_student_t_interval(values):
    got = study_report.t_interval(values)
    low, high = scipy.stats.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=scipy.stats.sem(values))
    assert got.n == len(values)
    assert got.low == pytest.approx(low, rel=1e-12) and got.high == pytest.approx(high, rel=1e-12)


def test_t_interval_of_three_seeds_uses_the_textbook_quantile_4_303():
    got = study_report.t_interval([10.0, 12.0, 14.0])  # mean 12, s = 2
    assert got.mean == 12 and got.half == pytest.approx(4.302653 * 2 / math.sqrt(3), rel=1e-6)


def test_t_interval_of_one_value_has_no_width():
    got = study_report.t_interval([5.0])
    assert got.mean == 5.0 and got.n == 1 and math.isnan(got.half)
    assert study_report.fmt_interval(got) == "5 (n = 1)"


@pytest.mark.parametrize(
    "metric, key, lower",
    [
        ("fid50k_full", "fid50k_full", True),
        ("kid1k", "kid1k", True),
        ("fdd2k_full", "fdd2k_full", True),
        ("ppl2_wend", "ppl2_wend", True),
        ("is50k", "is50k_mean", False),
        ("cls2k", "cls2k_score", False),
    ],
)
def test_each_metric_knows_its_direction(metric, key, lower):
    goal = study_report.metric_goal(metric)
    assert (goal.key, goal.lower_is_better) == (key, lower)
    assert goal.improved(-1.0) == lower and goal.improved(1.0) == (not lower)


# ----------------------------------------------------------------------------------------------------
# Variants.


@pytest.mark.parametrize(
    "spec, label, args",
    [
        ("ce", "ce", ("--loss=ce",)),
        ("rlo --k=2", "rlo-k2", ("--loss=rlo", "--k=2")),
        ("rlo --k 11", "rlo-k11", ("--loss=rlo", "--k=11")),
        ("rlo-eq9 --k=3 --m=5", "rlo-eq9-k3-m5", ("--loss=rlo-eq9", "--k=3", "--m=5")),
        ("name=RLO-2 rlo --k=2", "RLO-2", ("--loss=rlo", "--k=2")),
        (
            "--loss=hinge --pairing=relativistic --r2=1",
            "hinge-pairingrelativistic-r2_1",
            ("--loss=hinge", "--pairing=relativistic", "--r2=1"),
        ),
        ("--glr=0.002", "ce-glr0.002", ("--glr=0.002",)),
    ],
)
def test_variant_grammar(spec, label, args):
    variant = study_folder.parse_variant(spec)
    assert (variant.label, variant.args) == (label, args)


@pytest.mark.parametrize(
    "spec, message",
    [
        ("", "empty"),
        ('rlo "--k=2', "No closing quotation"),
        ("rlo --k", "--k needs a value"),
        ("rlo ce", "'ce' is not a train.py switch"),
        ("rlo --loss=ce", "the loss is given twice"),
        ("rlo --k=2 --k=3", "--k is given twice"),
        ("name=a/b rlo", "must be a folder name"),
        ("rlo name=x", "is not a train.py switch"),
        ("ce --kimg=5", "--kimg is set for every run of the study by compare.py --kimg"),
        ("ce --seed=1", "--seed is set for every run"),
        ("ce --resume=x.pt", "--resume is set for every run"),
    ],
)
def test_malformed_variant_spec_is_named(spec, message):
    with pytest.raises(study_folder.StudyError, match="--variant") as err:
        study_folder.parse_variant(spec)
    assert message in str(err.value)


def test_two_variants_with_one_label_are_refused():
    with pytest.raises(study_folder.StudyError, match="both have the label 'rlo-k2'"):
        study_folder.parse_variants(["rlo --k=2", "--loss=rlo --k=2"])


def test_study_switches_override_order():
    assert study_folder.merge_args(["--cbase=64", "--aug=noaug"], ["--aug=ada", "--loss=ce"]) == [
        "--cbase=64",
        "--aug=ada",
        "--loss=ce",
    ]


# ----------------------------------------------------------------------------------------------------
# Refused before any run starts (nothing is written).


@pytest.mark.parametrize(
    "variant, message",
    [
        ("rlo --kk=2", "No such option '--kk'"),
        ("rlo --k=abc", "Invalid value for '--k'"),
        ("rlo --k=-1", "Invalid value for '--k'"),
        ("ce --k=2", "--k and --m set the rooted losses"),
        ("rlo --k 2 extra", "'extra' is not a train.py switch"),
        ("nosuchloss", "Invalid value for '--loss'"),
        ("ce --kimg=3", "--kimg is set for every run"),
    ],
)
def test_malformed_variant_is_refused_before_anything_is_written(compare, tmp_path, variant, message):
    outdir = tmp_path / "study"
    result = invoke(
        compare,
        [
            f"--outdir={outdir}",
            "--variant=ce",
            f"--variant={variant}",
            "--kimg=0.016",
            f"--train-args={TINY}",
            f"--metric={METRIC}",
        ],
    )
    assert result.exit_code == 2, result.output
    assert message in result.output and "--variant" in result.output
    assert not outdir.exists()


def test_bad_study_wide_switch_is_refused(compare, tmp_path):
    result = invoke(compare, [f"--outdir={tmp_path / 's'}", "--train-args=--cbase=-3", f"--metric={METRIC}"])
    assert result.exit_code == 2 and "--cbase must be > 0" in result.output
    result = invoke(compare, [f"--outdir={tmp_path / 's'}", "--train-args=--data=x", f"--metric={METRIC}"])
    assert result.exit_code == 2 and "--train-args: --data is set for every run" in result.output
    assert not (tmp_path / "s").exists()


@pytest.fixture
def no_detectors(tmp_path, monkeypatch):
    for name, folder in [
        ("RLO_DETECTOR_DIR", "empty"),
        ("RLO_CACHE_DIR", "cache"),
        ("TORCH_HOME", "torch"),
        ("DNNLIB_CACHE_DIR", "dnnlib"),
    ]:
        monkeypatch.setenv(name, str(tmp_path / folder))


def image_folder(folder, size=16, count=8):
    folder.mkdir(parents=True)
    rng = np.random.RandomState(size)
    for i in range(count):
        PIL.Image.fromarray(rng.randint(0, 256, [size, size, 3], dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


@pytest.mark.parametrize("metric", ["fid50k_full", "kid1k"])
def test_metric_without_its_detector_file_is_refused_before_anything_is_written(
    compare, tmp_path, no_detectors, metric
):
    result = invoke(compare, [f"--outdir={tmp_path / 's'}", f"--metric={metric}"])
    assert result.exit_code == 2
    assert f"--metric={metric} needs a detector file" in result.output
    assert "inception-2015-12-05.pt" in result.output
    assert not (tmp_path / "s").exists()


def test_digits_metric_on_other_data_is_refused(compare, tmp_path):
    data = image_folder(tmp_path / "faces")
    result = invoke(compare, [f"--outdir={tmp_path / 's'}", f"--data={data}", "--subset=all", "--metric=fdd2k_full"])
    assert result.exit_code == 2 and "--metric=fdd2k_full" in result.output and "digits" in result.output
    assert not (tmp_path / "s").exists()


def test_other_data_on_a_cpu_defaults_to_the_offline_swd_and_says_so(compare, tmp_path, no_detectors, capsys):
    data = image_folder(tmp_path / "faces")
    manifest, _, _ = plan(compare, tmp_path / "s", data=str(data), subset=4, metric=None, variants=["ce"], seeds=1)
    assert manifest["study"]["metric"] == "swd2k"
    assert "Metric: swd2k by default (the quick offline metric" in capsys.readouterr().out


def test_the_plan_line_says_how_many_images_each_run_trains_on(compare, tmp_path, no_detectors):
    data = image_folder(tmp_path / "faces")
    manifest, _, _ = plan(compare, tmp_path / "s", data=str(data), subset=4, metric=None, variants=["ce"], seeds=1)
    assert study_plan.subset_text(manifest["study"]) == f"4 images (--subset) of {data}"
    manifest, _, _ = plan(compare, tmp_path / "t", data=str(data), subset=None, metric=None, variants=["ce"], seeds=1)
    assert study_plan.subset_text(manifest["study"]) == f"all images of {data}"


def test_fid_on_other_data_is_refused_without_inception(compare, tmp_path, no_detectors):
    data = image_folder(tmp_path / "faces")
    result = invoke(compare, [f"--outdir={tmp_path / 's'}", f"--data={data}", "--subset=4", "--metric=fid50k_full"])
    assert result.exit_code == 2 and "--metric=fid50k_full needs a detector file" in result.output


def test_precision_recall_is_refused_as_two_numbers(compare, tmp_path):
    result = invoke(compare, [f"--outdir={tmp_path / 's'}", "--metric=pr50k3_full"])
    assert result.exit_code == 2 and "precision and recall, two numbers" in result.output


def test_subset_larger_than_the_data_is_refused(compare, tmp_path):
    result = invoke(compare, [f"--outdir={tmp_path / 's'}", "--subset=5000", f"--metric={METRIC}"])
    assert result.exit_code == 2 and "--subset=5000 exceeds the 1797 images" in result.output


# ----------------------------------------------------------------------------------------------------
# The study folder.


def plan(compare, outdir, **overrides):
    values = dict(
        outdir=str(outdir),
        data=None,
        subset=200,
        variants=["ce", "rlo --k=2"],
        seeds=2,
        kimg=0.024,
        tick=0.008,
        snap=None,
        metric=METRIC,
        detector_dir=None,
        train_args=TINY.split(),
    )
    values.update(overrides)
    return study_plan.plan_study(study_plan.StudyOptions(**values), cuda=False, ctx=None)


def test_plan_has_one_checked_train_py_command_per_variant_and_seed(compare, tmp_path):
    manifest, runs, _ = plan(compare, tmp_path / "s")
    assert [(r.variant, r.seed) for r in runs] == [("ce", 0), ("rlo-k2", 0), ("ce", 1), ("rlo-k2", 1)]
    assert runs[1].args == (
        "--cbase=64",
        "--cmax=16",
        "--batch=8",
        "--aug=noaug",
        "--loss=rlo",
        "--k=2",
        f"--metrics={METRIC}",
        "--subset=200",
        "--kimg=0.024",
        "--tick=0.008",
        "--snap=1",
        "--seed=0",
    )
    assert runs[1].outdir == "runs/rlo-k2/seed0" and runs[1].target_nimg == 24
    assert manifest["study"] == dict(
        data=None, subset=200, kimg=0.024, tick=0.008, snap=1, metric=METRIC, seeds=[0, 1], train_args=TINY.split()
    )
    assert manifest["variants"][1] == dict(label="rlo-k2", spec="rlo --k=2", args=["--loss=rlo", "--k=2"])
    assert json.loads(json.dumps(manifest)) == manifest


def test_default_snapshot_interval_gives_about_six_evaluations(compare, tmp_path):
    assert study_folder.default_snap(12, 1) == 2  # ticks 0, 2, ..., 12: the start and six more
    assert study_folder.default_snap(25000, 4) == 1042
    manifest, runs, _ = plan(compare, tmp_path / "s", kimg=None, tick=None, variants=["ce"], seeds=1)
    kimg = CFG_SPECS["tiny"].kimg  # the config's own length and tick when the study gives none
    snap = study_folder.default_snap(kimg, 1)
    assert 5 <= kimg / snap <= 7
    assert manifest["study"]["kimg"] == kimg and manifest["study"]["tick"] == 1 and manifest["study"]["snap"] == snap
    assert f"--kimg={kimg:g}" in runs[0].args and f"--snap={snap}" in runs[0].args


def test_changed_command_on_an_existing_study_is_refused_with_the_differences(compare, tmp_path):
    outdir = tmp_path / "s"
    manifest, _, _ = plan(compare, outdir)
    study_plan.open_study_folder(str(outdir), manifest, write=True)
    assert study_folder.read_manifest(str(outdir))["runs"] == manifest["runs"]
    same, _, _ = plan(compare, outdir)
    study_plan.open_study_folder(str(outdir), same, write=True)  # the same study: accepted
    result = invoke(
        compare,
        [
            f"--outdir={outdir}",
            "--variant=ce",
            "--variant=rlo --k=2",
            "--seeds=3",
            "--kimg=0.032",
            "--tick=0.008",
            f"--train-args={TINY}",
            f"--metric={METRIC}",
        ],
    )
    assert result.exit_code == 2
    assert "holds another study" in result.output and "kimg 0.024 there, 0.032 now" in result.output
    assert "A study grows only by seeds and variants" in result.output
    assert study_folder.read_manifest(str(outdir)) == manifest


def test_a_study_grows_by_seeds_and_variants_keeping_every_run_it_had(compare, tmp_path):
    outdir = tmp_path / "s"
    first, _, _ = plan(compare, outdir)  # ce, rlo-k2 x seeds 0-1
    study_plan.open_study_folder(str(outdir), first, write=True)
    more, _, _ = plan(compare, outdir, variants=["ce", "rlo --k=20"], seeds=3)
    grown = study_plan.open_study_folder(str(outdir), more, write=True)
    assert grown == study_folder.read_manifest(str(outdir))
    assert [v["label"] for v in grown["variants"]] == ["ce", "rlo-k2", "rlo-k20"]
    assert grown["study"]["seeds"] == [0, 1, 2]
    kept = {(r["variant"], r["seed"]): r for r in grown["runs"]}
    assert all(kept[(r["variant"], r["seed"])] == r for r in first["runs"])  # the old runs as they were
    expected = [(v, s) for v in ("ce", "rlo-k2", "rlo-k20") for s in (0, 1, 2) if (v, s) != ("rlo-k2", 2)]
    assert sorted(kept) == sorted(expected)  # rlo-k2 was not asked for again: its seeds stay 0-1
    assert grown["command"] == first["command"] and len(grown["extended_by"]) == 1
    again = study_plan.open_study_folder(str(outdir), first, write=True)  # the first command again: nothing shrinks
    assert again["runs"] == grown["runs"]


def test_a_label_with_other_switches_cannot_grow_a_study(compare, tmp_path):
    outdir = tmp_path / "s"
    first, _, _ = plan(compare, outdir)
    study_plan.open_study_folder(str(outdir), first, write=True)
    other, _, _ = plan(compare, outdir, variants=["ce", "name=rlo-k2 rlo --k=3"])
    with pytest.raises(click.UsageError, match=r"variant rlo-k2: --loss=rlo --k=2 there, --loss=rlo --k=3 now"):
        study_plan.open_study_folder(str(outdir), other, write=True)
    assert study_folder.read_manifest(str(outdir)) == first


def test_a_folder_that_is_not_a_study_is_refused(compare, tmp_path):
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "00000-old-run").mkdir()
    result = invoke(compare, [f"--outdir={tmp_path / 'runs'}", f"--metric={METRIC}", f"--train-args={TINY}"])
    assert result.exit_code == 2 and "is not a study folder" in result.output


def test_report_of_a_folder_without_manifest_names_it(compare, tmp_path):
    result = CliRunner().invoke(compare.cli, ["report", str(tmp_path)])
    assert result.exit_code == 1 and "holds no study.json" in result.output


def test_run_options_are_refused_with_the_report_subcommand(compare, tmp_path):
    result = CliRunner().invoke(compare.cli, ["--seeds=2", "report", str(tmp_path)])
    assert result.exit_code == 2 and "--seeds belongs to running a study" in result.output


# ----------------------------------------------------------------------------------------------------
# Pre-made runs: resume/skip planning and the stitched report.


@pytest.fixture(scope="module")
def tiny_snapshot(tmp_path_factory):
    """A snapshot with a tiny G_ema for the embedded digits (32x32 RGB), for the sample grid and the projection."""
    G = Generator(
        z_dim=8,
        c_dim=0,
        w_dim=8,
        img_resolution=32,
        img_channels=3,
        mapping_kwargs=dict(num_layers=1),
        synthesis_kwargs=dict(channel_base=32, channel_max=4),
    )
    path = tmp_path_factory.mktemp("snap") / "net.pt"
    checkpoint.save_snapshot(
        path,
        dict(G_ema=perturbed(G, seed=5)),
        training_set_kwargs=dict(path=None, resolution=32),
        resume_state=dict(cur_nimg=24, total_sec=31.0),
    )
    return path


class RunDir:
    """A hand-made train.py run directory: snapshots, stats.jsonl lines and metric lines."""

    def __init__(self, outdir, name, resume=None):
        self.path = outdir / name
        self.path.mkdir(parents=True)
        (self.path / "training_options.json").write_text(json.dumps({"resume": resume, "cfg": "tiny"}))

    def tick(self, nimg, total_sec, tick, sec_per_tick=2.0):
        with open(self.path / "stats.jsonl", "a") as file:
            file.write(
                json.dumps(
                    {
                        "Progress/kimg": {"mean": nimg / 1000},
                        "Progress/tick": {"mean": tick},
                        "Timing/total_sec": {"mean": total_sec},
                        "Timing/sec_per_tick": {"mean": sec_per_tick},
                    }
                )
                + "\n"
            )

    def snapshot(self, nimg, source, value=None):
        name = f"network-snapshot-{nimg // 1000:06d}-{nimg % 1000:03d}.pt"
        shutil.copy(source, self.path / name)
        if value is not None:
            with open(self.path / f"metric-{METRIC}.jsonl", "a") as file:
                file.write(json.dumps({"results": {METRIC: value}, "metric": METRIC, "snapshot_pkl": name}) + "\n")
        return f"{self.path.parent.relative_to(self.path.parents[3])}/{self.path.name}/{name}"


def premade_study(root, source):
    """Four runs (kimg 0.040, ticks of 8 images, snapshot every 2 ticks: at 8, 24 and 40 images):

    ce seed 0      killed during tick 4, a restart killed before its first snapshot, then finished from 24
    ce seed 1      killed between writing snapshot 24 and its stats line, resumed, finished
    rlo-k2 seed 0  killed while scoring snapshot 24
    rlo-k2 seed 1  not started
    """
    runs = [
        study_folder.PlannedRun(i, v, s, study_folder.run_outdir(v, s), ("--loss=ce",), 0.040, 0.008, "d")
        for i, (v, s) in enumerate([("ce", 0), ("rlo-k2", 0), ("ce", 1), ("rlo-k2", 1)])
    ]
    variants = [
        study_folder.Variant("ce", "ce", ("--loss=ce",)),
        study_folder.Variant("rlo-k2", "rlo --k=2", ("--loss=rlo", "--k=2")),
    ]
    study = dict(data=None, subset=200, kimg=0.04, tick=0.008, snap=2, metric=METRIC, seeds=[0, 1], train_args=[])
    root.mkdir(parents=True, exist_ok=True)
    study_folder.write_manifest(str(root), study_folder.manifest_dict(study, variants, runs, "compare.py --outdir=x"))

    out = root / "runs" / "ce" / "seed0"
    a = RunDir(out, "00000-digits32-ce")
    for nimg, sec, tick in [(8, 10.0, 0), (16, 20.0, 1), (24, 30.0, 2), (32, 40.0, 3)]:
        a.tick(nimg, sec, tick)
    a.snapshot(8, source, 900.0)
    resume = a.snapshot(24, source, 800.0)
    b = RunDir(out, "00001-digits32-ce-resume", resume)
    b.tick(32, 45.0, 3)  # killed before snapshot 40: not part of the run
    c = RunDir(out, "00002-digits32-ce-resume", resume)
    c.tick(32, 42.0, 3)
    c.tick(40, 52.0, 4)
    c.snapshot(40, source, 700.0)

    out = root / "runs" / "ce" / "seed1"
    a = RunDir(out, "00000-digits32-ce")
    a.tick(8, 11.0, 0)
    a.tick(16, 21.0, 1)
    a.snapshot(8, source, 910.0)
    resume = a.snapshot(24, source, 820.0)  # its stats line was never written: total_sec from the snapshot (31.0)
    b = RunDir(out, "00001-digits32-ce-resume", resume)
    b.tick(32, 40.0, 3)
    b.tick(40, 50.0, 4)
    b.snapshot(40, source, 650.0)

    out = root / "runs" / "rlo-k2" / "seed0"
    a = RunDir(out, "00000-digits32-rlo-k2")
    a.tick(8, 12.0, 0)
    a.tick(16, 22.0, 1)
    a.snapshot(8, source, 905.0)
    a.snapshot(24, source)  # no metric line: killed while scoring it
    return runs


def test_rerun_plans_skip_resume_score_and_start_from_the_files(compare, tmp_path, tiny_snapshot):
    runs = premade_study(tmp_path / "s", tiny_snapshot)
    jobs, finished = study_runner.plan_jobs(str(tmp_path / "s"), runs, METRIC, None, is_main=True)
    assert [(r.variant, r.seed) for r in finished] == [("ce", 0), ("ce", 1)]
    by_run = {(job.run.variant, job.run.seed): job for job in jobs}
    killed = by_run[("rlo-k2", 0)]
    latest = "runs/rlo-k2/seed0/00000-digits32-rlo-k2/network-snapshot-000000-024.pt"
    assert killed.action == "resume" and killed.start_nimg == 24
    assert killed.steps[0][1:] == [study_plan.CALC_METRICS_PY, f"--metrics={METRIC}", f"--network={latest}"]  # first
    assert killed.steps[1][1:] == [study_plan.TRAIN_PY, "--outdir=runs/rlo-k2/seed0", "--loss=ce", f"--resume={latest}"]
    new = by_run[("rlo-k2", 1)]
    assert new.action == "start" and new.steps == [
        [sys.executable, study_plan.TRAIN_PY, "--outdir=runs/rlo-k2/seed1", "--loss=ce"]
    ]
    jobs, _ = study_runner.plan_jobs(str(tmp_path / "s"), runs, METRIC, None, is_main=False)
    assert len([j for j in jobs if j.run.seed == 0][0].steps) == 1  # only the main process scores (torchrun)


def test_finished_run_whose_last_snapshot_is_unscored_is_only_scored(compare, tmp_path, tiny_snapshot):
    runs = premade_study(tmp_path / "s", tiny_snapshot)
    os.remove(tmp_path / "s" / "runs" / "ce" / "seed1" / "00001-digits32-ce-resume" / f"metric-{METRIC}.jsonl")
    jobs, finished = study_runner.plan_jobs(str(tmp_path / "s"), runs, METRIC, None, is_main=True)
    (job,) = [j for j in jobs if (j.run.variant, j.run.seed) == ("ce", 1)]
    assert job.action == "score" and len(job.steps) == 1 and job.steps[0][1] == study_plan.CALC_METRICS_PY


def test_chain_of_killed_and_resumed_run_dirs_is_stitched(tmp_path, tiny_snapshot):
    premade_study(tmp_path / "s", tiny_snapshot)
    chain = study_folder.run_chain(str(tmp_path / "s" / "runs" / "ce" / "seed0"))
    assert [os.path.basename(s.run_dir) for s in chain] == ["00000-digits32-ce", "00002-digits32-ce-resume"]
    assert [t.nimg for s in chain for t in s.ticks] == [8, 16, 24, 32, 40]  # dir 0's tick at 32 was redone
    results = study_report.read_study(str(tmp_path / "s"))
    run = results.runs[("ce", 0)]
    assert [(e.nimg, e.total_sec, e.value) for e in run.evaluations] == [
        (8, 10.0, 900.0),
        (24, 30.0, 800.0),
        (40, 52.0, 700.0),
    ]
    assert run.finished and run.best(results.goal).value == 700.0
    assert run.sec_per_kimg == pytest.approx(4 * 2.0 / 0.032)  # ticks 1-4, 2 s each, 32 images
    other = results.runs[("ce", 1)]
    assert [(e.nimg, e.total_sec) for e in other.evaluations] == [(8, 11.0), (24, 31.0), (40, 50.0)]
    assert results.runs[("rlo-k2", 0)].status == "partial" and not results.runs[("rlo-k2", 0)].finished
    assert results.runs[("rlo-k2", 1)].status == "new"


def test_report_of_premade_study(compare, tmp_path, tiny_snapshot):
    premade_study(tmp_path / "s", tiny_snapshot)
    path = study_pictures.make_report(str(tmp_path / "s"), proj_steps=0)
    folder = tmp_path / "s" / "report"
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
        assert (folder / name).is_file(), name
    text = open(path).read()
    assert "n = 2" in text and "Runs finished:** 2 of 4" in text and "rlo-k2 seed 0: at 0.024 of 0.04 kimg" in text
    with open(folder / "summary.csv") as file:
        rows = [r for r in csv.DictReader(file) if r["variant"] == "ce"]
    assert [float(r["kimg"]) for r in rows] == [0.008, 0.024, 0.04]
    low, high = scipy.stats.t.interval(0.95, 1, loc=675.0, scale=scipy.stats.sem([700.0, 650.0]))
    assert float(rows[-1]["mean"]) == 675.0 and float(rows[-1]["ci95_low"]) == pytest.approx(low)
    assert float(rows[-1]["ci95_high"]) == pytest.approx(high)
    with open(folder / "paired.csv") as file:
        assert list(csv.DictReader(file)) == []  # rlo-k2 has no finished run to pair with
    with PIL.Image.open(folder / "samples_seed0.png") as image:
        assert image.size[1] == 16 + 2 * 64  # a header line, one row per variant (32 px cells scaled to 64)


def test_report_projects_a_training_image_into_first_and_last_snapshots_when_vgg16_is_there(
    compare, tmp_path, tiny_snapshot
):
    vgg_path, _, _, _ = metrics_support.shared_vgg_files()
    premade_study(tmp_path / "s", tiny_snapshot)
    study_pictures.make_report(str(tmp_path / "s"), proj_steps=2, detector_dir=os.path.dirname(vgg_path))
    folder = tmp_path / "s" / "report"
    records = [json.loads(line) for line in (folder / "projection.jsonl").read_text().splitlines()]
    assert [r["label"] for r in records] == ["ce 0.008 kimg", "ce 0.04 kimg", "rlo-k2 0.008 kimg"]  # seed 0 runs
    assert all(r["num_steps"] == 2 and math.isfinite(r["lpips"]) for r in records)
    with PIL.Image.open(folder / "projection.png") as image:
        assert image.size == (3 * 128, 2 * (128 + 40))  # target + 2 columns, 2 rows (projector.compare_grid)
    assert "![projection](projection.png)" in (folder / "report.md").read_text()
    stamp = os.path.getmtime(folder / "projection_00.png")
    study_pictures.make_report(str(tmp_path / "s"), proj_steps=2, detector_dir=os.path.dirname(vgg_path))
    assert os.path.getmtime(folder / "projection_00.png") == stamp  # same networks and steps: not projected again


def test_report_without_vgg16_says_where_the_projection_went(compare, tmp_path, tiny_snapshot, no_detectors):
    premade_study(tmp_path / "s", tiny_snapshot)
    study_pictures.make_report(str(tmp_path / "s"))
    text = (tmp_path / "s" / "report" / "report.md").read_text()
    assert "Skipped: projector.py's LPIPS distance needs the VGG16 file" in text


def finished_study(root, source, values):
    """A study whose runs all finished: values[variant][seed] = (value at 8 images, value at 16 images)."""
    variants = [study_folder.Variant(v, v, ()) for v in values]
    seeds = list(range(len(next(iter(values.values())))))
    runs = [
        study_folder.PlannedRun(i, v.label, s, study_folder.run_outdir(v.label, s), (), 0.016, 0.008, "d")
        for i, (s, v) in enumerate((s, v) for s in seeds for v in variants)
    ]
    study = dict(data=None, subset=200, kimg=0.016, tick=0.008, snap=1, metric=METRIC, seeds=seeds, train_args=[])
    root.mkdir(parents=True)
    study_folder.write_manifest(str(root), study_folder.manifest_dict(study, variants, runs, "compare.py"))
    for run in runs:
        d = RunDir(root / run.outdir, "00000-x")
        for k, nimg in enumerate((8, 16)):
            d.tick(nimg, 10.0 * (k + 1), k)
            d.snapshot(nimg, source, values[run.variant][run.seed][k])


def test_paired_differences_are_seed_by_seed_with_their_t_interval(tmp_path, tiny_snapshot):
    values = {"ce": [(900, 500.0), (900, 520.0), (900, 480.0)], "rlo": [(900, 490.0), (900, 530.0), (800, 470.0)]}
    finished_study(tmp_path / "s", tiny_snapshot, values)
    results = study_report.read_study(str(tmp_path / "s"))
    (pair,) = study_report.paired_differences(results)
    assert pair.seeds == (0, 1, 2) and pair.final_diffs == (-10.0, 10.0, -10.0)
    assert pair.final_improved == 2  # fdd: lower is better
    low, high = scipy.stats.t.interval(0.95, 2, loc=np.mean([-10, 10, -10]), scale=scipy.stats.sem([-10, 10, -10]))
    assert pair.final.low == pytest.approx(low) and pair.final.high == pytest.approx(high)
    assert pair.best_diffs == (-10.0, 10.0, -10.0)
    text = study_report.render_markdown(results, {})
    assert "2 of 3" in text and "t = 4.303 for n = 3" in text and "wide" in text


def test_higher_is_better_metrics_count_increases_as_improvements(tmp_path):
    goal = study_report.metric_goal("is50k")
    assert goal.improved(0.5) and not goal.improved(-0.5)


# ----------------------------------------------------------------------------------------------------
# Devices.


def test_slots_group_visible_devices_by_gpus_per_run(compare, monkeypatch):
    monkeypatch.setattr(study_runner, "visible_cuda_ids", lambda: ["0", "1", "2", "3", "4"])
    assert study_runner.device_slots("auto", 1, None) == ["0", "1", "2", "3", "4"]
    assert study_runner.device_slots("auto", 2, None) == ["0,1", "2,3"]
    assert study_runner.device_slots("1,3", 1, None) == ["1", "3"]
    assert study_runner.device_slots("cpu", 1, None) == [None]
    with pytest.raises(Exception, match="no CUDA device 7"):
        study_runner.device_slots("1,7", 1, None)
    ctx = distributed.DistContext(rank=0, world_size=4, local_rank=0)
    assert study_runner.device_slots("auto", 1, ctx) == [None]  # torchrun: one run at a time over all processes


def test_runs_are_spread_one_per_device_side_by_side(compare, tmp_path):
    """Two jobs in two slots run at the same time, each with its own CUDA_VISIBLE_DEVICES."""
    study = tmp_path / "s"
    study.mkdir()
    record = (
        "import os, sys, time; start = time.time(); time.sleep(1.5); "
        'open(sys.argv[1], "w").write(f"{os.environ[\'CUDA_VISIBLE_DEVICES\']} {start} {time.time()}")'
    )
    jobs = []
    for i in range(2):
        run = study_folder.PlannedRun(i, f"v{i}", 0, f"runs/v{i}/seed0", (), 0.008, 0.008, "d")
        jobs.append(study_runner.Job(run, [[sys.executable, "-c", record, str(tmp_path / f"{i}.txt")]], "start", 0, ""))
    goal = study_report.metric_goal(METRIC)
    study_runner.Runner(str(study), jobs, ["3", "5"], 2, 0, None, None, goal, verbose=False).run()
    got = [open(tmp_path / f"{i}.txt").read().split() for i in range(2)]
    assert sorted(g[0] for g in got) == ["3", "5"]
    (a0, a1), (b0, b1) = [(float(g[1]), float(g[2])) for g in got]
    assert a0 < b1 and b0 < a1  # overlapping in time
    assert (study / "logs" / "v0-seed0.txt").is_file()


def test_a_second_compare_on_a_running_study_is_refused(compare, tmp_path):
    fd = study_plan.lock_study(str(tmp_path))
    try:
        with pytest.raises(Exception, match="another compare.py"):
            study_plan.lock_study(str(tmp_path))
    finally:
        os.close(fd)
    os.close(study_plan.lock_study(str(tmp_path)))


# ----------------------------------------------------------------------------------------------------
# A snapshot left unscored by a kill gets the number its run would have written.


def test_scoring_a_snapshot_afterwards_reproduces_the_runs_own_number(compare, tmp_path):
    """calc_metrics.py (what a rerun uses on a snapshot a kill left unscored) writes the line the run wrote: the
    metric is a function of the network, not of the RNG of the process that computes it."""
    calc_metrics = calc_metrics_command
    result = CliRunner().invoke(
        train_command.main,
        [
            f"--outdir={tmp_path}",
            "--kimg=0.016",
            "--tick=0.008",
            "--snap=1",
            f"--metrics={METRIC}",
            "--subset=200",
            *TINY.split(),
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    (run_dir,) = tmp_path.iterdir()
    path = run_dir / f"metric-{METRIC}.jsonl"
    written = {
        json.loads(line)["snapshot_pkl"]: json.loads(line)["results"][METRIC] for line in path.read_text().splitlines()
    }
    path.write_text("")
    for seed, name in enumerate(sorted(written)):
        torch.manual_seed(seed + 100)  # another process RNG than the run had
        result = CliRunner().invoke(
            calc_metrics.main, [f"--metrics={METRIC}", f"--network={run_dir / name}"], catch_exceptions=False
        )
        assert result.exit_code == 0, result.output
    rescored = {
        json.loads(line)["snapshot_pkl"]: json.loads(line)["results"][METRIC] for line in path.read_text().splitlines()
    }
    assert rescored == written and len(written) == 2


def test_a_metric_is_a_function_of_the_network_and_leaves_the_process_rng_alone():
    """G's random noise inputs are seeded per generator call like the latents (metrics.metric_utils.seeded_noise)."""
    from metrics import metric_main

    G = Generator(
        z_dim=8,
        c_dim=0,
        w_dim=8,
        img_resolution=32,
        img_channels=1,
        mapping_kwargs=dict(num_layers=1),
        synthesis_kwargs=dict(channel_base=32, channel_max=4),
    )
    G = perturbed(G, seed=9)
    kwargs = dict(G=G, dataset_kwargs=dict(path=None, resolution=32), num_gpus=1, rank=0, device=torch.device("cpu"))
    metric_main.calc_metric(metric="fdd16_full", **kwargs)  # builds and caches the detector
    values = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        before = torch.get_rng_state()
        values.append(metric_main.calc_metric(metric="fdd16_full", **kwargs).results["fdd16_full"])
        assert torch.equal(torch.get_rng_state(), before)
    assert values[0] == values[1]
    noise_free = metric_main.calc_metric(metric="fdd16_full", G_kwargs=dict(noise_mode="const"), **kwargs)
    assert noise_free.results["fdd16_full"] != values[0]  # the noise does reach the images


def test_report_keeps_the_studys_own_projection_steps(compare, tmp_path, monkeypatch):
    outdir = tmp_path / "s"
    manifest, _, _ = plan(compare, outdir)
    manifest["report"] = dict(proj_steps=0)  # as `compare.py --proj-steps=0 --outdir=...` records it
    study_plan.open_study_folder(str(outdir), manifest, write=True)
    seen = []
    monkeypatch.setattr(compare, "make_report", lambda study, proj_steps, **kw: seen.append(proj_steps) or "r.md")
    assert invoke(compare, ["report", str(outdir)]).exit_code == 0
    assert invoke(compare, ["report", str(outdir), "--proj-steps=5"]).exit_code == 0
    assert seen == [0, 5]


@pytest.mark.parametrize("bad", ['{"results": {"%s": NaN}', '{"results": {"%s": 1e999}', "not json"])
def test_a_damaged_metric_line_is_named_by_the_report_not_read_as_unfinished(compare, tmp_path, tiny_snapshot, bad):
    premade_study(tmp_path / "s", tiny_snapshot)
    path = tmp_path / "s" / "runs" / "ce" / "seed0" / "00000-digits32-ce" / f"metric-{METRIC}.jsonl"
    line = bad.replace("%s", METRIC) + (', "snapshot_pkl": "network-snapshot-000000-008.pt"}' if "{" in bad else "")
    with open(path, "a") as file:
        file.write(line + "\n")
    number = len(path.read_text().splitlines())
    result = invoke(compare, ["report", str(tmp_path / "s")])
    assert result.exit_code == 1 and f"{path}:{number}: " in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("outdir", ["../elsewhere/ce/seed0", "/tmp/ce/seed0"])
def test_a_manifest_whose_runs_leave_the_study_folder_is_refused(compare, tmp_path, outdir):
    manifest, _, _ = plan(compare, tmp_path / "s")
    manifest["runs"][0]["outdir"] = outdir
    study_plan.open_study_folder(str(tmp_path / "s"), manifest, write=True)
    result = invoke(compare, ["report", str(tmp_path / "s")])
    assert result.exit_code == 1 and "is not a path inside the study folder" in result.output
