"""Catalyst 22.04's loggers: ``ILogger`` and its console, CSV and TensorBoard loggers.

``train(loggers={"csv": dl.CSVLogger(logdir="./logs/csv")})`` or ``IRunner.get_loggers()``
hands loggers to the run; each becomes one subscriber (:class:`LoggerCallback`) that calls it
where Catalyst's runner does: ``log_hparams`` at experiment start, ``log_metrics`` with scope
``"batch"`` (only for loggers with ``log_batch_metrics``), ``"loader"`` and ``"epoch"``,
``flush_log`` at epoch end and ``close_log`` at experiment end, on the main process only.
As in Catalyst they run after every callback of the event (the runner's own ``on_loader_end``
included), so a metric a runner sets before ``super().on_loader_end(runner)`` is logged.

The files are Catalyst's: ``CSVLogger`` writes ``<logdir>/<loader>.csv`` (``step`` and the
sorted metric names) and ``hparams.json``; ``TensorboardLogger`` writes one event folder per
loader with ``<metric>/batch`` (by sample step) and ``<metric>/epoch`` (by epoch) scalars.
Catalyst's ``epoch_metrics["_epoch_"]`` (per-epoch values that belong to no loader) is passed
too, empty unless a subscriber fills it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np

from eventrunner.distributed import is_main_process
from eventrunner.events import Callback
from eventrunner.metrics import as_number
from eventrunner.runner_hooks import RUNNER_LAST

if TYPE_CHECKING:
    from eventrunner.state import RunState

#: After every subscriber and the runner's own end hooks: where Catalyst's runner logs.
LOGGER_ORDER = RUNNER_LAST + 1


class ILogger:
    """Catalyst's logger interface; override the methods your monitoring tool needs."""

    def __init__(self, log_batch_metrics: bool, log_epoch_metrics: bool) -> None:
        self._log_batch_metrics = log_batch_metrics
        self._log_epoch_metrics = log_epoch_metrics

    @property
    def logger(self) -> Any:
        """The monitoring tool's own object (writer, run, ...)."""
        raise NotImplementedError()

    @property
    def log_batch_metrics(self) -> bool:
        return self._log_batch_metrics

    @property
    def log_epoch_metrics(self) -> bool:
        return self._log_epoch_metrics

    def log_artifact(
        self,
        tag: str,
        runner: RunState,
        artifact: object = None,
        path_to_artifact: str | None = None,
        scope: str | None = None,
    ) -> None:
        """Log a file or object."""

    def log_image(
        self, tag: str, image: np.ndarray, runner: RunState, scope: str | None = None
    ) -> None:
        """Log an image."""

    def log_hparams(self, hparams: dict[str, Any], runner: RunState | None = None) -> None:
        """Log the run's hyperparameters."""

    def log_metrics(self, metrics: dict[str, Any], scope: str, runner: RunState) -> None:
        """Log ``metrics`` of ``scope``: "batch", "loader" or "epoch" (by loader)."""

    def flush_log(self) -> None:
        """Write what is buffered."""

    def close_log(self) -> None:
        """Release what the logger holds."""


def _format_metrics(metrics: Mapping[str, Any]) -> str:
    return " | ".join(f"{key}: {float(metrics[key])}" for key in sorted(metrics))


class ConsoleLogger(ILogger):
    """Prints each loader's metrics, and the epoch's own, as Catalyst's console logger does."""

    def __init__(self, log_hparams: bool = False) -> None:
        super().__init__(log_batch_metrics=False, log_epoch_metrics=True)
        self._log_hparams = log_hparams

    def log_hparams(self, hparams: dict[str, Any], runner: RunState | None = None) -> None:
        if self._log_hparams:
            print(f"Hparams: {hparams}")

    def log_metrics(self, metrics: dict[str, Any], scope: str, runner: RunState) -> None:
        if scope == "loader":
            print(
                f"{runner.loader_key} ({runner.epoch_step}/{runner.num_epochs}) "
                + _format_metrics(metrics)
            )
        elif scope == "epoch":
            print(
                f"* Epoch ({runner.epoch_step}/{runner.num_epochs}) "
                + _format_metrics(metrics["_epoch_"])
            )


