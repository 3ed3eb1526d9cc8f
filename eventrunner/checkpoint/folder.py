"""The checkpoints folder (``logdir/checkpoints``): ``last.pth``, ``best.pth``, the top-k
``epoch_N.pth`` and ``index.json``, and which names each save gives and displaces.

The file names are this module's: a name read from a checkpoint or an index is checked
against them before any file is touched (:func:`check_file_name`). A save writes the files
first, then the index, then deletes what it displaced: a crash at any point leaves every
file the index names complete.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eventrunner.checkpoint.files import (
    CheckpointError,
    discard,
    link_into,
    save_checkpoint,
    temp_files,
    write_json_atomic,
)
from eventrunner.checkpoint.state import VERSION, peek_epoch
from eventrunner.checks import is_int, is_number

log = logging.getLogger("eventrunner")

INDEX_FORMAT = "eventrunner.checkpoints"
LAST = "last.pth"
BEST = "best.pth"
INDEX = "index.json"
_EPOCH_FILE = re.compile(r"^epoch_(\d+)\.pth$")


def epoch_file(epoch: int) -> str:
    """The name of the top-k file of ``epoch`` (``epoch_0003.pth``)."""
    return f"epoch_{epoch:04d}.pth"


def check_file_name(name: Any, epoch: int, allowed: Iterable[str]) -> None:
    """Raise a CheckpointError unless ``name`` is one of ``allowed`` (names of this module)."""
    allowed = tuple(allowed)
    if name not in allowed:
        raise CheckpointError(
            f"checkpoint file name {name!r} for epoch {epoch}: expected "
            + " or ".join(map(repr, allowed))
            + ", a file of the checkpoints folder"
        )


@dataclass
class Entry:
    """A checkpoint file: its name, the epoch it holds and that epoch's selection metric."""

    file: str
    epoch: int
    metric: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"file": self.file, "epoch": self.epoch, "metric": self.metric}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Entry:
        """The entry ``as_dict`` wrote, read back as data: a name this module does not write
        (another folder, another epoch's file, ``../x``) is a :class:`CheckpointError`."""
        if not isinstance(data, Mapping):
            raise CheckpointError(
                f"checkpoint file entry: expected a dict with file, epoch and metric, found "
                f"{type(data).__name__}"
            )
        name, epoch, metric = data.get("file"), data.get("epoch"), data.get("metric")
        if not is_int(epoch) or epoch < 0:
            raise CheckpointError(
                f"checkpoint file entry {name!r}: epoch must be an int >= 0, found {epoch!r}"
            )
        if metric is not None and not is_number(metric):
            raise CheckpointError(
                f"checkpoint file entry {name!r}: metric must be a number or None, found "
                f"{type(metric).__name__}"
            )
        check_file_name(name, epoch, (epoch_file(epoch), BEST, LAST))
        return cls(name, epoch, None if metric is None else float(metric))


@dataclass
class SavePlan:
    """What one save does: the names the new file gets, the index after it, files to delete."""

    epoch: int
    targets: list[str]
    index: dict[str, Any]
    delete: list[str] = field(default_factory=list)


def _json_number(value: float | None) -> float | None:
    return value if value is None or math.isfinite(value) else None


