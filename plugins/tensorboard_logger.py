"""TensorBoard logs through ``torch.utils.tensorboard.SummaryWriter`` (extra ``tensorboard``).

One run per loader, ``logdir/tensorboard/<loader>``, so that TensorBoard draws train and
valid in the same chart: tags ``epoch/<metric>`` (step = epoch) and, when asked,
``batch/<metric>`` every N batches (step = global batch step). The hparams of the run and its
final metrics go to the ``logdir/tensorboard/hparams`` run, for the HParams dashboard.
A loader name with ``/`` nests its run; one that would leave the log directory (``..``) is
refused before the first batch.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from eventrunner.checks import positive_int
from eventrunner.events import Callback, Order
from plugins._log_paths import path_in_logdir
from plugins._run_info import is_main_process, log_dir, run_hparams, scalar_items


def _summary_writer() -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as error:
        raise ImportError(
            "TensorBoardLogger needs the tensorboard package: "
            "pip install 'eventrunner[tensorboard]'"
        ) from error
    return SummaryWriter


def _hparam_value(value: Any) -> Any:
    # TensorBoard's hparams accept int, float, str and bool only.
    if isinstance(value, bool | int | float | str):
        return value
    return str(value)


class TensorBoardLogger(Callback):
    """Epoch scalars per loader, optional batch scalars, hparams (rank 0 only).

    Composed by default with ``logdir`` when tensorboard is installed. ``log_batch_every=N``
    also writes the batch metrics of every N-th batch of each loader (reading a device value
    then: one sync per N batches, none in between). ``hparams`` adds to the run's own
    (model, optimizer, lr, epochs, ``runner.hparams``...).

    Example: ``TensorBoardLogger(log_batch_every=50)``; then ``tensorboard --logdir LOGDIR``.
    """

    kind = "tensorboard"

    def __init__(
        self,
        logdir: str | os.PathLike[str] | None = None,
        log_batch_every: int | None = None,
        hparams: dict[str, Any] | None = None,
        subdir: str = "tensorboard",
    ) -> None:
        super().__init__(order=Order.LOGGING)
        positive_int(log_batch_every, "TensorBoardLogger: log_batch_every", optional=True)
        self._writer_class = _summary_writer()
        self.logdir = logdir
        self.log_batch_every = log_batch_every
        self.hparams = dict(hparams or {})
        self.subdir = subdir
        self.root: Path | None = None
        self.writers: dict[str, Any] = {}
        self._logdir: Path | None = None

    def handlers(self) -> dict[str, Any]:
        found = super().handlers()
        if self.log_batch_every is None:
            found.pop("batch_end", None)  # nothing to do per batch: not even a call
        return found

    def _folder(self, loader_key: str) -> Path:
        """``logdir/<subdir>/<loader>``; a ValueError when the loader's name would leave it."""
        assert self._logdir is not None
        owner = type(self).__name__
        return path_in_logdir(owner, self._logdir, loader_key, "loader", under=self.subdir)

    def _writer(self, loader_key: str) -> Any:
        writer = self.writers.get(loader_key)
        if writer is None:
            writer = self.writers[loader_key] = self._writer_class(
                log_dir=str(self._folder(loader_key))
            )
        return writer

    def on_experiment_start(self, runner: Any) -> None:
        self._close()
        self.root = self._logdir = None
        if not is_main_process(runner):
            return
        owner = type(self).__name__
        logdir = log_dir(owner, self.logdir, runner)
        root = path_in_logdir(owner, logdir, self.subdir, "subdir")
        self._logdir = logdir
        for loader_key in runner.loaders:  # refused now, not after a loader's first pass
            self._folder(loader_key)
        self.root = root

    def on_batch_end(self, runner: Any) -> None:
        if self.root is None or runner.loader_batch_step % self.log_batch_every:
            return
        writer = self._writer(runner.loader_key)
        for name, value in scalar_items(runner.batch_metrics):
            writer.add_scalar(f"batch/{name}", value, runner.batch_step)

    def on_loader_end(self, runner: Any) -> None:
        if self.root is None:
            return
        writer = self._writer(runner.loader_key)
        for name, value in scalar_items(runner.loader_metrics):
            writer.add_scalar(f"epoch/{name}", value, runner.epoch_step)

    def on_epoch_end(self, runner: Any) -> None:
        for writer in self.writers.values():
            writer.flush()

    def on_experiment_end(self, runner: Any) -> None:
        if self.root is not None:
            self._write_hparams(runner)
        self._close()

    def _write_hparams(self, runner: Any) -> None:
        from torch.utils.tensorboard.summary import hparams as hparams_summary

        hparams = {key: _hparam_value(value) for key, value in run_hparams(runner).items()}
        hparams.update((key, _hparam_value(value)) for key, value in self.hparams.items())
        metrics: dict[str, float] = {}
        for loader_key, loader_metrics in runner.epoch_metrics.items():
            for name, value in scalar_items(loader_metrics):
                metrics[f"hparam/{loader_key}/{name}"] = float(value)
        if runner.best_valid_metric is not None:
            metrics["hparam/best_valid_metric"] = float(runner.best_valid_metric)
            metrics["hparam/best_epoch"] = float(runner.best_epoch)
        # What SummaryWriter.add_hparams does, in a run of a fixed name (it picks a timestamp).
        writer = self._writer_class(log_dir=str(self.root / "hparams"))
        try:
            for summary in hparams_summary(hparams, metrics):
                writer.file_writer.add_summary(summary)
            for tag, value in metrics.items():
                writer.add_scalar(tag, value, runner.epoch_step)
        finally:
            writer.close()

    def _close(self) -> None:
        writers, self.writers = self.writers, {}
        for writer in writers.values():
            writer.close()
