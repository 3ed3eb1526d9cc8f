"""A run's log directory: which files show that it already holds a run, and the refusal to
let a new run replace them without being asked (``train(overwrite=True)``, or ``resume=``).
"""

from __future__ import annotations

from pathlib import Path

#: What the default subscribers write in a logdir; any of them means a run was there.
RUN_FILES = ("checkpoints", "metrics.csv", "events.jsonl", "tensorboard")


class LogdirInUseError(FileExistsError, ValueError):
    """A new run was pointed at a logdir that holds the files of a previous run."""


def previous_run_files(logdir: str | Path) -> list[str]:
    """The names in ``logdir`` that a previous run wrote (empty folders do not count)."""
    logdir = Path(logdir)
    found = []
    for name in RUN_FILES:
        path = logdir / name
        if path.is_dir():
            if any(path.iterdir()):
                found.append(f"{name}/")
        elif path.exists():
            found.append(name)
    return found


def check_new_run(logdir: str | Path | None, *, overwrite: bool, resume: object) -> None:
    """Refuse to start a new run over a previous one in ``logdir``, unless asked to.

    ``resume`` continues the run that is there; ``overwrite=True`` lets the new run replace
    its files as it writes its own (the old top-k checkpoints go at the first save). A logdir
    that is a file is refused.
    """
    if logdir is None:
        return
    if Path(logdir).exists() and not Path(logdir).is_dir():
        raise NotADirectoryError(f"logdir {str(logdir)!r} is a file, expected a folder")
    if overwrite or resume is not None:
        return
    found = previous_run_files(logdir)
    if not found:
        return
    last = Path(logdir) / "checkpoints" / "last.pth"
    raise LogdirInUseError(
        f"logdir {str(logdir)!r} already holds a run ({', '.join(found)}); a new run would "
        f"replace it. To continue it, pass resume={str(last)!r} (eventrunner run: --set "
        f"train.resume={last}); to replace it, pass overwrite=True (eventrunner run: "
        "--overwrite); or choose another logdir"
    )
