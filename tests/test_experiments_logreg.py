"""Logistic-regression experiment: the batched GD equals one-model-at-a-time GD, folds and scaling are sound."""

import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import rlo
from experiments import crossval, logreg, logreg_grid
from experiments.batched_gd import BatchedFamilyLoss, batched_gd


def _toy_problem(num_samples=40, num_features=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(num_samples, num_features)) * [1.0, 5.0, 0.2] + [0.0, 3.0, -1.0]
    y = np.where(x[:, 0] + 0.3 * rng.normal(size=num_samples) > 0, 1, -1)
    return x, y


def _plain_gd(x, y, fold_ids, fold, loss_cfg, l2, steps, lr):
    """One model, one fold, written out directly: the oracle for the batched program."""
    train = fold_ids != fold
    mean, std = x[train].mean(axis=0), x[train].std(axis=0)
    features = torch.tensor(np.c_[(x - mean) / std, np.ones(len(x))], dtype=torch.float64)
    targets = torch.tensor(y, dtype=torch.float64)
    w = torch.zeros(features.shape[1], dtype=torch.float64)
    for _ in range(steps):
        w.requires_grad_(True)
        objective = rlo.binary_loss(loss_cfg, features[train] @ w, targets[train]) + 0.5 * l2 * w[:-1].square().sum()
        (grad,) = torch.autograd.grad(objective, w)
        w = (w - lr * grad).detach()
    z = features @ w
    test_acc = float(((z[~train] > 0) == (targets[~train] > 0)).double().mean())
    return w, float(rlo.logistic(z[train], targets[train])), test_acc


def test_batched_gd_matches_single_model_gd_for_several_k_folds_and_l2():
    x, y = _toy_problem()
    fold_ids = crossval.stratified_fold_ids(y, 4, seed=1)
    mask = crossval.train_masks(fold_ids, 4)
    specs = [
        (rlo.LossConfig("ce"), 0.0),
        (rlo.LossConfig("rlo", k=3.0), 0.0),
        (rlo.LossConfig("rlo", k=7.0), 0.1),
        (rlo.LossConfig("ce"), 0.1),
        (rlo.LossConfig("rlo", k=20.0), 0.0),
    ]
    steps, lr = 25, 0.3
    history = batched_gd(
        crossval.standardize_per_fold(x, mask),
        torch.tensor(y, dtype=torch.float64),
        mask,
        [s[0] for s in specs],
        [s[1] for s in specs],
        steps=steps,
        lr=lr,
    )
    assert history.weights.shape == (5, 4, 4) and history.test_acc.shape == (steps + 1, 5, 4)
    for model, fold in ((1, 0), (2, 3), (3, 1), (4, 2)):
        w, train_ce, test_acc = _plain_gd(x, y, fold_ids, fold, *specs[model], steps, lr)
        torch.testing.assert_close(history.weights[model, fold], w, rtol=1e-10, atol=1e-12)
        assert float(history.train_ce[-1, model, fold]) == pytest.approx(train_ce, rel=1e-10)
        assert float(history.test_acc[-1, model, fold]) == test_acc
    assert torch.allclose(history.train_ce[0], torch.full((5, 4), math.log(2), dtype=torch.float64))


def test_batched_family_loss_equals_rlo_binary_loss_model_by_model():
    configs = [
        rlo.LossConfig("rlo", k=3.0),
        rlo.LossConfig("ce"),
        rlo.LossConfig("rlo", k=11.0),
        rlo.LossConfig("rlo-eq9", k=4.0),
        rlo.LossConfig("rlo", k=2.0, m=5.0),
        rlo.LossConfig("focal"),
        rlo.LossConfig("rlo-eq9", k=9.0),
    ]
    z = torch.randn(len(configs), 2, 50, dtype=torch.float64) * 30  # large logits reach the eq4 tangent cap
    y = torch.where(torch.rand(50) > 0.5, 1.0, -1.0).double()
    batched = BatchedFamilyLoss(configs)(z, y)
    for index, cfg in enumerate(configs):
        torch.testing.assert_close(
            batched[index], rlo.binary_loss(cfg, z[index], y.expand(2, -1), reduction="none"), rtol=1e-12, atol=0
        )


