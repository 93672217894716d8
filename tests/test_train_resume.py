"""train.py --resume: a snapshot continues its own run; misfits are refused before a run directory exists."""

import json
import multiprocessing

import numpy as np
import PIL.Image
import pytest
from click.testing import CliRunner
from conftest import TINY_TRAIN

from commands import train_command
from training import checkpoint, options

TINY = [*TINY_TRAIN, "--tick=0.008", "--snap=1"]


@pytest.fixture(scope="module")
def train():
    return train_command


def invoke(train, args):
    return CliRunner().invoke(train.main, [str(a) for a in args], catch_exceptions=False)


def image_folder(folder, size, count=8):
    folder.mkdir(parents=True)
    rng = np.random.RandomState(size)
    for i in range(count):
        PIL.Image.fromarray(rng.randint(0, 256, [size, size, 3], dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


def printed_options(output):
    return json.loads(output[output.index("{") : output.index("\n}\n") + 2])


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, train):
    """An rlo-k2 run on a 16x16 folder, seed 7, 16 images: snapshots after 8 and 16 images."""
    root = tmp_path_factory.mktemp("resume")
    data = image_folder(root / "faces16", 16)
    result = invoke(
        train,
        [
            f"--outdir={root / 'runs'}",
            f"--data={data}",
            "--loss=rlo",
            "--k=2",
            "--seed=7",
            "--kimg=0.016",
            "--aug=noaug",
            *TINY,
        ],
    )
    assert result.exit_code == 0, result.output
    (run,) = (root / "runs").iterdir()
    return dict(
        root=root,
        data=data,
        run=run,
        first=run / "network-snapshot-000000-008.pt",
        last=run / "network-snapshot-000000-016.pt",
    )


def test_resume_without_flags_continues_the_run_that_wrote_the_snapshot(train, finished_run, tmp_path):
    result = invoke(train, [f"--outdir={tmp_path / 'runs'}", f"--resume={finished_run['first']}", "--dry-run"])
    assert result.exit_code == 0, result.output
    opts = printed_options(result.output)
    assert opts["data"]["path"] == str(finished_run["data"])
    assert opts["loss"]["adversarial"]["name"] == "rlo" and opts["loss"]["adversarial"]["k"] == 2
    assert opts["random_seed"] == 7 and opts["augment"]["mode"] == "noaug" and opts["total_kimg"] == 0.016
    assert opts["G_kwargs"]["synthesis_kwargs"]["channel_base"] == 64
    assert "Note:" not in result.output  # nothing changes


def test_resume_with_another_loss_is_announced_in_one_line(train, finished_run, tmp_path):
    result = invoke(
        train,
        [f"--outdir={tmp_path / 'runs'}", f"--resume={finished_run['first']}", "--loss=ce", "--gamma=0.5", "--dry-run"],
    )
    assert result.exit_code == 0, result.output
    assert "Note: resuming an rlo-k2 run with --loss=ce: the loss changes at kimg 0.008" in result.output
    used = f"{options.CFG_SPECS['tiny'].gamma:g}"  # the finished run took the tiny config's R1 weight
    assert (
        f"Note: resuming with --gamma=0.5 (the run used {used}): the R1 weight changes at kimg 0.008" in result.output
    )
    assert printed_options(result.output)["loss"]["adversarial"]["name"] == "ce"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--data={other32}"], "img_resolution 16 vs 32"),
        (["--cbase=128"], "synthesis_kwargs.channel_base 64 vs 128"),
        (["--cfg=cifar"], "z_dim 64 vs 512"),
    ],
)
def test_snapshot_that_does_not_fit_is_refused_before_a_run_directory_exists(
    train, finished_run, tmp_path, args, message
):
    other = image_folder(tmp_path / "faces32", 32)
    outdir = tmp_path / "runs"
    result = invoke(
        train, [f"--outdir={outdir}", f"--resume={finished_run['first']}", *[arg.format(other32=other) for arg in args]]
    )
    assert result.exit_code == 2
    assert message in result.output and "does not fit this run (snapshot vs run:" in result.output
    assert "Traceback" not in result.output
    assert not outdir.exists()


def test_snapshot_already_past_kimg_trains_nothing(train, finished_run, tmp_path):
    outdir = tmp_path / "runs"
    result = invoke(train, [f"--outdir={outdir}", f"--resume={finished_run['last']}"])
    assert result.exit_code == 0
    assert "already at or past --kimg=0.016: nothing to train" in result.output
    assert not outdir.exists()


