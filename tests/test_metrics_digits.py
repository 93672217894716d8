"""Offline digits metrics: the classifier trained here (deterministic, accurate on held-out digits, cached once per
recipe, weights-only) and fdd/kdd/cls through the FID/KID machinery, from calc_metric and the calc_metrics CLI."""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import tiny_g

from commands import calc_metrics_command as calc_metrics
from dnnlib.image_data import load_digits_images
from metrics import detectors, digits_classifier, metric_main, metric_utils
from metrics.digits_metrics import classifier_scores
from metrics.weight_files import DetectorFormatError
from training.checkpoint import save_snapshot
from training.networks import Generator

TINY_G = tiny_g(32)
DIGITS = dict(path="sklearn:digits", resolution=32)
QUICK = dataclasses.replace(digits_classifier.DEFAULT_RECIPE, epochs=1)


@pytest.fixture(scope="module")
def cache_root(tmp_path_factory):
    """A cache folder for this module, holding the default classifier trained once (a few seconds)."""
    root = tmp_path_factory.mktemp("digits-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RLO_CACHE_DIR", str(root))
        digits_classifier.ensure_classifier_file()
        yield root


@pytest.fixture(scope="module")
def digits():
    """The embedded digits as the dataset serves them: (uint8 [1797, 3, 32, 32], labels [1797])."""
    return load_digits_images(32, 3)


class ReplayGenerator(torch.nn.Module):
    """Shows real digits: z[:, 0] picks one (uniformly, through the normal CDF). A perfect generator."""

    def __init__(self, images: np.ndarray, z_dim: int = 4):
        super().__init__()
        self.register_buffer("images", torch.from_numpy(images).float() / 127.5 - 1)
        self.z_dim, self.c_dim = z_dim, 0
        self.img_resolution, self.img_channels = images.shape[-1], images.shape[1]

    def forward(self, z, c, **_kwargs):
        index = (torch.special.ndtr(z[:, 0]) * len(self.images)).long().clamp(0, len(self.images) - 1)
        return self.images[index]


class NoiseGenerator(ReplayGenerator):
    """Uniform noise images, seeded by z."""

    def forward(self, z, c, **_kwargs):
        seeds = [int(abs(float(row[0])) * 1e9) for row in z]
        images = [torch.rand([3, 32, 32], generator=torch.Generator().manual_seed(seed)) for seed in seeds]
        return torch.stack(images) * 2 - 1


