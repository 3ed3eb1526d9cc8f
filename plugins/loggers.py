"""Console logger: one line per loader per epoch, and the best epoch at the end (rank 0 only).

The file loggers live beside it (``csv_logger``, ``json_logger``, ``tensorboard_logger``) and
are re-exported here, so ``from plugins.loggers import CSVLogger`` works too.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

from eventrunner.events import Callback, Order
from plugins._run_info import is_main_process
from plugins.csv_logger import CSVLogger
from plugins.json_logger import JSONLogger
from plugins.tensorboard_logger import TensorBoardLogger

__all__ = ["CSVLogger", "ConsoleLogger", "JSONLogger", "TensorBoardLogger", "format_metrics"]


def format_metrics(metrics: dict[str, Any]) -> str:
    """``loss=0.1234 | accuracy01=0.9500`` for the scalar metrics of a loader."""
    parts = []
    for name, value in metrics.items():
        if isinstance(value, float | int) and not isinstance(value, bool):
            parts.append(f"{name}={value:.4f}")
    return " | ".join(parts)


class ConsoleLogger(Callback):
    """Prints ``1/3 * Epoch (valid): loss=0.4803 | accuracy01=0.8906`` at each loader end."""

    kind = "console"

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__(order=Order.LOGGING)
        self.stream = stream
        self._enabled = True

    def _print(self, line: str) -> None:
        if self._enabled:
            print(line, file=self.stream or sys.stdout, flush=True)

    def on_experiment_start(self, runner: Any) -> None:
        self._enabled = is_main_process(runner)
        point = getattr(runner, "resume_point", None)  # train(resume=) restored a checkpoint
        if point is not None:
            position = point.position
            where = (
                f"in epoch {position['epoch']}, {position['loader']} after batch "
                f"{position['batches']}"
                if position is not None
                else f"after epoch {runner.epoch_step}"
            )
            self._print(f"Resumed from {point.path} {where}")

    def on_loader_end(self, runner: Any) -> None:
        self._print(
            f"{runner.epoch_step}/{runner.num_epochs} * Epoch ({runner.loader_key}): "
            f"{format_metrics(runner.loader_metrics)}"
        )

    def on_experiment_end(self, runner: Any) -> None:
        if runner.exception is None and runner.best_valid_metric is not None:
            self._print(
                f"Best epoch {runner.best_epoch}: {runner.selection.loader} "
                f"{runner.selection.metric}={runner.best_valid_metric:.4f}"
            )
