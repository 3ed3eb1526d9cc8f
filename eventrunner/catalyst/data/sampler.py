"""``catalyst.data.sampler.BatchBalanceClassSampler`` (22.04)."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler


class BatchBalanceClassSampler(Sampler[list[int]]):
    """Batch sampler: each batch is ``num_samples`` indices of each of ``num_classes`` classes.

    For each of ``num_batches`` batches (default ``len(labels) // batch_size``) it draws
    ``num_classes`` distinct classes with Python's ``random.sample`` (from the sorted classes),
    then for each ``num_samples`` of its indices with ``np.random.choice`` (with replacement
    only when the class has fewer). So under ``random.seed`` / ``np.random.seed`` it draws
    Catalyst's batches for integer labels. Use it as ``DataLoader(batch_sampler=...)``.
    """

    def __init__(
        self,
        labels: Sequence[int] | np.ndarray,
        num_classes: int,
        num_samples: int,
        num_batches: int | None = None,
    ) -> None:
        # Sampler.__init__ takes no data source in torch >= 2.2 (Catalyst passes the labels)
        super().__init__()
        labels_list = np.asarray(labels).tolist()
        counts = Counter(labels_list)
        if not (isinstance(num_classes, int) and isinstance(num_samples, int)):
            raise TypeError(
                "BatchBalanceClassSampler: num_classes and num_samples must be ints, got "
                f"{num_classes!r} and {num_samples!r}"
            )
        if not 1 < num_classes <= len(counts):
            raise ValueError(
                f"BatchBalanceClassSampler: num_classes must be in [2, {len(counts)}] (the "
                f"number of classes in labels), got {num_classes}"
            )
        if num_samples <= 1:
            raise ValueError(
                f"BatchBalanceClassSampler: num_samples must be > 1, got {num_samples}"
            )
        lonely = sorted(label for label, n in counts.items() if n < 2)
        if lonely:
            raise ValueError(
                f"BatchBalanceClassSampler: every class needs at least 2 samples; classes "
                f"{lonely} have 1"
            )
        # sorted: the order Python's set gives small non-negative ints, the order Catalyst
        # samples classes from, so that seeded draws match
        self._labels = sorted(counts)
        self._num_classes = num_classes
        self._num_samples = num_samples
        self._batch_size = num_classes * num_samples
        self._num_batches = num_batches or len(labels_list) // self._batch_size
        self.lbl2idx: dict[int, list[int]] = {label: [] for label in self._labels}
        for index, label in enumerate(labels_list):
            self.lbl2idx[label].append(index)

    @property
    def batch_size(self) -> int:
        """Samples per batch: ``num_classes * num_samples``."""
        return self._batch_size

    @property
    def batches_in_epoch(self) -> int:
        """Batches per epoch."""
        return self._num_batches

    def __len__(self) -> int:
        """Batches per epoch (it is a batch sampler)."""
        return self._num_batches

    def __iter__(self) -> Iterator[list[int]]:
        batches = []
        for _ in range(self._num_batches):
            batch: list[int] = []
            for label in random.sample(self._labels, self._num_classes):
                pool = self.lbl2idx[label]
                replace = self._num_samples > len(pool)
                batch += np.random.choice(pool, self._num_samples, replace=replace).tolist()
            batches.append(batch)
        return iter(batches)


__all__ = ["BatchBalanceClassSampler"]