def _features(images: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return detectors.get_detector("digits")(torch.from_numpy(images), return_features=True).numpy()


def _direct_fd(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance of two feature sets without matrix roots: Tr((S_a S_b)^(1/2)) is the nuclear norm of
    A_c B_c^T / sqrt(n_a n_b) for centred A_c, B_c (same non-zero eigenvalues)."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    ac, bc = a - a.mean(0), b - b.mean(0)
    nuclear = np.linalg.svd(ac @ bc.T / np.sqrt(len(a) * len(b)), compute_uv=False).sum()
    return float(np.sum((a.mean(0) - b.mean(0)) ** 2) + (ac**2).sum() / len(a) + (bc**2).sum() / len(b) - 2 * nuclear)


# ----------------------------------------------------------------------------
# The classifier.


def test_training_is_deterministic_and_leaves_the_global_rng_alone():
    state = torch.random.get_rng_state()
    first, acc_first = digits_classifier.train_classifier(QUICK)
    assert torch.equal(torch.random.get_rng_state(), state)
    second, acc_second = digits_classifier.train_classifier(QUICK)
    assert first.keys() == second.keys() and acc_first == acc_second
    assert all(torch.equal(first[name], second[name]) for name in first)
    other, _ = digits_classifier.train_classifier(dataclasses.replace(QUICK, seed=1))
    assert not torch.equal(first["fc.weight"], other["fc.weight"])


def test_default_classifier_is_accurate_on_held_out_digits(cache_root, digits):
    images, labels = digits
    train_idx, held_idx = digits_classifier.split_indices(len(labels), digits_classifier.DEFAULT_RECIPE)
    assert len(set(train_idx) & set(held_idx)) == 0 and len(train_idx) + len(held_idx) == len(labels)
    assert len(held_idx) == round(0.2 * len(labels))
    # Through the detector interface: uint8, 3 channels, as the metrics call it.
    with torch.no_grad():
        probs = detectors.get_detector("digits")(torch.from_numpy(images[held_idx])).numpy()
    np.testing.assert_allclose(probs.sum(1), 1, rtol=1e-5)
    held_out_accuracy = float(np.mean(probs.argmax(1) == labels[held_idx]))
    assert held_out_accuracy > 0.95
    _net, recipe, stored = digits_classifier.read_classifier_file(digits_classifier.classifier_path())
    assert recipe == digits_classifier.DEFAULT_RECIPE
    assert stored == pytest.approx(held_out_accuracy, abs=1.5 / len(held_idx))  # float64 vs float32 evaluation


def test_grey_and_rgb_inputs_give_the_same_features(cache_root, digits):
    images = torch.from_numpy(digits[0][:16])
    detector = detectors.get_detector("digits")
    with torch.no_grad():
        rgb, grey = detector(images, return_features=True), detector(images[:, :1], return_features=True)
    assert rgb.shape == (16, 128)
    torch.testing.assert_close(rgb, grey, rtol=1e-5, atol=1e-4)
    with pytest.raises(ValueError, match=r"\[16, 2, 32, 32\]"):
        detector(images[:, :2])


def test_cached_classifier_is_reused_without_training(cache_root, monkeypatch):
    path = digits_classifier.classifier_path()
    assert os.path.dirname(path) == str(cache_root / "detectors") and os.path.isfile(path)
    mtime = os.path.getmtime(path)
    monkeypatch.setattr(digits_classifier, "train_classifier", lambda recipe: pytest.fail("retrained"))
    assert digits_classifier.ensure_classifier_file() == path
    assert detectors.locate_detector("digits").path == path and os.path.getmtime(path) == mtime


def test_recipe_change_trains_a_new_file_and_a_bad_one_is_not_cached(cache_root, monkeypatch):
    calls = []

    def fake_train(recipe, accuracy=0.99):
        calls.append(recipe)
        net = digits_classifier.DigitsNet(recipe.width, recipe.feature_dim)
        return net.state_dict(), accuracy

    monkeypatch.setattr(digits_classifier, "train_classifier", fake_train)
    changed = dataclasses.replace(digits_classifier.DEFAULT_RECIPE, learning_rate=1e-3)
    path = digits_classifier.ensure_classifier_file(changed)
    assert calls == [changed] and path != digits_classifier.classifier_path() and os.path.isfile(path)
    assert digits_classifier.read_classifier_file(path)[1] == changed
    assert not [name for name in os.listdir(os.path.dirname(path)) if name.endswith(".tmp")]

    monkeypatch.setattr(digits_classifier, "train_classifier", lambda recipe: fake_train(recipe, accuracy=0.5))
    worse = dataclasses.replace(changed, seed=7)
    with pytest.raises(RuntimeError, match="50.0% held-out accuracy"):
        digits_classifier.ensure_classifier_file(worse)
    assert not os.path.exists(digits_classifier.classifier_path(worse))


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("touch rlo-digits-code-ran",))


def test_classifier_file_is_loaded_weights_only(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "digits-lenet-bad.pt"
    torch.save(
        dict(
            file_format=digits_classifier.FILE_FORMAT,
            recipe="{}",
            heldout_accuracy=1.0,
            state_dict={},
            payload=_RunsCode(),
        ),
        path,
    )
    with pytest.raises(DetectorFormatError, match="digits-lenet-bad.pt.*weights-only"):
        digits_classifier.read_classifier_file(str(path))
    assert not (tmp_path / "rlo-digits-code-ran").exists()
    torch.save(
        dict(
            file_format=digits_classifier.FILE_FORMAT,
            recipe=json.dumps({}),
            heldout_accuracy=1.0,
            state_dict={"conv1.weight": torch.zeros(3)},
        ),
        path,
    )
    with pytest.raises(DetectorFormatError, match="conv1.weight"):
        digits_classifier.read_classifier_file(str(path))


# ----------------------------------------------------------------------------
# The metrics.


def test_digits_metric_names():
    spec = metric_main.parse_metric("fdd2k_full")
    assert (spec.family, spec.num_gen, spec.full) == ("fdd", 2000, True)
    assert metric_main.with_num_gen("fdd2k_full", 500) == "fdd500_full"
    assert metric_main.with_num_gen("kdd2k_full", 1000) == "kdd1k_full"
    assert metric_main.with_num_gen("cls2k", 5000) == "cls5k"
    assert {"fdd2k_full", "kdd2k_full", "cls2k"} <= set(metric_main.list_valid_metrics())
    assert [metric_main.detector_kind(m) for m in ("fdd2k_full", "kdd1k", "cls2k", "fid50k_full", "pr50k3_full")] == [
        "digits",
        "digits",
        "digits",
        "inception",
        "vgg16",
    ]
    for bad in ("fdd2k_fulll", "cls2k_full", "fdd"):
        assert not metric_main.is_valid_metric(bad)


def test_fdd_equals_direct_frechet_distance_and_is_zero_for_the_data_itself(cache_root, digits):
    G = Generator(**TINY_G).eval()
    result = metric_main.calc_metric("fdd100_full", G=G, dataset_kwargs=DIGITS, device="cpu", batch_size=50)
    real = _features(digits[0])
    z, c = metric_utils.sample_latents(list(range(100)), G.z_dim, seed=0)
    with torch.no_grad():
        gen = _features(metric_utils.generate_images(G, torch.from_numpy(z), torch.from_numpy(c), {}).numpy())
    assert result.results.fdd100_full == pytest.approx(_direct_fd(gen, real), rel=1e-4)

    stats = metric_utils.compute_feature_stats_for_dataset(
        metric_utils.MetricOptions(dataset_kwargs=DIGITS, device="cpu"),
        "digits",
        dict(return_features=True),
        capture_mean_cov=True,
    )
    mu, sigma = stats.get_mean_cov()
    from metrics.frechet_inception_distance import frechet_distance

    assert abs(frechet_distance(mu, sigma, mu, sigma)) < 1e-6 * np.trace(sigma)


def test_fdd_and_kdd_are_small_for_real_digits_and_large_for_noise(cache_root, digits):
    trace = np.trace(np.cov(_features(digits[0]).astype(np.float64).T, bias=True))
    values = {}
    for G in (ReplayGenerator(digits[0]), NoiseGenerator(digits[0])):
        for metric in ("fdd500_full", "kdd500_full"):
            results = metric_main.calc_metric(metric, G=G, dataset_kwargs=DIGITS, device="cpu").results
            values[type(G).__name__, metric] = results[metric]
    # 500 real digits drawn with replacement differ from all of them only by sampling error (~ trace / 500).
    assert 0 <= values["ReplayGenerator", "fdd500_full"] < 0.02 * trace
    assert values["NoiseGenerator", "fdd500_full"] > 0.5 * trace
    assert abs(values["ReplayGenerator", "kdd500_full"]) < 0.01 * values["NoiseGenerator", "kdd500_full"]


def test_classifier_scores_formula():
    one_hot = np.eye(10, dtype=np.float32)[np.arange(50) % 10]
    confident, score, entropy = classifier_scores(one_hot)
    assert (confident, score, entropy) == pytest.approx((1.0, 10.0, np.log(10)))
    assert classifier_scores(np.full([20, 10], 0.1, np.float32)) == pytest.approx((0.0, 1.0, np.log(10)))
    one_class = np.tile(np.float32([0.95] + [0.05 / 9] * 9), [8, 1])
    assert classifier_scores(one_class) == pytest.approx((1.0, 1.0, -0.95 * np.log(0.95) - 0.05 * np.log(0.05 / 9)))


def test_cls_sees_digits_in_real_digits_and_none_in_noise(cache_root, digits):
    real = metric_main.calc_metric("cls500", G=ReplayGenerator(digits[0]), dataset_kwargs=DIGITS, device="cpu").results
    noise = metric_main.calc_metric("cls500", G=NoiseGenerator(digits[0]), dataset_kwargs=DIGITS, device="cpu").results
    assert set(real) == {"cls500_confident", "cls500_score", "cls500_class_entropy"}
    assert real.cls500_confident > 0.9 and real.cls500_score > 8 and real.cls500_class_entropy > 0.95 * np.log(10)
    assert noise.cls500_confident < 0.1 and noise.cls500_score < 2


def test_calc_metrics_cli_scores_a_digits_snapshot_offline(cache_root, tmp_path, monkeypatch):
    monkeypatch.setenv("DNNLIB_CACHE_DIR", str(tmp_path / "dnnlib"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("RLO_DETECTOR_DIR", raising=False)
    torch.manual_seed(0)
    G = Generator(**TINY_G).eval()
    snapshot = tmp_path / "network-snapshot-000000.pt"
    save_snapshot(
        snapshot,
        dict(G=G, D=None, G_ema=G, augment_pipe=None),
        training_set_kwargs=dict(path="sklearn:digits", resolution=32, use_labels=False, xflip=False),
    )
    result = CliRunner().invoke(
        calc_metrics.main, ["--network", str(snapshot), "--metrics", "fdd2k_full,cls2k", "--num-gen", "64"]
    )
    assert result.exit_code == 0, result.output
    for name, keys in (
        ("fdd64_full", {"fdd64_full"}),
        ("cls64", {"cls64_confident", "cls64_score", "cls64_class_entropy"}),
    ):
        with open(tmp_path / f"metric-{name}.jsonl") as file:
            lines = [json.loads(line) for line in file]
        assert len(lines) == 1 and lines[0]["metric"] == name and set(lines[0]["results"]) == keys
        assert lines[0]["snapshot_pkl"] == "network-snapshot-000000.pt"
    assert lines[0]["results"]["cls64_score"] >= 1


@pytest.mark.parametrize("metric", ["fdd2k_full", "kdd500", "cls2k"])
def test_digits_metrics_are_refused_on_other_datasets_naming_the_fid_file(metric, tmp_path, monkeypatch):
    monkeypatch.setenv("RLO_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(metric_main.MetricDatasetError) as info:
        metric_main.check_metric_dataset(metric, dict(path="~/datasets/faces64.zip", resolution=64))
    text = str(info.value)
    assert metric in text and "~/datasets/faces64.zip" in text and "mean nothing" in text
    assert "inception-2015-12-05.pt" in text and str(tmp_path / "cache" / "detectors") in text
    assert "--detector-dir" in text and "\n" not in text
    for embedded in (None, {}, dict(path=None, resolution=32), dict(path="sklearn:digits")):
        metric_main.check_metric_dataset(metric, embedded)


def test_other_metrics_are_not_limited_to_the_digits():
    for metric in ("fid50k_full", "kid50k_full", "pr50k3_full", "is50k", "ppl2_wend"):
        metric_main.check_metric_dataset(metric, dict(path="faces.zip"))


def test_calc_metric_refuses_before_opening_anything(tmp_path):
    missing = tmp_path / "faces.zip"  # not even there: the refusal comes before the dataset is opened
    with pytest.raises(metric_main.MetricDatasetError, match="faces.zip"):
        metric_main.calc_metric("fdd100_full", G=None, dataset_kwargs=dict(path=str(missing)), device="cpu")
