"""calc_metrics.py: official jsonl lines beside the snapshot, --num-gen renaming, --run-dir scoring, offline error."""

from __future__ import annotations

import json
import os

import metrics_support as ms
import pytest
import torch
from click.testing import CliRunner
from conftest import tiny_g

from commands import calc_metrics_command as calc_metrics
from training.checkpoint import save_snapshot
from training.networks import Generator

TINY_G = tiny_g(32)
OFFICIAL_FIELDS = {"results", "metric", "total_time", "total_time_str", "num_gpus", "snapshot_pkl", "timestamp"}


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("RLO_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("DNNLIB_CACHE_DIR", str(tmp_path / "dnnlib"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("RLO_DETECTOR_DIR", raising=False)
    return tmp_path


@pytest.fixture
def run_dir(env):
    data = ms.write_image_folder(str(env / "data" / "tiny"), 5)
    run = env / "run"
    run.mkdir()
    torch.manual_seed(0)
    G = Generator(**TINY_G).eval()
    for kimg in (0, 4):
        save_snapshot(
            run / f"network-snapshot-{kimg:06d}.pt",
            dict(G=G, D=None, G_ema=G, augment_pipe=None),
            training_set_kwargs=dict(path=data, resolution=32, use_labels=False, xflip=False),
        )
    return run


def _lines(path):
    with open(path) as file:
        return [json.loads(line) for line in file]


def test_missing_detector_fails_before_loading_with_where_to_get_it(env):
    result = CliRunner().invoke(calc_metrics.main, ["--network", __file__, "--metrics", "fid50k_full"])
    assert result.exit_code != 0
    assert "inception-2015-12-05.pt" in result.output and "pt_inception-2015-12-05-6726825d.pth" in result.output
    assert str(env / "cache" / "detectors") in result.output and "Nothing is downloaded" in result.output
    assert (
        "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/inception-2015-12-05.pt"
        in result.output
    )


def test_bad_metric_name_is_rejected_with_the_valid_names(env):
    result = CliRunner().invoke(calc_metrics.main, ["--network", __file__, "--metrics", "fid50k_fulll"])
    assert result.exit_code == 2 and "fid50k_fulll" in result.output and "kid50k_full" in result.output


def test_network_writes_official_jsonl_beside_snapshot_and_num_gen_renames(run_dir):
    detector_dir = os.path.dirname(ms.shared_fid_file()[0])
    snapshot = run_dir / "network-snapshot-000004.pt"
    result = CliRunner().invoke(
        calc_metrics.main,
        ["--network", str(snapshot), "--metrics", "kid50k_full", "--num-gen", "2", "--detector-dir", detector_dir],
    )
    assert result.exit_code == 0, result.output
    lines = _lines(run_dir / "metric-kid2_full.jsonl")
    assert len(lines) == 1 and set(lines[0]) == OFFICIAL_FIELDS
    assert lines[0]["metric"] == "kid2_full" and lines[0]["snapshot_pkl"] == "network-snapshot-000004.pt"
    assert set(lines[0]["results"]) == {"kid2_full"} and lines[0]["num_gpus"] == 1
    assert "img/s" in result.output


def test_run_dir_scores_every_snapshot_once(run_dir):
    detector_dir = os.path.dirname(ms.shared_fid_file()[0])
    args = ["--run-dir", str(run_dir), "--metrics", "kid2_full", "--detector-dir", detector_dir]
    result = CliRunner().invoke(calc_metrics.main, args)
    assert result.exit_code == 0, result.output
    lines = _lines(run_dir / "metric-kid2_full.jsonl")
    assert [line["snapshot_pkl"] for line in lines] == ["network-snapshot-000000.pt", "network-snapshot-000004.pt"]
    again = CliRunner().invoke(calc_metrics.main, args)
    assert again.exit_code == 0 and "already scored" in again.output
    assert len(_lines(run_dir / "metric-kid2_full.jsonl")) == 2


def test_list_snapshots_orders_by_kimg_and_ignores_other_files(tmp_path):
    for name in (
        "network-snapshot-000100.pt",
        "network-snapshot-000020.pkl",
        "network-snapshot-x.pt",
        "network-snapshot-000000-496.pt",
        "network-snapshot-000000-008.pt",
        "fakes000020.png",
        "metric-fid50k_full.jsonl",
    ):
        (tmp_path / name).write_bytes(b"")
    assert [os.path.basename(p) for p in calc_metrics.list_snapshots(str(tmp_path))] == [
        "network-snapshot-000000-008.pt",
        "network-snapshot-000000-496.pt",
        "network-snapshot-000020.pkl",
        "network-snapshot-000100.pt",
    ]  # sub-kimg ticks add the images: -III


def test_digits_metric_on_a_face_dataset_is_refused_in_one_line(run_dir):
    result = CliRunner().invoke(
        calc_metrics.main, ["--network", str(run_dir / "network-snapshot-000004.pt"), "--metrics", "fdd2k_full"]
    )
    assert result.exit_code == 1
    assert "--metrics=fdd2k_full" in result.output and "inception-2015-12-05.pt" in result.output
    assert "Traceback" not in result.output
    assert not (run_dir / "metric-fdd2k_full.jsonl").exists()
