"""Paths the loggers write under the log directory, refused when they would leave it.

File and folder names come from arguments, configs and loader names: they are data, never a
way out of ``logdir`` (an absolute path, a ``..``, or a symlink that points elsewhere).
"""

from __future__ import annotations

import os
from pathlib import Path


def _problem(name: Path, target: Path, root: Path) -> str | None:
    """Why ``name`` (meant as ``target``, under ``root``) leaves the log directory; None if not."""
    if name.is_absolute() or name.anchor:
        return "is an absolute path"
    if ".." in name.parts:
        return "contains '..'"
    if not name.parts:
        return "is empty"
    try:
        resolved, inside = target.resolve(), root.resolve()
    except (OSError, RuntimeError) as error:  # a symlink loop
        return f"cannot be resolved ({error})"
    if resolved == inside or not resolved.is_relative_to(inside):
        return f"resolves to {resolved} (through a symlink)"
    return None


def path_in_logdir(
    owner: str,
    logdir: str | os.PathLike[str],
    name: str | os.PathLike[str],
    what: str = "filename",
    under: str | os.PathLike[str] = "",
) -> Path:
    """``logdir / under / name``, or a ValueError (naming ``owner``, ``name``, ``logdir``).

    Refused: an empty name, an absolute path, a ``..`` part, and a path whose resolved form
    (existing symlinks followed) is not strictly inside the resolved ``logdir``. ``under`` is a
    folder already checked the same way (``tensorboard`` for a loader's run folder).

    Example: ``path_in_logdir("CSVLogger", runner.logdir, "metrics.csv")``.
    """
    if not isinstance(name, str | os.PathLike):
        raise TypeError(
            f"{owner}: {what} must be a str or a path, got {type(name).__name__} ({name!r})"
        )
    root = Path(logdir)
    target = root / under / name
    problem = _problem(Path(name), target, root)
    if problem is not None:
        raise ValueError(
            f"{owner}: {what} {os.fspath(name)!r} {problem}: it must name a path inside "
            f"the log directory {root} (relative, without '..')"
        )
    return target
