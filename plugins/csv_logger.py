"""CSV of epoch metrics: ``logdir/metrics.csv``, one row per epoch and loader.

Columns are ``epoch, loader`` and then the union of every metric seen so far, in first-seen
order. When a later epoch brings a new metric the whole file is rewritten (atomically: temp
file + rename) with the wider header, so no row is ever misaligned; otherwise rows are
appended. Cells of metrics a loader did not produce are left empty.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

from eventrunner.events import Callback, Order
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


class CSVLogger(Callback):
    """Writes the epoch metrics of every loader to ``metrics.csv`` (rank 0 only).

    Composed by default when ``train(logdir=...)`` is given. On ``resume`` the rows of the
    epochs already done are kept and the run continues the file.

    It runs as a background subscriber: the file is rewritten off the loop's path, from a
    snapshot of the epoch's metrics, while the next epoch trains.

    Example: ``CSVLogger(logdir="runs/a", filename="metrics.csv")``.
    """

    kind = "csv"
    background = True

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

    def on_experiment_start(self, runner: Any) -> None:
        self.path = None
        if not is_main_process(runner):
            return
        self.path = log_dir(type(self).__name__, self.logdir, runner) / self.filename
        self.columns = list(FIXED_COLUMNS)
        self.rows = []
        self._written_columns = None
        if getattr(runner, "resume", None) and self.path.exists():
            # Keep what the resumed epochs wrote; drop rows of epochs that will run again.
            kept = [row for row in read_metrics_csv(self.path) if row["epoch"] <= runner.epoch_step]
            for row in kept:
                self._add(row)
        self._rewrite()

    def _add(self, row: dict[str, Any]) -> None:
        for name in row:
            if name not in self.columns:
                self.columns.append(name)
        self.rows.append(row)

    def on_epoch_end(self, runner: Any) -> None:
        if self.path is None:
            return
        new_rows = []
        for loader_key, metrics in runner.epoch_metrics.items():
            row: dict[str, Any] = {"epoch": runner.epoch_step, "loader": loader_key}
            row.update(scalar_items(metrics))
            self._add(row)
            new_rows.append(row)
        if self.columns == self._written_columns:
            with open(self.path, "a", newline="", encoding="utf-8") as file:
                writer = csv.DictWriter(file, fieldnames=self.columns)
                writer.writerows(new_rows)
        else:
            self._rewrite()

    def _rewrite(self) -> None:
        assert self.path is not None
        temp = self.path.with_name(f".{self.path.name}.tmp")
        with open(temp, "w", newline="", encoding="utf-8") as file:
            writer = csv.DictWriter(file, fieldnames=self.columns)
            writer.writeheader()
            writer.writerows(self.rows)
        os.replace(temp, self.path)
        self._written_columns = list(self.columns)
