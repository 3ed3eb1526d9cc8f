"""Random numbers inside DataLoader workers that a resumed run can reproduce.

A DataLoader worker seeds itself once, when it starts, and then draws for every batch it
loads: after a resume inside a pass, fresh workers (and another round-robin of batches among
them) draw other numbers. While a run may checkpoint inside a pass, each batch a worker loads
is seeded instead from the run's seed, the rank, the epoch, the loader and the batch's number
in the pass (torch, ``random`` and NumPy, in the worker, just before the dataset is read), so
its draws do not depend on which worker loads it or on how the pass began. Different batches,
epochs and ranks get different seeds; the main process's RNG streams are not touched.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import get_worker_info


class SeededBatch(list):
    """A batch of indices with the seed its worker uses to load it."""

    seed: int = 0


class SeedEachBatch:
    """A batch sampler whose batches carry their seeds (see the module docstring)."""

    def __init__(self, batch_sampler: Any, pass_seed: int, first: int = 0) -> None:
        self.batch_sampler = batch_sampler
        self.pass_seed = pass_seed
        self.first = first  # the number of its first batch in the pass (after a resume's skip)

    def __iter__(self) -> Iterator[SeededBatch]:
        for number, indices in enumerate(self.batch_sampler, self.first):
            batch = SeededBatch(indices)
            batch.seed = (self.pass_seed + number * 0x9E3779B97F4A7C15) % 2**63
            yield batch

    def __len__(self) -> int:
        return len(self.batch_sampler)


class SeededDataset:
    """The user's dataset, seeding the worker's RNGs from each batch before reading it."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: Any) -> Any:
        return self.dataset[index]

    def __getitems__(self, indices: Any) -> Any:
        seed = getattr(indices, "seed", None)
        if seed is not None and get_worker_info() is not None:
            torch.manual_seed(seed)
            random.seed(seed)
            np.random.seed(seed % 2**32)
        read = getattr(self.dataset, "__getitems__", None)
        if read is not None:
            return read(list(indices))
        return [self.dataset[index] for index in indices]

    def __getattr__(self, name: str) -> Any:
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)


def pass_seed(run_seed: int, rank: int, epoch: int, loader_key: str) -> int:
    """A seed for one loader pass, from what the interrupted and resumed runs share."""
    text = f"{run_seed}/{rank}/{epoch}/{loader_key}".encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "little") % 2**63
