"""The sliced Wasserstein distance (metrics/sliced_wasserstein.py): its pyramid against a float64 reference, its
descriptors and distance, determinism, any channel count, and the offline default of train.py."""

import json
import math

import numpy as np
import PIL.Image
import pytest
import scipy.ndimage
import torch
from click.testing import CliRunner

from commands import train_command
from metrics import detectors, metric_main
from metrics import sliced_wasserstein as sw

BINOMIAL_2D = np.outer(sw.BINOMIAL, sw.BINOMIAL) / 256.0


@pytest.mark.parametrize(
    "size, levels", [((16, 16), [16]), ((32, 32), [32, 16]), ((64, 48), [48, 24]), ((24, 24), [24])]
)
def test_levels_halve_down_to_16_px(size, levels):
    assert sw.resolutions(*size) == levels


def test_images_below_16_px_are_refused():
    with pytest.raises(ValueError, match="at least 16 px, got 8x8"):
        sw.resolutions(8, 8)


def test_pyramid_matches_the_published_float64_filters_and_reconstructs_the_image():
    """pyrDown / pyrUp as the published code computes them (scipy.ndimage.convolve, mode 'mirror', float64)."""
    x = torch.from_numpy(np.random.default_rng(0).uniform(0, 255, (3, 2, 32, 24)))
    ref_down = scipy.ndimage.convolve(x.numpy(), BINOMIAL_2D[None, None], mode="mirror")[:, :, ::2, ::2]
    np.testing.assert_allclose(sw.pyr_down(x).numpy(), ref_down, rtol=0, atol=1e-10)
    zeros = np.zeros(x.shape)
    zeros[:, :, ::2, ::2] = ref_down
    ref_up = scipy.ndimage.convolve(zeros, 4 * BINOMIAL_2D[None, None], mode="mirror")
    np.testing.assert_allclose(sw.pyr_up(torch.from_numpy(ref_down)).numpy(), ref_up, rtol=0, atol=1e-10)
    pyramid = sw.laplacian_pyramid(x, 2)
    assert [tuple(level.shape[2:]) for level in pyramid] == [(32, 24), (16, 12)]
    torch.testing.assert_close(sw.reconstruct(pyramid), x, rtol=0, atol=1e-10)


def test_descriptors_are_the_drawn_7x7_neighbourhoods_of_every_channel():
    level = torch.arange(2 * 3 * 20 * 18, dtype=torch.float32).view(2, 3, 20, 18)
    d = sw.patch_descriptors(level, seed=5, level_index=1, first_index=10)
    assert d.shape == (2 * sw.NHOODS_PER_IMAGE, 3, 7, 7)
    rng = np.random.default_rng([5, 1, 11])  # image 1 of the batch is global image 11
    y, x = rng.integers(3, 17, size=sw.NHOODS_PER_IMAGE), rng.integers(3, 15, size=sw.NHOODS_PER_IMAGE)
    for j in (0, 77):
        want = level[1, :, y[j] - 3 : y[j] + 4, x[j] - 3 : x[j] + 4]
        torch.testing.assert_close(d[sw.NHOODS_PER_IMAGE + j], want)


def test_normalise_gives_each_channel_zero_mean_and_unit_std():
    d = torch.randn(500, 3, 7, 7) * torch.tensor([1.0, 10.0, 0.1]).view(1, 3, 1, 1) + 4
    flat = sw.normalise(d).view(500, 3, 49)
    torch.testing.assert_close(flat.mean(dim=(0, 2)), torch.zeros(3), rtol=0, atol=1e-5)
    torch.testing.assert_close(flat.std(dim=(0, 2), unbiased=False), torch.ones(3), rtol=0, atol=1e-5)


def test_sliced_distance_is_zero_for_one_set_and_the_mean_projection_of_a_shift():
    """A shift by v moves every projection on unit direction u by v.u: the distance is E|v.u| over random u, which
    is |v| sqrt(2 / (pi D)) for D large."""
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(4000, 200, generator=gen)
    assert sw.sliced_wasserstein(a, a, torch.Generator().manual_seed(1)) == 0
    v = torch.randn(200, generator=gen)
    v = 3 * v / v.norm()
    got = sw.sliced_wasserstein(a, a + v, torch.Generator().manual_seed(1))
    assert got == pytest.approx(3 * math.sqrt(2 / (math.pi * 200)), rel=0.1)
    with pytest.raises(ValueError, match="one shape"):
        sw.sliced_wasserstein(a, a[:10], gen)


