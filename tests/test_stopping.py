"""Stopping a run: ``need_early_stop`` set in a batch or at epoch end, and
``EarlyStoppingCallback`` (patience, min_delta, the run's selection)."""

from __future__ import annotations

import pytest

import plugins
from eventrunner import FunctionCallback, Runner
from eventrunner.testing import ScriptRunner, make_loaders, regression_run


def test_need_early_stop_in_a_batch_finishes_the_epoch():
    def stop(runner: Runner) -> None:
        if runner.epoch_step == 2 and runner.loader_batch_step == 1:
            runner.need_early_stop = True

    runner = ScriptRunner([0.0] * 5)
    regression_run(
        [FunctionCallback("batch_end", stop, loaders="train")],
        runner=runner,
        loaders=make_loaders({"train": [2, 2, 2], "valid": [2, 2]}),
        num_epochs=5,
    )
    assert runner.epoch_step == 2
    # the current epoch ran in full: every batch of train and of valid
    assert [(epoch, loader) for epoch, loader, _ in runner.handled] == [(1, "train")] * 3 + [
        (1, "valid")
    ] * 2 + [(2, "train")] * 3 + [(2, "valid")] * 2
    assert runner.need_early_stop is True


def test_need_early_stop_at_epoch_end():
    epochs: list[int] = []

    def stop(runner: Runner) -> None:
        epochs.append(runner.epoch_step)
        runner.need_early_stop = True

    runner = regression_run([FunctionCallback("epoch_end", stop)], num_epochs=4)
    assert epochs == [1]
    assert runner.epoch_step == 1


def test_early_stopping_callback_patience():
    # no improvement after epoch 2 (epoch 4 improves by less than min_delta)
    scores = [5.0, 3.0, 3.5, 2.9999, 4.0, 1.0, 1.0]
    runner = ScriptRunner(scores)
    regression_run(
        [plugins.EarlyStoppingCallback(patience=3, metric_key="score", min_delta=0.01)],
        runner=runner,
        num_epochs=7,
    )
    assert runner.epoch_step == 5  # epochs 3, 4 and 5 without improvement
    assert runner.need_early_stop


def test_early_stopping_maximises_and_follows_the_selection():
    scores = [1.0, 2.0, 2.0, 1.5, 3.0]
    runner = ScriptRunner(scores)
    regression_run(
        [plugins.EarlyStoppingCallback(patience=2)],
        runner=runner,
        num_epochs=5,
        main_metric="score",
        minimize_metric=False,
    )
    assert runner.epoch_step == 4
    assert runner.best_epoch == 2 and runner.best_valid_metric == 2.0


def test_early_stopping_refuses_an_unknown_loader():
    with pytest.raises(ValueError, match="'valid3'"):
        regression_run(
            [plugins.EarlyStoppingCallback(2, loader_key="valid3")], runner=ScriptRunner([1.0])
        )
