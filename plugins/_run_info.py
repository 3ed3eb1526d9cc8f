"""What the loggers share: the rank check, the log directory, scalar metrics, a run's hparams.

Kept out of the loggers themselves so that CSV, JSON lines, TensorBoard and the profiler read
a run the same way (and write only on rank 0).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from eventrunner.metrics import as_number


def is_main_process(runner: Any) -> bool:
    """True on rank 0 and in a single process: the rank that writes logs and draws bars.

    A runner attribute ``is_main_process`` (bool or callable) wins; otherwise
    :func:`eventrunner.distributed.is_main_process` decides (without a process group, e.g.
    after ``train()`` returned, from torchrun's ``RANK``; rank 0 outside torchrun).
    """
    flag = getattr(runner, "is_main_process", None)
    if flag is not None:
        return bool(flag() if callable(flag) else flag)
    try:
        from eventrunner.distributed import is_main_process as main_rank
    except ImportError:  # a build without the distributed module: one process
        return True
    return bool(main_rank())


def log_dir(owner: str, logdir: str | os.PathLike[str] | None, runner: Any) -> Path:
    """The logger's own ``logdir``, else the runner's; an error naming ``owner`` when neither."""
    found = logdir if logdir is not None else runner.logdir
    if found is None:
        raise ValueError(
            f"{owner}: no log directory; pass logdir=... to train() or to {owner}(logdir=...)"
        )
    path = Path(found)
    path.mkdir(parents=True, exist_ok=True)
    return path


def scalar_items(metrics: Mapping[str, Any]) -> Iterator[tuple[str, float | int]]:
    """``(name, number)`` for the scalar entries of a metrics dict, in its order."""
    for name, value in metrics.items():
        number = as_number(value)
        if number is not None:
            yield str(name), number


def json_safe(value: Any) -> Any:
    """``value`` with NaN/inf as strings and unknown objects as their ``repr`` (for JSON)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Mapping):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    if isinstance(value, Path):
        return str(value)
    number = as_number(value)
    return number if number is not None else repr(value)


def _class_name(obj: Any) -> str | None:
    return None if obj is None else type(obj).__name__


def run_hparams(runner: Any) -> dict[str, Any]:
    """Flat hyper-parameters of a run: what was trained how, plus ``runner.hparams`` if set."""
    hparams: dict[str, Any] = {
        "model": _class_name(runner.model),
        "criterion": _class_name(runner.criterion),
        "optimizer": _class_name(runner.optimizer),
        "scheduler": _class_name(runner.scheduler),
        "num_epochs": runner.num_epochs,
        "loaders": ",".join(runner.loaders),
        "device": str(runner.device),
    }
    selection = runner.selection
    hparams.update(
        valid_loader=selection.loader,
        main_metric=selection.metric,
        minimize_metric=selection.minimize,
    )
    optimizer = runner.optimizer
    if optimizer is not None and getattr(optimizer, "param_groups", None):
        for key in ("lr", "momentum", "weight_decay"):
            value = optimizer.param_groups[0].get(key)
            if isinstance(value, int | float) and not isinstance(value, bool):
                hparams[key] = value
    model = runner.model
    if isinstance(model, torch.nn.Module):
        hparams["num_params"] = sum(p.numel() for p in model.parameters())
    settings = getattr(runner, "settings", None)  # train(hparams=), Catalyst's argument
    for extra in (getattr(runner, "hparams", None), getattr(settings, "hparams", None)):
        if isinstance(extra, Mapping):
            hparams.update(extra)
    return {key: value for key, value in hparams.items() if value is not None}
