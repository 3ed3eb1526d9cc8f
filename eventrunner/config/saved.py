"""The resolved config a ``eventrunner run`` saves in its logdir, so that ``eventrunner resume
LOGDIR`` continues the run from its folder alone.

``LOGDIR/config.yaml`` is the config as it ran (file and ``--set`` overrides applied, without
``train.resume``/``train.overwrite``), written at ``experiment_start`` (so a refused run writes
nothing) by the main process, atomically. Its first line names the file it came from, whose
folder is put on the import path again on resume (a ``my_model.py`` beside the config).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from eventrunner.checkpoint.files import atomic_file
from eventrunner.distributed import is_main_process
from eventrunner.events import Callback, Order

RESOLVED_CONFIG = "config.yaml"
_SOURCE = "# eventrunner: resolved from "


def resolved(config: Mapping[str, Any]) -> dict[str, Any]:
    """The config without the keys that say how this attempt started."""
    out = copy.deepcopy(dict(config))
    train = out.get("train")
    if isinstance(train, dict):
        for key in ("resume", "overwrite"):
            train.pop(key, None)
    return out


class SaveResolvedConfig(Callback):
    """Writes ``logdir/config.yaml`` at ``experiment_start``."""

    kind = "resolved_config"
    writes = ()

    def __init__(self, config: Mapping[str, Any], source: str | Path | None) -> None:
        super().__init__(order=Order.INTERNAL)
        self.config = resolved(config)
        self.source = None if source is None else Path(source).resolve()

    def on_experiment_start(self, runner: Any) -> None:
        if runner.logdir is None or not is_main_process():
            return
        path = Path(runner.logdir) / RESOLVED_CONFIG
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(path, "w", encoding="utf-8") as handle:
            handle.write(f"{_SOURCE}{self.source or '(a mapping)'}\n")
            yaml.safe_dump(self.config, handle, sort_keys=False)


def saved_config(logdir: str | Path) -> tuple[Path, Path | None]:
    """``(LOGDIR/config.yaml, the file it was resolved from, if it still exists)``."""
    path = Path(logdir) / RESOLVED_CONFIG
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no resolved config here; `eventrunner resume` continues runs started by "
            "`eventrunner run` with a train.logdir (or give the config: eventrunner run CONFIG "
            "--resume auto)"
        )
    with open(path, encoding="utf-8") as handle:
        first = handle.readline().rstrip("\n")
    source = Path(first[len(_SOURCE) :]) if first.startswith(_SOURCE) else None
    return path, source if source is not None and source.is_file() else None
