"""projector.py: projecting a generated image gets LPIPS-closer than the w_avg start, outputs reproduce, the
CE-vs-RLO comparison grid is laid out as specified, and bad inputs fail early with the culprit named."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import pathlib

import metrics_support as ms
import numpy as np
import PIL.Image
import pytest
import torch
from click.testing import CliRunner
from conftest import tiny_g

from commands import projector_command
from metrics import detectors
from metrics.vgg16 import build_vgg16
from training import checkpoint, image_convert, projection
from training.networks import Generator

REPO = pathlib.Path(__file__).resolve().parents[1]
TINY_G = tiny_g(16, latent=16, base=256, cmax=16)
CELL = 128  # a 16 px image is shown 8x enlarged in compare.png (smallest integer factor reaching 128 px)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny convolutions gain nothing from threads, and on a shared busy CPU two OpenMP threads wait on each
    other (10x slower than one here)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def projector():
    return projector_command


def tiny_generator(seed: int) -> Generator:
    """A random tiny G whose noise maps matter (noise strength 0.3), so 'which noise' is observable."""
    torch.manual_seed(seed)
    G = Generator(**TINY_G)
    with torch.no_grad():
        for name, param in G.named_parameters():
            if name.endswith("noise_strength"):
                param.fill_(0.3)
    return G.eval()


def to_uint8(img: torch.Tensor) -> np.ndarray:
    return (img.permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8).numpy()


def read_png(path) -> np.ndarray:
    with PIL.Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Detector folder (random VGG16 + LPIPS files in the real formats), two snapshots, and a target that the
    'final' network generated itself (const noise), so a good projection exists."""
    root = tmp_path_factory.mktemp("projector")
    vgg_path, lpips_path, _, _ = ms.shared_vgg_files()
    paths = {}
    for name, seed in (("early", 2), ("final", 1)):
        paths[name] = root / f"{name}.pt"
        checkpoint.save_snapshot(paths[name], dict(G_ema=tiny_generator(seed)))
    G = tiny_generator(1)
    with torch.no_grad():
        z = torch.from_numpy(np.random.RandomState(7).randn(1, G.z_dim)).float()
        target = to_uint8(G(z, None, noise_mode="const"))[0]
    target_path = root / "target.png"
    PIL.Image.fromarray(target).save(target_path)
    return dict(
        root=root,
        detector_dir=os.path.dirname(vgg_path),
        vgg=build_vgg16(vgg_path, lpips_path),
        target=target,
        target_path=target_path,
        **paths,
    )


def run(projector, args):
    return CliRunner().invoke(projector.main, [str(a) for a in args], catch_exceptions=False)


def lpips(vgg, a: np.ndarray, b: np.ndarray) -> float:
    """LPIPS of two uint8 [16, 16, 3] images, each pixel replicated 2x to the 32 px VGG16 needs at least."""

    def embed(img):
        x = torch.from_numpy(img.repeat(2, axis=0).repeat(2, axis=1).transpose(2, 0, 1).copy()).float()[None]
        return vgg(x, resize_images=False, return_lpips=True)

    with torch.no_grad():
        return float((embed(a) - embed(b)).square().sum())


# ----------------------------------------------------------------------------
# One network: the official outputs.


@pytest.fixture(scope="module")
def single_run(projector, setup):
    outdir = setup["root"] / "single"
    result = run(
        projector,
        [
            f"--network={setup['final']}",
            f"--target={setup['target_path']}",
            f"--outdir={outdir}",
            "--num-steps=12",
            "--seed=5",
            f"--detector-dir={setup['detector_dir']}",
        ],
    )
    assert result.exit_code == 0, result.output
    return outdir, result.output


