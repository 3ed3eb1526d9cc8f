"""Runs part of each loader: ``BatchOverfitCallback(train=10, valid=0.5)``.

Counts and fractions follow ``BatchLimitLoaderWrapper``; loaders it does not name get one
batch. The kept batches are the same every epoch, so a model can overfit them.
"""

from __future__ import annotations

from typing import Any

from eventrunner.checks import require_loaders
from eventrunner.data.loaders import BatchLimitLoaderWrapper, check_num_batches
from eventrunner.events import Callback, Order


class BatchOverfitCallback(Callback):
    """Limits each loader to its first batches: ``loader=N`` (a count) or a fraction; the
    loaders it does not name get one batch."""

    kind = "overfit"

    def __init__(self, **num_batches: int | float) -> None:
        super().__init__(order=Order.INTERNAL)
        for key, value in num_batches.items():
            check_num_batches(value, f"BatchOverfitCallback({key}=...)")
        self.num_batches = num_batches

    writes = {"experiment_start": ("loaders",)}

    def on_experiment_start(self, runner: Any) -> None:
        require_loaders(self.num_batches, runner.loaders, "BatchOverfitCallback: loader")
        runner.loaders = {
            key: BatchLimitLoaderWrapper(loader, self.num_batches.get(key, 1))
            for key, loader in runner.loaders.items()
        }
