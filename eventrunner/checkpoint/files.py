"""Checkpoint files on disk: reading them safely and the project's one atomic write.

Reading is ``torch.load(weights_only=True)``: a foreign pickle is refused without running any
of it, and every failure is a :class:`CheckpointError` naming the file. Writing never touches
a final name until the new file is complete: a temp file in the same folder (an unpredictable
name, created exclusively), flush, fsync the file, ``os.replace``, fsync the folder
(:func:`atomic_file`; :func:`save_checkpoint` also makes sure the file loads before it
replaces anything).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import pickle
import secrets
import shutil
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import torch

from eventrunner.checkpoint.refused import core, reason, refused_global

TEMP_PREFIX = ".eventrunner-"
TEMP_SUFFIX = ".tmp"


class CheckpointError(ValueError):
    """A file that is not a readable eventrunner checkpoint, or one that does not fit the run."""


# --------------------------------------------------------------------------- reading


def torch_load(path: Path, *, mmap: bool = False) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU, with errors that name the file.

    ``mmap=True`` maps the file: tensor data is not read until used.
    """
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path}: no such file")
    if path.is_dir():
        folder = path if path.name == "checkpoints" else path / "checkpoints"
        last = folder / "last.pth"
        hint = f" (this run's last checkpoint is {last})" if last.exists() else ""
        raise IsADirectoryError(f"checkpoint {path}: is a folder, expected a .pth file{hint}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except PermissionError:
        raise
    except Exception as error:
        refused = refused_global(error, path) if isinstance(error, pickle.UnpicklingError) else None
        if refused is not None:
            raise CheckpointError(
                f"checkpoint {path}: refused as unsafe: it would load the global {refused}, which "
                "torch.load(weights_only=True) does not allow (nothing in the file was run); "
                "it is not an eventrunner checkpoint"
            ) from None
        raise CheckpointError(
            f"checkpoint {path}: cannot be read; the file is truncated, corrupt or not a torch "
            f"file ({reason(error)})"
        ) from core(error)


# --------------------------------------------------------------------------- temp files


def _temp_name(folder: Path) -> Path:
    # Unpredictable, so that nobody can plant a file or a symlink at it in advance.
    return folder / f"{TEMP_PREFIX}{secrets.token_hex(16)}{TEMP_SUFFIX}"


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


def temp_files(folder: Path) -> list[Path]:
    """The temp files of this module in ``folder`` (a killed writer leaves them)."""
    return sorted(folder.glob(f"{TEMP_PREFIX}*{TEMP_SUFFIX}"))


def discard(path: Path) -> None:
    """Delete ``path`` if it exists."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_folder(folder: Path) -> None:
    """Make the renames in ``folder`` durable (POSIX; Windows cannot fsync a folder)."""
    if os.name == "nt":
        return
    with contextlib.suppress(OSError):
        _fsync_path(folder)


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
        discard(temp)
        raise


def _replace(temp: Path, target: Path) -> None:
    try:
        os.replace(temp, target)
    except BaseException:
        discard(temp)
        raise


# --------------------------------------------------------------------------- atomic writes


@contextlib.contextmanager
def atomic_file(path: str | Path, mode: str = "wb", **open_kwargs: Any) -> Iterator[IO]:
    """An open file that replaces ``path`` when the block ends; if the block fails, ``path``
    is untouched. The one atomic write: temp file, flush, fsync, ``os.replace``, fsync the
    folder. ``mode``/``open_kwargs`` as for :func:`open` (``"w", encoding="utf-8"`` for text,
    plus ``newline=""`` for csv). The temp file beside ``path`` gets an unpredictable name and
    is created exclusively, so a planted file or symlink is never written through."""
    path = Path(path)
    with _temp_file(path.parent, mode, **open_kwargs) as (handle, temp):
        yield handle
    _replace(temp, path)
    fsync_folder(path.parent)


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` as JSON to ``path`` atomically (:func:`atomic_file`)."""
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


def link_into(source: Path, target: Path) -> None:
    """Give ``source``'s file the name ``target`` too, replacing it atomically.

    Checkpoints are immutable once written, so one inode can carry several names
    (epoch_N.pth, best.pth, last.pth). Filesystems without hard links get a copy.
    """
    temp = _new_link(source, target.parent) or _new_copy(source, target.parent)
    _replace(temp, target)


def save_checkpoint(state: Mapping[str, Any], targets: Iterable[Path]) -> None:
    """Write ``state`` once and give it every name in ``targets``, each replaced atomically.

    A state of plain data (:func:`loads_by_construction`) is one ``torch.load(weights_only=
    True)`` rebuilds; any other state is read back that way (memory-mapped) before it replaces
    anything: an unloadable state never displaces a good file.
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
            if not loads_by_construction(state):
                torch.load(temp, map_location="cpu", weights_only=True, mmap=True)
        except Exception as error:
            raise _unsaveable(
                state, targets[0], "would not load back with torch.load(weights_only=True)", error
            ) from error
        for target in targets:
            link_into(temp, target)
    finally:
        if temp is not None:
            discard(temp)
    fsync_folder(folder)


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


_SCALARS = frozenset((type(None), bool, int, float, complex, str, bytes))
_TORCH_VALUES = frozenset((torch.dtype, torch.device, torch.Size))
_TENSORS = frozenset((torch.Tensor, torch.nn.Parameter))


def loads_by_construction(obj: Any) -> bool:
    """Whether ``obj`` is made only of values ``torch.load(weights_only=True)`` rebuilds:
    exact built-in scalars, ``dict``/``OrderedDict``/``list``/``tuple``/``set`` of them (an
    ``OrderedDict``'s ``_metadata`` too), ``torch.dtype``/``device``/``Size`` and dense
    (non-quantized) tensors or parameters without attributes of their own. Types are
    compared exactly: a subclass (an ``IntEnum``, a namedtuple, a tensor subclass) pickles as
    its own class, which ``weights_only`` refuses unless it was allow-listed."""
    kind = type(obj)
    if kind in _SCALARS or kind in _TORCH_VALUES:
        return True
    if kind is dict or kind is OrderedDict:
        if kind is OrderedDict and not all(map(loads_by_construction, vars(obj).values())):
            return False
        return all(loads_by_construction(k) and loads_by_construction(v) for k, v in obj.items())
    if kind is list or kind is tuple or kind is set:
        return all(map(loads_by_construction, obj))
    if kind in _TENSORS:
        return obj.layout is torch.strided and not obj.is_quantized and not vars(obj)
    return False


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
        f"checkpoint {target}: the state {what}{at}, so it was not written ({reason(error)}); "
        "state_dict() values must be tensors or plain Python data (dict, list, numbers, str)"
    )
