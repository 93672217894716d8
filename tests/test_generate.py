"""generate.py reproduces the images official StyleGAN2-ADA's generate.py makes from the same weights and seeds."""

import errno
import pathlib

import numpy as np
import PIL.Image
import pytest
import torch
from click.testing import CliRunner
from conftest import shared_path

from commands import generate_command
from training import checkpoint, sampling
from training.networks import Generator

REPO = pathlib.Path(__file__).resolve().parents[1]
REF_DIR = ("data", "sg2ada_ref")


@pytest.fixture(scope="module")
def generate():
    return generate_command


@pytest.fixture
def official_snapshot(tmp_path):
    """The fixture's official weights (G_ema) saved as one of our snapshots."""
    ref = torch.load(shared_path(*REF_DIR, "tiny-G_state_dict.pt"), weights_only=True)
    G_ema = Generator(**ref["G_kwargs"])
    G_ema.load_state_dict(ref["G_ema"])
    path = tmp_path / "official.pt"
    checkpoint.save_snapshot(path, dict(G_ema=G_ema))
    return path


def read_png(path):
    with PIL.Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def run(generate, args):
    return CliRunner().invoke(generate.main, args, catch_exceptions=False)


def test_seed_images_match_official_output(generate, official_snapshot, tmp_path):
    result = run(generate, [f"--network={official_snapshot}", "--seeds=0-3", f"--outdir={tmp_path / 'out'}"])
    assert result.exit_code == 0, result.output
    want = np.load(shared_path(*REF_DIR, "img_G_ema_uint8.npy"))  # [4, 32, 32, 3], official generate.py output
    got = np.stack([read_png(tmp_path / "out" / f"seed{s:04d}.png") for s in range(4)])
    diff = np.abs(got.astype(int) - want.astype(int))
    assert diff.max() <= 1  # independent float summation order may flip a rounding
    assert (diff == 0).mean() > 0.99
    grid = read_png(tmp_path / "out" / "grid.png")
    assert grid.shape == (32, 4 * 32, 3)
    np.testing.assert_array_equal(grid[:, 64:96], got[2])


def test_truncation_matches_official_psi_0_7(generate, official_snapshot, tmp_path):
    result = run(
        generate, [f"--network={official_snapshot}", "--seeds=1,3", "--trunc=0.7", f"--outdir={tmp_path / 'out'}"]
    )
    assert result.exit_code == 0, result.output
    raw = np.load(shared_path(*REF_DIR, "img_G_ema_psi0.7.npy"))  # [4, 3, 32, 32] float
    want = np.clip(raw.transpose(0, 2, 3, 1) * 127.5 + 128, 0, 255).astype(np.uint8)
    for seed in (1, 3):
        got = read_png(tmp_path / "out" / f"seed{seed:04d}.png")
        assert np.abs(got.astype(int) - want[seed].astype(int)).max() <= 1


def test_grid_pads_to_full_rows_of_eight(generate, tmp_path):
    images = np.full([10, 4, 4, 3], 200, dtype=np.uint8)
    paths = generate.save_outputs(images, [f"img{i}" for i in range(10)], str(tmp_path))
    grid = read_png(paths[-1])
    assert grid.shape == (2 * 4, 8 * 4, 3)
    assert (grid[4:, 8:] == 0).all() and (grid[:4] == 200).all()


@pytest.mark.parametrize("text, want", [("0-3", [0, 1, 2, 3]), ("5", [5]), ("1,4-5,2", [1, 4, 5, 2])])
def test_seed_ranges(generate, text, want):
    assert sampling.parse_range(text) == want


@pytest.mark.parametrize(
    "args, message",
    [
        (["--seeds=3-1"], "runs backwards"),
        (["--seeds=a"], "'a' is not a non-negative integer"),
        (["--seeds=0", "--class=2"], "network is unconditional"),
        (["--seeds=0", "--trunc=nan"], "Invalid value for '--trunc': 'nan' is not a finite number"),
        (["--seeds=0", "--trunc=inf"], "Invalid value for '--trunc': 'inf' is not a finite number"),
        (["--seeds=0", "--trunc=1e38"], "--trunc=1e+38 with seed 0 gives non-finite images"),
        (["--seeds=4294967296"], "seed 4294967296 is outside [0, 4294967295]"),
        (["--seeds=0-999999999999999"], "is outside [0, 4294967295]"),
        (["--seeds=0-100000000"], "100000001 seeds; one run writes at most 100000 images"),
    ],
)
def test_bad_arguments_are_named(generate, official_snapshot, tmp_path, args, message):
    result = run(generate, [f"--network={official_snapshot}", f"--outdir={tmp_path / 'out'}", *args])
    assert result.exit_code == 2
    assert message in result.output
    assert not (tmp_path / "out").exists()  # nothing written (no all-black PNGs)


