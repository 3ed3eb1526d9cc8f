"""The machine-readable record of a run: ``logdir/events.jsonl``, one JSON object per line.

Records (field ``event``): ``experiment_start`` (hparams, config, loaders), ``epoch_end``
(every loader's metrics, best epoch, whether this epoch is the best), ``checkpoint`` (any
subscriber may add records through :func:`record_event`), ``exception`` and
``experiment_end`` (status, best epoch and metric). Every line is flushed when written.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

from eventrunner.events import Callback, Order
from eventrunner.preemption import Preempted
from plugins._log_paths import path_in_logdir
from plugins._run_info import is_main_process, json_safe, log_dir, run_hparams, scalar_items


def record_event(runner: Any, event: str, **fields: Any) -> None:
    """Add a record to the run's event log, if it has one (e.g. ``checkpoint`` with its path).

    Example: ``record_event(runner, "checkpoint", path="checkpoints/best.pth", best=True)``.
    """
    for callback in runner.callbacks:
        if isinstance(callback, JSONLogger):
            callback.record(runner, event, **fields)


def read_events(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The records of an ``events.jsonl`` (a torn last line from a crash is skipped)."""
    records = []
    with open(path, encoding="utf-8") as file:
        lines = file.read().splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as error:
            if number == len(lines):
                break
            raise ValueError(f"{path}: line {number} is not JSON: {error}") from error
    return records


def _selection(runner: Any) -> dict[str, Any]:
    selection = runner.selection
    return {"loader": selection.loader, "metric": selection.metric, "minimize": selection.minimize}


class JSONLogger(Callback):
    """Writes the run's events as JSON lines (rank 0 only); composed by default with ``logdir``.

    ``config`` (or ``runner.config``, e.g. the YAML config of ``eventrunner run``) is written in
    the ``experiment_start`` record. Appends on ``resume``, starts a new file otherwise.
    ``filename`` is a path inside the log directory (no absolute path, no ``..``).
    """

    kind = "jsonl"

    def __init__(
        self,
        logdir: str | os.PathLike[str] | None = None,
        filename: str = "events.jsonl",
        config: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(order=Order.LOGGING)
        self.logdir = logdir
        self.filename = filename
        self.config = config
        self.path: Path | None = None
        self._file: TextIO | None = None
        self._started = 0.0

    def record(self, runner: Any, event: str, **fields: Any) -> None:
        """Write one record ``{"event": event, "time": ..., "epoch": ..., **fields}``."""
        if self._file is None:
            return
        line = {"event": event, "time": round(time.time(), 3), "epoch": runner.epoch_step}
        line.update(fields)
        self._file.write(json.dumps(json_safe(line), allow_nan=False) + "\n")
        self._file.flush()

    def on_experiment_start(self, runner: Any) -> None:
        self._close()
        self.path = None
        if not is_main_process(runner):
            return
        logdir = log_dir(type(self).__name__, self.logdir, runner)
        self.path = path_in_logdir(type(self).__name__, logdir, self.filename)
        resume = runner.settings.resume if runner.settings is not None else None
        self._file = open(self.path, "a" if resume else "w", encoding="utf-8")  # noqa: SIM115 - closed at experiment_end
        self._started = time.perf_counter()
        config = self.config if self.config is not None else getattr(runner, "config", None)
        self.record(
            runner,
            "experiment_start",
            hparams=run_hparams(runner),
            config=config,
            loaders={key: _length(loader) for key, loader in runner.loaders.items()},
            selection=_selection(runner),
            resume=resume,
        )

    def on_epoch_end(self, runner: Any) -> None:
        if self._file is None:
            return
        best_valid = runner.best_valid_metric
        self.record(
            runner,
            "epoch_end",
            metrics={key: dict(scalar_items(m)) for key, m in runner.epoch_metrics.items()},
            best_epoch=runner.best_epoch,
            best_valid_metric=best_valid,
            is_best=best_valid is not None and runner.best_epoch == runner.epoch_step,
            batch_step=runner.batch_step,
            sample_step=runner.sample_step,
            elapsed_s=round(time.perf_counter() - self._started, 3),
        )

    def on_exception(self, runner: Any) -> None:
        error = runner.exception
        reopened = self._file is None and self.path is not None
        if reopened:  # a handler after ours failed in experiment_end: the run failed after all
            self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed below
        self.record(
            runner,
            "exception",
            error=type(error).__name__ if error is not None else None,
            message=str(error) if error is not None else None,
            loader=runner.loader_key,
            loader_batch_step=runner.loader_batch_step,
        )
        if reopened:
            self.on_experiment_end(runner)

    def on_experiment_end(self, runner: Any) -> None:
        if self._file is None:
            return
        if isinstance(runner.exception, Preempted):
            status = "preempted"  # SIGTERM: the batch finished and was saved; resume goes on
        elif runner.exception is not None:
            status = "failed"
        elif runner.need_early_stop and runner.epoch_step < runner.num_epochs:
            status = "early_stopped"
        else:
            status = "completed"
        self.record(
            runner,
            "experiment_end",
            status=status,
            epochs=runner.epoch_step,
            best_epoch=runner.best_epoch,
            best_valid_metric=runner.best_valid_metric,
            selection=_selection(runner),
            elapsed_s=round(time.perf_counter() - self._started, 3),
        )
        self._close()

    def _close(self) -> None:
        file, self._file = self._file, None
        if file is not None:
            file.close()


def _length(loader: Any) -> int | None:
    try:
        return len(loader)
    except TypeError:
        return None
