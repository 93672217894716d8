"""Metric formulas against independent computations: FID vs scipy on raw features, KID vs the unbiased
polynomial-kernel MMD, precision/recall on point clouds with known answers, IS, PPL helpers, names."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch
from sklearn.metrics.pairwise import polynomial_kernel

from metrics import metric_main
from metrics.frechet_inception_distance import frechet_distance, trace_sqrt_product
from metrics.inception_score import inception_score
from metrics.kernel_inception_distance import kernel_distance
from metrics.metric_utils import FeatureStats, sample_latents
from metrics.perceptual_path_length import ppl_from_distances, slerp
from metrics.precision_recall import precision_recall


def _features(n, d, shift, seed):
    rng = np.random.default_rng(seed)
    mix = rng.standard_normal((d, d)) / np.sqrt(d)
    return (rng.standard_normal((n, d)) @ mix + shift).astype(np.float32)


def _stream(x, batch, **kwargs):
    stats = FeatureStats(**kwargs)
    for start in range(0, len(x), batch):
        stats.append(x[start : start + batch])
    return stats


def test_fid_from_streamed_stats_equals_direct_scipy_computation():
    real, gen = _features(300, 16, 0.0, 1), _features(200, 16, 0.3, 2)
    mu_r, sigma_r = _stream(real, 64, capture_mean_cov=True).get_mean_cov()
    mu_g, sigma_g = _stream(gen, 7, capture_mean_cov=True).get_mean_cov()
    ours = frechet_distance(mu_g, sigma_g, mu_r, sigma_r)

    r64, g64 = real.astype(np.float64), gen.astype(np.float64)
    cov_r, cov_g = np.cov(r64, rowvar=False, bias=True), np.cov(g64, rowvar=False, bias=True)
    covmean = scipy.linalg.sqrtm(cov_g @ cov_r).real
    direct = np.sum((g64.mean(0) - r64.mean(0)) ** 2) + np.trace(cov_g + cov_r - 2 * covmean)
    assert ours == pytest.approx(direct, rel=1e-9)
    assert ours > 0.5  # the two clouds differ


def test_fid_closed_form_for_diagonal_gaussians():
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    var1, var2 = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 9.0])
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(var1) - np.sqrt(var2)) ** 2)
    assert frechet_distance(mu1, np.diag(var1), mu2, np.diag(var2)) == pytest.approx(expected, rel=1e-12)
    assert frechet_distance(mu1, np.diag(var1), mu1, np.diag(var1)) == pytest.approx(0, abs=1e-12)


def test_trace_sqrt_product_on_rank_deficient_covariances_equals_nuclear_norm():
    """Few samples in many dimensions (as in quick FIDs): Tr((S1 S2)^(1/2)) = ||X1c X2c^T||_* / sqrt(n1 n2)."""
    x1, x2 = _features(9, 40, 0.0, 8).astype(np.float64), _features(6, 40, 1.0, 9).astype(np.float64)
    c1, c2 = x1 - x1.mean(0), x2 - x2.mean(0)
    s1, s2 = c1.T @ c1 / len(x1), c2.T @ c2 / len(x2)
    expected = np.linalg.svd(c1 @ c2.T / np.sqrt(len(x1) * len(x2)), compute_uv=False).sum()
    assert trace_sqrt_product(s1, s2) == pytest.approx(expected, rel=1e-6)


def test_generated_latents_depend_only_on_seed_and_index():
    class Labels:
        def __len__(self):
            return 5

        def get_label(self, idx):
            return np.eye(5, dtype=np.float32)[idx]

    z_all, c_all = sample_latents(list(range(10)), 4, seed=3, dataset=Labels(), c_dim=5)
    z_odd, c_odd = sample_latents([1, 3, 5, 7, 9], 4, seed=3, dataset=Labels(), c_dim=5)
    np.testing.assert_array_equal(z_all[1::2], z_odd)
    np.testing.assert_array_equal(c_all[1::2], c_odd)
    assert set(c_all.sum(1)) == {1.0}
    z_other, _ = sample_latents(list(range(10)), 4, seed=4, dataset=Labels(), c_dim=5)
    assert not np.allclose(z_all, z_other)
    assert abs(z_all.mean()) < 1 and 0.3 < z_all.std() < 2


def test_kid_equals_unbiased_polynomial_mmd():
    real, gen = _features(40, 8, 0.0, 3), _features(40, 8, 0.5, 4)
    ours = kernel_distance(real, gen, num_subsets=1, max_subset_size=1000, rng=np.random.RandomState(0))
    d, m = real.shape[1], real.shape[0]
    k = lambda a, b: polynomial_kernel(a.astype(np.float64), b.astype(np.float64), degree=3, gamma=1.0 / d, coef0=1)
    kxx, kyy, kxy = k(gen, gen), k(real, real), k(gen, real)
    mmd = ((kxx.sum() - np.trace(kxx)) + (kyy.sum() - np.trace(kyy))) / (m * (m - 1)) - 2 * kxy.mean()
    assert ours == pytest.approx(mmd, rel=1e-9)
    same = kernel_distance(real, real, num_subsets=3, max_subset_size=20, rng=np.random.RandomState(0))
    assert abs(same) < abs(ours)


def _pr_oracle(real, gen, k):
    def inside(manifold, probes):
        d_mm = np.linalg.norm(manifold[:, None] - manifold[None], axis=-1)
        radius = np.sort(d_mm, axis=1)[:, k]  # k-th neighbour, skipping the point itself
        d_pm = np.linalg.norm(probes[:, None] - manifold[None], axis=-1)
        return np.mean([(d_pm[i] <= radius).any() for i in range(len(probes))])

    return inside(real, gen), inside(gen, real)


def test_precision_recall_on_a_line_with_known_answer():
    real = torch.arange(100, dtype=torch.float32).unsqueeze(1)  # radius 2 inside, 3 at the two ends
    gen = torch.tensor([[50.5], [101.5], [103.0], [200.0]])  # in, in (within 3 of 99), out, out
    precision, recall = precision_recall(real, gen, nhood_size=3, row_batch_size=7, col_batch_size=9)
    assert precision == 0.5
    # Recall: the 4 generated points' balls (radii to their 3rd neighbour) cover exactly the reals they reach.
    assert recall == pytest.approx(_pr_oracle(real.numpy(), gen.numpy(), 3)[1])


@pytest.mark.parametrize("shift", [0.0, 0.7, 3.0])
def test_precision_recall_equals_brute_force_on_random_clouds(shift):
    real = torch.from_numpy(_features(60, 5, 0.0, 5))
    gen = torch.from_numpy(_features(45, 5, shift, 6))
    ours = precision_recall(real, gen, nhood_size=3, row_batch_size=16, col_batch_size=10)
    assert ours == pytest.approx(_pr_oracle(real.numpy(), gen.numpy(), 3))


def test_inception_score_known_values():
    uniform = np.full([20, 10], 0.1)
    assert inception_score(uniform, num_splits=2) == pytest.approx((1.0, 0.0))
    onehot = np.eye(5)[np.arange(20) % 5] * (1 - 1e-12) + 1e-12 / 5  # every split holds all 5 classes equally
    mean, std = inception_score(onehot, num_splits=4)
    assert mean == pytest.approx(5.0, rel=1e-6) and std == pytest.approx(0.0, abs=1e-6)


def test_slerp_endpoints_norm_and_constant_speed():
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(4, 6, generator=gen, dtype=torch.float64), torch.randn(4, 6, generator=gen, dtype=torch.float64)
    an, bn = a / a.norm(dim=1, keepdim=True), b / b.norm(dim=1, keepdim=True)
    torch.testing.assert_close(slerp(a, b, torch.zeros(4, 1, dtype=torch.float64)), an)
    torch.testing.assert_close(slerp(a, b, torch.ones(4, 1, dtype=torch.float64)), bn)
    t = torch.full([4, 1], 0.3, dtype=torch.float64)
    mid = slerp(a, b, t)
    torch.testing.assert_close(mid.norm(dim=1), torch.ones(4, dtype=torch.float64))
    angle = torch.acos((an * bn).sum(1))
    torch.testing.assert_close(torch.acos((an * mid).sum(1).clamp(-1, 1)), 0.3 * angle)


def test_ppl_drops_one_percent_tails():
    dist = np.concatenate([np.arange(1, 99, dtype=np.float64), [1e6, -1e6]])
    lo, hi = np.percentile(dist, 1, method="lower"), np.percentile(dist, 99, method="higher")
    expected = dist[(dist >= lo) & (dist <= hi)].mean()
    assert ppl_from_distances(dist) == pytest.approx(expected)
    assert ppl_from_distances(dist) < 100


def test_feature_stats_truncate_and_round_trip(tmp_path):
    x = _features(10, 3, 0.0, 7)
    stats = _stream(x, 4, capture_all=True, capture_mean_cov=True, max_items=7)
    assert stats.num_items == 7 and stats.is_full()
    np.testing.assert_array_equal(stats.get_all(), x[:7])
    stats.save(str(tmp_path / "s.npz"))
    assert [p.name for p in tmp_path.iterdir()] == ["s.npz"]
    back = FeatureStats.load(str(tmp_path / "s.npz"))
    np.testing.assert_array_equal(back.get_all(), x[:7])
    for a, b in zip(back.get_mean_cov(), stats.get_mean_cov()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "name,family,num_gen,full,nhood",
    [
        ("fid50k_full", "fid", 50000, True, 3),
        ("fid50k", "fid", 50000, False, 3),
        ("kid50k_full", "kid", 50000, True, 3),
        ("pr50k3_full", "pr", 50000, True, 3),
        ("pr50k3", "pr", 50000, False, 3),
        ("is50k", "is", 50000, False, 3),
        ("ppl2_wend", "ppl", 50000, False, 3),
        ("ppl_zfull", "ppl", 50000, False, 3),
        ("fid5k_full", "fid", 5000, True, 3),
        ("fid16_full", "fid", 16, True, 3),
        ("pr1005", "pr", 100, False, 5),
        ("ppl_wend_2k", "ppl", 2000, False, 3),
    ],
)
def test_metric_names_parse(name, family, num_gen, full, nhood):
    spec = metric_main.parse_metric(name)
    assert (spec.family, spec.num_gen, spec.full, spec.nhood_size) == (family, num_gen, full, nhood)


def test_official_names_are_all_valid_and_unknown_names_are_rejected():
    for name in metric_main.PRIMARY_METRICS + metric_main.LEGACY_METRICS:
        assert metric_main.is_valid_metric(name)
    for bad in ("fid", "fid50k_ful", "ppl3_wend", "pr50k", "fid0_full"):
        assert not metric_main.is_valid_metric(bad)
    with pytest.raises(ValueError, match="fid50k_full"):
        metric_main.parse_metric("fidd")


@pytest.mark.parametrize(
    "name,num,expected",
    [
        ("fid50k_full", 5000, "fid5k_full"),
        ("kid50k", 300, "kid300"),
        ("pr50k3_full", 10000, "pr10k3_full"),
        ("is50k", 1000, "is1k"),
        ("ppl2_wend", 5000, "ppl2_wend_5k"),
        ("ppl2_wend", 50000, "ppl2_wend"),
    ],
)
def test_with_num_gen_renames(name, num, expected):
    assert metric_main.with_num_gen(name, num) == expected
    assert metric_main.parse_metric(expected).num_gen == num
