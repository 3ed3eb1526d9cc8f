"""Skipping the first batches of a pass (a resume inside an epoch): the reference is the same
sampler iterated from its start, with the same RNG states, and its first batches dropped."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    DistributedSampler,
    RandomSampler,
    SequentialSampler,
    SubsetRandomSampler,
    WeightedRandomSampler,
)

from eventrunner.data.skip import PassFrom, _SkipFirst, advance
from eventrunner.data.worker_seeds import SeedEachBatch

DATA = list(range(103))


def _generator() -> torch.Generator:
    return torch.Generator().manual_seed(7)


SAMPLERS: dict[str, Callable[[], Any]] = {
    "sequential": lambda: SequentialSampler(DATA),
    "random": lambda: RandomSampler(DATA),
    "random, generator": lambda: RandomSampler(DATA, generator=_generator()),
    "random, 3 permutations' worth": lambda: RandomSampler(DATA, num_samples=250),
    "random, fewer samples": lambda: RandomSampler(DATA, num_samples=40),
    "random with replacement": lambda: RandomSampler(DATA, replacement=True, num_samples=90),
    "weighted": lambda: WeightedRandomSampler(torch.rand(103), 80),
    "subset random": lambda: SubsetRandomSampler(list(range(0, 103, 2))),
    "distributed": lambda: DistributedSampler(DATA, num_replicas=2, rank=1, shuffle=True),
    "a list": lambda: list(reversed(DATA)),
}


def _batches(sampler: Any, batch_size: int, drop_last: bool, skip: int) -> list[list[int]]:
    batch_sampler = BatchSampler(sampler, batch_size, drop_last)
    pass_from = PassFrom(DataLoader(DATA, batch_sampler=batch_sampler), skip)
    return [batch.tolist() for batch in pass_from]


@pytest.mark.parametrize("name", list(SAMPLERS))
@pytest.mark.parametrize("drop_last", [False, True])
def test_a_skipped_pass_goes_on_as_the_whole_pass_does(name, drop_last):
    for skip in (0, 1, 5, 9, 10, 11, 30):
        torch.manual_seed(3)
        whole = [
            batch.tolist()
            for batch in DataLoader(
                DATA, batch_sampler=BatchSampler(SAMPLERS[name](), 10, drop_last)
            )
        ]
        after_whole = torch.get_rng_state()
        torch.manual_seed(3)
        assert _batches(SAMPLERS[name](), 10, drop_last, skip) == whole[skip:], (name, skip)
        assert torch.equal(torch.get_rng_state(), after_whole), name  # the same draws


def test_advance_seeks_lists_ranges_and_the_samplers_delegates():
    items = iter(list(range(10**6)))
    assert next(advance(items, 999_998)) == 999_998
    assert list(advance(iter(range(5, 50, 5)), 3)) == [20, 25, 30, 35, 40, 45]

    def two_parts():
        yield from [1, 2, 3]
        yield from range(4, 8)

    assert list(advance(two_parts(), 2)) == [3, 4, 5, 6, 7]
    assert list(advance(two_parts(), 3)) == [4, 5, 6, 7]
    assert list(advance(two_parts(), 5)) == [6, 7]
    assert list(advance(two_parts(), 9)) == []
    assert list(advance((i for i in range(6)), 4)) == [4, 5]  # read: no delegate


def test_a_random_sampler_skips_without_producing_the_skipped_indices():
    sampler = RandomSampler(range(100_000), generator=_generator())
    whole = list(sampler)
    sampler.generator.manual_seed(7)
    it = advance(iter(sampler), 90_000)
    assert it.gi_yieldfrom.__length_hint__() == 10_000  # 1 index produced, 89,999 sought
    assert [next(it) for _ in range(3)] == whole[90_000:90_003]


def test_worker_seeds_keep_their_batch_numbers_after_a_skip():
    sampler = BatchSampler(SequentialSampler(DATA), 10, False)
    whole = [batch.seed for batch in SeedEachBatch(sampler, 123)]
    skipped = SeedEachBatch(_SkipFirst(sampler, 4), 123, first=4)
    assert [batch.seed for batch in skipped] == whole[4:]
    assert [list(batch) for batch in skipped] == [list(b) for b in sampler][4:]
