"""Metrics end to end on a tiny generator and a tiny image folder, with test-made detector files: values equal a
direct computation, dataset statistics are cached and reused, results do not depend on batch size."""

from __future__ import annotations

import os

import metrics_support as ms
import numpy as np
import pytest
import torch

from dnnlib.files import FileWriteError
from metrics import detectors, metric_main, metric_utils
from metrics.inception_score import inception_score
from metrics.perceptual_path_length import ppl_from_distances
from training.dataset import open_dataset

NUM_REAL = 7  # odd on purpose: the per-process split wraps around


@pytest.fixture(scope="module")
def inception_dir():
    return os.path.dirname(ms.shared_fid_file()[0])


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return ms.write_image_folder(str(tmp_path_factory.mktemp("data") / "tinyset"), NUM_REAL)


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("RLO_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "gan-metrics"


@pytest.fixture(scope="module")
def G():
    return ms.TinyGenerator(z_dim=8, img_resolution=32)


@pytest.fixture(scope="module")
def real_features(data_dir, inception_dir):
    """Inception features of the dataset images computed directly (the oracle side of the end-to-end tests)."""
    detector = detectors.get_detector("inception", "cpu", inception_dir)
    with torch.no_grad():
        return detector(_real_images(data_dir), return_features=True).numpy()


def _kwargs(G, data_dir, detector_dir, **extra):
    return dict(
        G=G,
        G_kwargs=dict(noise_mode="const"),
        dataset_kwargs=dict(path=data_dir),
        device="cpu",
        detector_dir=detector_dir,
        **extra,
    )


def _real_images(data_dir):
    dataset = open_dataset(data_dir)
    return torch.from_numpy(np.stack([dataset[i][0] for i in range(len(dataset))]))


def _generated_images(G, num, seed=0):
    z, c = metric_utils.sample_latents(list(range(num)), G.z_dim, seed)
    with torch.no_grad():
        return metric_utils.generate_images(G, torch.from_numpy(z), torch.from_numpy(c), dict(noise_mode="const"))


def _direct_fid(real_features, gen_features):
    """FID from raw features with few samples: with centred X, Y, Tr((S_g S_r)^(1/2)) is the nuclear norm of
    Y X^T / sqrt(n_g n_r) (same non-zero eigenvalues), a tiny SVD instead of a 2048x2048 matrix root."""
    r, g = real_features.astype(np.float64), gen_features.astype(np.float64)
    rc, gc = r - r.mean(0), g - g.mean(0)
    trace_root = np.linalg.svd(gc @ rc.T / np.sqrt(len(g) * len(r)), compute_uv=False).sum()
    traces = (rc**2).sum() / len(r) + (gc**2).sum() / len(g)
    return float(np.sum((g.mean(0) - r.mean(0)) ** 2) + traces - 2 * trace_root)


def test_fid_end_to_end_equals_direct_computation(G, data_dir, inception_dir, cache_dir, real_features, capsys):
    progress = metric_utils.ProgressMonitor(verbose=True)
    result = metric_main.calc_metric(
        "fid6_full", **_kwargs(G, data_dir, inception_dir, batch_size=4, progress=progress)
    )
    assert set(result) == {"results", "metric", "total_time", "total_time_str", "num_gpus"}
    assert result.metric == "fid6_full" and result.num_gpus == 1

    detector = detectors.get_detector("inception", "cpu", inception_dir)
    with torch.no_grad():
        gen = detector(_generated_images(G, 6), return_features=True).numpy()
    assert result.results.fid6_full == pytest.approx(_direct_fid(real_features, gen), rel=1e-4)
    out = capsys.readouterr().out
    assert f"dataset features: {NUM_REAL} images in" in out and "generator features: 6 images in" in out
    assert "img/s" in out


def test_dataset_stats_are_cached_per_options_and_reused(G, data_dir, inception_dir, cache_dir, monkeypatch):
    kwargs = _kwargs(G, data_dir, inception_dir, batch_size=12)
    first = metric_main.calc_metric("kid2_full", **kwargs).results.kid2_full
    files = sorted(os.listdir(cache_dir))
    assert len(files) == 1 and files[0].startswith("tinyset-pt_inception-2015-12-05-6726825d-")
    mtime = os.path.getmtime(cache_dir / files[0])

    loads = []
    original = metric_utils.FeatureStats.load
    monkeypatch.setattr(metric_utils.FeatureStats, "load", staticmethod(lambda p: loads.append(p) or original(p)))
    again = metric_main.calc_metric("kid2_full", **kwargs).results.kid2_full
    assert loads == [str(cache_dir / files[0])] and again == first
    assert os.path.getmtime(cache_dir / files[0]) == mtime

    # Different options (legacy kid: max_real = num_gen; mirrored dataset) -> their own cache files.
    metric_main.calc_metric("kid2", **kwargs)
    metric_main.calc_metric("kid2", **dict(kwargs, dataset_kwargs=dict(path=data_dir, xflip=True)))
    assert len(os.listdir(cache_dir)) == 3
    assert not [name for name in os.listdir(cache_dir) if name.endswith(".tmp")]


def test_failed_cache_write_leaves_no_file(G, data_dir, inception_dir, cache_dir, monkeypatch):
    def broken_savez(file, **arrays):
        file.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(FileWriteError, match="could not write .*disk full.*nothing was written"):
        metric_main.calc_metric("kid2", **_kwargs(G, data_dir, inception_dir, batch_size=12))
    assert not cache_dir.exists() or os.listdir(cache_dir) == []


def test_feature_stats_do_not_depend_on_batch_size(G, data_dir, inception_dir, cache_dir):
    stats = []
    for batch_size in (2, 3):  # 2: a partial last batch; 3: one batch
        opts = metric_utils.MetricOptions(**_kwargs(G, data_dir, inception_dir, batch_size=batch_size, cache=False))
        real = metric_utils.compute_feature_stats_for_dataset(
            opts, "inception", dict(return_features=True), capture_all=True, capture_mean_cov=True, max_items=3
        )
        gen = metric_utils.compute_feature_stats_for_generator(
            opts, "inception", dict(return_features=True), capture_all=True, capture_mean_cov=True, max_items=3
        )
        stats.append((real, gen))
    for a, b in zip(stats[0], stats[1]):
        assert a.num_items == b.num_items
        np.testing.assert_allclose(a.get_all(), b.get_all(), rtol=1e-4, atol=1e-5)
        for x, y in zip(a.get_mean_cov(), b.get_mean_cov()):
            np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5)