class CheckpointFolder:
    """``logdir/checkpoints``: ``last.pth``, ``best.pth``, the top-k ``epoch_N.pth`` and
    ``index.json``. Decides, per save, which names the new file gets and which file it displaces.

    Top-k ranks by the selection metric (ties keep the earlier epoch, NaN ranks last); without
    a selection metric it keeps the ``topk`` latest epochs.
    """

    def __init__(self, path: str | Path, topk: int, minimize: bool) -> None:
        self.path = Path(path)
        self.topk = topk
        self.minimize = minimize
        self.kept: list[Entry] = []
        self.best: Entry | None = None  # what best.pth holds
        self.last: Entry | None = None  # what last.pth holds
        self._stale: set[str] = set()

    # -- start of a run

    def prepare(self) -> None:
        """Create the folder and drop the temp files a killed run left. A new run's first save
        replaces the files of an earlier run there (its top-k files are deleted then)."""
        self.path.mkdir(parents=True, exist_ok=True)
        for leftover in temp_files(self.path):
            discard(leftover)
        self._stale = {p.name for p in self.path.iterdir() if _EPOCH_FILE.match(p.name)}

    def resume(
        self,
        resumed: str | Path,
        last: Entry,
        kept: Iterable[Entry],
        best: Entry | None,
        best_epoch: int | None,
        best_metric: float | None,
        selection: Mapping[str, Any] | None,
    ) -> None:
        """Take over a resumed run: ``last.pth``, ``best.pth`` and the top-k files hold what
        the resumed checkpoint says (taken from its folder when it is another), the files of
        later epochs go, and the index is rewritten to match, before the first epoch runs.

        The names come from the resumed file: anything but the names this module gives is
        refused before a file is touched."""
        resumed = Path(resumed)
        kept = list(kept)
        try:
            check_file_name(last.file, last.epoch, [LAST])
            for entry in kept:
                check_file_name(entry.file, entry.epoch, [epoch_file(entry.epoch)])
        except CheckpointError as error:
            raise CheckpointError(f"checkpoint {resumed}: {error}") from None
        self.prepare()
        source = resumed.parent
        self.kept = [entry for entry in kept if self._bring(entry, [source / entry.file])]
        self.best = None
        if best is not None:
            candidates = [self.path / epoch_file(best.epoch), source / BEST, resumed]
            if self._bring(Entry(BEST, best.epoch, best.metric), candidates):
                self.best = Entry(BEST, best.epoch, best.metric)
        self.last = None
        if self._bring(last, [resumed]):
            self.last = last
        write_json_atomic(self.path / INDEX, self._index(best_epoch, best_metric, selection))
        names = {entry.file for entry in self.kept}
        for name in sorted(self._stale - names):
            discard(self.path / name)
        self._stale = set()

    def _bring(self, entry: Entry, sources: Iterable[Path]) -> bool:
        here = self.path / entry.file
        if peek_epoch(here) == entry.epoch:
            return True
        for there in sources:
            if there != here and peek_epoch(there) == entry.epoch:
                link_into(there, here)
                return True
        log.warning(
            "eventrunner: no file holds epoch %d for %s; it is left out until written again",
            entry.epoch,
            here,
        )
        return False

    # -- each save

    def _rank(self, entry: Entry) -> tuple[float, int]:
        metric = entry.metric
        if metric is None or math.isnan(metric):
            return (math.inf, entry.epoch)
        return (metric if self.minimize else -metric, entry.epoch)

    def plan(
        self,
        epoch: int,
        metric: float | None,
        best_epoch: int | None,
        best_metric: float | None,
        selection: Mapping[str, Any] | None,
    ) -> SavePlan:
        """Update the top-k list for a finished ``epoch`` and say what its save writes."""
        entry = Entry(epoch_file(epoch), epoch, metric)
        before = {e.file for e in self.kept}
        candidates = [e for e in self.kept if e.epoch != epoch] + [entry]
        if selection is None:
            candidates.sort(key=lambda e: -e.epoch)
        else:
            candidates.sort(key=self._rank)
        self.kept = candidates[: self.topk]
        names = {e.file for e in self.kept}
        targets = [entry.file] if entry.file in names else []
        if best_epoch == epoch:
            targets.append(BEST)
            self.best = Entry(BEST, epoch, metric)
        targets.append(LAST)
        self.last = Entry(LAST, epoch, metric)
        delete = sorted((before | self._stale) - names)
        self._stale = set()
        return SavePlan(epoch, targets, self._index(best_epoch, best_metric, selection), delete)

    def plan_inside_epoch(
        self,
        epoch: int,
        where: Mapping[str, Any],
        best_epoch: int | None,
        best_metric: float | None,
        selection: Mapping[str, Any] | None,
    ) -> SavePlan:
        """A save inside the epoch after ``epoch``: ``last.pth`` only, its ``where`` (epoch,
        loader, batches) in the index; the top-k files and ``best.pth`` stay as they are."""
        self.last = Entry(LAST, epoch, None)
        index = self._index(best_epoch, best_metric, selection)
        index["last_position"] = dict(where)
        return SavePlan(epoch, [LAST], index)

    def _index(
        self, best_epoch: int | None, best_metric: float | None, selection: Mapping[str, Any] | None
    ) -> dict[str, Any]:
        files = {
            entry.file: {
                "epoch": entry.epoch,
                "metric": _json_number(entry.metric),
                "best": entry.epoch == best_epoch,
            }
            for entry in (self.last, self.best, *self.kept)
            if entry is not None
        }
        return {
            "format": INDEX_FORMAT,
            "version": VERSION,
            "selection": dict(selection) if selection is not None else None,
            "last_epoch": self.last.epoch if self.last is not None else None,
            "last_position": None,  # where inside the next epoch last.pth was written, if so
            "best_epoch": best_epoch,
            "best_metric": _json_number(best_metric),
            "topk": [kept.file for kept in self.kept],
            "files": files,
        }

    def write(self, state: Mapping[str, Any], plan: SavePlan) -> None:
        """Files first, then the index, then the deletions: a crash at any point leaves every
        file the index names complete."""
        save_checkpoint(state, [self.path / name for name in plan.targets])
        write_json_atomic(self.path / INDEX, plan.index)
        for name in plan.delete:
            discard(self.path / name)


def read_index(folder: str | Path) -> dict[str, Any]:
    """The ``index.json`` of a checkpoints folder, with an error naming it when unreadable."""
    path = Path(folder) / INDEX
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except json.JSONDecodeError as error:
        raise CheckpointError(f"checkpoint index {path}: not valid JSON ({error})") from error
    if not isinstance(data, dict) or data.get("format") != INDEX_FORMAT:
        raise CheckpointError(f"checkpoint index {path}: not an eventrunner index")
    return data
