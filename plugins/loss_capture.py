"""Takes the loss from the criterion when ``handle_batch`` computes it but does not store it.

Catalyst's dataflow examples write ``loss = self.criterion(logits, targets)`` and keep only
``self.output``. A forward hook on the criterion module records its last result; if the batch
ends without ``batch_metrics[loss_key]``, that result is put there. When ``handle_batch`` stores
the loss itself, the hook is removed after that first batch and costs nothing more.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from eventrunner.events import Callback, Order


class LossCaptureCallback(Callback):
    kind = "loss_capture"

    def __init__(self, loss_key: str | None = None) -> None:
        super().__init__(order=Order.INTERNAL)
        self.loss_key = loss_key
        # runner.loss_key ("loss" unless a Runner subclass says otherwise) when not given.
        self.writes = {"batch_end": (f"batch_metrics.{loss_key or 'loss'}",)}
        self._hook: Any = None
        self._last: Any = None

    def _record(self, module: nn.Module, args: Any, output: Any) -> None:
        self._last = output

    def on_experiment_start(self, runner: Any) -> None:
        self._remove()
        if isinstance(runner.criterion, nn.Module):
            self._hook = runner.criterion.register_forward_hook(self._record)

    def on_batch_start(self, runner: Any) -> None:
        self._last = None

    def on_batch_end(self, runner: Any) -> None:
        if self._hook is None:
            return
        key = self.loss_key or runner.loss_key
        if key in runner.batch_metrics:
            self._remove()  # handle_batch stores its loss itself
        elif self._last is not None:
            runner.batch_metrics[key] = self._last
            self._last = None

    def on_experiment_end(self, runner: Any) -> None:
        self._remove()

    def _remove(self) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        self._last = None
