"""StreamSampler: epochs are permutations, resuming at a position continues the stream, W processes = 1."""

import itertools

import pytest

from training.sampler import StreamSampler


def take(sampler, n):
    return list(itertools.islice(iter(sampler), n))


def test_every_epoch_is_a_permutation_and_epochs_differ():
    sampler = StreamSampler(10, batch_size=5, seed=3)
    stream = take(sampler, 30)
    epochs = [stream[i : i + 10] for i in range(0, 30, 10)]
    for epoch in epochs:
        assert sorted(epoch) == list(range(10))
    assert epochs[0] != epochs[1]


def test_resuming_at_a_position_continues_the_same_stream():
    full = take(StreamSampler(7, batch_size=4, seed=1), 40)
    resumed = take(StreamSampler(7, batch_size=4, seed=1, start=24), 16)
    assert resumed == full[24:40]


def test_processes_read_contiguous_slices_of_each_global_batch():
    B, W = 8, 2
    one = take(StreamSampler(13, batch_size=B, seed=5), 3 * B)
    per_rank = [take(StreamSampler(13, batch_size=B, rank=r, world_size=W, seed=5), 3 * B // W) for r in range(W)]
    for step in range(3):
        joined = sum((per_rank[r][step * B // W : (step + 1) * B // W] for r in range(W)), [])
        assert joined == one[step * B : (step + 1) * B]


def test_global_indices_agree_with_iteration():
    sampler = StreamSampler(5, batch_size=5, seed=2)
    assert list(sampler.global_indices(3, 9)) == take(sampler, 12)[3:12]


def test_no_shuffle_is_dataset_order():
    assert take(StreamSampler(3, batch_size=3, shuffle=False), 7) == [0, 1, 2, 0, 1, 2, 0]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(dataset_size=0, batch_size=4), "empty"),
        (dict(dataset_size=5, batch_size=5, world_size=2), "divisible"),
        (dict(dataset_size=5, batch_size=4, rank=2, world_size=2), "rank"),
        (dict(dataset_size=5, batch_size=4, start=6), "multiple"),
    ],
)
def test_invalid_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        StreamSampler(**kwargs)
