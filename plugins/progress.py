"""A tqdm progress bar per loader with the running metrics.

The bar's postfix is refreshed at most every ``refresh_seconds`` (reading metrics then,
never once per batch), so it adds no per-batch host-device sync.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from tqdm.auto import tqdm

from eventrunner.events import Callback, Order


def _as_float(value: Any) -> float | None:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return float(value.detach())
    if isinstance(value, float | int) and not isinstance(value, bool):
        return float(value)
    return None


class ProgressBarCallback(Callback):
    kind = "progress"

    def __init__(self, refresh_seconds: float = 0.1, **tqdm_kwargs: Any) -> None:
        super().__init__(order=Order.LOGGING)
        self.refresh_seconds = refresh_seconds
        self.tqdm_kwargs = tqdm_kwargs
        self.bar: Any = None
        self._pending = 0
        self._next_refresh = 0.0

    def on_loader_start(self, runner: Any) -> None:
        self._close()
        self.bar = tqdm(
            total=runner.loader_batch_len,
            desc=f"{runner.epoch_step}/{runner.num_epochs} * Epoch ({runner.loader_key})",
            leave=False,
            dynamic_ncols=True,
            **self.tqdm_kwargs,
        )
        self._pending = 0
        self._next_refresh = time.monotonic() + self.refresh_seconds

    def on_batch_end(self, runner: Any) -> None:
        self._pending += 1
        now = time.monotonic()
        if now < self._next_refresh:
            return
        self._next_refresh = now + self.refresh_seconds
        self._refresh(runner)

    def _refresh(self, runner: Any) -> None:
        postfix = {}
        for name, value in runner.batch_metrics.items():
            number = _as_float(value)
            if number is not None:
                postfix[name] = f"{number:.4g}"
        self.bar.set_postfix(postfix, refresh=False)
        self.bar.update(self._pending)
        self._pending = 0

    def on_loader_end(self, runner: Any) -> None:
        if self.bar is not None:
            self._refresh(runner)
        self._close()

    def on_exception(self, runner: Any) -> None:
        self._close()

    def on_experiment_end(self, runner: Any) -> None:
        self._close()

    def _close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