def _logdir(logdir: str | os.PathLike[str], postfix: str, use_postfix: bool) -> Path:
    path = Path(logdir) / postfix if use_postfix else Path(logdir)
    path.mkdir(parents=True, exist_ok=True)
    return path


class CSVLogger(ILogger):
    """``<logdir>/<loader>.csv``: a ``step`` column and one per metric, a row per epoch.

    ``use_logdir_postfix=True`` writes into ``<logdir>/csv_logger``.
    """

    def __init__(self, logdir: str | os.PathLike[str], use_logdir_postfix: bool = False) -> None:
        super().__init__(log_batch_metrics=False, log_epoch_metrics=True)
        self.logdir = _logdir(logdir, "csv_logger", use_logdir_postfix)
        self.loggers: dict[str, TextIO] = {}

    @property
    def logger(self) -> dict[str, TextIO]:
        return self.loggers

    def log_hparams(self, hparams: dict[str, Any], runner: RunState | None = None) -> None:
        text = json.dumps(hparams, indent=2, ensure_ascii=False, default=str)
        # As Catalyst writes it: no final newline.
        (self.logdir / "hparams.json").write_text(text, encoding="utf-8")

    def log_metrics(self, metrics: dict[str, Any], scope: str, runner: RunState) -> None:
        if scope != "epoch":
            return
        for loader_key, loader_metrics in metrics.items():
            names = sorted(loader_metrics)
            stream = self.loggers.get(loader_key)
            if stream is None:
                stream = self.loggers[loader_key] = open(  # noqa: SIM115 - kept open per run
                    self.logdir / f"{loader_key}.csv", "a+", encoding="utf-8"
                )
                stream.write(",".join(["step", *names]) + "\n")
            values = [str(loader_metrics[name]) for name in names]
            stream.write(",".join([str(runner.epoch_step), *values]) + "\n")

    def flush_log(self) -> None:
        for stream in self.loggers.values():
            stream.flush()

    def close_log(self) -> None:
        for stream in self.loggers.values():
            stream.close()
        self.loggers = {}


class TensorboardLogger(ILogger):
    """One TensorBoard event folder per loader under ``logdir`` (Catalyst's tags and steps).

    ``use_logdir_postfix=True`` writes into ``<logdir>/tensorboard``. Needs the
    ``tensorboard`` extra: ``pip install "eventrunner[tensorboard]"``.
    """

    def __init__(
        self,
        logdir: str | os.PathLike[str],
        use_logdir_postfix: bool = False,
        log_batch_metrics: bool = False,
        log_epoch_metrics: bool = True,
    ) -> None:
        super().__init__(log_batch_metrics=log_batch_metrics, log_epoch_metrics=log_epoch_metrics)
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as error:
            raise ImportError(
                'TensorboardLogger needs TensorBoard: pip install "eventrunner[tensorboard]"'
            ) from error
        self._writer_class = SummaryWriter
        self.logdir = _logdir(logdir, "tensorboard", use_logdir_postfix)
        self.loggers: dict[str, Any] = {}

    @property
    def logger(self) -> dict[str, Any]:
        return self.loggers

    def _writer(self, loader_key: str) -> Any:
        writer = self.loggers.get(loader_key)
        if writer is None:
            writer = self.loggers[loader_key] = self._writer_class(str(self.logdir / loader_key))
        return writer

    def _write(self, metrics: Mapping[str, Any], step: int, loader_key: str, suffix: str) -> None:
        writer = self._writer(loader_key)
        for key, value in metrics.items():
            writer.add_scalar(f"{key}{suffix}", float(value), step)

    def log_image(
        self, tag: str, image: np.ndarray, runner: RunState, scope: str | None = None
    ) -> None:
        array = np.asarray(image)
        if array.ndim == 2:
            array = array[None]
        elif array.ndim == 3 and array.shape[-1] in (1, 3, 4):
            array = np.moveaxis(array, -1, 0)  # HWC -> CHW
        self._writer(runner.loader_key or "_epoch_").add_image(
            tag, array, global_step=runner.epoch_step
        )

    def log_metrics(self, metrics: dict[str, Any], scope: str, runner: RunState) -> None:
        if scope == "batch" and self.log_batch_metrics:
            self._write(metrics, runner.sample_step, runner.loader_key, "/batch")
        elif scope == "loader" and self.log_epoch_metrics:
            self._write(metrics, runner.epoch_step, runner.loader_key, "/epoch")
        elif scope == "epoch" and self.log_epoch_metrics:
            self._write(metrics["_epoch_"], runner.epoch_step, "_epoch_", "/epoch")

    def flush_log(self) -> None:
        for writer in self.loggers.values():
            writer.flush()

    def close_log(self) -> None:
        for writer in self.loggers.values():
            writer.close()
        self.loggers = {}


