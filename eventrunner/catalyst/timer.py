"""Catalyst 22.04's ``TimerCallback``: per-batch timings as ``_timer/*`` batch metrics."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from eventrunner.events import Callback, Order

if TYPE_CHECKING:
    from eventrunner.state import RunState

#: Catalyst's guard against a zero batch time in the samples-per-second figure.
EPS = 1e-8

BATCH_TIME = "_timer/batch_time"
DATA_TIME = "_timer/data_time"
MODEL_TIME = "_timer/model_time"
FPS = "_timer/_fps"


class TimerCallback(Callback):
    """Seconds per batch in ``batch_metrics`` (and, as their means, in the loader metrics).

    - ``_timer/data_time``: from the previous batch's end (or the loader's start) to this
      batch's start: waiting for the loader.
    - ``_timer/model_time``: from batch start to batch end: ``handle_batch`` and the
      subscribers between (at order 11, after the metrics, as in Catalyst).
    - ``_timer/batch_time``: both; ``_timer/_fps``: samples per second of it.
    """

    kind = "timer"
    writes = {
        "batch_end": tuple(f"batch_metrics.{k}" for k in (BATCH_TIME, DATA_TIME, MODEL_TIME, FPS))
    }

    def __init__(self) -> None:
        super().__init__(order=Order.METRIC + 1)
        self._batch_started = self._data_started = self._model_started = 0.0
        self._data_time = 0.0

    def on_loader_start(self, runner: RunState) -> None:
        self._batch_started = self._data_started = time.perf_counter()

    def on_batch_start(self, runner: RunState) -> None:
        now = time.perf_counter()
        self._data_time = now - self._data_started
        self._model_started = now

    def on_batch_end(self, runner: RunState) -> None:
        now = time.perf_counter()
        batch_time = now - self._batch_started
        runner.batch_metrics.update(
            {
                BATCH_TIME: batch_time,
                DATA_TIME: self._data_time,
                MODEL_TIME: now - self._model_started,
                FPS: runner.batch_size / (batch_time + EPS),
            }
        )
        self._batch_started = self._data_started = time.perf_counter()


__all__ = ["TimerCallback"]