def test_conditional_network_needs_a_valid_class(generate, tmp_path):
    G = Generator(
        z_dim=8,
        c_dim=3,
        w_dim=8,
        img_resolution=8,
        img_channels=3,
        mapping_kwargs=dict(num_layers=1),
        synthesis_kwargs=dict(channel_base=32, channel_max=4),
    )
    path = tmp_path / "cond.pt"
    checkpoint.save_snapshot(path, dict(G_ema=G))
    assert "pass --class=<0..2>" in run(generate, [f"--network={path}", "--seeds=0", f"--outdir={tmp_path}"]).output
    assert (
        "outside 0..2" in run(generate, [f"--network={path}", "--seeds=0", "--class=3", f"--outdir={tmp_path}"]).output
    )
    result = run(generate, [f"--network={path}", "--seeds=0-1", "--class=2", f"--outdir={tmp_path / 'ok'}"])
    assert result.exit_code == 0 and (tmp_path / "ok" / "seed0001.png").is_file()


def test_missing_network_file_is_named(generate, tmp_path):
    result = run(generate, ["--network=/no/such/net.pt", "--seeds=0", f"--outdir={tmp_path}"])
    assert result.exit_code == 2 and "/no/such/net.pt" in result.output


def test_projected_w_renders_the_ws_like_the_synthesis_network(generate, tmp_path):
    G = Generator(
        z_dim=8,
        c_dim=0,
        w_dim=8,
        img_resolution=8,
        img_channels=3,
        mapping_kwargs=dict(num_layers=1),
        synthesis_kwargs=dict(channel_base=32, channel_max=4),
    ).eval()
    network = tmp_path / "net.pt"
    checkpoint.save_snapshot(network, dict(G_ema=G))
    with torch.no_grad():
        ws = G.mapping(torch.randn(2, 8), None)
        want = (G.synthesis(ws, noise_mode="const").permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8)
    np.savez(tmp_path / "projected_w.npz", w=ws.numpy())
    result = run(
        generate,
        [f"--network={network}", f"--projected-w={tmp_path / 'projected_w.npz'}", f"--outdir={tmp_path / 'out'}"],
    )
    assert result.exit_code == 0, result.output
    for i in range(2):
        np.testing.assert_array_equal(read_png(tmp_path / "out" / f"proj{i:02d}.png"), want[i].numpy())
    np.savez(tmp_path / "wrong.npz", w=ws.numpy()[:, :1])
    result = run(generate, [f"--network={network}", f"--projected-w={tmp_path / 'wrong.npz'}", f"--outdir={tmp_path}"])
    assert result.exit_code == 2 and "num_ws, w_dim" in result.output
    result = run(generate, [f"--network={network}", f"--outdir={tmp_path}"])
    assert result.exit_code == 2 and "exactly one of --seeds and --projected-w" in result.output
    for bad, message in ((np.nan, "NaN or infinite"), (1e38, "projected w number 0 gives non-finite images")):
        np.savez(tmp_path / "bad.npz", w=np.full_like(ws.numpy(), bad))
        out = tmp_path / "bad_out"
        result = run(generate, [f"--network={network}", f"--projected-w={tmp_path / 'bad.npz'}", f"--outdir={out}"])
        assert result.exit_code == 2 and message in result.output and not out.exists()


def test_a_full_disk_is_one_line_and_leaves_no_images(generate, official_snapshot, tmp_path, monkeypatch):
    real_save_png, saved = generate.save_png, []

    def save_png(path, image):
        if len(saved) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_save_png(path, image)
        saved.append(path)

    monkeypatch.setattr(generate, "save_png", save_png)
    result = CliRunner().invoke(
        generate.main, [f"--network={official_snapshot}", "--seeds=0-3", f"--outdir={tmp_path / 'out'}"]
    )
    assert result.exit_code == 1, result.output
    assert "Error: no space left on device while writing" in result.output and "Traceback" not in result.output
    assert len(saved) == 2 and not (tmp_path / "out").exists()
