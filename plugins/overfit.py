"""Runs part of each loader: ``BatchOverfitCallback(train=10, valid=0.5)``.

Counts and fractions follow ``BatchLimitLoaderWrapper``; loaders it does not name get one
batch. The kept batches are the same every epoch, so a model can overfit them.
"""

from __future__ import annotations

from typing import Any

from eventrunner.data.loaders import BatchLimitLoaderWrapper, check_num_batches
from eventrunner.events import Callback, Order


class BatchOverfitCallback(Callback):
    kind = "overfit"

    def __init__(self, **num_batches: int | float) -> None:
        super().__init__(order=Order.INTERNAL)
        for key, value in num_batches.items():
            check_num_batches(value, f"BatchOverfitCallback({key}=...)")
        self.num_batches = num_batches

    def on_experiment_start(self, runner: Any) -> None:
        unknown = [key for key in self.num_batches if key not in runner.loaders]
        if unknown:
            raise ValueError(
                f"BatchOverfitCallback: {', '.join(map(repr, unknown))} not among the loaders "
                f"({', '.join(runner.loaders)})"
            )
        runner.loaders = {
            key: BatchLimitLoaderWrapper(loader, self.num_batches.get(key, 1))
            for key, loader in runner.loaders.items()
        }
