"""Checkpoint files: what a checkpoint holds, atomic writes, safe loading, and exact resume.

A checkpoint is a plain dict (tensors, numbers, strings, lists, dicts) written with
``torch.save`` and read with ``torch.load(weights_only=True)``. What it holds is data: its
structure is checked before anything is restored, and the file names it lists must be names
this module writes. Writes never touch a final name until the new file is complete: a temp
file in the same folder (an unpredictable name, created exclusively), flush + fsync, verify
it loads, ``os.replace``; the index likewise; a displaced file is deleted only after that.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import math
import os
import pickle
import pickletools
import re
import secrets
import shutil
import threading
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import torch
from torch import nn

from eventrunner.checks import is_int, is_number
from eventrunner.distributed import unwrap_model
from eventrunner.rng import (
    check_rng_state,
    persistent_worker_loaders,
    rng_state,
    set_rng_state,
)

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
            # The stop decision is part of the run: a resumed stopped run trains no more.
            "need_early_stop": bool(runner.need_early_stop),
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
        # Checked on resume: another class's state loads silently and fails at its first step.
        "classes": {
            "optimizer": _class_name(runner.optimizer),
            "scheduler": _class_name(scheduler) if hasattr(scheduler, "state_dict") else None,
        },
    }


def _class_name(obj: Any) -> str | None:
    return None if obj is None else type(obj).__name__


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


def _core(error: BaseException) -> BaseException:
    # torch wraps the weights-only unpickler's error in advice (including retrying with the
    # unsafe loader) and raises the wrapper "from None": the original is its __context__.
    inner = error.__context__
    if isinstance(error, pickle.UnpicklingError) and isinstance(inner, pickle.UnpicklingError):
        return inner
    return error


def _reason(error: BaseException) -> str:
    error = _core(error)
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:300]}" if text else type(error).__name__


# How torch's weights-only unpickler names what it refused to import, call or build.
_REFUSED = (
    re.compile(r"GLOBAL (?P<what>\S+) (?:was not an allowed global|whose module)"),
    re.compile(r"reduce for unrecognized function (?P<what>.+?)(?: which belongs to .*)?$", re.S),
    re.compile(r"(?:create new object|build).* but got (?P<what>.+)$", re.S),
)
_STRING_OPS = {"STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "BINUNICODE",
               "SHORT_BINUNICODE", "BINUNICODE8"}  # fmt: skip
_GET_OPS = {"GET", "BINGET", "LONG_BINGET"}
_PUT_OPS = {"PUT", "BINPUT", "LONG_BINPUT"}


def _allowed_globals() -> set[str]:
    try:  # torch's own allow-list is private: without it every global counts as refused
        from torch._weights_only_unpickler import _get_allowed_globals

        return set(_get_allowed_globals())
    except (ImportError, AttributeError):
        return set()


def _pickle_globals(handle: IO[bytes]) -> Iterator[str]:
    """The globals a pickle would import, read with ``pickletools`` (nothing is run)."""
    strings: list[str] = []  # STACK_GLOBAL takes its module and name from the last two
    memo: dict[int, Any] = {}
    top: Any = None  # the value last pushed, when it is a string (for MEMOIZE/PUT)
    for opcode, arg, _ in pickletools.genops(handle):
        name = opcode.name
        if name in ("GLOBAL", "INST"):
            yield str(arg).replace(" ", ".")
        elif name == "STACK_GLOBAL" and len(strings) >= 2:
            yield f"{strings[-2]}.{strings[-1]}"
        if name in _STRING_OPS:
            top = arg
            strings.append(arg)
        elif name in _GET_OPS:
            top = memo.get(arg)
            if isinstance(top, str):
                strings.append(top)
        elif name == "MEMOIZE":
            memo[len(memo)] = top
        elif name in _PUT_OPS:
            memo[arg] = top
        else:
            top = None


def _first_refused_global(path: Path) -> str | None:
    """The first global of the file's pickle that torch does not allow; None if none is found.

    For the pickles torch's reader stops at before their first global (protocol 4+ frames).
    """
    allowed = _allowed_globals()
    try:
        with contextlib.ExitStack() as stack:
            handle: IO[bytes] = stack.enter_context(open(path, "rb"))
            if zipfile.is_zipfile(handle):
                archive = stack.enter_context(zipfile.ZipFile(handle))
                pickles = [n for n in archive.namelist() if n.endswith("data.pkl")]
                if not pickles:
                    return None
                handle = stack.enter_context(archive.open(pickles[0]))
            handle.seek(0)
            return next((g for g in _pickle_globals(handle) if g not in allowed), None)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        return None


def _refused(error: BaseException, path: Path) -> str | None:
    """What a weights-only refusal names (a global, a call, a class), if it is one."""
    text = str(_core(error))
    for pattern in _REFUSED:
        match = pattern.search(text)
        if match:
            return match.group("what").strip()
    if "Unsupported operand" in text:
        return _first_refused_global(path)
    return None


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
        refused = _refused(error, path) if isinstance(error, pickle.UnpicklingError) else None
        if refused is not None:
            raise CheckpointError(
                f"checkpoint {path}: refused as unsafe: it would load the global {refused}, which "
                "torch.load(weights_only=True) does not allow (nothing in the file was run); "
                "it is not an eventrunner checkpoint"
            ) from None
        raise CheckpointError(
            f"checkpoint {path}: cannot be read; the file is truncated, corrupt or not a torch "
            f"file ({_reason(error)})"
        ) from _core(error)


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


def _model_mismatch(model: nn.Module, state: Mapping[str, Any], source: str | Path) -> None:
    """Raise a CheckpointError listing the keys and shapes where ``state`` does not fit."""
    own = unwrap_model(model).state_dict()
    missing = [key for key in own if key not in state]
    unexpected = [key for key in state if key not in own]
    shapes = [
        f"{key} {_shape(state[key])} vs {_shape(value)}"
        for key, value in own.items()
        if key in state and _shape(state[key]) != _shape(value)
    ]
    if not (missing or unexpected or shapes):
        return

    def listed(keys: list[str]) -> str:
        more = f" (+{len(keys) - 8} more)" if len(keys) > 8 else ""
        return ", ".join(map(str, keys[:8])) + more

    parts = []
    if missing:
        parts.append(f"missing from the checkpoint: {listed(missing)}")
    if unexpected:
        parts.append(f"not in the model: {listed(unexpected)}")
    if shapes:
        parts.append(f"shape (checkpoint vs model): {listed(shapes)}")
    raise CheckpointError(
        f"checkpoint {source}: holds the weights of another model "
        f"({type(unwrap_model(model)).__name__} keys differ); " + "; ".join(parts)
    )


def load_model_state(model: nn.Module, state: Mapping[str, Any], source: str | Path) -> None:
    """``model.load_state_dict(state)``, with an error that lists the keys that differ."""
    _model_mismatch(model, state, source)
    unwrap_model(model).load_state_dict(state)


def load_weights(model: nn.Module, path: str | Path) -> dict[str, Any]:
    """Load only the model weights of a checkpoint (``best.pth``, say); returns the checkpoint."""
    checkpoint = load_checkpoint(path)
    if not isinstance(checkpoint.get("model"), Mapping):
        raise CheckpointError(f"checkpoint {path}: model is missing or not a dict of tensors")
    load_model_state(model, checkpoint["model"], path)
    return checkpoint


# ------------------------------------------------------------------ checking a checkpoint


def _is_mapping(value: Any) -> bool:
    return isinstance(value, Mapping)


def _is_mapping_or_none(value: Any) -> bool:
    return value is None or isinstance(value, Mapping)


# What restore_run reads: key path, whether it must be there, the test, what is expected.
_STRUCTURE: tuple[tuple[str, bool, Callable[[Any], bool], str], ...] = (
    ("model", True, _is_mapping, "a dict of tensors"),
    ("optimizer", False, _is_mapping_or_none, "a dict or None"),
    ("scheduler", False, _is_mapping_or_none, "a dict or None"),
    ("scaler", False, _is_mapping_or_none, "a dict or None"),
    ("counters", True, _is_mapping, "a dict"),
    ("counters.epoch_step", True, lambda v: is_int(v) and v >= 0, "an int >= 0"),
    ("counters.batch_step", True, lambda v: is_int(v) and v >= 0, "an int >= 0"),
    ("counters.sample_step", True, lambda v: is_int(v) and v >= 0, "an int >= 0"),
    ("counters.need_early_stop", False, lambda v: isinstance(v, bool), "a bool"),
    ("selection", True, _is_mapping, "a dict"),
    ("selection.best_epoch", False, lambda v: v is None or is_int(v), "an int or None"),
    ("selection.best_valid_metric", False, lambda v: v is None or is_number(v), "a number"),
    (
        "epoch_metrics",
        False,
        lambda v: _is_mapping(v) and all(map(_is_mapping, v.values())),
        "a dict of dicts",
    ),
    ("callbacks", False, _is_mapping, "a dict of subscriber states"),
    ("rng", True, _is_mapping, "a dict"),
    (
        "classes",
        False,
        lambda v: _is_mapping(v) and all(n is None or isinstance(n, str) for n in v.values()),
        "a dict of class names",
    ),
)
_MISSING = object()


def _lookup(checkpoint: Mapping[str, Any], where: str) -> Any:
    value: Any = checkpoint
    for key in where.split("."):
        value = value.get(key, _MISSING) if isinstance(value, Mapping) else _MISSING
    return value


def check_structure(checkpoint: Mapping[str, Any], path: str | Path) -> None:
    """Raise a CheckpointError naming the file and the key where ``checkpoint`` lacks or holds
    something else than what :func:`restore_run` reads; checked before anything is restored."""
    for where, required, test, expected in _STRUCTURE:
        value = _lookup(checkpoint, where)
        if value is _MISSING:
            if required:
                raise CheckpointError(
                    f"checkpoint {path}: {where} is missing; an eventrunner checkpoint holds "
                    "model, counters, selection and rng"
                )
            continue
        if not test(value):
            raise CheckpointError(
                f"checkpoint {path}: {where} must be {expected}, found {type(value).__name__}"
            )


def _check_class(target: Any, checkpoint: Mapping[str, Any], what: str, path: Path) -> None:
    saved = (checkpoint.get("classes") or {}).get(what)  # absent from older checkpoints
    if target is None or saved is None or saved == type(target).__name__:
        return
    raise CheckpointError(
        f"checkpoint {path}: holds the {what} state of a {saved}, but runner.{what} is a "
        f"{type(target).__name__}: resume with the {what} class {saved}, or start a new run"
    )


def _check_param_groups(optimizer: Any, state: Any, path: Path) -> None:
    # torch checks this too, but only once the model is loaded: here nothing is touched yet.
    if optimizer is None or not isinstance(state, Mapping):
        return
    groups = state.get("param_groups")
    if not isinstance(groups, list) or not all(
        isinstance(g, Mapping) and isinstance(g.get("params"), list) for g in groups
    ):
        raise CheckpointError(f"checkpoint {path}: optimizer.param_groups is not a list of groups")
    saved = [len(g["params"]) for g in groups]
    own = [len(g["params"]) for g in optimizer.param_groups]
    if saved != own:
        raise CheckpointError(
            f"checkpoint {path}: its optimizer has parameter groups of sizes {saved}; "
            f"runner.optimizer has {own}"
        )


def _check_rng(state: Any, loaders: Mapping[str, Any], path: Path) -> None:
    try:
        check_rng_state(state, loaders)
    except ValueError as error:
        raise CheckpointError(f"checkpoint {path}: {error}") from error


def _scheduler(runner: Any) -> Any:
    return runner.scheduler if hasattr(runner.scheduler, "load_state_dict") else None


def check_fits(runner: Any, checkpoint: Mapping[str, Any], path: str | Path) -> None:
    """Everything :func:`restore_run` can check before it changes anything: the structure, the
    model's keys and shapes, the optimizer's and scheduler's classes, the RNG states."""
    path = Path(path)
    check_structure(checkpoint, path)
    _model_mismatch(runner.model, checkpoint["model"], path)
    _check_class(runner.optimizer, checkpoint, "optimizer", path)
    _check_class(_scheduler(runner), checkpoint, "scheduler", path)
    _check_param_groups(runner.optimizer, checkpoint.get("optimizer"), path)
    _check_rng(checkpoint["rng"], runner.loaders, path)


