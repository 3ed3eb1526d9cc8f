"""Model selection: the best epoch by the selection metric, and its weights.

After each epoch the chosen loader's metric is compared with the best so far; ties keep the
earlier epoch. ``runner.best_valid_metric`` and ``runner.best_epoch`` follow it. The best
weights are kept as a CPU snapshot (not the live model) for ``load_best_on_end``.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from eventrunner.events import Callback, Order
from plugins._selection import Watched

log = logging.getLogger("eventrunner")


def cpu_state_dict(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A copy of the module's state on the CPU, unaffected by further training."""
    return {key: value.detach().to("cpu", copy=True) for key, value in module.state_dict().items()}


class CheckpointCallback(Callback):
    """Selects the best epoch by ``loader_key``/``metric_key``/``minimize`` (default: the
    runner's ``valid_loader``/``main_metric``/``minimize_metric``)."""

    kind = "checkpoint"

    def __init__(
        self,
        logdir: str | None = None,
        loader_key: str | None = None,
        metric_key: str | None = None,
        minimize: bool | None = None,
        topk: int = 1,
        load_best_on_end: bool | None = None,
    ) -> None:
        super().__init__(order=Order.CHECKPOINT)
        self.logdir = logdir
        self.watched = Watched(loader_key, metric_key, minimize)
        self.topk = topk
        self.load_best_on_end = load_best_on_end
        self.history: list[dict[str, Any]] = []
        self.best_state: dict[str, torch.Tensor] | None = None
        self._active = True
        self._target = self.watched

    def on_experiment_start(self, runner: Any) -> None:
        self._target = self.watched.resolve(runner)
        selection = runner.selection
        loader_given = self.watched.loader is not None or selection.loader_given
        if self._target.loader not in runner.loaders:
            if loader_given:
                raise ValueError(
                    f"valid_loader {self._target.loader!r} is not among the loaders "
                    f"({', '.join(runner.loaders)})"
                )
            self._disable(f"no {self._target.loader!r} loader")
        else:
            self._active = True
        self.history = []
        self.best_state = None
        runner.best_valid_metric = None
        runner.best_epoch = None

    def _disable(self, why: str) -> None:
        self._active = False
        log.warning("eventrunner: no model selection (%s); best_epoch is the last epoch", why)

    def _metric_given(self, runner: Any) -> bool:
        return self.watched.metric is not None or runner.selection.metric_given

    def on_epoch_end(self, runner: Any) -> None:
        if self._active:
            produced = runner.epoch_metrics.get(self._target.loader, {})
            if self._target.metric not in produced and not self._metric_given(runner):
                self._disable(
                    f"loader {self._target.loader!r} produced no {self._target.metric!r} metric"
                )
        if not self._active:
            runner.best_epoch = runner.epoch_step
            runner.best_valid_metric = None
            return
        value = self._target.value(runner, "model selection")
        self.history.append({"epoch": runner.epoch_step, "metric": value})
        if self._target.improves(value, runner.best_valid_metric):
            runner.best_valid_metric = value
            runner.best_epoch = runner.epoch_step
            if self._keeps_weights_in_memory(runner):
                self.best_state = cpu_state_dict(runner.model)

    def _wants_best_on_end(self, runner: Any) -> bool:
        if self.load_best_on_end is not None:
            return self.load_best_on_end
        return bool(runner.load_best_on_end)

    def _keeps_weights_in_memory(self, runner: Any) -> bool:
        return self._wants_best_on_end(runner)

    def on_experiment_end(self, runner: Any) -> None:
        if runner.exception is None and self._wants_best_on_end(runner) and self.best_state:
            runner.model.load_state_dict(self.best_state)

    def state_dict(self) -> dict[str, Any]:
        return {"history": list(self.history), "active": self._active}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history = list(state.get("history", []))
        self._active = bool(state.get("active", True))
