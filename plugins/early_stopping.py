"""Stops training after ``patience`` epochs without improvement of a loader's metric."""

from __future__ import annotations

from typing import Any

from eventrunner.checks import is_int, is_number, positive_int, require_loaders
from eventrunner.events import Callback, Order
from plugins._selection import Watched


class EarlyStoppingCallback(Callback):
    """Catalyst's ``EarlyStoppingCallback(patience, loader_key, metric_key, minimize, min_delta)``;
    unset keys follow the runner's selection (``valid_loader``, ``main_metric``)."""

    kind = "early_stopping"
    writes = {"epoch_end": ("need_early_stop",)}

    def __init__(
        self,
        patience: int,
        loader_key: str | None = None,
        metric_key: str | None = None,
        minimize: bool | None = None,
        min_delta: float = 1e-6,
    ) -> None:
        super().__init__(order=Order.EARLY_STOPPING)
        positive_int(patience, "EarlyStoppingCallback: patience")
        if not is_number(min_delta):
            raise TypeError(
                f"EarlyStoppingCallback: min_delta must be a number >= 0, got {min_delta!r}"
            )
        if not min_delta >= 0:  # NaN too
            raise ValueError(f"EarlyStoppingCallback: min_delta must be >= 0, got {min_delta!r}")
        self.patience = patience
        self.min_delta = min_delta
        self.watched = Watched(loader_key, metric_key, minimize)
        self._target = self.watched
        self.best: float | None = None
        self.wait = 0

    def on_experiment_start(self, runner: Any) -> None:
        self._target = self.watched.resolve(runner)
        require_loaders((self._target.loader,), runner.loaders, "EarlyStoppingCallback: loader")

    def on_epoch_end(self, runner: Any) -> None:
        value = self._target.value(runner, "EarlyStoppingCallback: loader")
        if self._target.improves(value, self.best, self.min_delta):
            self.best = value
            self.wait = 0
            return
        self.wait += 1
        if self.wait >= self.patience:
            runner.need_early_stop = True

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "wait": self.wait}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        best, wait = state.get("best"), state.get("wait", 0)
        if best is not None and not is_number(best):
            raise ValueError(f"best: expected a number or None, got {best!r}")
        if not is_int(wait) or wait < 0:
            raise ValueError(f"wait: expected an int >= 0, got {wait!r}")
        self.best = None if best is None else float(best)
        self.wait = wait
