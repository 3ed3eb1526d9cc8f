"""Steps the learning-rate scheduler: once per epoch after its loaders (default) or per train batch.

``ReduceLROnPlateau`` is stepped with the selection metric (or ``loader_key``/``metric_key``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch.optim.lr_scheduler import ReduceLROnPlateau

from eventrunner.events import Callback, Order


class SchedulerCallback(Callback):
    kind = "scheduler"

    def __init__(
        self, mode: str = "epoch", loader_key: str | None = None, metric_key: str | None = None
    ) -> None:
        if mode not in ("epoch", "batch"):
            raise ValueError(f"SchedulerCallback: mode must be 'epoch' or 'batch', got {mode!r}")
        super().__init__(order=Order.SCHEDULER, loaders="train*" if mode == "batch" else None)
        self.mode = mode
        self.loader_key = loader_key
        self.metric_key = metric_key

    def handlers(self) -> dict[str, Callable[[Any], Any]]:
        # Connect only the event this mode steps on: nothing per batch in epoch mode.
        if self.mode == "batch":
            return {"experiment_start": self.on_experiment_start, "batch_end": self.on_batch_end}
        return {"experiment_start": self.on_experiment_start, "epoch_end": self.on_epoch_end}

    def on_experiment_start(self, runner: Any) -> None:
        if runner.scheduler is None:
            raise ValueError("SchedulerCallback: the runner has no scheduler; pass scheduler=...")
        loader = self.loader_key or runner.selection.loader
        if isinstance(runner.scheduler, ReduceLROnPlateau) and loader not in runner.loaders:
            # Fail before training, not at the end of the first epoch.
            raise ValueError(
                f"ReduceLROnPlateau steps on a metric of loader {loader!r}, which is not among "
                f"the loaders ({', '.join(runner.loaders)}): pass valid_loader= to train() or "
                "SchedulerCallback(loader_key=..., metric_key=...)"
            )

    def on_batch_end(self, runner: Any) -> None:
        runner.scheduler.step()

    def on_epoch_end(self, runner: Any) -> None:
        scheduler = runner.scheduler
        if not isinstance(scheduler, ReduceLROnPlateau):
            scheduler.step()
            return
        loader = self.loader_key or runner.selection.loader
        metric = self.metric_key or runner.selection.metric
        produced = runner.epoch_metrics.get(loader, {})
        if metric not in produced:
            raise ValueError(
                f"ReduceLROnPlateau needs metric {metric!r} of loader {loader!r}; that loader "
                f"produced {sorted(produced) or 'nothing'} (set SchedulerCallback(loader_key=..., "
                "metric_key=...))"
            )
        scheduler.step(produced[metric])