def test_resumed_run_continues_elapsed_time_and_names(train, finished_run, tmp_path):
    stored = checkpoint.load_network(finished_run["first"])["resume_state"]
    assert stored["total_sec"] > 0
    result = invoke(train, [f"--outdir={tmp_path / 'runs'}", f"--resume={finished_run['first']}"])
    assert result.exit_code == 0, result.output
    (run,) = (tmp_path / "runs").iterdir()
    assert run.name == finished_run["run"].name + "-resume"
    stats = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    assert stats[0]["Progress/kimg"]["mean"] == pytest.approx(0.016)
    assert stats[0]["Timing/total_sec"]["mean"] > stored["total_sec"]
    # The first tick's maintenance is this process's set-up, not the elapsed time carried over.
    this_process = stats[0]["Timing/total_sec"]["mean"] - stored["total_sec"]
    assert stats[0]["Timing/maintenance_sec"]["mean"] <= this_process
    assert (
        checkpoint.load_network(run / "network-snapshot-000000-016.pt")["resume_state"]["total_sec"]
        > stored["total_sec"]
    )


@pytest.mark.parametrize(
    "flag", ["--glr", "--dlr", "--gamma", "--kimg", "--tick", "--k", "--m", "--blur", "--p", "--target"]
)
@pytest.mark.parametrize("value", ["nan", "inf", "-1"])
def test_non_finite_or_negative_float_flags_are_refused_before_anything_is_written(train, tmp_path, flag, value):
    outdir = tmp_path / "runs"
    result = invoke(train, [f"--outdir={outdir}", f"{flag}={value}"])
    assert result.exit_code == 2
    assert f"Invalid value for '{flag}'" in result.output
    assert not outdir.exists()


@pytest.mark.parametrize("seed", ["-1", str(2**32), "1e3"])
def test_seed_outside_the_numpy_range_is_refused(train, tmp_path, seed):
    result = invoke(train, [f"--outdir={tmp_path / 'runs'}", f"--seed={seed}"])
    assert result.exit_code == 2 and "Invalid value for '--seed'" in result.output