# --------------------------------------------------------------------------- restoring


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


def _load_callbacks(runner: Any, states: Mapping[str, Any], path: Path) -> None:
    for key, callback in callback_keys(runner.callbacks):
        if key not in states:
            continue
        try:
            callback.load_state_dict(states[key])
        except (KeyError, ValueError, TypeError, IndexError, AttributeError) as error:
            raise CheckpointError(
                f"checkpoint {path}: the state of subscriber {key!r} "
                f"({type(callback).__name__}) does not load: {error}"
            ) from error


def _restore_counters(runner: Any, checkpoint: Mapping[str, Any]) -> None:
    counters = checkpoint["counters"]
    runner.epoch_step = counters["epoch_step"]
    runner.batch_step = counters["batch_step"]
    runner.sample_step = counters["sample_step"]
    runner.need_early_stop = counters.get("need_early_stop", False)
    selection = checkpoint["selection"]
    runner.best_valid_metric = selection.get("best_valid_metric")
    runner.best_epoch = selection.get("best_epoch")
    runner.epoch_metrics = {k: dict(v) for k, v in checkpoint.get("epoch_metrics", {}).items()}


def _log_resumed(runner: Any, path: Path) -> None:
    epoch = runner.epoch_step
    if runner.need_early_stop:
        log.warning(
            "eventrunner: %s: early stopping ended that run after epoch %d: no epoch left to "
            "train (num_epochs=%d); start a new run from its weights to train on",
            path,
            epoch,
            runner.num_epochs,
        )
    elif epoch >= runner.num_epochs:
        log.warning(
            "eventrunner: %s is epoch %d and num_epochs=%d: no epoch left to train",
            path,
            epoch,
            runner.num_epochs,
        )
    else:
        log.info("eventrunner: resumed from %s after epoch %d", path, epoch)
        for key, where in persistent_worker_loaders(runner.loaders):
            log.warning(
                "eventrunner: resume from %s is not exact for loader %r: %s has "
                "persistent_workers=True, whose workers draw their seed once per run (the "
                "resumed run gets another shuffle order and other random numbers in the "
                "workers); use persistent_workers=False for an exact resume",
                path,
                key,
                where,
            )