def _set(images, seed=0, batch=16):
    s = sw.DescriptorSet(*images.shape[2:], seed=seed)
    for start in range(0, len(images), batch):
        s.feed(images[start : start + batch])
    return s


def _blobs(n, channels, size, sharp, seed):
    """Smooth (sharp=False) or noisy images: two distributions of local statistics."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 255, (n, channels, size, size))
    if not sharp:
        x = scipy.ndimage.gaussian_filter(x, sigma=(0, 0, 2, 2))
    return torch.from_numpy(x.round().clip(0, 255).astype(np.uint8))


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_swd_is_zero_for_identical_sets_and_separates_two_kinds_of_images_at_any_channel_count(channels):
    smooth_a, smooth_b = _blobs(64, channels, 32, False, 1), _blobs(64, channels, 32, False, 2)
    noisy = _blobs(64, channels, 32, True, 3)
    same = sw.swd(_set(smooth_a), _set(smooth_a), seed=0)
    assert list(same) == [32, 16] and all(value == 0 for value in same.values())
    close = sw.swd(_set(smooth_a), _set(smooth_b), seed=0)
    far = sw.swd(_set(smooth_a), _set(noisy), seed=0)
    assert all(far[res] > close[res] for res in far) and far[32] > 3 * close[32], (close, far)


def test_swd_is_deterministic_for_a_seed_and_batching_does_not_change_it():
    a, b = _blobs(40, 3, 32, False, 4), _blobs(40, 3, 32, True, 5)
    first = sw.swd(_set(a, batch=16), _set(b, batch=16), seed=3)
    assert sw.swd(_set(a, batch=7), _set(b, batch=40), seed=3) == first
    other = sw.swd(_set(a, seed=4), _set(b, seed=4), seed=4)
    assert other != first and all(abs(other[r] / first[r] - 1) < 0.2 for r in first)


def test_sets_of_other_sizes_are_refused():
    a = _blobs(8, 3, 32, False, 6)
    with pytest.raises(ValueError, match="one size and shape"):
        sw.swd(_set(a), _set(a[:4]), seed=0)


def test_swd_names_parse_and_need_no_detector_file(tmp_path):
    spec = metric_main.parse_metric("swd2k")
    assert (spec.family, spec.num_gen) == ("swd", 2000)  # k = 1000 in every metric name here
    assert metric_main.detector_kind("swd16k") == detectors.NO_DETECTOR
    assert metric_main.with_num_gen("swd16k", 500) == "swd500"
    assert detectors.locate_detector(detectors.NO_DETECTOR, str(tmp_path)).kind == detectors.NO_DETECTOR


def test_the_default_metric_is_offline_where_no_detector_file_is_at_hand(tmp_path, monkeypatch):
    monkeypatch.setenv(detectors.DETECTOR_DIR_ENV, str(tmp_path / "none"))
    monkeypatch.setenv("DNNLIB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    assert metric_main.default_metric(True, True)[0] == "fdd2k_full"
    assert metric_main.default_metric(False, True)[0] == "swd2k"
    metric, why = metric_main.default_metric(False, False, str(tmp_path / "empty"))
    assert metric == "swd16k" and detectors.INCEPTION_FILES[0].name in why


def test_train_on_a_colour_folder_scores_snapshots_with_swd_by_default_and_says_so(tmp_path):
    folder = tmp_path / "sprites"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(24):
        PIL.Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    args = [f"--outdir={tmp_path / 'runs'}", f"--data={folder}", "--kimg=0.016", "--tick=0.016", "--snap=1"]
    args += ["--cbase=64", "--cmax=16", "--batch=8", "--aug=noaug"]
    result = CliRunner().invoke(train_command.main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "Metrics: swd2k by default (the quick offline metric" in result.output
    (run,) = (tmp_path / "runs").iterdir()
    lines = [json.loads(line) for line in (run / "metric-swd2k.jsonl").read_text().splitlines()]
    assert [sorted(line["results"]) for line in lines] == [["swd2k", "swd2k_16"]] * 2  # 24 images: one level
    assert all(0 < line["results"]["swd2k"] < 1e4 for line in lines)
