"""training_stats: Collector means/stds/counts equal numpy's over exactly the values reported between updates."""

import numpy as np
import pytest
import torch

from torch_utils import training_stats


@pytest.fixture(autouse=True)
def _fresh_stats():
    training_stats.reset()
    yield
    training_stats.reset()


def test_collector_matches_numpy_over_all_reports():
    rng = np.random.RandomState(0)
    a, b = rng.randn(7), rng.randn(3, 2)
    collector = training_stats.Collector(".*")
    training_stats.report("Loss/x", torch.from_numpy(a))
    training_stats.report("Loss/x", b.tolist())
    training_stats.report("Loss/y", 2.5)
    collector.update()
    values = np.concatenate([a, b.ravel()])
    assert collector.num("Loss/x") == 13
    assert collector.mean("Loss/x") == pytest.approx(values.mean())
    assert collector.std("Loss/x") == pytest.approx(values.std())
    assert collector.as_dict()["Loss/y"] == dict(num=1, mean=2.5, std=0.0)


def test_each_update_sees_only_new_reports_and_collectors_are_independent():
    tick = training_stats.Collector(".*")
    ada = training_stats.Collector("Loss/signs/.*")
    training_stats.report("Loss/signs/real", [1.0, 1.0])
    ada.update()
    assert ada.mean("Loss/signs/real") == 1.0
    training_stats.report("Loss/signs/real", [-1.0, -1.0])
    training_stats.report("Loss/G/loss", [4.0])
    ada.update()
    tick.update()
    assert ada.mean("Loss/signs/real") == -1.0  # only the reports since its last update
    assert ada.names() == ["Loss/signs/real"]  # regex filter
    assert tick.num("Loss/signs/real") == 4  # its own baseline: all four
    assert tick.mean("Loss/signs/real") == 0.0


def test_keep_previous_false_forgets_quiet_statistics():
    keep = training_stats.Collector(".*", keep_previous=True)
    drop = training_stats.Collector(".*", keep_previous=False)
    training_stats.report("a", 1.0)
    keep.update()
    drop.update()
    keep.update()
    drop.update()
    assert keep.mean("a") == 1.0
    assert drop.num("a") == 0 and np.isnan(drop.mean("a"))


def test_report0_counts_only_rank_zero():
    collector = training_stats.Collector(".*")
    training_stats.init_multiprocessing(rank=1, sync_device=None)
    try:
        training_stats.report0("Timing/x", 5.0)
    finally:
        training_stats.init_multiprocessing(rank=0, sync_device=None)
    training_stats.report0("Timing/y", 6.0)
    collector.update()
    assert collector.num("Timing/x") == 0
    assert collector.mean("Timing/y") == 6.0
