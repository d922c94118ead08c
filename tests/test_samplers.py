"""Tests for RangedSampler: bijection, order, resume, sharding, length, O(1) start, errors."""

from __future__ import annotations

import random
import time
import tracemalloc

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler

from tamrin.datasets.sampling.ranged_sampler import RangedSampler


class _Sized:
    """A dataset stand-in that only has a length (the sampler must never index it)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n


def _order(n: int, seed: int = 0, epoch: int = 0, shuffle: bool = True) -> list[int]:
    sampler = RangedSampler(_Sized(n), 1, shuffle=shuffle, seed=seed)
    sampler.set_epoch(epoch)
    return list(sampler)


def _shards(n: int, replicas: int, start: int = 0, **kwargs) -> list[list[int]]:
    return [
        list(RangedSampler(_Sized(n), 1, start_index=start, num_replicas=replicas, rank=r, **kwargs))
        for r in range(replicas)
    ]


def _interleave(shards: list[list[int]], first_rank: int = 0) -> list[int]:
    """Merge per-rank lists back into global order (rank `first_rank` holds the first slot)."""
    replicas = len(shards)
    ranks = [(first_rank + i) % replicas for i in range(replicas)]
    return [shards[r][i] for i in range(len(shards[0])) for r in ranks]


@pytest.mark.parametrize("n", [1, 2, 3, 7, 100, 1000, 4097])
@pytest.mark.parametrize("seed", [0, 1, 12345, 2**64 - 1, -7])
def test_shuffled_order_is_a_permutation(n: int, seed: int) -> None:
    assert sorted(_order(n, seed=seed)) == list(range(n))


def test_every_small_n_is_a_permutation_in_several_epochs() -> None:
    for n in range(1, 70):
        for epoch in range(3):
            assert sorted(_order(n, seed=n, epoch=epoch)) == list(range(n))


def test_same_seed_and_epoch_give_the_same_order() -> None:
    assert _order(1000, seed=5, epoch=2) == _order(1000, seed=5, epoch=2)


def test_epochs_and_seeds_give_different_orders() -> None:
    orders = [tuple(_order(1000, seed=s, epoch=e)) for s in range(3) for e in range(3)]
    assert len(set(orders)) == len(orders)
    assert list(orders[0]) != list(range(1000))


def test_seed_none_means_zero() -> None:
    assert list(RangedSampler(range(50), 1, shuffle=True)) == _order(50, seed=0)


def test_no_shuffle_is_the_natural_order_and_ignores_seed_and_epoch() -> None:
    sampler = RangedSampler(range(10), 3, seed=99)
    sampler.set_epoch(4)
    assert list(sampler) == list(range(10))


def test_start_and_end_index_slice_the_epoch_order() -> None:
    full = _order(100, seed=3)
    assert list(RangedSampler(range(100), 1, 10, 60, shuffle=True, seed=3)) == full[10:60]


def test_resume_at_every_position_yields_the_tail() -> None:
    full = _order(37, seed=11, epoch=2)
    for k in range(38):
        sampler = RangedSampler(range(37), 4, shuffle=True, seed=11)
        sampler.set_epoch(2)
        sampler.set_start_index(k)
        assert list(sampler) == full[k:]
        assert list(RangedSampler(range(37), 4, start_index=k, shuffle=True, seed=11)) == _order(37, seed=11)[k:]


def test_set_epoch_to_a_new_epoch_restarts_at_zero_and_same_epoch_keeps_position() -> None:
    sampler = RangedSampler(range(20), 1, start_index=5, shuffle=True)
    sampler.set_epoch(0)
    assert sampler.start_index == 5
    sampler.set_epoch(1)
    assert sampler.start_index == 0 and len(sampler) == 20


def test_state_dict_round_trip() -> None:
    sampler = RangedSampler(range(64), 4, shuffle=True, seed=9)
    sampler.set_epoch(3)
    sampler.set_start_index(sampler.position_after(5))
    state = sampler.state_dict()
    assert state == {"epoch": 3, "start_index": 20, "seed": 9, "shuffle": True}
    assert all(type(v) in (int, bool) for v in state.values())
    resumed = RangedSampler(range(64), 4, shuffle=True, seed=9)
    resumed.load_state_dict(state)
    assert list(resumed) == _order(64, seed=9, epoch=3)[20:]


def test_load_state_dict_with_another_seed_warns_and_uses_the_checkpoint() -> None:
    resumed = RangedSampler(range(30), 1, shuffle=True, seed=1)
    with pytest.warns(UserWarning, match="seed=2.*using 2 from the checkpoint"):
        resumed.load_state_dict({"epoch": 1, "start_index": 0, "seed": 2, "shuffle": True})
    assert list(resumed) == _order(30, seed=2, epoch=1)


def test_load_state_dict_rejects_missing_and_unknown_keys() -> None:
    sampler = RangedSampler(range(30), 1)
    with pytest.raises(ValueError, match=r"missing keys \['seed', 'shuffle'\].*\['extra'\]"):
        sampler.load_state_dict({"epoch": 0, "start_index": 0, "extra": 1})


def test_position_after_then_resume_continues_the_batches() -> None:
    sampler = RangedSampler(range(50), 4, shuffle=True, seed=4)
    batches = list(DataLoader(range(50), batch_size=4, sampler=sampler))
    resumed = RangedSampler(range(50), 4, start_index=sampler.position_after(3), shuffle=True, seed=4)
    rest = list(DataLoader(range(50), batch_size=4, sampler=resumed))
    assert [b.tolist() for b in rest] == [b.tolist() for b in batches[3:]]
    assert sampler.position_after(100) == 50  # capped at end_index


def test_shards_partition_the_epoch_when_divisible() -> None:
    full = _order(40, seed=2)
    shards = _shards(40, 4, shuffle=True, seed=2)
    assert {len(s) for s in shards} == {10}
    assert _interleave(shards) == full
    assert sorted(sum(shards, [])) == list(range(40))


def test_shards_pad_by_wrapping_to_the_epoch_start_when_not_divisible() -> None:
    full = _order(10, seed=2)
    shards = _shards(10, 4, shuffle=True, seed=2)
    assert {len(s) for s in shards} == {3}
    assert _interleave(shards) == full + full[:2]


def test_padding_wraps_more_than_once_when_fewer_samples_than_replicas() -> None:
    assert _shards(2, 5) == [[0], [1], [0], [1], [0]]


def test_drop_last_drops_the_tail_and_incomplete_batches() -> None:
    shards = [list(RangedSampler(range(10), 1, num_replicas=4, rank=r, drop_last=True)) for r in range(4)]
    assert _interleave(shards) == list(range(8))
    sampler = RangedSampler(range(23), 4, num_replicas=2, rank=1, drop_last=True)
    assert list(sampler) == [1, 3, 5, 7, 9, 11, 13, 15]  # 11 per rank -> 2 whole batches


@pytest.mark.parametrize("drop_last", [False, True])
@pytest.mark.parametrize("n", [1, 9, 10, 17])
def test_no_shuffle_matches_distributed_sampler(drop_last: bool, n: int) -> None:
    for rank in range(4):
        ours = RangedSampler(range(n), 1, num_replicas=4, rank=rank, drop_last=drop_last)
        theirs = DistributedSampler(range(n), 4, rank, shuffle=False, drop_last=drop_last)
        assert list(ours) == list(theirs)


@pytest.mark.parametrize(("old", "new"), [(2, 1), (2, 3), (4, 2), (1, 3), (3, 5), (1, 2), (3, 4)])
def test_resume_with_another_world_size_repeats_and_skips_nothing(old: int, new: int) -> None:
    n, batch, steps = 120, 5, 3
    full = _order(n, seed=8, epoch=1)
    first = RangedSampler(range(n), batch, shuffle=True, seed=8, num_replicas=old, rank=0)
    first.set_epoch(1)
    consumed = first.position_after(steps)
    seen = []
    for r in range(old):
        sampler = RangedSampler(range(n), batch, end_index=consumed, shuffle=True, seed=8, num_replicas=old, rank=r)
        sampler.set_epoch(1)
        seen.append(list(sampler))
    seen, rest = _interleave(seen), []
    for r in range(new):
        sampler = RangedSampler(range(n), batch, shuffle=True, seed=8, num_replicas=new, rank=r)
        sampler.load_state_dict({**first.state_dict(), "start_index": consumed})
        rest.append(list(sampler))
    assert seen == full[:consumed]
    # divisible remainders continue exactly; otherwise the last round pads from the epoch start
    padding = (consumed - n) % new
    assert _interleave(rest, first_rank=consumed % new) == full[consumed:] + full[:padding]


def test_resume_from_two_processes_to_one_at_an_odd_length_sees_each_sample_once() -> None:
    full = _order(11, seed=1)
    assert list(RangedSampler(range(11), 2, start_index=4, shuffle=True, seed=1)) == full[4:]


@pytest.mark.parametrize("replicas", [1, 2, 3, 4])
@pytest.mark.parametrize("drop_last", [False, True])
def test_len_equals_the_number_yielded_on_every_rank(replicas: int, drop_last: bool) -> None:
    for n in (1, 7, 10, 33):
        for batch in (1, 3, 8):
            for start, end in ((0, n), (n // 3, n), (1 % n, n - n // 4), (n, n), (0, 0)):
                lengths = set()
                for rank in range(replicas):
                    sampler = RangedSampler(range(n), batch, start, end, drop_last, True, 3, replicas, rank)
                    lengths.add(len(sampler))
                    assert len(list(sampler)) == len(sampler)
                assert len(lengths) == 1


def test_start_near_the_end_of_a_huge_epoch_is_instant_and_small() -> None:
    n = 10**12
    list(RangedSampler(_Sized(n), 32, start_index=n - 1, shuffle=True))  # warm up imports
    began = time.perf_counter()
    sampler = RangedSampler(_Sized(n), 32, start_index=n - 1, shuffle=True, seed=5)
    first = next(iter(sampler))
    assert time.perf_counter() - began < 0.05
    assert 0 <= first < n and len(sampler) == 1
    tracemalloc.start()
    try:
        batch = list(RangedSampler(_Sized(n), 32, start_index=n - 32, shuffle=True, seed=5))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(set(batch)) == 32 and peak < 1_000_000


def test_global_rngs_are_untouched() -> None:
    torch_state, np_state, py_state = torch.random.get_rng_state(), np.random.get_state(), random.getstate()
    sampler = RangedSampler(range(500), 8, shuffle=True, seed=3, num_replicas=2, rank=1)
    sampler.set_epoch(2)
    list(sampler)  # not through a DataLoader: DataLoader itself draws a seed from torch's RNG
    assert torch.equal(torch.random.get_rng_state(), torch_state)
    assert np.random.get_state()[1].tolist() == np_state[1].tolist()
    assert random.getstate() == py_state


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_size": 0}, r"`batch_size=0` must be an int >= 1"),
        ({"batch_size": 2.5}, r"`batch_size=2.5` must be an int >= 1"),
        ({"start_index": 11}, r"`start_index=11` must be an int in \[0, 10\] \(end_index=10\)"),
        ({"start_index": -1}, r"`start_index=-1` must be an int in \[0, 10\]"),
        ({"start_index": 6, "end_index": 5}, r"`start_index=6` must be an int in \[0, 5\]"),
        ({"end_index": 11}, r"`end_index=11` must be an int in \[0, 10\] \(len\(data\)=10\)"),
        ({"num_replicas": 0}, r"`num_replicas=0` must be an int >= 1"),
        ({"num_replicas": 2, "rank": 2}, r"`rank=2` must be an int in \[0, 1\] \(num_replicas=2"),
        ({"rank": -1}, r"`rank=-1` must be an int in \[0, 0\]"),
        ({"seed": "7"}, r"`seed='7'` must be an int or None \(None means 0\)"),
    ],
)
def test_invalid_arguments_name_the_argument_value_and_range(kwargs: dict, message: str) -> None:
    args = {"batch_size": 1, **kwargs}
    with pytest.raises(ValueError, match=message):
        RangedSampler(range(10), **args)


def test_empty_data_and_unsized_data_are_rejected() -> None:
    with pytest.raises(ValueError, match=r"`data` is empty \(len\(data\) == 0\)"):
        RangedSampler([], 1)
    with pytest.raises(TypeError, match="`data` must have a len\\(\\); got generator"):
        RangedSampler((i for i in range(3)), 1)


def test_set_epoch_and_set_start_index_validate() -> None:
    sampler = RangedSampler(range(10), 1, end_index=8)
    with pytest.raises(ValueError, match=r"`epoch=-1` must be an int >= 0"):
        sampler.set_epoch(-1)
    with pytest.raises(ValueError, match=r"`start_index=9` must be an int in \[0, 8\]"):
        sampler.set_start_index(9)
