"""Stops the run at a NaN/inf loss, naming the epoch, loader and batch where it happened.

On the CPU each loss is checked at its batch (reading a CPU scalar costs nothing). On an
accelerator the losses are checked together every ``check_every`` batches and at loader end,
so as not to sync per batch; the error still names the first bad batch.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from eventrunner.events import Callback, Order


class NonFiniteLossError(ValueError):
    """The loss became NaN or infinite."""


class FiniteCheckCallback(Callback):
    kind = "finite_check"

    def __init__(self, loss_key: str | None = None, check_every: int = 64) -> None:
        super().__init__(order=Order.GUARD)
        self.loss_key = loss_key
        self.check_every = check_every
        self._pending: list[tuple[int, torch.Tensor]] = []

    def on_loader_start(self, runner: Any) -> None:
        self._pending = []

    def on_batch_end(self, runner: Any) -> None:
        loss = runner.batch_metrics.get(self.loss_key or runner.loss_key)
        if loss is None:
            return
        if isinstance(loss, torch.Tensor):
            if not loss.is_cpu:
                self._pending.append((runner.loader_batch_step, loss.detach()))
                if len(self._pending) >= self.check_every:
                    self._flush(runner)
                return
            # a sum is non-finite when any element is
            loss = loss.item() if loss.numel() == 1 else loss.detach().float().sum().item()
        if not math.isfinite(loss):
            self._fail(runner, runner.loader_batch_step, loss)

    def on_loader_end(self, runner: Any) -> None:
        self._flush(runner)

    def _flush(self, runner: Any) -> None:
        pending, self._pending = self._pending, []
        if not pending:
            return
        finite = torch.stack([loss.float().reshape(-1)[0] for _, loss in pending]).isfinite()
        if bool(finite.all()):
            return
        index = int((~finite).nonzero()[0])
        step, loss = pending[index]
        self._fail(runner, step, float(loss.float().reshape(-1)[0]))

    def _fail(self, runner: Any, step: int, value: float) -> None:
        raise NonFiniteLossError(
            f"non-finite loss {value} at epoch {runner.epoch_step}, loader "
            f"{runner.loader_key!r}, batch {step}"
        )