def test_projecting_a_generated_image_gets_much_closer_than_w_avg(single_run, setup):
    outdir, _ = single_run
    G = checkpoint.load_network(setup["final"])["G_ema"]
    with torch.no_grad():  # the start point as official: mean w of 10k z from RandomState(123)
        z = torch.from_numpy(np.random.RandomState(123).randn(10000, G.z_dim))
        w_mean = G.mapping(z, None).to(torch.float64).mean(dim=0, keepdim=True).to(torch.float32)
        start = to_uint8(G.synthesis(w_mean, noise_mode="const"))[0]
    target = read_png(outdir / "target.png")
    np.testing.assert_array_equal(target, setup["target"])
    d_start = lpips(setup["vgg"], start, target)
    d_proj = lpips(setup["vgg"], read_png(outdir / "proj.png"), target)
    assert d_proj < 0.6 * d_start, (d_start, d_proj)

    (record,) = [json.loads(line) for line in (outdir / "projection.jsonl").read_text().splitlines()]
    assert record["num_steps"] == 12 and record["seed"] == 5 and record["label"] == "final.pt"
    assert record["lpips"] == pytest.approx(d_proj, rel=1e-3)  # the distance of the saved proj.png
    assert record["initial_lpips"] == pytest.approx(d_start, rel=0.05)


def test_projected_w_reproduces_proj_png_with_the_networks_own_noise(single_run, setup):
    outdir, _ = single_run
    G = checkpoint.load_network(setup["final"])["G_ema"]
    with np.load(outdir / "projected_w.npz") as data:
        assert list(data.keys()) == ["w"]
        w = data["w"]
    assert w.shape == (1, G.num_ws, G.w_dim) and w.dtype == np.float32
    np.testing.assert_allclose(w, np.broadcast_to(w[:, :1], w.shape))  # one w for every layer
    with torch.no_grad():
        image = to_uint8(G.synthesis(torch.from_numpy(w), noise_mode="const"))[0]
    assert np.abs(image.astype(int) - read_png(outdir / "proj.png").astype(int)).max() <= 1
    assert not [name for name in os.listdir(outdir) if name.endswith(".tmp")]  # atomic writes left nothing behind


def test_video_is_written_or_skipped_with_a_message(single_run):
    outdir, output = single_run
    if importlib.util.find_spec("imageio_ffmpeg") is None:
        assert "Skipping" in output and "imageio-ffmpeg" in output
        assert not (outdir / "proj.mp4").exists()
    else:
        import imageio

        reader = imageio.get_reader(outdir / "proj.mp4")
        assert sum(1 for _ in reader) == 12


def test_project_is_seeded_and_leaves_the_callers_network_alone(projector, setup):
    G = checkpoint.load_network(setup["final"])["G_ema"]
    before = {name: buf.clone() for name, buf in G.named_buffers()}
    target = torch.from_numpy(setup["target"].transpose(2, 0, 1).copy())
    opts = projection.ProjectionOptions(num_steps=3, w_avg_samples=500)
    runs = [projection.project(G, target, setup["vgg"], opts=opts, seed=seed, progress=False) for seed in (1, 1, 2)]
    torch.testing.assert_close(runs[0].w_steps, runs[1].w_steps, rtol=0, atol=0)
    assert not torch.equal(runs[0].w_steps, runs[2].w_steps)
    assert runs[0].w_steps.shape == (3, G.num_ws, G.w_dim)
    for name, buf in G.named_buffers():
        assert torch.equal(buf, before[name]), name


def test_video_frames_are_target_beside_each_step(projector, setup, tmp_path, monkeypatch):
    """The mp4 encoder itself is imageio-ffmpeg's; here a recording writer stands in for it."""
    import imageio

    recorded = []

    class Writer:
        def __init__(self, path, **kwargs):
            self.path, self.kwargs = path, kwargs

        def append_data(self, frame):
            recorded.append(frame)

        def close(self):
            open(self.path, "wb").write(b"mp4")

    monkeypatch.setattr(imageio, "get_writer", Writer)
    G = checkpoint.load_network(setup["final"])["G_ema"]
    ws = torch.randn([3, G.num_ws, G.w_dim])
    path = tmp_path / "proj.mp4"
    assert projection.write_video(str(path), setup["target"], projection.iter_frames(G, ws, batch_size=2))
    assert path.read_bytes() == b"mp4" and os.listdir(tmp_path) == ["proj.mp4"]
    with torch.no_grad():
        want = to_uint8(G.synthesis(ws, noise_mode="const"))
    assert len(recorded) == 3
    for frame, image in zip(recorded, want):
        np.testing.assert_array_equal(frame, np.concatenate([setup["target"], image], axis=1))


