"""The run's own model selection: ``runner.best_epoch`` and ``runner.best_valid_metric``.

After each epoch the metric named by ``train(valid_loader=, main_metric=, minimize_metric=)``
is compared with the best so far (ties keep the earlier epoch). Only this subscriber writes
the two fields; a ``CheckpointCallback`` that selects by another metric keeps its own best.
"""

from __future__ import annotations

import logging
from typing import Any

from eventrunner.events import Callback, Order
from plugins._selection import Watched

log = logging.getLogger("eventrunner")


class ModelSelectionCallback(Callback):
    """Follows the run's selection metric into ``runner.best_epoch``/``best_valid_metric``.

    Without a ``valid_loader`` (left at its default, and absent) or with ``main_metric`` left
    at its default and not produced, there is no selection: ``best_epoch`` is the last
    finished epoch, ``best_valid_metric`` is None, and the log says so once.
    """

    kind = "selection"
    writes = {
        "experiment_start": ("best_valid_metric", "best_epoch"),
        "epoch_end": ("best_valid_metric", "best_epoch"),
    }

    def __init__(self) -> None:
        # Before early stopping (65), the loggers (80) and the checkpoint's save (90).
        super().__init__(order=Order.SELECTION)
        self.active = True
        self._watched = Watched()

    def on_experiment_start(self, runner: Any) -> None:
        selection = runner.selection
        self._watched = Watched(selection.loader, selection.metric, selection.minimize)
        if runner.epoch_step == 0:  # a fresh run; a resumed one keeps its restored state
            self.active = True
            runner.best_valid_metric = None
            runner.best_epoch = None
        if self.active and selection.loader not in runner.loaders:
            self._disable(f"no {selection.loader!r} loader")

    def on_epoch_end(self, runner: Any) -> None:
        selection = runner.selection
        if self.active and not selection.metric_given:
            produced = runner.epoch_metrics.get(selection.loader, {})
            if selection.metric not in produced:
                self._disable(
                    f"loader {selection.loader!r} produced no {selection.metric!r} metric"
                )
        if not self.active:
            runner.best_epoch = runner.epoch_step
            runner.best_valid_metric = None
            return
        value = self._watched.value(runner, "model selection")
        if self._watched.improves(value, runner.best_valid_metric):
            runner.best_valid_metric = value
            runner.best_epoch = runner.epoch_step

    def _disable(self, why: str) -> None:
        self.active = False
        log.warning("eventrunner: no model selection (%s); best_epoch is the last epoch", why)

    def state_dict(self) -> dict[str, Any]:
        return {"active": self.active}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.active = bool(state.get("active", True))
