"""Steps the learning-rate scheduler: once per epoch after its loaders (default) or per train batch.

``ReduceLROnPlateau`` is stepped with the selection metric (or ``loader_key``/``metric_key``).
``scheduler_key`` steps one of a dict of schedulers (Catalyst's argument, first as in Catalyst).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch.optim.lr_scheduler import ReduceLROnPlateau

from eventrunner import components
from eventrunner.checks import require_loaders
from eventrunner.events import Callback, Order
from plugins._selection import Watched


class SchedulerCallback(Callback):
    """Steps the scheduler (``runner.scheduler[scheduler_key]`` for a dict) per ``mode``:
    ``"epoch"`` (default) or ``"batch"``; ``ReduceLROnPlateau`` gets its watched metric."""

    kind = "scheduler"
    writes = ()  # the optimizer's learning rates only: no run-state field

    def __init__(
        self,
        scheduler_key: str | None = None,
        mode: str | None = None,
        loader_key: str | None = None,
        metric_key: str | None = None,
    ) -> None:
        mode = mode or "epoch"
        if mode not in ("epoch", "batch"):
            raise ValueError(f"SchedulerCallback: mode must be 'epoch' or 'batch', got {mode!r}")
        super().__init__(order=Order.SCHEDULER, loaders="train*" if mode == "batch" else None)
        self.scheduler_key = scheduler_key
        self.scheduler: Any = None
        self.mode = mode
        self.loader_key = loader_key
        self.metric_key = metric_key
        # ReduceLROnPlateau's metric, as selection and early stopping watch theirs.
        self.watched = Watched(loader_key, metric_key)
        self._target = self.watched

    def handlers(self) -> dict[str, Callable[[Any], Any]]:
        # Connect only the event this mode steps on: nothing per batch in epoch mode.
        if self.mode == "batch":
            return {"experiment_start": self.on_experiment_start, "batch_end": self.on_batch_end}
        return {"experiment_start": self.on_experiment_start, "epoch_end": self.on_epoch_end}

    def on_experiment_start(self, runner: Any) -> None:
        self.scheduler = components.pick(
            runner, "scheduler", self.scheduler_key, "SchedulerCallback"
        )
        if isinstance(self.scheduler, ReduceLROnPlateau):
            # Fail before training, not at the end of the first epoch.
            self._target = self.watched.resolve(runner)
            require_loaders(
                (self._target.loader,),
                runner.loaders,
                "ReduceLROnPlateau steps on a metric of loader",
                ": pass valid_loader= to train() or SchedulerCallback(loader_key=..., "
                "metric_key=...)",
            )

    def on_batch_end(self, runner: Any) -> None:
        self.scheduler.step()

    def on_epoch_end(self, runner: Any) -> None:
        scheduler = self.scheduler
        if not isinstance(scheduler, ReduceLROnPlateau):
            scheduler.step()
            return
        scheduler.step(self._target.value(runner, "SchedulerCallback (ReduceLROnPlateau)"))
