"""Console logger: one line per loader per epoch, and the best epoch at the end."""

from __future__ import annotations

import sys
from typing import Any, TextIO

from eventrunner.events import Callback, Order


def format_metrics(metrics: dict[str, Any]) -> str:
    """``loss=0.1234 | accuracy01=0.9500`` for the scalar metrics of a loader."""
    parts = []
    for name, value in metrics.items():
        if isinstance(value, float | int) and not isinstance(value, bool):
            parts.append(f"{name}={value:.4f}")
    return " | ".join(parts)


class ConsoleLogger(Callback):
    kind = "console"

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__(order=Order.LOGGING)
        self.stream = stream

    def _print(self, line: str) -> None:
        print(line, file=self.stream or sys.stdout, flush=True)

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