def restore_run(runner: Any, path: str | Path) -> dict[str, Any]:
    """Put a run back where ``path`` left it, so that the loop continues from the next epoch.

    Restores the model, optimizer, scheduler, grad scaler, counters (the stop request of early
    stopping included), best metric and epoch, every subscriber's ``load_state_dict`` (matched
    by kind or class name) and, last, the RNG states: call it after seeding and after the
    loaders are set. A checkpoint that does not fit is refused (:func:`check_fits`) before
    anything is changed.
    """
    path = Path(path)
    checkpoint = load_checkpoint(path)
    check_fits(runner, checkpoint, path)
    # Subscriber states first: they are the other part a crafted file can make fail (a top-k
    # file name that is not ours), and they live in memory only.
    _load_callbacks(runner, checkpoint.get("callbacks") or {}, path)
    _load_part(runner.optimizer, checkpoint.get("optimizer"), "optimizer", path)
    _load_part(_scheduler(runner), checkpoint.get("scheduler"), "scheduler", path)
    # A disabled GradScaler saves {}: nothing to restore.
    _load_part(getattr(runner, "scaler", None), checkpoint.get("scaler") or None, "scaler", path)
    unwrap_model(runner.model).load_state_dict(checkpoint["model"])
    _restore_counters(runner, checkpoint)
    set_rng_state(checkpoint["rng"], runner.loaders, source=str(path))
    _log_resumed(runner, path)
    return checkpoint


