"""train.py: invalid flags fail before anything runs; dry run; run-directory naming; a 2-tick CPU run end to end."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import PIL.Image
import pytest
from click.testing import CliRunner

from commands import train_command, train_flags

REPO = pathlib.Path(__file__).resolve().parents[1]
TINY = ["--cbase=128", "--cmax=16", "--batch=8", "--workers=0", "--metrics=none"]


@pytest.fixture(scope="module")
def train():
    return train_command


def invoke(train, args):
    return CliRunner().invoke(train.main, args, catch_exceptions=False)


@pytest.fixture
def unlabeled_folder(tmp_path):
    folder = tmp_path / "faces"
    folder.mkdir()
    rng = np.random.RandomState(0)
    for i in range(4):
        PIL.Image.fromarray(rng.randint(0, 256, [16, 16, 3], dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


@pytest.mark.parametrize(
    "args, message",
    [
        (["--aug=ada", "--p=0.2"], "--p can only be given with --aug=fixed"),
        (["--aug=fixed"], "--aug=fixed needs --p"),
        (["--aug=fixed", "--p=1.5"], "Invalid value for '--p': 1.5 is out of range: it must be >= 0 and <= 1"),
        (["--aug=fixed", "--p=0.1", "--target=0.5"], "--target can only be given with --aug=ada"),
        (["--aug=noaug", "--augpipe=bgc"], "--augpipe cannot be given with --aug=noaug"),
        (["--loss=ce", "--k=3"], "--k and --m set the rooted losses"),
        (["--loss=rlo", "--k=-1"], "Invalid value for '--k': -1 is out of range: it must be > 0"),
        (["--loss=rlo", "--m=0"], "Invalid value for '--m': 0 is out of range: it must be > 0"),
        (["--gpus=3"], "--gpus must be a power of two"),
        (["--batch=10", "--batch-gpu=4"], "--batch=10 must be a multiple of --batch-gpu=4"),
        (["--batch=12", "--mbstd-group=8"], "multiple of the minibatch-stddev group"),
        (["--subset=0"], "--subset must be at least 1"),
        (["--subset=100000"], "--subset=100000 exceeds the 1797 images"),
        (["--gamma=-1"], "Invalid value for '--gamma': -1 is out of range: it must be >= 0"),
        (["--kimg=0"], "Invalid value for '--kimg': 0 is out of range: it must be > 0"),
        (["--snap=0"], "Invalid value for '--snap': 0 is not in the range x>=1"),
        (["--metrics=fid1m_bogus"], "unknown metric 'fid1m_bogus'"),
        (["--data=/no/such/dataset.zip"], "/no/such/dataset.zip"),
        (["--resume=/no/such/snapshot.pt"], "/no/such/snapshot.pt"),
    ],
)
def test_invalid_flags_fail_before_anything_runs(train, tmp_path, args, message):
    outdir = tmp_path / "runs"
    result = invoke(train, [f"--outdir={outdir}", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not outdir.exists()


def test_cond_without_labels_is_refused_naming_the_dataset(train, tmp_path, unlabeled_folder):
    result = invoke(train, [f"--outdir={tmp_path / 'runs'}", f"--data={unlabeled_folder}", "--cond=1"])
    assert result.exit_code == 2
    assert "--cond=1 requires labels" in result.output and str(unlabeled_folder) in result.output


def test_dry_run_prints_options_and_picks_tiny_config_on_cpu(train, tmp_path):
    result = invoke(train, [f"--outdir={tmp_path / 'runs'}", "--dry-run", "--loss=rlo", "--k=2", "--mirror=1"])
    assert result.exit_code == 0, result.output
    text = result.output
    options = json.loads(text[text.index("{") : text.index("\n}\n") + 2])
    assert options["cfg"] == "tiny"
    assert options["loss"]["adversarial"]["name"] == "rlo" and options["loss"]["adversarial"]["k"] == 2
    assert options["data"]["xflip"] is True and options["data"]["resolution"] == 32
    assert options["G_kwargs"]["z_dim"] == 64
    assert options["metrics"] == ["fdd2k_full"]  # the offline digits metric: no downloads needed
    assert "Dry run; exiting." in text
    assert not (tmp_path / "runs").exists()


def test_readmes_first_command_is_the_conditional_tiny_run_it_describes(train, tmp_path):
    first = (REPO / "README.md").read_text(encoding="utf-8").split("```bash\n", 1)[1].splitlines()[0]
    words = first.split("&&")[-1].split()
    assert words[:2] == ["python3", "train.py"] and "--outdir=runs" in words
    flags = [w for w in words[2:] if not w.startswith("--outdir")]
    result = invoke(train, [f"--outdir={tmp_path / 'runs'}", *flags, "--dry-run"])
    assert result.exit_code == 0, result.output
    text = result.output
    options = json.loads(text[text.index("{") : text.index("\n}\n") + 2])
    assert options["cfg"] == "tiny" and options["data"]["use_labels"] is True
    assert options["G_kwargs"]["c_dim"] == 10 and options["D_kwargs"]["c_dim"] == 10


def test_config_table_and_overrides(train):
    opts, desc = train_flags.setup_training_options(
        cfg="paper256",
        cuda=False,
        glr=0.001,
        dlr=0.004,
        cbase=8192,
        cmax=256,
        map_depth=3,
        mbstd_group=2,
        gamma=0.5,
        batch=16,
        loss="rlo-eq9",
        k=3,
        m=5,
        aug="noaug",
        metrics="none",
    )
    assert opts.G_opt.lr == 0.001 and opts.D_opt.lr == 0.004
    assert opts.G_kwargs["synthesis_kwargs"]["channel_base"] == 8192 == opts.D_kwargs["channel_base"]
    assert opts.G_kwargs["synthesis_kwargs"]["channel_max"] == 256
    assert opts.G_kwargs["mapping_kwargs"]["num_layers"] == 3
    assert opts.D_kwargs["epilogue_kwargs"]["mbstd_group_size"] == 2
    assert opts.loss.r1_gamma == 0.5 and opts.batch_size == 16 and opts.batch_gpu == 16
    assert opts.G_kwargs["synthesis_kwargs"]["num_fp16_res"] == 4  # paper configs train in mixed precision
    assert desc == "digits32-paper256-batch16-rlo-eq9-k3-m5-gamma0.5-noaug"
    cifar, _ = train_flags.setup_training_options(cfg="cifar", cuda=False, fp32=True, metrics="none")
    assert cifar.loss.pl_weight == 0 and cifar.loss.style_mixing_prob == 0
    assert cifar.D_kwargs["architecture"] == "orig" and cifar.batch_gpu == 32
    assert cifar.G_kwargs["synthesis_kwargs"]["num_fp16_res"] == 0
    assert opts.repair_nonfinite_grads and not cifar.repair_nonfinite_grads  # only mixed precision repairs


def test_detector_dir_is_searched_for_metric_weights_and_passed_to_the_loop(train, tmp_path, monkeypatch):
    from metrics_support import save_pytorch_fid_file

    monkeypatch.setenv("RLO_DETECTOR_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("RLO_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("DNNLIB_CACHE_DIR", str(tmp_path / "dnnlib"))
    with pytest.raises(train_flags.UserError, match="pt_inception-2015-12-05"):
        train_flags.setup_training_options(cuda=False, metrics="kid50k_full")
    (tmp_path / "det").mkdir()
    save_pytorch_fid_file(str(tmp_path / "det"))
    opts, _ = train_flags.setup_training_options(cuda=False, metrics="kid50k_full", detector_dir=str(tmp_path / "det"))
    assert opts.detector_dir == str(tmp_path / "det") and opts.metrics == ["kid50k_full"]


def test_run_directories_are_numbered_after_the_highest_existing(train, tmp_path):
    (tmp_path / "00007-old").mkdir()
    (tmp_path / "00002-other").mkdir()
    (tmp_path / "00009-a-file").write_text("not a run")
    assert train.next_run_dir(str(tmp_path), "digits32-tiny-ce-noaug") == str(tmp_path / "00008-digits32-tiny-ce-noaug")
    assert train.next_run_dir(str(tmp_path / "missing"), "x").endswith("00000-x")


def test_two_tick_cpu_run_leaves_snapshot_grid_and_logs(tmp_path):
    outdir = tmp_path / "runs"
    cmd = [
        sys.executable,
        str(REPO / "train.py"),
        f"--outdir={outdir}",
        "--kimg=0.024",
        "--tick=0.016",
        "--snap=1",
        "--loss=rlo",
        "--k=2",
        *TINY,
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    (run,) = outdir.iterdir()
    assert run.name == "00000-digits32-tiny-batch8-rlo-k2-kimg0.024-noaug"
    for name in [
        "training_options.json",
        "log.txt",
        "stats.jsonl",
        "reals.png",
        "fakes_init.png",
        "fakes000000-008.png",
        "fakes000000-024.png",
        "network-snapshot-000000-024.pt",
    ]:
        assert (run / name).is_file(), name
    stats = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    assert [s["Progress/tick"]["mean"] for s in stats] == [0, 1]  # tick 0 is the first step, as in the official loop
    assert "tick 1" in (run / "log.txt").read_text()
    with PIL.Image.open(run / "fakes000000-024.png") as grid:
        assert grid.size == (16 * 32, 16 * 32)


def read_stats_by_tick(run):
    stats = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    return {
        int(s["Progress/tick"]["mean"]): {k: v for k, v in s.items() if k.startswith(("Loss/", "Progress/"))}
        for s in stats
    }


@pytest.mark.slow
@pytest.mark.parametrize(
    "switches",
    [[], ["--pairing=relativistic", "--lecam=0.001", "--r2=0.5", "--aug=diffaug"]],
    ids=["rlo", "rlo-rel-lecam-r2-diffaug"],
)
def test_sigkilled_run_resumed_from_its_snapshot_matches_an_uninterrupted_run(tmp_path, switches):
    import signal
    import time

    import torch

    from training import checkpoint

    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    common = [
        sys.executable,
        str(REPO / "train.py"),
        "--tick=0.032",
        "--snap=1",
        "--seed=1",
        "--loss=rlo",
        *TINY,
        *switches,
    ]
    total = ["--kimg=0.104"]  # ticks end at 8, 40, 72, 104 images

    straight = subprocess.run(
        [*common, *total, f"--outdir={tmp_path / 'straight'}"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert straight.returncode == 0, straight.stderr[-2000:]

    # A long run, killed with SIGKILL as soon as a snapshot from tick >= 1 exists.
    killed = subprocess.Popen(
        [*common, "--kimg=10", f"--outdir={tmp_path / 'killed'}"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    # Killed first, then resumed from its latest snapshot: the only one that keeps the optimizer state.
    snapshots, deadline = [], time.time() + 600
    try:
        while time.time() < deadline and killed.poll() is None and len(snapshots) < 2:
            snapshots = sorted((tmp_path / "killed").glob("*/network-snapshot-*.pt"))
            time.sleep(0.02)
    finally:
        killed.send_signal(signal.SIGKILL)
        killed.wait()
    snapshots = sorted((tmp_path / "killed").glob("*/network-snapshot-*.pt"))
    snapshot = snapshots[-1] if len(snapshots) >= 2 else None
    assert snapshot is not None, "the run to be killed never wrote a snapshot"
    resumed_from = checkpoint.load_network(snapshot)["resume_state"]["cur_nimg"]
    assert resumed_from < 104, "killed too late to test anything"

    resumed = subprocess.run(
        [*common, *total, f"--resume={snapshot}", f"--outdir={tmp_path / 'resumed'}"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]

    (run_a,) = (tmp_path / "straight").iterdir()
    (run_c,) = (tmp_path / "resumed").iterdir()
    want, got = read_stats_by_tick(run_a), read_stats_by_tick(run_c)
    assert sorted(got) == [t for t in sorted(want) if t >= 2 and want[t]["Progress/kimg"]["mean"] * 1000 > resumed_from]
    for tick, stats in got.items():
        assert stats == want[tick], f"tick {tick}"
    a = checkpoint.load_network(run_a / "network-snapshot-000000-104.pt")
    c = checkpoint.load_network(run_c / "network-snapshot-000000-104.pt")
    for name in ["G", "D", "G_ema", "augment_pipe"]:
        if a[name] is None:  # DiffAugment: no state to compare
            assert c[name] is None
            continue
        for (key, x), y in zip(a[name].state_dict().items(), c[name].state_dict().values()):
            assert torch.equal(x, y), f"{name}.{key}"
    assert a["resume_state"]["cur_nimg"] == c["resume_state"]["cur_nimg"] == 104
    for want, got in zip(a["resume_state"]["loss_state"], c["resume_state"]["loss_state"]):  # LeCam anchors too
        assert torch.equal(want["pl_mean"], got["pl_mean"])
        assert (want["lecam"] is None) == (got["lecam"] is None) == (switches == [])
        if want["lecam"] is not None:
            assert torch.equal(want["lecam"]["biased"], got["lecam"]["biased"])
            assert torch.equal(want["lecam"]["steps"], got["lecam"]["steps"])
