"""A tqdm progress bar per loader, with the loader's running metrics, on rank 0 only.

The bar is redrawn every ``refresh_seconds`` (or every ``refresh_batches`` batches): metrics
are read then, never once per batch, so the bar adds no per-batch host-device sync. The
running values are the loader's means so far, ``runner.running_metrics`` (on the CPU they
are already Python floats; on an accelerator, one read per redraw).
"""

from __future__ import annotations

import time
from typing import Any, TextIO

from tqdm.auto import tqdm

from eventrunner.checks import positive_int
from eventrunner.events import Callback, Order
from plugins._run_info import is_main_process, scalar_items

#: One before the loggers (``Order.LOGGING``), whatever their registration order: a console
#: line printed while the bar is still drawn would land on the bar's line.
PROGRESS_ORDER = Order.LOGGING - 1


class ProgressBarCallback(Callback):
    """One tqdm bar per loader pass: ``1/3 * Epoch (train): 45%|███ | 58/128 [loss=0.41, ...]``.

    Example: ``runner.train(..., verbose=True)`` composes it; pass
    ``ProgressBarCallback(file=sys.stdout, refresh_seconds=0.5)`` in ``callbacks`` to change it.
    The bar is removed at loader end (``leave=False``) so the console logger's line replaces it,
    and closed on exceptions. Extra keyword arguments go to ``tqdm``.

    It runs at order 79, just before the loggers (80): its bar is closed (cleared, or left
    complete on its own line) before the console line of the same loader end is printed.
    """

    kind = "progress"

    def __init__(
        self,
        refresh_seconds: float = 0.1,
        refresh_batches: int | None = None,
        file: TextIO | None = None,
        leave: bool = False,
        **tqdm_kwargs: Any,
    ) -> None:
        super().__init__(order=PROGRESS_ORDER)
        if refresh_seconds < 0:
            raise ValueError(
                f"ProgressBarCallback: refresh_seconds must be >= 0, got {refresh_seconds!r}"
            )
        positive_int(refresh_batches, "ProgressBarCallback: refresh_batches", optional=True)
        self.refresh_seconds = float(refresh_seconds)
        self.refresh_batches = refresh_batches
        self.file = file
        self.leave = leave
        self.tqdm_kwargs = tqdm_kwargs
        self._tqdm_options = {
            "dynamic_ncols": True,
            "unit": "batch",
            # We throttle redraws ourselves; tqdm's own throttle would only delay them further.
            "mininterval": 0,
            "miniters": 1,
            # A loader pass shorter than one redraw interval draws nothing at all.
            "delay": self.refresh_seconds,
            **tqdm_kwargs,
        }
        self.bar: Any = None
        self._enabled = True
        self._pending = 0
        self._next_refresh = 0.0
        # With a batch count, the clock is never read; without one, every batch reads it.
        self._batch_limit = refresh_batches if refresh_batches is not None else 0

    def on_experiment_start(self, runner: Any) -> None:
        self._close()
        self._enabled = is_main_process(runner)

    def on_loader_start(self, runner: Any) -> None:
        self._close()
        if not self._enabled:
            return
        self.bar = tqdm(
            total=runner.loader_batch_len,
            desc=f"{runner.epoch_step}/{runner.num_epochs} * Epoch ({runner.loader_key})",
            file=self.file,
            leave=self.leave,
            **self._tqdm_options,
        )
        self._pending = 0
        self._next_refresh = time.monotonic() + self.refresh_seconds

    def on_batch_end(self, runner: Any) -> None:
        if self.bar is None:
            return
        self._pending += 1
        if self._batch_limit:
            if self._pending < self._batch_limit:
                return
        else:
            now = time.monotonic()
            if now < self._next_refresh:
                return
            self._next_refresh = now + self.refresh_seconds
        self._refresh(runner)

    def _postfix(self, runner: Any) -> dict[str, str]:
        # The pass's running means (the metric aggregation subscriber fills them); without
        # one, this batch's own values.
        means = runner.running_metrics
        values = means.compute() if means.counts else runner.batch_metrics
        return {name: f"{value:.4g}" for name, value in scalar_items(values)}

    def _refresh(self, runner: Any) -> None:
        self.bar.set_postfix(self._postfix(runner), refresh=False)
        self.bar.update(self._pending)
        self._pending = 0

    def on_loader_end(self, runner: Any) -> None:
        # A bar that is not left on screen is cleared at close: a last redraw would be wasted.
        if self.bar is not None and self.leave:
            # loader_metrics holds the loader's final means here (aggregation runs at order 20).
            postfix = {name: f"{value:.4g}" for name, value in scalar_items(runner.loader_metrics)}
            self.bar.set_postfix(postfix or self._postfix(runner), refresh=False)
            self.bar.update(self._pending)
            self._pending = 0
        self._close()

    def on_exception(self, runner: Any) -> None:
        self._close()

    def on_experiment_end(self, runner: Any) -> None:
        self._close()

    def _close(self) -> None:
        bar, self.bar = self.bar, None
        if bar is not None:
            bar.close()