# --------------------------------------------------------------------------- writing


def _temp_name(folder: Path) -> Path:
    # Unpredictable, so that nobody can plant a file or a symlink at it in advance.
    return folder / f"{_TEMP_PREFIX}{secrets.token_hex(16)}{_TEMP_SUFFIX}"


# O_EXCL: fail rather than open an existing file, or follow a symlink planted at the name.
_EXCLUSIVE = (
    os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
)
_NAME_ATTEMPTS = 8


def _create_temp(folder: Path) -> tuple[int, Path]:
    """A new, empty temp file in ``folder``, created exclusively: ``(fd, path)``.

    Not ``tempfile.mkstemp``: it creates files readable by their owner only, and these files
    become the checkpoints (hard links), which keep the permissions of any other file.
    """
    for _ in range(_NAME_ATTEMPTS):
        temp = _temp_name(folder)
        try:
            return os.open(temp, _EXCLUSIVE, 0o666), temp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, f"no free temp file name in {folder}")


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


@contextlib.contextmanager
def _temp_file(folder: Path, mode: str = "wb", **open_kwargs: Any) -> Iterator[tuple[IO, Path]]:
    """``(handle, path)`` of a new temp file (see :func:`_create_temp`), flushed and fsynced
    when the block ends; deleted if the block fails."""
    fd, temp = _create_temp(folder)
    try:
        with os.fdopen(fd, mode, **open_kwargs) as handle:
            yield handle, temp
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        _discard(temp)
        raise