@pytest.mark.slow
def test_greyscale_conditional_32px_projection_converges(projector, setup, tmp_path):
    torch.manual_seed(3)
    G = Generator(**{**TINY_G, "c_dim": 3, "img_channels": 1, "img_resolution": 32}).eval()
    checkpoint.save_snapshot(tmp_path / "grey.pt", dict(G_ema=G))
    with torch.no_grad():
        z = torch.from_numpy(np.random.RandomState(1).randn(1, G.z_dim)).float()
        image = to_uint8(G(z, torch.eye(3)[[1]], noise_mode="const"))[0, :, :, 0]
    PIL.Image.fromarray(image, "L").save(tmp_path / "grey.png")
    result = run(
        projector,
        [
            f"--network={tmp_path / 'grey.pt'}",
            f"--target={tmp_path / 'grey.png'}",
            "--class=1",
            f"--outdir={tmp_path / 'out'}",
            "--num-steps=150",
            "--save-video=0",
            f"--detector-dir={setup['detector_dir']}",
        ],
    )
    assert result.exit_code == 0, result.output
    (record,) = [json.loads(line) for line in (tmp_path / "out" / "projection.jsonl").read_text().splitlines()]
    assert record["class_idx"] == 1 and record["lpips"] < 0.35 * record["initial_lpips"], record
    with PIL.Image.open(tmp_path / "out" / "proj.png") as proj:
        assert proj.mode == "L" and proj.size == (32, 32)


# ----------------------------------------------------------------------------
# Several networks: the CE-vs-RLO comparison.


def test_several_networks_write_a_labelled_compare_grid(projector, setup):
    outdir = setup["root"] / "compare"
    result = run(
        projector,
        [
            f"--network={setup['early']}",
            f"--network={setup['final']}",
            f"--target={setup['target_path']}",
            f"--outdir={outdir}",
            "--num-steps=2",
            "--save-video=0",
            f"--detector-dir={setup['detector_dir']}",
        ],
    )
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in (outdir / "projection.jsonl").read_text().splitlines()]
    assert [r["label"] for r in records] == ["early.pt", "final.pt"]
    assert [r["outdir"] for r in records] == ["00-early", "01-final"]
    assert not (outdir / "proj.png").exists()  # per-network outputs live in the folders
    assert all(r["num_steps"] == 2 and r["seconds"] > 0 and r["lpips"] > 0 for r in records)

    grid = read_png(outdir / "compare.png")
    assert grid.shape == (CELL + projection.COMPARE_LABEL_HEIGHT, 3 * CELL, 3)
    cells = [read_png(outdir / "target.png")] + [read_png(outdir / r["outdir"] / "proj.png") for r in records]
    for col, image in enumerate(cells):
        np.testing.assert_array_equal(grid[:CELL, col * CELL : (col + 1) * CELL], image.repeat(8, 0).repeat(8, 1))
    labels = grid[CELL:]
    for col in range(3):
        assert (labels[:, col * CELL : (col + 1) * CELL] < 128).any(), f"no label text under column {col}"


def test_compare_grid_wraps_rows_beside_the_target(projector):
    """Figure 5 layout: CE early/final in row 1, RLO early/final in row 2, target once at the top left."""
    target = np.full([16, 16, 1], 10, np.uint8)  # greyscale is shown as grey RGB
    projections = [np.full([16, 16, 3], 50 * (i + 1), np.uint8) for i in range(4)]
    labels = [f"run{i // 2}/network-snapshot-00000{i % 2}.pt\nLPIPS = 0.1" for i in range(4)]
    grid = projection.compare_grid(target, projections, labels, "target", cols=2)
    row = CELL + projection.COMPARE_LABEL_HEIGHT
    assert grid.shape == (2 * row, 3 * CELL, 3)
    assert (grid[:CELL, :CELL] == 10).all()
    for i in range(4):
        r, c = divmod(i, 2)
        assert (grid[r * row : r * row + CELL, (c + 1) * CELL : (c + 2) * CELL] == 50 * (i + 1)).all()
    assert (grid[row:, :CELL] == 255).all()  # nothing under the target


