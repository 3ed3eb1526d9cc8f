"""Loaders split between the ranks: ``DistributedSampler``s put in place of plain samplers."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    DistributedSampler,
    IterableDataset,
    RandomSampler,
    SequentialSampler,
)

from eventrunner.data.loaders import BatchLimitLoaderWrapper
from eventrunner.distributed.ranks import get_rank, get_world_size, is_main_process

log = logging.getLogger("eventrunner")


class UnpaddedDistributedSampler(DistributedSampler):
    """A ``DistributedSampler`` that neither pads nor drops: every sample is seen exactly once
    over all ranks, so evaluation metrics equal the single-process ones. Ranks may get one
    sample more or less, so use it only where no collective runs per batch (``valid*``/``infer*``).
    """

    def __init__(self, dataset: Any, num_replicas: int, rank: int, shuffle: bool, seed: int = 0):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed)
        self.total_size = len(dataset)
        self.num_samples = len(range(rank, self.total_size, num_replicas))

    def __iter__(self) -> Iterator[int]:
        if self.shuffle:
            generator = torch.Generator()
            generator.manual_seed(self.seed + self.epoch)
            indices = torch.randperm(self.total_size, generator=generator).tolist()
        else:
            indices = list(range(self.total_size))
        return iter(indices[self.rank : self.total_size : self.num_replicas])


#: The DataLoader options a sharded loader keeps (those that exist in this torch version).
_COPIED = (
    "num_workers",
    "collate_fn",
    "pin_memory",
    "drop_last",
    "timeout",
    "worker_init_fn",
    "multiprocessing_context",
    "generator",
    "prefetch_factor",
    "persistent_workers",
    "pin_memory_device",
    "in_order",
)


def _not_sharded(key: str, why: str) -> None:
    if is_main_process():
        log.warning(
            "eventrunner: loader %r is left as it is (%s): every rank iterates all of it; give it "
            "a DistributedSampler yourself",
            key,
            why,
        )


def _shuffles(key: str, loader: DataLoader) -> bool | None:
    """Whether ``loader`` shuffles; None (with a warning) when it cannot be rebuilt."""
    if type(loader) is not DataLoader:
        _not_sharded(key, f"{type(loader).__name__} is a DataLoader subclass")
        return None
    if isinstance(loader.dataset, IterableDataset):
        _not_sharded(key, "an IterableDataset shards itself")
        return None
    if loader.batch_sampler is not None and type(loader.batch_sampler) is not BatchSampler:
        _not_sharded(key, f"custom batch_sampler {type(loader.batch_sampler).__name__}")
        return None
    sampler = loader.sampler
    if isinstance(sampler, RandomSampler) and not sampler.replacement:
        return True
    if type(sampler) is SequentialSampler:
        return False
    _not_sharded(key, f"custom sampler {type(sampler).__name__}")
    return None


def distributed_loader(key: str, loader: Any, *, seed: int = 0, pad: bool = True) -> Any:
    """``loader`` with a ``DistributedSampler`` for this rank, keeping shuffle and drop_last.

    ``pad=True`` (train loaders) pads to equal per-rank lengths, as DDP needs; ``pad=False``
    (evaluation) uses :class:`UnpaddedDistributedSampler` so metrics cover each sample once. A
    loader that already has a ``DistributedSampler`` is returned as it is; one that cannot be
    rebuilt (not a plain ``DataLoader``, an ``IterableDataset``, a custom sampler) too, with a
    warning. ``BatchLimitLoaderWrapper`` is unwrapped, and wrapped again around the result.
    """
    if isinstance(loader, BatchLimitLoaderWrapper):
        inner = distributed_loader(key, loader.loader, seed=seed, pad=pad)
        if inner is loader.loader:
            return loader
        return BatchLimitLoaderWrapper(inner, loader.num_batches)
    if not isinstance(loader, DataLoader):
        _not_sharded(key, f"a {type(loader).__name__}, not a DataLoader")
        return loader
    if isinstance(loader.sampler, DistributedSampler):
        return loader
    shuffle = _shuffles(key, loader)
    if shuffle is None:
        return loader
    world, rank = get_world_size(), get_rank()
    dataset = loader.dataset
    if pad or len(dataset) < world:  # every rank needs a batch: pad tiny evaluation sets
        new_sampler: DistributedSampler = DistributedSampler(
            dataset, num_replicas=world, rank=rank, shuffle=shuffle, seed=seed
        )
    else:
        new_sampler = UnpaddedDistributedSampler(dataset, world, rank, shuffle, seed)
    kwargs = {name: getattr(loader, name) for name in _COPIED if hasattr(loader, name)}
    return DataLoader(dataset, batch_size=loader.batch_size, sampler=new_sampler, **kwargs)


def find_sampler(loader: Any) -> Any:
    """The sampler with ``set_epoch`` a loader iterates with, if any."""
    for sampler in (
        getattr(loader, "sampler", None),
        getattr(getattr(loader, "batch_sampler", None), "sampler", None),
    ):
        if callable(getattr(sampler, "set_epoch", None)):
            return sampler
    return None
