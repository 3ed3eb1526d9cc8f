"""Model selection: each CheckpointCallback keeps its own best; ``runner.best_epoch`` and
``runner.best_valid_metric`` follow the run's own ``valid_loader``/``main_metric`` only.

A ``ScriptRunner`` trains for real on ``train`` and reports chosen ``m1``/``m2`` values (and no
loss) on ``valid``, so every best epoch is known in advance: m1 is minimised (best epoch 2), m2
is maximised (best epoch 3).
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import plugins
from eventrunner import Callback
from eventrunner import checkpoint as ckpt
from eventrunner.testing import (
    ScriptRunner,
    WeightsRecorder,
    make_loaders,
    regression_run,
    same_weights,
)

M1 = [3.0, 1.0, 2.0, 5.0]  # minimised: epoch 2
M2 = [0.2, 0.1, 0.9, 0.5]  # maximised: epoch 3


def _train(callbacks: list[Callback], num_epochs: int = 4, **kwargs: Any) -> ScriptRunner:
    torch.manual_seed(0)
    runner = ScriptRunner({"m1": M1, "m2": M2}, valid_loss=False)
    regression_run(
        callbacks,
        runner=runner,
        loaders=make_loaders({"train": 3, "valid": 1}, batch_size=8, seed=0),
        model=nn.Linear(3, 1),
        lr=0.1,
        num_epochs=num_epochs,
        **kwargs,
    )
    return runner


def _two_checkpoints(tmp: Path) -> tuple[plugins.CheckpointCallback, plugins.CheckpointCallback]:
    return (
        plugins.CheckpointCallback(logdir=tmp / "m1", metric_key="m1", minimize=True),
        plugins.CheckpointCallback(logdir=tmp / "m2", metric_key="m2", minimize=False),
    )


def test_two_checkpoint_callbacks_keep_their_own_best(tmp_path):
    first, second = _two_checkpoints(tmp_path)
    weights = WeightsRecorder()
    console = io.StringIO()
    runner = _train(
        [first, second, weights, plugins.ConsoleLogger(stream=console)],
        main_metric="m1",
        minimize_metric=True,
    )
    assert (first.best_epoch, first.best_metric) == (2, 1.0)
    assert (second.best_epoch, second.best_metric) == (3, 0.9)
    # The run's own selection (main_metric=m1, minimised) is not touched by the m2 callback.
    assert (runner.best_epoch, runner.best_valid_metric) == (2, 1.0)
    assert console.getvalue().splitlines()[-1] == "Best epoch 2: valid m1=1.0000"
    for name, epoch in (("m1", 2), ("m2", 3)):
        folder = tmp_path / name / "checkpoints"
        best = ckpt.load_checkpoint(folder / "best.pth")
        assert best["epoch"] == epoch
        assert same_weights(best["model"], weights.weights[epoch])
        index = json.loads((folder / "index.json").read_text())
        assert index["best_epoch"] == epoch
        assert index["files"]["best.pth"]["epoch"] == epoch
        assert index["selection"]["metric"] == name


def test_the_run_selection_does_not_depend_on_a_checkpoint_callback():
    # The only CheckpointCallback selects by m1; the run selects by m2 (maximised).
    only = plugins.CheckpointCallback(metric_key="m1", minimize=True)
    runner = _train([only], main_metric="m2", minimize_metric=False, console=False)
    assert (runner.best_epoch, runner.best_valid_metric) == (3, 0.9)
    assert only.best_epoch == 2


def test_load_best_on_end_loads_the_best_of_the_run_selection(tmp_path):
    weights = WeightsRecorder()
    runner = _train(
        [*_two_checkpoints(tmp_path), weights],
        main_metric="m2",
        minimize_metric=False,
        load_best_on_end=True,
        console=False,
    )
    assert runner.best_epoch == 3
    assert same_weights(runner.model.state_dict(), weights.weights[3])


def _three(tmp: Path) -> list[Callback]:
    # Two with their own folders, one (the run's metric, m1) in the run's logdir.
    return [*_two_checkpoints(tmp), plugins.CheckpointCallback(metric_key="m1")]


def _index(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "checkpoints" / "index.json").read_text())


@pytest.mark.parametrize("resume_from", ["m1", "m2", "run"])
@pytest.mark.parametrize("split_after", [2, 3])
def test_resumed_callbacks_keep_their_own_best(tmp_path, resume_from, split_after):
    full = tmp_path / "full"
    _train(_three(full), main_metric="m1", logdir=full / "run", console=False)

    split = tmp_path / "split"
    _train(
        _three(split), num_epochs=split_after, main_metric="m1", logdir=split / "run", console=False
    )
    callbacks = _three(split)
    runner = _train(
        callbacks,
        main_metric="m1",
        logdir=split / "run",
        console=False,
        resume=split / resume_from / "checkpoints" / "last.pth",
    )
    assert [cb.best_epoch for cb in callbacks] == [2, 3, 2]
    assert (runner.best_epoch, runner.best_valid_metric) == (2, 1.0)
    # Whichever folder's last.pth it resumed from, every folder ends as the uninterrupted run's.
    for name in ("m1", "m2", "run"):
        assert _index(split / name) == _index(full / name), name
        best = ckpt.load_checkpoint(split / name / "checkpoints" / "best.pth")
        assert best["epoch"] == _index(full / name)["best_epoch"]


def test_two_checkpoint_callbacks_in_one_folder_are_refused(tmp_path):
    callbacks = [
        plugins.CheckpointCallback(metric_key="m1", minimize=True),
        plugins.CheckpointCallback(metric_key="m2", minimize=False),
    ]
    with pytest.raises(ValueError, match=r"two CheckpointCallbacks write to .*checkpoints"):
        _train(callbacks, logdir=tmp_path, console=False)
    assert not (tmp_path / "checkpoints" / "index.json").exists()


def test_load_best_on_end_without_a_callback_of_the_run_metric_says_so(tmp_path, caplog):
    with caplog.at_level("WARNING", logger="eventrunner"):
        _train(
            [*_two_checkpoints(tmp_path)],
            main_metric="m2",  # minimised: neither callback selects by it
            load_best_on_end=True,
            console=False,
        )
    assert "no CheckpointCallback selects by the run's valid m2" in caplog.text