def test_large_config_on_a_cpu_only_machine_warns_with_the_expected_cost(train, tmp_path):
    result = invoke(train, [f"--outdir={tmp_path / 'runs'}", "--cfg=paper256", "--metrics=none", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "Warning: no CUDA device: --cfg=paper256" in result.output and "s/kimg" in result.output
    quiet = invoke(train, [f"--outdir={tmp_path / 'runs'}", "--dry-run"])
    assert "Warning: no CUDA device" not in quiet.output


def test_unwritable_outdir_is_one_line_naming_it(train, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = invoke(train, [f"--outdir={blocker / 'runs'}", *TINY])
    assert result.exit_code == 2
    assert f"--outdir={blocker / 'runs'}: cannot create the run directory there" in result.output
    assert "Traceback" not in result.output


def test_snapshot_names_are_unique_for_ticks_shorter_than_one_kimg(train):
    from training.training_loop import snapshot_name

    fine = [snapshot_name(nimg, kimg_per_tick=0.25) for nimg in range(8, 4000, 8)]
    assert len(set(fine)) == len(fine)
    assert snapshot_name(496, 0.25) == "network-snapshot-000000-496.pt"
    assert snapshot_name(12000, 4) == "network-snapshot-000012.pt"  # StyleGAN2-ADA's names otherwise
    ends = [snapshot_name(nimg, 1, total_kimg=12.5) for nimg in (12096, 12512)]  # last tick and the end, kimg 12
    assert ends == ["network-snapshot-000012-096.pt", "network-snapshot-000012-512.pt"]


def _make_run_dir(args):
    outdir, desc = args
    train = train_command
    from training.options import TrainingOptions

    opts = TrainingOptions()
    train.create_run_dir(opts, outdir, desc)
    return opts.run_dir


def test_processes_started_together_get_distinct_run_numbers(tmp_path):
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        dirs = pool.map(_make_run_dir, [(str(tmp_path), "same-desc")] * 8)
    numbers = sorted(int(d.rsplit("/", 1)[-1][:5]) for d in dirs)
    assert numbers == list(range(8))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(d.rsplit("/", 1)[-1] for d in dirs)


def test_truncated_image_is_refused_before_a_run_directory_exists(train, tmp_path):
    data = image_folder(tmp_path / "faces", 16)
    png = data / "3.png"
    png.write_bytes(png.read_bytes()[:60])
    outdir = tmp_path / "runs"
    result = invoke(train, [f"--outdir={outdir}", f"--data={data}", *TINY])
    assert result.exit_code == 2
    assert "3.png" in result.output and "Traceback" not in result.output
    assert not outdir.exists()


def test_image_that_fails_mid_run_stops_with_one_line_and_the_last_snapshot_usable(train, tmp_path, monkeypatch):
    from training.dataset import DatasetError, ImageFolderDataset

    data = image_folder(tmp_path / "faces", 16)
    original, outdir = ImageFolderDataset._load_raw_image, tmp_path / "runs"

    def fails_later(self, raw_idx):
        if list(outdir.glob("*/network-snapshot-*.pt")):  # the file breaks after the first snapshot
            raise DatasetError(f"{data / '5.png'}: truncated image file; re-create it or remove it")
        return original(self, raw_idx)

    monkeypatch.setattr(ImageFolderDataset, "_load_raw_image", fails_later)
    result = CliRunner().invoke(train.main, [f"--outdir={outdir}", f"--data={data}", "--kimg=1", *TINY])
    assert result.exit_code == 1, result.output
    assert f"Training stopped: {data / '5.png'}: truncated image file" in result.output
    assert "Traceback" not in result.output
    (run,) = outdir.iterdir()
    snapshots = sorted(run.glob("network-snapshot-*.pt"))
    assert snapshots and checkpoint.load_network(snapshots[-1])["G"] is not None


def test_digits_metric_on_other_data_is_refused_before_a_run_directory_exists(train, tmp_path):
    data = image_folder(tmp_path / "faces", 16)
    outdir = tmp_path / "runs"
    result = invoke(train, [f"--outdir={outdir}", f"--data={data}", *TINY[:3], "--metrics=fdd2k_full"])
    assert result.exit_code == 2
    assert "--metrics=fdd2k_full" in result.output and "inception-2015-12-05.pt" in result.output
    assert not outdir.exists()


def test_resume_removes_the_half_written_files_of_the_killed_run(train, finished_run, tmp_path):
    import shutil

    run = tmp_path / finished_run["run"].name
    shutil.copytree(finished_run["run"], run)
    leftover = run / ".network-snapshot-000000-016.pt.x1y2z3w4.tmp"
    leftover.write_bytes(b"PK\x03\x04 half a snapshot")
    keep = run / ".notes.tmp"  # not the writer's pattern
    keep.write_text("mine")
    result = invoke(train, [f"--outdir={tmp_path / 'runs'}", f"--resume={run / 'network-snapshot-000000-008.pt'}"])
    assert result.exit_code == 0, result.output
    assert f"Removed {leftover}, left by a write that was killed" in result.output
    assert not leftover.exists() and keep.exists()


def test_resuming_on_changed_data_says_what_changed_before_training(train, tmp_path):
    data = image_folder(tmp_path / "faces", 16)
    first = invoke(train, [f"--outdir={tmp_path / 'runs'}", f"--data={data}", "--kimg=0.008", *TINY])
    assert first.exit_code == 0, first.output
    (run,) = (tmp_path / "runs").iterdir()
    snapshot = run / "network-snapshot-000000-008.pt"
    same = invoke(train, [f"--outdir={tmp_path / 'same'}", f"--resume={snapshot}", "--kimg=0.016", "--dry-run"])
    assert same.exit_code == 0 and "changed since the snapshot" not in same.output
    rng = np.random.RandomState(99)
    for path in sorted(data.iterdir())[:3]:  # same names and shape, other pixels
        PIL.Image.fromarray(rng.randint(0, 256, [16, 16, 3], dtype=np.uint8)).save(path)
    PIL.Image.fromarray(rng.randint(0, 256, [16, 16, 3], dtype=np.uint8)).save(data / "extra.png")
    result = invoke(train, [f"--outdir={tmp_path / 'again'}", f"--resume={snapshot}", "--kimg=0.016", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert (
        f"Note: the data at {data} changed since the snapshot (8 -> 9 images, other image names, other pixels in "
        "the sampled images): training continues on the new images at kimg 0.008" in result.output
    )
