"""Spiral experiment: the data are seeded and balanced, the FCNs have the stated depth, the CLI writes outputs."""

import math

import numpy as np
import torch
from click.testing import CliRunner

import rlo
from experiments import spiral


def test_spiral_is_deterministic_per_seed_and_balanced():
    x, y = spiral.make_spiral(seed=0)
    again_x, again_y = spiral.make_spiral(seed=0)
    np.testing.assert_array_equal(x, again_x)
    np.testing.assert_array_equal(y, again_y)
    assert x.shape == (1500, 2) and x.dtype == np.float32
    assert int((y == 0).sum()) == 750 and int((y == 1).sum()) == 750
    assert not np.array_equal(x, spiral.make_spiral(seed=1)[0])


def test_spiral_arms_are_point_reflections_of_each_other_without_noise():
    x, y = spiral.make_spiral(num_samples=200, noise=0.0, seed=4)
    radius = np.linalg.norm(x, axis=1)
    assert radius.max() <= 1.0 + 1e-6
    # Without noise a point at radius t lies at angle 2*pi*turns*t (+ pi for class 1).
    expected = 2 * math.pi * spiral.TURNS * radius + math.pi * y
    angle = np.arctan2(x[:, 1], x[:, 0])
    np.testing.assert_allclose(np.cos(angle - expected), 1.0, atol=1e-4)


def test_split_is_70_30_disjoint_and_seeded():
    x, y = spiral.make_spiral()
    data = spiral.split_spiral(x, y, seed=0)
    assert data.x_train.shape == (1050, 2) and data.x_test.shape == (450, 2)
    train = {tuple(p) for p in data.x_train.tolist()}
    test = {tuple(p) for p in data.x_test.tolist()}
    assert not train & test and len(train | test) == 1500
    torch.testing.assert_close(spiral.split_spiral(x, y, seed=0).x_test, data.x_test)


def test_n_layer_fcn_has_n_linear_layers_of_width_100():
    for layers in (2, 3, 4):
        linears = [m for m in spiral.make_fcn(layers) if isinstance(m, torch.nn.Linear)]
        assert len(linears) == layers
        assert [m.out_features for m in linears] == [100] * (layers - 1) + [2]


def test_ce_and_rlo_start_from_the_same_weights():
    x, y = spiral.make_spiral(num_samples=40)
    data = spiral.split_spiral(x, y)
    ce = spiral.train_fcn(data, rlo.LossConfig("ce"), 3, iterations=0, seed=5)
    rooted = spiral.train_fcn(data, rlo.LossConfig("rlo", k=3.0), 3, iterations=0, seed=5)
    for a, b in zip(ce.parameters(), rooted.parameters()):
        torch.testing.assert_close(a, b)


def test_cli_smoke_run_writes_table_csv_and_figure(tmp_path):
    result = CliRunner().invoke(
        spiral.main, ["--out", str(tmp_path), "--iterations", "2", "1", "1", "--seeds", "1"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    table = (tmp_path / "spiral_results.md").read_text()
    assert table.count("| CE |") == 3 and table.count("| RLO (k=3) |") == 3
    assert len((tmp_path / "spiral_results.csv").read_text().splitlines()) == 1 + 6
    assert (tmp_path / "spiral_boundaries.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "RLO (k=3)" in result.stdout
