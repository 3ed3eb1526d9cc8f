"""Steps the learning-rate scheduler: once per epoch after its loaders (default) or per train batch.

``ReduceLROnPlateau`` is stepped with the selection metric (or ``loader_key``/``metric_key``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch.optim.lr_scheduler import ReduceLROnPlateau

from eventrunner.checks import require_loaders
from eventrunner.events import Callback, Order
from plugins._selection import Watched


class SchedulerCallback(Callback):
    kind = "scheduler"
    writes = ()  # the optimizer's learning rates only: no run-state field

    def __init__(
        self, mode: str = "epoch", loader_key: str | None = None, metric_key: str | None = None
    ) -> None:
        if mode not in ("epoch", "batch"):
            raise ValueError(f"SchedulerCallback: mode must be 'epoch' or 'batch', got {mode!r}")
        super().__init__(order=Order.SCHEDULER, loaders="train*" if mode == "batch" else None)
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
        if runner.scheduler is None:
            raise ValueError("SchedulerCallback: the runner has no scheduler; pass scheduler=...")
        if isinstance(runner.scheduler, ReduceLROnPlateau):
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
        runner.scheduler.step()

    def on_epoch_end(self, runner: Any) -> None:
        scheduler = runner.scheduler
        if not isinstance(scheduler, ReduceLROnPlateau):
            scheduler.step()
            return
        scheduler.step(self._target.value(runner, "SchedulerCallback (ReduceLROnPlateau)"))