def test_labels_add_the_run_folder_only_where_file_names_repeat(projector):
    paths = ["runs/00000-ce/network-snapshot-000000.pt", "runs/00001-rlo/network-snapshot-000000.pt", "x/final.pkl"]
    assert projection.network_labels(paths) == [
        "00000-ce/network-snapshot-000000.pt",
        "00001-rlo/network-snapshot-000000.pt",
        "final.pkl",
    ]


# ----------------------------------------------------------------------------
# The official schedule and regulariser, written out.


def test_learning_rate_and_w_noise_follow_the_official_schedule(projector):
    opts = projection.ProjectionOptions(num_steps=1000)
    assert projection.learning_rate(0, opts) == 0
    assert projection.learning_rate(25, opts) == pytest.approx(0.1 * 0.5)  # half-way up the 5% linear ramp
    assert projection.learning_rate(500, opts) == pytest.approx(0.1)
    assert projection.learning_rate(900, opts) == pytest.approx(0.1 * (0.5 - 0.5 * math.cos(0.4 * math.pi)))
    assert projection.w_noise_scale(0, 2.0, opts) == pytest.approx(2.0 * 0.05)
    assert projection.w_noise_scale(375, 2.0, opts) == pytest.approx(2.0 * 0.05 * 0.25)
    assert projection.w_noise_scale(800, 2.0, opts) == 0


def test_w_statistics_are_the_official_mean_and_spread_of_mapped_z(projector):
    G = Generator(**{**TINY_G, "c_dim": 4}).eval()
    w_avg, w_std = projection.w_statistics(G, 300, class_idx=2, device=torch.device("cpu"), batch_size=128)
    z = torch.from_numpy(np.random.RandomState(123).randn(300, G.z_dim))
    with torch.no_grad():
        w = G.mapping(z, torch.eye(4)[[2] * 300])[:, 0].double().numpy()
    np.testing.assert_allclose(w_avg.numpy().reshape(-1), w.mean(axis=0), rtol=1e-5, atol=1e-6)
    assert w_std == pytest.approx(np.sqrt(((w - w.mean(axis=0)) ** 2).sum() / 300), rel=1e-5)
    other, _ = projection.w_statistics(G, 300, class_idx=3, device=torch.device("cpu"))
    assert not torch.allclose(other, w_avg)  # the class reaches the mapping


def test_noise_regularization_sums_autocorrelations_over_scales(projector):
    noise = torch.randn([16, 16], generator=torch.Generator().manual_seed(0))
    small = noise.reshape(8, 2, 8, 2).mean(dim=(1, 3))
    want = sum(((n * n.roll(1, dims=1)).mean() ** 2 + (n * n.roll(1, dims=0)).mean() ** 2) for n in (noise, small))
    torch.testing.assert_close(projection.noise_regularization([noise]), want)
    assert float(projection.noise_regularization([torch.ones([4, 4])])) == pytest.approx(2.0)


# ----------------------------------------------------------------------------
# Targets and failures.


def test_target_is_center_cropped_resized_and_converted(projector, tmp_path):
    pixels = np.zeros([40, 100, 4], np.uint8)
    pixels[..., 3] = 255
    pixels[:, 30:70] = (200, 100, 50, 255)  # the centre 40x40 square; the margins are black
    path = tmp_path / "wide.png"
    PIL.Image.fromarray(pixels, "RGBA").save(path)
    rgb = projection.load_target(str(path), resolution=16, channels=3)
    assert rgb.shape == (16, 16, 3) and (rgb == (200, 100, 50)).all()
    grey = projection.load_target(str(path), resolution=8, channels=1)
    luma = round(0.299 * 200 + 0.587 * 100 + 0.114 * 50)  # ITU-R 601-2, PIL's RGB -> L
    assert grey.shape == (8, 8, 1) and (np.abs(grey.astype(int) - luma) <= 1).all()