@contextlib.contextmanager
def atomic_file(path: Path, mode: str = "wb", **open_kwargs: Any) -> Iterator[IO]:
    """An open file that replaces ``path`` when the block ends (fsync, then rename); if the
    block fails, ``path`` is untouched. ``mode``/``open_kwargs`` as for :func:`open`
    (``"w", encoding="utf-8"`` for text). The temp file beside it gets an unpredictable name
    and is created exclusively, so a planted file or symlink is never written through."""
    path = Path(path)
    with _temp_file(path.parent, mode, **open_kwargs) as (handle, temp):
        yield handle
    try:
        os.replace(temp, path)
    except BaseException:
        _discard(temp)
        raise
    _fsync_folder(path.parent)


def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """``write(temp)`` then fsync and rename over ``path``; ``path`` is never half-written.

    ``temp`` is a new empty file created exclusively; :func:`atomic_file` hands over the open
    file instead, which is better where the writer accepts one.
    """
    fd, temp = _create_temp(path.parent)
    os.close(fd)
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
    with atomic_file(path, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2, allow_nan=False)
        handle.write("\n")


def _new_link(source: Path, folder: Path) -> Path | None:
    """A new temp name in ``folder`` for ``source``'s file (a hard link), or None where the
    filesystem has no hard links. ``os.link`` never replaces nor follows an existing name."""
    for _ in range(_NAME_ATTEMPTS):
        temp = _temp_name(folder)
        try:
            os.link(source, temp)
            return temp
        except FileExistsError:
            continue
        except OSError:
            return None
    raise FileExistsError(errno.EEXIST, f"no free temp file name in {folder}")


def _new_copy(source: Path, folder: Path) -> Path:
    with _temp_file(folder) as (handle, temp), open(source, "rb") as original:
        shutil.copyfileobj(original, handle)
    return temp


def _link_into(source: Path, target: Path) -> None:
    # Checkpoints are immutable once written, so one inode can carry several names
    # (epoch_N.pth, best.pth, last.pth). Filesystems without hard links get a copy.
    temp = _new_link(source, target.parent) or _new_copy(source, target.parent)
    try:
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
    temp: Path | None = None
    try:
        with _temp_file(folder) as (handle, temp):
            try:
                torch.save(state, handle)
            except (pickle.PicklingError, TypeError, AttributeError) as error:
                raise _unsaveable(state, targets[0], "cannot be saved", error) from error
        try:
            torch.load(temp, map_location="cpu", weights_only=True, mmap=True)
        except Exception as error:
            raise _unsaveable(
                state, targets[0], "would not load back with torch.load(weights_only=True)", error
            ) from error
        for target in targets:
            _link_into(temp, target)
    finally:
        if temp is not None:
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
