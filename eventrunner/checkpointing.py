"""Checkpoint files: what a checkpoint holds, atomic writes, safe loading, and exact resume.

A checkpoint is a plain dict (tensors, numbers, strings, lists, dicts) written with
``torch.save`` and read with ``torch.load(weights_only=True)``. Writes never touch a final
name until the new file is complete: temp file in the same folder, flush + fsync, verify it
loads, ``os.replace``; the index likewise; a displaced file is deleted only after that.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import pickle
import re
import shutil
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from eventrunner.distributed import unwrap_model
from eventrunner.rng import rng_state, set_rng_state

log = logging.getLogger("eventrunner")

FORMAT = "eventrunner.checkpoint"
INDEX_FORMAT = "eventrunner.checkpoints"
VERSION = 1
LAST = "last.pth"
BEST = "best.pth"
INDEX = "index.json"
_TEMP_PREFIX = ".eventrunner-"
_TEMP_SUFFIX = ".tmp"
_EPOCH_FILE = re.compile(r"^epoch_(\d+)\.pth$")


class CheckpointError(ValueError):
    """A file that is not a readable eventrunner checkpoint, or one that does not fit the run."""


def epoch_file(epoch: int) -> str:
    """The name of the top-k file of ``epoch`` (``epoch_0003.pth``)."""
    return f"epoch_{epoch:04d}.pth"


# ------------------------------------------------------------------------ what is saved


def callback_keys(callbacks: Iterable[Any]) -> list[tuple[str, Any]]:
    """``(key, callback)`` pairs: the key is the ``kind`` or class name, ``#2``... on repeats."""
    counts: dict[str, int] = {}
    keyed = []
    for callback in callbacks:
        base = getattr(callback, "kind", None) or type(callback).__name__
        counts[base] = counts.get(base, 0) + 1
        keyed.append((base if counts[base] == 1 else f"{base}#{counts[base]}", callback))
    return keyed


def _scalar_metrics(epoch_metrics: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    return {
        loader: {
            name: float(value)
            for name, value in metrics.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool)
        }
        for loader, metrics in epoch_metrics.items()
    }