def test_a_transparent_target_is_composited_as_dataset_tool_composites_it(projector, tmp_path, capsys):
    """A sprite on a transparent background: white behind it, as its training set has (not black), said once."""
    pixels = np.zeros([24, 24, 4], np.uint8)
    pixels[8:16, 8:16] = (10, 200, 30, 255)  # an opaque green square; the rest fully transparent
    path = tmp_path / "sprite.png"
    PIL.Image.fromarray(pixels, "RGBA").save(path)
    rgb = projection.load_target(str(path), resolution=24, channels=3)
    assert (rgb[0, 0] == 255).all() and (rgb[12, 12] == (10, 200, 30)).all()
    want = np.asarray(image_convert.to_mode(PIL.Image.open(path), "RGB"))
    np.testing.assert_array_equal(rgb, want)
    assert "--target has transparency: composited over RGB(255, 255, 255)" in capsys.readouterr().out


@pytest.mark.parametrize("kind", ["missing", "unreadable"])
def test_bad_target_names_the_path(projector, setup, tmp_path, kind):
    target = tmp_path / "target.png"
    if kind == "unreadable":
        target.write_text("not an image")
    result = run(
        projector,
        [
            f"--network={setup['final']}",
            f"--target={target}",
            f"--outdir={tmp_path / 'out'}",
            f"--detector-dir={setup['detector_dir']}",
        ],
    )
    assert result.exit_code != 0
    assert str(target) in result.output and "--target" in result.output
    assert ("no such file" if kind == "missing" else "cannot read") in result.output


def test_missing_network_names_the_path(projector, setup, tmp_path):
    missing = tmp_path / "runs" / "network-snapshot-000000.pt"
    result = run(
        projector,
        [
            f"--network={setup['final']}",
            f"--network={missing}",
            f"--target={setup['target_path']}",
            f"--outdir={tmp_path / 'out'}",
            f"--detector-dir={setup['detector_dir']}",
        ],
    )
    assert result.exit_code != 0 and str(missing) in result.output and "--network" in result.output
    assert not (tmp_path / "out").exists()


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RLO_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("DNNLIB_CACHE_DIR", str(tmp_path / "dnnlib"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("RLO_DETECTOR_DIR", raising=False)
    detectors.clear_detector_cache()
    yield tmp_path
    detectors.clear_detector_cache()


def test_missing_detector_is_the_offline_error_naming_the_file(projector, setup, isolated_cache):
    empty = isolated_cache / "detectors"
    empty.mkdir()
    outdir = isolated_cache / "out"
    result = run(
        projector,
        [
            f"--network={setup['final']}",
            f"--target={setup['target_path']}",
            f"--outdir={outdir}",
            f"--detector-dir={empty}",
        ],
    )
    assert result.exit_code != 0 and "Traceback" not in result.output
    first_line = result.output.splitlines()[0]
    assert "projector.py" in first_line and "PPL" not in first_line
    assert "vgg16.pt" in result.output and "vgg16-397923af.pth" in result.output
    assert "vgg.pth" in result.output  # every file of the state-dict route, at the first attempt
    assert "Nothing is downloaded" in result.output and str(empty) in result.output
    assert not outdir.exists()  # failed before any work

    (empty / "vgg16-397923af.pth").symlink_to(os.path.join(setup["detector_dir"], "vgg16-397923af.pth"))
    result = run(
        projector,
        [
            f"--network={setup['final']}",
            f"--target={setup['target_path']}",
            f"--outdir={outdir}",
            f"--detector-dir={empty}",
        ],
    )
    assert result.exit_code != 0 and "vgg.pth" in result.output and "LPIPS" in result.output


def test_networks_of_different_sizes_cannot_be_compared(projector, setup, tmp_path):
    other = tmp_path / "big.pt"
    checkpoint.save_snapshot(other, dict(G_ema=Generator(**{**TINY_G, "img_resolution": 32})))
    result = run(
        projector,
        [
            f"--network={setup['final']}",
            f"--network={other}",
            f"--target={setup['target_path']}",
            f"--outdir={tmp_path / 'out'}",
            f"--detector-dir={setup['detector_dir']}",
        ],
    )
    assert result.exit_code != 0 and str(other) in result.output and "32" in result.output
