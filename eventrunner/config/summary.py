"""The few lines that say what a built config will run: runner, model, data, optimisation.

Read from the runner and the :class:`~eventrunner.settings.TrainSettings`, so nothing has to
be composed (or seeded) to print them.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from eventrunner.runner import Runner
from eventrunner.settings import TrainSettings


def summary(runner: Runner, settings: TrainSettings) -> str:
    """Runner, model, data and optimisation in a few lines."""
    model = settings.model if settings.model is not None else runner.model
    n_params = sum(p.numel() for p in model.parameters()) if model is not None else 0
    device = runner.device if settings.device is None else torch.device(settings.device)
    lines = [
        f"runner:    {type(runner).__name__}{_runner_keys(runner)} on {device}",
        f"model:     {type(model).__name__} ({n_params:,} parameters)",
    ]
    for name, loader in settings.loaders.items():
        lines.append(f"loader:    {name}: {_loader_text(loader)}")
    for key in ("criterion", "optimizer", "scheduler"):
        value = getattr(settings, key)
        if value is None:
            value = getattr(runner, key)
        if value is not None:
            lines.append(f"{key + ':':<10} {_object_text(value)}")
    selection = settings.selection
    direction = "min" if selection.minimize else "max"
    lines.append(
        f"train:     {settings.num_epochs} epochs, best epoch by "
        f"{selection.loader} {selection.metric} ({direction})"
        + (f", logdir {settings.logdir}" if settings.logdir is not None else "")
    )
    return "\n".join(lines)


def _runner_keys(runner: Runner) -> str:
    keys = [
        f"{name}={getattr(runner, name)!r}"
        for name in ("input_key", "output_key", "target_key")
        if hasattr(runner, name)
    ]
    return f"({', '.join(keys)})" if keys else ""


def _object_text(obj: Any) -> str:
    if hasattr(obj, "defaults") and isinstance(obj.defaults, dict):  # an optimizer
        shown = {k: v for k, v in obj.defaults.items() if k in ("lr", "momentum", "weight_decay")}
        return f"{type(obj).__name__}({', '.join(f'{k}={v}' for k, v in shown.items())})"
    return type(obj).__name__


def _loader_text(loader: Any) -> str:
    parts = [type(loader).__name__]
    dataset = getattr(loader, "dataset", None)
    if dataset is not None:
        with contextlib.suppress(TypeError):
            parts.append(f"{len(dataset):,} samples")
    with contextlib.suppress(TypeError):
        parts.append(f"{len(loader):,} batches")
    size = getattr(loader, "batch_size", None)
    if size is not None:
        parts.append(f"batch_size {size}")
    return ", ".join(parts)
