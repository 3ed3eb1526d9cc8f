"""CSV of epoch metrics: ``logdir/metrics.csv``, one row per epoch and loader.

Columns are ``epoch, loader`` and then the union of every metric seen so far, in first-seen
order. When a later epoch brings a new metric the whole file is rewritten (atomically: a temp
file of a random name, fsync, rename) with the wider header, so no row is ever misaligned;
otherwise rows are appended. Cells of metrics a loader did not produce are left empty.

The rows are kept in the logger's ``state_dict``, so every checkpoint holds the rows of the
epochs it contains; a resumed run rewrites the file from them.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from eventrunner.checkpoint import atomic_file
from eventrunner.checks import is_int, is_number
from eventrunner.events import Callback, Order
from plugins._log_paths import path_in_logdir
from plugins._run_info import is_main_process, log_dir, scalar_items

FIXED_COLUMNS = ("epoch", "loader")


def read_metrics_csv(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Rows of a ``metrics.csv``: ``epoch`` as int, metric cells as float (empty ones left out)."""
    rows = []
    with open(path, newline="", encoding="utf-8") as file:
        for line, row in enumerate(csv.DictReader(file), start=2):
            try:
                parsed: dict[str, Any] = {"epoch": int(row["epoch"]), "loader": row["loader"]}
                parsed.update(
                    (name, float(cell))
                    for name, cell in row.items()
                    if name not in FIXED_COLUMNS and cell not in ("", None)
                )
            except (KeyError, TypeError, ValueError) as error:
                raise ValueError(
                    f"{path}: line {line} is not an eventrunner metrics row "
                    f"(expected columns epoch, loader, <metrics...>): {error}"
                ) from error
            rows.append(parsed)
    return rows


def _checked_rows(rows: Any) -> list[dict[str, Any]]:
    """Rows from a checkpoint (data): a list of ``{"epoch": int, "loader": str, name: number}``."""
    where = "CSVLogger: checkpoint state rows"
    if not isinstance(rows, list):
        raise ValueError(f"{where}: expected a list of metric rows, got {type(rows).__name__}")
    for index, row in enumerate(rows):
        if (
            not isinstance(row, dict)
            or not is_int(row.get("epoch"))
            or not isinstance(row.get("loader"), str)
        ):
            raise ValueError(
                f"{where}[{index}]: expected {{'epoch': int, 'loader': str, ...}}, got {row!r}"
            )
        for name, value in row.items():
            if name not in FIXED_COLUMNS and not (isinstance(name, str) and is_number(value)):
                raise ValueError(f"{where}[{index}][{name!r}]: expected a number, got {value!r}")
    return [dict(row) for row in rows]


def _rewrite(path: Path, columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> None:
    with atomic_file(path, "w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def _append(path: Path, columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> None:
    with open(path, "a", newline="", encoding="utf-8") as file:
        csv.DictWriter(file, fieldnames=columns).writerows(rows)


class CSVLogger(Callback):
    """Writes the epoch metrics of every loader to ``metrics.csv`` (rank 0 only).

    Composed by default when ``train(logdir=...)`` is given. ``filename`` is a path inside the
    log directory (no absolute path, no ``..``). On ``resume`` the file is rewritten from the
    rows the checkpoint holds (the rows of a file from an older checkpoint without them are
    kept) and the run continues it.

    The rows of an epoch are taken in the loop at ``epoch_end``; the file is written on a
    thread of its own while the next epoch trains. A write started in epoch ``e`` has
    finished, and its error is raised, by the end of epoch ``e + 1``; ``experiment_end``
    waits for the last one.

    Example: ``CSVLogger(logdir="runs/a", filename="metrics.csv")``.
    """

    kind = "csv"

    def __init__(
        self, logdir: str | os.PathLike[str] | None = None, filename: str = "metrics.csv"
    ) -> None:
        super().__init__(order=Order.LOGGING)
        self.logdir = logdir
        self.filename = filename
        self.path: Path | None = None
        self.columns: list[str] = list(FIXED_COLUMNS)
        self.rows: list[dict[str, Any]] = []
        self._written_columns: list[str] | None = None
        self._restored: list[dict[str, Any]] | None = None
        self._writes: ThreadPoolExecutor | None = None
        self._pending: Future[None] | None = None

    def state_dict(self) -> dict[str, Any]:
        """The rows so far (taken at each ``epoch_end``, whatever the file write's progress)."""
        return {"rows": [dict(row) for row in self.rows]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Keep a checkpoint's rows for the resumed run's ``experiment_start``."""
        if "rows" in state:
            self._restored = _checked_rows(state["rows"])

    def on_experiment_start(self, runner: Any) -> None:
        self._finish()
        restored, self._restored = self._restored, None
        self.path = None
        if not is_main_process(runner):
            return
        logdir = log_dir(type(self).__name__, self.logdir, runner)
        self.path = path_in_logdir(type(self).__name__, logdir, self.filename)
        self.columns = list(FIXED_COLUMNS)
        self.rows = []
        if runner.epoch_step > 0:  # resumed: the checkpoint's rows, else the file's
            if restored is None and self.path.exists():
                restored = read_metrics_csv(self.path)
            # Rows of epochs after the checkpoint (an earlier attempt went further) run again.
            for row in restored or ():
                if row["epoch"] <= runner.epoch_step:
                    self._add(row)
        _rewrite(self.path, self.columns, self.rows)
        self._written_columns = list(self.columns)
        self._writes = ThreadPoolExecutor(max_workers=1, thread_name_prefix="eventrunner-csv")

    def _add(self, row: dict[str, Any]) -> None:
        for name in row:
            if name not in self.columns:
                self.columns.append(name)
        self.rows.append(row)

    def on_epoch_end(self, runner: Any) -> None:
        if self.path is None or self._writes is None:
            return
        self._wait()
        new_rows = []
        for loader_key, metrics in runner.epoch_metrics.items():
            row: dict[str, Any] = {"epoch": runner.epoch_step, "loader": loader_key}
            row.update(scalar_items(metrics))
            self._add(row)
            new_rows.append(row)
        columns = list(self.columns)
        if columns == self._written_columns:
            self._pending = self._writes.submit(_append, self.path, columns, new_rows)
        else:
            self._pending = self._writes.submit(_rewrite, self.path, columns, list(self.rows))
            self._written_columns = columns

    def on_exception(self, runner: Any) -> None:
        self._finish()

    def on_experiment_end(self, runner: Any) -> None:
        self._finish()

    def _wait(self) -> None:
        """Wait for the write in flight; raise its error, with a note naming the file."""
        pending, self._pending = self._pending, None
        if pending is None:
            return
        try:
            pending.result()
        except Exception as error:
            error.add_note(f"CSVLogger: raised while writing {self.path}")
            raise

    def _finish(self) -> None:
        writes, self._writes = self._writes, None
        try:
            self._wait()
        finally:
            if writes is not None:
                writes.shutdown(wait=True)