def test_kid_end_to_end_equals_direct_computation(G, data_dir, inception_dir, cache_dir, real_features):
    kid = metric_main.calc_metric("kid3_full", **_kwargs(G, data_dir, inception_dir, batch_size=3)).results.kid3_full
    detector = detectors.get_detector("inception", "cpu", inception_dir)
    with torch.no_grad():
        gen = detector(_generated_images(G, 3), return_features=True).numpy().astype(np.float64)
    real = real_features.astype(np.float64)
    # m = 3 < 7 reals: each of the 100 subsets is a seeded random draw; replay the same draws.
    rng = np.random.RandomState(0)
    n, m, t = real.shape[1], 3, 0.0
    for _ in range(100):
        x, y = gen[rng.choice(3, m, replace=False)], real[rng.choice(NUM_REAL, m, replace=False)]
        kxx, kyy, kxy = (x @ x.T / n + 1) ** 3, (y @ y.T / n + 1) ** 3, (x @ y.T / n + 1) ** 3
        t += ((kxx.sum() - np.trace(kxx)) + (kyy.sum() - np.trace(kyy))) / (m * (m - 1)) - 2 * kxy.mean()
    assert kid == pytest.approx(t / 100, rel=1e-4)


@pytest.mark.slow
def test_inception_score_end_to_end_equals_direct_computation(G, data_dir, inception_dir, cache_dir):
    result = metric_main.calc_metric("is20", **_kwargs(G, data_dir, inception_dir, batch_size=10)).results
    detector = detectors.get_detector("inception", "cpu", inception_dir)
    with torch.no_grad():
        probs = detector(_generated_images(G, 20), no_output_bias=True).numpy()
    mean, std = inception_score(probs, 10)
    assert result.is20_mean == pytest.approx(mean, rel=1e-4) and result.is20_std == pytest.approx(
        std, rel=1e-3, abs=1e-6
    )