def test_stratified_folds_are_disjoint_cover_the_data_and_balance_classes():
    y = np.array([1] * 23 + [-1] * 12)
    fold_ids = crossval.stratified_fold_ids(y, 5, seed=3)
    masks = ~crossval.train_masks(fold_ids, 5).numpy()  # test parts
    assert (masks.sum(axis=0) == 1).all()  # every sample in exactly one test fold
    assert sorted(masks.sum(axis=1)) == [7, 7, 7, 7, 7]
    for label, count in ((1, 23), (-1, 12)):
        per_fold = [int((y[mask] == label).sum()) for mask in masks]
        assert max(per_fold) - min(per_fold) <= 1 and sum(per_fold) == count
    np.testing.assert_array_equal(fold_ids, crossval.stratified_fold_ids(y, 5, seed=3))


def test_standardisation_uses_only_the_training_folds():
    x, y = _toy_problem(30, 3, seed=2)
    x[:, 2] = 4.0  # a constant feature is centred, not divided by zero
    fold_ids = crossval.stratified_fold_ids(y, 3)
    mask = crossval.train_masks(fold_ids, 3)
    features = crossval.standardize_per_fold(x, mask).numpy()
    for fold in range(3):
        train = fold_ids != fold
        mean, std = x[train].mean(axis=0), x[train].std(axis=0)
        std[std == 0] = 1.0
        np.testing.assert_allclose(features[fold, :, :3], (x - mean) / std, rtol=1e-12, atol=1e-12)
        np.testing.assert_array_equal(features[fold, :, 3], 1.0)  # bias column
        perturbed = x.copy()
        perturbed[~train] += 1000.0  # changing the held-out rows must not move the training statistics
        again = crossval.standardize_per_fold(perturbed, mask).numpy()
        np.testing.assert_allclose(again[fold, train], features[fold, train], rtol=1e-12, atol=1e-12)


def test_model_grid_holds_every_method_and_k():
    cfg = logreg_grid.LogRegConfig(k_values=(3.0, 5.0), l2=0.5)
    grid = logreg_grid.model_grid(cfg)
    assert [(s.method, s.k, s.l2) for s in grid] == [
        ("LR", None, 0.0),
        ("LR-L2", None, 0.5),
        ("RLO", 3.0, 0.0),
        ("RLO", 5.0, 0.0),
        ("RLO-L2", 3.0, 0.5),
        ("RLO-L2", 5.0, 0.5),
    ]
    assert grid[3].loss == rlo.LossConfig("rlo", k=5.0)
    assert cfg.steps_for("spectf") == 1000 and cfg.steps_for("wine") == 200


def _cli(*args):
    return CliRunner().invoke(logreg.main, [str(a) for a in args], catch_exceptions=False)


def test_cli_smoke_run_writes_table_csv_and_figure(tmp_path):
    data_dir = tmp_path / "uci"
    data_dir.mkdir()
    rng = np.random.default_rng(0)
    rows = [",".join(f"{v:.3f}" for v in rng.normal(size=34)) + ("," + "gb"[i % 2]) for i in range(40)]
    (data_dir / "ionosphere.data").write_text("\n".join(rows) + "\n")
    out = tmp_path / "out"
    result = _cli(
        "--data-dir", data_dir, "--out", out, "--datasets", "wine,ionosphere", "--steps", 3, "--spectf-steps", 3
    )
    assert result.exit_code == 0, result.output
    table = (out / "logreg_table1.md").read_text()
    assert "| Wine |" in table and "| Ionosphere |" in table and "Paper's Table 1" in table
    csv_lines = (out / "logreg_table1.csv").read_text().splitlines()
    assert len(csv_lines) == 1 + 2 * (2 + 2 * 18)  # header + (LR, LR-L2, RLO x18, RLO-L2 x18) per dataset
    assert (out / "logreg_convergence.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "97.22" in result.stdout  # the paper's reference numbers are printed beside ours


def test_cli_reports_a_missing_file_by_name(tmp_path):
    result = _cli("--data-dir", tmp_path, "--out", tmp_path / "out", "--datasets", "madelon")
    assert result.exit_code == 2
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("Error: madelon needs madelon_train.data") and f"{tmp_path} (--data-dir: lacks" in error
    assert not (tmp_path / "out").exists()


def test_datasets_flag_takes_a_comma_separated_list_in_order_with_the_paper_alias(tmp_path):
    assert logreg.parse_datasets(None, None, " ionosphere,Specheart , wine") == ["ionosphere", "spectf", "wine"]
    for bad, message in (
        ("wine,iris", "unknown dataset 'iris'"),
        ("wine,spectf,specheart", "named twice"),
        (",", "no dataset named"),
    ):
        result = _cli("--datasets", bad, "--out", tmp_path / "out")
        assert result.exit_code == 2
        error = result.stderr.strip().splitlines()[-1]
        assert error.startswith("Error: Invalid value for '--datasets': ") and message in error
    assert not (tmp_path / "out").exists()