def _numbers(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """Scalar metrics as floats (as Catalyst's loggers get them); others as they are."""
    return {
        key: float(number) if (number := as_number(value)) is not None else value
        for key, value in metrics.items()
    }


#: The default logger each of Catalyst's loggers stands in for (a given one replaces it).
_KINDS: dict[type, str] = {
    ConsoleLogger: "console",
    CSVLogger: "csv",
    TensorboardLogger: "tensorboard",
}


class LoggerCallback(Callback):
    """Calls one :class:`ILogger` where Catalyst's runner calls its loggers."""

    writes = ()  # reads the run; writes files only

    def __init__(self, logger: ILogger, hparams: Mapping[str, Any] | None = None) -> None:
        super().__init__(order=LOGGER_ORDER)
        self.logger = logger
        self.hparams = dict(hparams or {})
        self.kind = next((k for cls, k in _KINDS.items() if isinstance(logger, cls)), None)
        self._main = True

    def describe_name(self) -> str:
        return f"LoggerCallback({type(self.logger).__name__})"

    def handlers(self) -> dict[str, Callable[[Any], Any]]:
        handlers = dict(super().handlers())
        if not self.logger.log_batch_metrics:
            handlers.pop("batch_end", None)  # nothing per batch unless asked
        return handlers

    def on_experiment_start(self, runner: RunState) -> None:
        self._main = is_main_process()
        if self._main:
            self.logger.log_hparams(self.hparams, runner)

    def on_batch_end(self, runner: RunState) -> None:
        if self._main:
            self.logger.log_metrics(_numbers(runner.batch_metrics), "batch", runner)

    def on_loader_end(self, runner: RunState) -> None:
        if self._main:
            self.logger.log_metrics(_numbers(runner.loader_metrics), "loader", runner)

    def on_epoch_end(self, runner: RunState) -> None:
        if self._main:
            metrics = {key: _numbers(value) for key, value in runner.epoch_metrics.items()}
            metrics.setdefault("_epoch_", {})
            self.logger.log_metrics(metrics, "epoch", runner)
            self.logger.flush_log()

    def on_experiment_end(self, runner: RunState) -> None:
        if self._main:
            self.logger.flush_log()
            self.logger.close_log()


def logger_subscribers(
    loggers: Mapping[str, Any] | None, hparams: Mapping[str, Any] | None = None
) -> list[Callback]:
    """``train(loggers=)`` as subscribers: an :class:`ILogger` is wrapped, an eventrunner
    logger subscriber (``plugins.CSVLogger()``, ...) is used as it is."""
    subscribers: list[Callback] = []
    for name, logger in (loggers or {}).items():
        if isinstance(logger, ILogger):
            subscribers.append(LoggerCallback(logger, hparams))
        elif isinstance(logger, Callback):
            subscribers.append(logger)
        else:
            raise TypeError(
                f"loggers[{name!r}]: expected a logger (dl.ConsoleLogger(), dl.CSVLogger(logdir), "
                f"an ILogger subclass, or an eventrunner logger subscriber), got "
                f"{type(logger).__name__}"
            )
    return subscribers