def test_ppl_end_to_end_equals_direct_lpips_computation(G, cache_dir):
    vgg_path, lpips_path, _vgg_state, lpips_state = ms.shared_vgg_files()
    vgg_dir = os.path.dirname(vgg_path)
    result = metric_main.calc_metric("ppl2_wend_6", G=G, device="cpu", detector_dir=vgg_dir).results.ppl2_wend_6

    vgg = detectors.get_detector("vgg16", "cpu", vgg_dir, need_lpips=True)
    eps, dists = 1e-4, []
    with torch.no_grad():
        for batch in range(3):
            z0, z1 = [], []
            for index in (2 * batch, 2 * batch + 1):
                rng = metric_utils.sample_rng(0, index)
                z0.append(rng.standard_normal(G.z_dim))
                z1.append(rng.standard_normal(G.z_dim))
            z0, z1 = torch.tensor(np.array(z0), dtype=torch.float32), torch.tensor(np.array(z1), dtype=torch.float32)
            noise_seed = int(np.random.SeedSequence([0, batch, 1]).generate_state(1)[0])
            G.synthesis.noise_const.copy_(
                torch.randn(G.synthesis.noise_const.shape, generator=torch.Generator().manual_seed(noise_seed))
            )
            c = torch.zeros([2, 0])
            w0, w1 = G.mapping(z0, c), G.mapping(z1, c)
            img0 = (G.synthesis(w0) + 1) * 127.5
            img1 = (G.synthesis(w0 + eps * (w1 - w0)) + 1) * 127.5
            taps0, taps1 = [], []
            vgg._trunk((img0 - vgg.img_mean) / vgg.img_std, taps0)
            vgg._trunk((img1 - vgg.img_mean) / vgg.img_std, taps1)
            lpips = 0
            for i, (a, b) in enumerate(zip(taps0, taps1)):
                a = a / (a.norm(dim=1, keepdim=True) + 1e-10)
                b = b / (b.norm(dim=1, keepdim=True) + 1e-10)
                lpips = lpips + (lpips_state[f"lin{i}.model.1.weight"] * (a - b).square()).sum(1).mean([1, 2])
            dists.append(lpips / eps**2)
        G.synthesis.noise_const.zero_()
    expected = ppl_from_distances(torch.cat(dists).numpy())
    assert result == pytest.approx(expected, rel=2e-2)
    assert result > 0


@pytest.mark.slow
def test_precision_recall_end_to_end_equals_direct_computation(G, data_dir, cache_dir):
    vgg_dir = os.path.dirname(ms.shared_vgg_files()[0])
    results = metric_main.calc_metric("pr63", **_kwargs(G, data_dir, vgg_dir, batch_size=6)).results
    vgg = detectors.get_detector("vgg16", "cpu", vgg_dir)
    with torch.no_grad():
        real = vgg(_real_images(data_dir)[:6], return_features=True)
        gen = vgg(_generated_images(G, 6), return_features=True)
    dist_rr, dist_gg, dist_gr = torch.cdist(real, real), torch.cdist(gen, gen), torch.cdist(gen, real)
    radius_r, radius_g = dist_rr.sort(1).values[:, 3], dist_gg.sort(1).values[:, 3]
    precision = (dist_gr <= radius_r[None]).any(1).float().mean().item()
    recall = (dist_gr.T <= radius_g[None]).any(1).float().mean().item()
    assert (results.pr63_precision, results.pr63_recall) == pytest.approx((precision, recall))


@pytest.mark.slow  # about 10-20 s: two fresh processes import torch and build the detector
def test_two_processes_give_the_same_features_and_kid_as_one(G, data_dir, inception_dir, tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(
        ms.distributed_worker,
        args=(2, str(tmp_path / "init"), data_dir, inception_dir, str(tmp_path)),
        nprocs=2,
        join=True,
    )
    two = np.load(tmp_path / "result.npz")
    kwargs = _kwargs(G, data_dir, inception_dir, batch_size=2, cache=False)
    opts = metric_utils.MetricOptions(**kwargs)
    real = metric_utils.compute_feature_stats_for_dataset(
        opts, "inception", dict(return_features=True), capture_all=True
    ).get_all()
    gen = metric_utils.compute_feature_stats_for_generator(
        opts, "inception", dict(return_features=True), capture_all=True, max_items=5
    ).get_all()
    kid = metric_main.calc_metric("kid5_full", **kwargs).results.kid5_full
    assert int(two["num_gpus"]) == 2 and two["real"].shape == (NUM_REAL, 2048) and two["gen"].shape == (5, 2048)
    np.testing.assert_allclose(two["real"], real, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(two["gen"], gen, rtol=1e-4, atol=1e-5)
    assert float(two["kid"]) == pytest.approx(kid, rel=1e-4)
