"""Schedulers: stepped once per epoch after its loaders, per batch when asked, and
ReduceLROnPlateau given the run's selection metric."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

import plugins
from eventrunner.testing import EventRecorder, ScriptRunner, make_loaders, regression_run


def lr_recorder() -> EventRecorder:
    """Records the first parameter group's learning rate at each batch start."""
    return EventRecorder(
        events=["batch_start"], fields={"lr": lambda runner: runner.optimizer.param_groups[0]["lr"]}
    )


def test_scheduler_steps_once_per_epoch_after_its_loaders():
    model = nn.Linear(3, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    recorder = lr_recorder()
    regression_run(
        [recorder],
        loaders=make_loaders({"train": [2, 2], "valid": [2]}),
        num_epochs=3,
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
    )
    assert recorder.column("epoch_step", "loader_key", "lr") == [
        (epoch, key, lr)
        for epoch, lr in ((1, 1.0), (2, 0.5), (3, 0.25))
        for key in ("train", "train", "valid")
    ]
    assert optimizer.param_groups[0]["lr"] == 0.125


def test_scheduler_per_batch_when_asked():
    model = nn.Linear(3, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    recorder = lr_recorder()
    runner = regression_run(
        [plugins.SchedulerCallback(mode="batch"), recorder],
        loaders=make_loaders({"train": [2, 2], "valid": [2]}),
        num_epochs=2,
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
    )
    assert recorder.column("lr") == [1.0, 0.5, 0.25, 0.25, 0.125, 0.0625]
    kinds = [type(c).__name__ for c in runner.callbacks]
    assert kinds.count("SchedulerCallback") == 1


def test_reduce_lr_on_plateau_gets_the_selection_metric():
    class Recording(torch.optim.lr_scheduler.ReduceLROnPlateau):
        def __init__(self, *args: Any, **kw: Any) -> None:
            super().__init__(*args, **kw)
            self.seen: list[float] = []

        def step(self, metrics: Any, *args: Any, **kw: Any) -> None:
            self.seen.append(metrics)
            super().step(metrics, *args, **kw)

    model = nn.Linear(3, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    scheduler = Recording(optimizer, mode="max", patience=0, factor=0.5)
    runner = ScriptRunner([1.0, 2.0, 2.0, 1.0])
    regression_run(
        runner=runner,
        num_epochs=4,
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        main_metric="score",
        minimize_metric=False,
    )
    assert scheduler.seen == [1.0, 2.0, 2.0, 1.0]
    assert optimizer.param_groups[0]["lr"] == 0.25  # reduced after epochs 3 and 4
