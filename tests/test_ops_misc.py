"""torch_utils.misc helpers: shape asserts, cached constants, parameter copies, sampler, summary."""

import itertools

import pytest
import torch

from torch_utils import misc


def test_assert_shape_accepts_wildcards_and_names_the_bad_dimension():
    x = torch.zeros(2, 3, 4)
    misc.assert_shape(x, [None, 3, 4])
    with pytest.raises(AssertionError, match="dimension 1"):
        misc.assert_shape(x, [2, 5, 4])
    with pytest.raises(AssertionError, match="number of dimensions"):
        misc.assert_shape(x, [2, 3])


def test_constant_is_cached_per_configuration():
    a = misc.constant([1.0, 2.0], shape=[3, 2], dtype=torch.float32)
    assert a.shape == (3, 2) and a.is_contiguous()
    torch.testing.assert_close(a, torch.tensor([[1.0, 2.0]] * 3))
    assert misc.constant([1.0, 2.0], shape=[3, 2], dtype=torch.float32) is a
    assert misc.constant([1.0, 2.0], shape=[3, 2], dtype=torch.float64) is not a
    assert misc.constant([1.0, 3.0], shape=[3, 2], dtype=torch.float32)[0, 1] == 3


@pytest.mark.parametrize(
    "bad, expect",
    [
        (None, True),
        (float("nan"), False),
        (float("inf"), False),
        (float("-inf"), False),
        ("inf and -inf", False),  # their sum is NaN
        ("overflowing sum", True),  # every entry finite, the sum infinite: the elementwise check decides
    ],
)
def test_all_finite_is_the_elementwise_answer(bad, expect):
    t = torch.randn(1000)
    if bad == "inf and -inf":
        t[3], t[700] = float("inf"), float("-inf")
    elif bad == "overflowing sum":
        t[:] = 3e38
    elif bad is not None:
        t[500] = bad
    assert bool(torch.isfinite(t).all()) == expect
    assert misc.all_finite(t) == expect


def test_copy_params_and_buffers_copies_by_name_and_checks():
    src = torch.nn.BatchNorm1d(3)
    dst = torch.nn.BatchNorm1d(3)
    with torch.no_grad():
        src.weight.fill_(2.0)
        src.running_mean.fill_(0.5)
    misc.copy_params_and_buffers(src, dst, require_all=True)
    torch.testing.assert_close(dst.weight, src.weight)
    torch.testing.assert_close(dst.running_mean, src.running_mean)
    assert dst.weight.requires_grad
    with pytest.raises(KeyError, match="weight"):
        misc.copy_params_and_buffers(torch.nn.Module(), dst, require_all=True)
    misc.copy_params_and_buffers(torch.nn.Module(), dst)  # missing names are fine unless required
    with pytest.raises(ValueError, match="shape mismatch"):
        misc.copy_params_and_buffers(torch.nn.BatchNorm1d(4), dst)


def test_infinite_sampler_splits_ranks_and_covers_dataset():
    data = list(range(10))
    streams = [
        list(itertools.islice(iter(misc.InfiniteSampler(data, rank=r, num_replicas=2, seed=3)), 50)) for r in range(2)
    ]
    assert all(0 <= i < 10 for s in streams for i in s)
    unshuffled = list(itertools.islice(iter(misc.InfiniteSampler(data, shuffle=False)), 20))
    assert unshuffled == list(range(10)) * 2
    # Without the sliding-window swaps each pass is one shared permutation split between the ranks.
    fixed = [
        list(itertools.islice(iter(misc.InfiniteSampler(data, rank=r, num_replicas=2, seed=3, window_size=0)), 10))
        for r in range(2)
    ]
    assert sorted(fixed[0][:5] + fixed[1][:5]) == data
    assert fixed[0][5:] == fixed[0][:5]
    with pytest.raises(ValueError, match="rank"):
        misc.InfiniteSampler(data, rank=2, num_replicas=2)


def test_ddp_sync_and_consistency_are_noops_without_distributed():
    net = torch.nn.Linear(2, 2)
    with misc.ddp_sync(net, sync=False):
        net(torch.randn(1, 2)).sum().backward()
    misc.check_ddp_consistency(net)


def test_print_module_summary_returns_outputs_and_counts_params(capsys):
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    x = torch.randn(5, 3)
    out = misc.print_module_summary(net, [x])
    torch.testing.assert_close(out, net(x))
    text = capsys.readouterr().out
    assert "Total" in text and str(3 * 4 + 4 + 4 * 2 + 2) in text
    assert "[5, 2]" in text