def capture_state(
    runner: Any,
    *,
    epoch: int,
    epoch_metrics: Mapping[str, Mapping[str, Any]] | None = None,
    history: list[dict[str, Any]] | None = None,
    selection: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything needed to continue ``runner`` after ``epoch``; tensors are live references.

    ``selection`` (loader, metric, minimize) is what chose the best epoch, if not
    ``runner.selection``. Copy the result with :func:`copy_to_cpu` before training goes on
    if it is written later.
    """
    if selection is None:
        chosen = runner.selection
        selection = {
            "loader": chosen.loader,
            "metric": chosen.metric,
            "minimize": bool(chosen.minimize),
        }
    scheduler = runner.scheduler
    scaler = getattr(runner, "scaler", None)
    return {
        "format": FORMAT,
        "version": VERSION,
        "epoch": int(epoch),
        "model": unwrap_model(runner.model).state_dict(),
        "optimizer": runner.optimizer.state_dict() if runner.optimizer is not None else None,
        "scheduler": scheduler.state_dict() if hasattr(scheduler, "state_dict") else None,
        "scaler": scaler.state_dict() if scaler is not None else None,
        "counters": {
            "epoch_step": int(epoch),
            "batch_step": int(runner.batch_step),
            "sample_step": int(runner.sample_step),
        },
        "selection": {
            **selection,
            "best_valid_metric": runner.best_valid_metric,
            "best_epoch": runner.best_epoch,
            "history": list(history or []),
        },
        "epoch_metrics": _scalar_metrics(epoch_metrics or {}),
        "callbacks": {key: cb.state_dict() for key, cb in callback_keys(runner.callbacks)},
        "rng": rng_state(runner.loaders),
    }


def copy_to_cpu(obj: Any, _memo: dict[int, torch.Tensor] | None = None) -> Any:
    """A copy of a nested state whose tensors are on the CPU and no longer change with training.

    Containers are rebuilt (an ``OrderedDict`` keeps its ``_metadata``, which
    ``load_state_dict`` reads); a tensor reached twice (tied weights) is copied once.
    """
    memo = {} if _memo is None else _memo
    if isinstance(obj, torch.Tensor):
        copied = memo.get(id(obj))
        if copied is None:
            copied = memo[id(obj)] = obj.detach().to("cpu", copy=True)
        return copied
    if isinstance(obj, Mapping):
        out = OrderedDict() if isinstance(obj, OrderedDict) else {}
        for key, value in obj.items():
            out[key] = copy_to_cpu(value, memo)
        metadata = getattr(obj, "_metadata", None)
        if metadata is not None:
            out._metadata = copy_to_cpu(metadata, memo)  # type: ignore[attr-defined]
        return out
    if isinstance(obj, list):
        return [copy_to_cpu(value, memo) for value in obj]
    if isinstance(obj, tuple) and not hasattr(obj, "_fields"):
        return tuple(copy_to_cpu(value, memo) for value in obj)
    return obj


# --------------------------------------------------------------------------- loading


def _reason(error: BaseException) -> str:
    text = str(error)
    # torch's weights-only refusal is long; its core is the WeightsUnpickler line.
    match = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\n\s*\n|$)", text, re.S)
    if match:
        text = match.group(1)
    text = " ".join(text.split())
    return f"{type(error).__name__}: {text[:300]}" if text else type(error).__name__


def _torch_load(path: Path, *, mmap: bool = False) -> Any:
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path}: no such file")
    if path.is_dir():
        raise IsADirectoryError(f"checkpoint {path}: is a folder, expected a .pth file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except PermissionError:
        raise
    except Exception as error:
        if isinstance(error, pickle.UnpicklingError) and "Unsupported global" in str(error):
            raise CheckpointError(
                f"checkpoint {path}: refused, it holds objects that torch.load(weights_only=True) "
                f"does not load, so it is not an eventrunner checkpoint ({_reason(error)})"
            ) from error
        raise CheckpointError(
            f"checkpoint {path}: cannot be read; the file is truncated, corrupt or not a torch "
            f"file ({_reason(error)})"
        ) from error


def _check_format(obj: Any, path: Path) -> dict[str, Any]:
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        found = (
            f"a dict with keys {sorted(map(str, obj))[:8]}"
            if isinstance(obj, dict)
            else f"a {type(obj).__name__}"
        )
        raise CheckpointError(
            f"checkpoint {path}: not an eventrunner checkpoint (expected a dict with "
            f"format={FORMAT!r}, found {found}); plain weights load with "
            "model.load_state_dict(torch.load(path, weights_only=True))"
        )
    version = obj.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise CheckpointError(
            f"checkpoint {path}: format version {version!r}; this eventrunner reads up to {VERSION}"
        )
    return obj


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint with ``torch.load(weights_only=True)``, tensors on the CPU.

    Raises :class:`CheckpointError` (a ``ValueError``) naming the file when it is truncated,
    garbage, a foreign pickle (refused without running its code) or not one of ours.
    """
    path = Path(path)
    return _check_format(_torch_load(path), path)


def peek_epoch(path: str | Path) -> int | None:
    """The epoch a checkpoint file holds, or None when it is missing or unreadable.

    Memory-maps the file, so tensor data is not read.
    """
    path = Path(path)
    try:
        return int(_check_format(_torch_load(path, mmap=True), path)["epoch"])
    except (OSError, CheckpointError, KeyError, TypeError, ValueError):
        return None


def _shape(value: Any) -> tuple[int, ...] | None:
    return tuple(value.shape) if isinstance(value, torch.Tensor) else None


def load_model_state(model: nn.Module, state: Mapping[str, Any], source: str | Path) -> None:
    """``model.load_state_dict(state)``, with an error that lists the keys that differ."""
    model = unwrap_model(model)
    own = model.state_dict()
    missing = [key for key in own if key not in state]
    unexpected = [key for key in state if key not in own]
    shapes = [
        f"{key} {_shape(state[key])} vs {_shape(value)}"
        for key, value in own.items()
        if key in state and _shape(state[key]) != _shape(value)
    ]
    if missing or unexpected or shapes:

        def listed(keys: list[str]) -> str:
            more = f" (+{len(keys) - 8} more)" if len(keys) > 8 else ""
            return ", ".join(keys[:8]) + more

        parts = []
        if missing:
            parts.append(f"missing from the checkpoint: {listed(missing)}")
        if unexpected:
            parts.append(f"not in the model: {listed(unexpected)}")
        if shapes:
            parts.append(f"shape (checkpoint vs model): {listed(shapes)}")
        raise CheckpointError(
            f"checkpoint {source}: holds the weights of another model ({type(model).__name__} "
            f"keys differ); " + "; ".join(parts)
        )
    model.load_state_dict(state)


def load_weights(model: nn.Module, path: str | Path) -> dict[str, Any]:
    """Load only the model weights of a checkpoint (``best.pth``, say); returns the checkpoint."""
    checkpoint = load_checkpoint(path)
    load_model_state(model, checkpoint["model"], path)
    return checkpoint


def _load_part(target: Any, state: Any, what: str, path: Path) -> None:
    if target is None:
        if state:
            log.warning("eventrunner: %s holds a %s state but the run has no %s", path, what, what)
        return
    if state is None:
        log.warning("eventrunner: %s holds no %s state; the %s starts fresh", path, what, what)
        return
    try:
        target.load_state_dict(state)
    except (KeyError, ValueError, RuntimeError, TypeError, IndexError) as error:
        raise CheckpointError(
            f"checkpoint {path}: its {what} state does not fit runner.{what} "
            f"({type(target).__name__}): {error}"
        ) from error


def restore_run(runner: Any, path: str | Path) -> dict[str, Any]:
    """Put a run back where ``path`` left it, so that the loop continues from the next epoch.

    Restores the model, optimizer, scheduler, grad scaler, counters, best metric and epoch,
    every subscriber's ``load_state_dict`` (matched by kind or class name) and, last, the RNG
    states: call it after seeding and after the loaders are set.
    """
    path = Path(path)
    checkpoint = load_checkpoint(path)
    load_model_state(runner.model, checkpoint["model"], path)
    _load_part(runner.optimizer, checkpoint.get("optimizer"), "optimizer", path)
    scheduler = runner.scheduler if hasattr(runner.scheduler, "load_state_dict") else None
    _load_part(scheduler, checkpoint.get("scheduler"), "scheduler", path)
    # A disabled GradScaler saves {}: nothing to restore.
    _load_part(getattr(runner, "scaler", None), checkpoint.get("scaler") or None, "scaler", path)

    counters = checkpoint["counters"]
    runner.epoch_step = int(counters["epoch_step"])
    runner.batch_step = int(counters["batch_step"])
    runner.sample_step = int(counters["sample_step"])
    selection = checkpoint["selection"]
    runner.best_valid_metric = selection.get("best_valid_metric")
    runner.best_epoch = selection.get("best_epoch")
    runner.epoch_metrics = {k: dict(v) for k, v in checkpoint.get("epoch_metrics", {}).items()}

    states = checkpoint.get("callbacks", {})
    for key, callback in callback_keys(runner.callbacks):
        if key in states:
            callback.load_state_dict(states[key])
    set_rng_state(checkpoint["rng"], runner.loaders, source=str(path))
    if runner.epoch_step >= runner.num_epochs:
        log.warning(
            "eventrunner: %s is epoch %d and num_epochs=%d: no epoch left to train",
            path,
            runner.epoch_step,
            runner.num_epochs,
        )
    else:
        log.info("eventrunner: resumed from %s after epoch %d", path, runner.epoch_step)
    return checkpoint


# --------------------------------------------------------------------------- writing


def _temp_name(folder: Path) -> Path:
    return folder / f"{_TEMP_PREFIX}{uuid.uuid4().hex}{_TEMP_SUFFIX}"


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_folder(folder: Path) -> None:
    # Makes the renames durable (POSIX). Windows cannot open a folder for fsync: skip there.
    if os.name == "nt":
        return
    with contextlib.suppress(OSError):
        _fsync_path(folder)


def _discard(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """``write(temp)`` then fsync and rename over ``path``; ``path`` is never half-written."""
    temp = _temp_name(path.parent)
    try:
        write(temp)
        _fsync_path(temp)
        os.replace(temp, path)
    except BaseException:
        _discard(temp)
        raise
    _fsync_folder(path.parent)


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` as JSON to ``path`` atomically (temp file, fsync, rename)."""

    def write(temp: Path) -> None:
        with open(temp, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, allow_nan=False)
            handle.write("\n")

    write_atomic(path, write)


def _link_into(source: Path, target: Path) -> None:
    # Checkpoints are immutable once written, so one inode can carry several names
    # (epoch_N.pth, best.pth, last.pth). Filesystems without hard links get a copy.
    temp = _temp_name(target.parent)
    try:
        try:
            os.link(source, temp)
        except OSError:
            shutil.copyfile(source, temp)
            _fsync_path(temp)
        os.replace(temp, target)
    except BaseException:
        _discard(temp)
        raise


def save_checkpoint(state: Mapping[str, Any], targets: Iterable[Path]) -> None:
    """Write ``state`` once and give it every name in ``targets``, each replaced atomically.

    The file is verified to load with ``torch.load(weights_only=True)`` (memory-mapped, so
    cheap) before it replaces anything: an unloadable state never displaces a good file.
    """
    targets = list(targets)
    folder = targets[0].parent
    temp = _temp_name(folder)
    try:
        try:
            torch.save(state, temp)
        except (pickle.PicklingError, TypeError, AttributeError) as error:
            raise _unsaveable(state, targets[0], "cannot be saved", error) from error
        _fsync_path(temp)
        try:
            torch.load(temp, map_location="cpu", weights_only=True, mmap=True)
        except Exception as error:
            raise _unsaveable(
                state, targets[0], "would not load back with torch.load(weights_only=True)", error
            ) from error
        for target in targets:
            _link_into(temp, target)
    finally:
        _discard(temp)
    _fsync_folder(folder)


# What torch.load(weights_only=True) rebuilds without an allow-list (containers aside).
_PLAIN = (
    type(None),
    bool,
    int,
    float,
    complex,
    str,
    bytes,
    torch.Tensor,
    torch.Size,
    torch.dtype,
    torch.device,
)


def _foreign_value(obj: Any, path: str = "") -> str | None:
    """The key path of the first value in ``obj`` that is not plain data, if any."""
    if isinstance(obj, Mapping):
        if type(obj) not in (dict, OrderedDict):
            return f"{path or 'state'} ({type(obj).__name__})"
        for key, value in obj.items():
            found = _foreign_value(value, f"{path}.{key}" if path else str(key))
            if found:
                return found
        return None
    if isinstance(obj, (list, tuple, set)):
        for i, value in enumerate(obj):
            found = _foreign_value(value, f"{path}[{i}]")
            if found:
                return found
        return None
    if isinstance(obj, _PLAIN):
        return None
    return f"{path or 'state'} ({type(obj).__module__}.{type(obj).__qualname__})"


def _unsaveable(state: Any, target: Path, what: str, error: BaseException) -> CheckpointError:
    where = _foreign_value(state)
    at = f" at {where}" if where else ""
    return CheckpointError(
        f"checkpoint {target}: the state {what}{at}, so it was not written ({_reason(error)}); "
        "state_dict() values must be tensors or plain Python data (dict, list, numbers, str)"
    )


class CheckpointWriter:
    """Runs checkpoint writes inline or on a thread, at most one in flight.

    A background write's error is raised by the next :meth:`submit` or by :meth:`wait`.
    """

    def __init__(self, background: bool = True) -> None:
        self.background = background
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._what = ""

    def submit(self, what: str, job: Callable[[], None]) -> None:
        """Run ``job`` (after the previous one finished); ``what`` names it in errors."""
        self.wait()
        if not self.background:
            job()
            return

        def run() -> None:
            try:
                job()
            except BaseException as error:  # handed to the loop by wait()
                self._error = error

        self._what = what
        # Not a daemon: an interpreter that exits while a checkpoint is half-written waits.
        self._thread = threading.Thread(target=run, name="eventrunner-checkpoint")
        self._thread.start()

    @property
    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wait(self) -> None:
        """Wait for the write in flight; raise its error, if any."""
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join()
        error, self._error = self._error, None
        if error is not None:
            with contextlib.suppress(AttributeError):
                error.add_note(f"eventrunner: raised by the background save of {self._what}")
            raise error


# ------------------------------------------------------------------ the checkpoints folder


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
        metric = data.get("metric")
        return cls(str(data["file"]), int(data["epoch"]), None if metric is None else float(metric))


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
        for leftover in self.path.glob(f"{_TEMP_PREFIX}*{_TEMP_SUFFIX}"):
            _discard(leftover)
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
        later epochs go, and the index is rewritten to match, before the first epoch runs."""
        self.prepare()
        resumed = Path(resumed)
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
            _discard(self.path / name)
        self._stale = set()

    def _bring(self, entry: Entry, sources: Iterable[Path]) -> bool:
        here = self.path / entry.file
        if peek_epoch(here) == entry.epoch:
            return True
        for there in sources:
            if there != here and peek_epoch(there) == entry.epoch:
                _link_into(there, here)
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
            _discard(self.path / name)


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
