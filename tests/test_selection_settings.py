"""The run's own model selection: ``best_epoch``/``best_valid_metric`` per epoch, ties, the
default (minimised valid loss), catalyst 22 aliases, no selection, bad selection settings, and
``load_best_on_end`` without a logdir."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

from eventrunner import FunctionCallback, Runner
from eventrunner.testing import (
    EventRecorder,
    ScriptRunner,
    WeightsRecorder,
    make_loaders,
    regression_run,
)


def best_recorder() -> EventRecorder:
    """Records the run's selection at each epoch end."""
    return EventRecorder(events=["epoch_end"], fields=["best_epoch", "best_valid_metric"])


@pytest.mark.parametrize(
    ("scores", "minimize", "best"),
    [
        ([3.0, 1.0, 2.0, 1.0, 5.0], True, [(1, 3.0), (2, 1.0), (2, 1.0), (2, 1.0), (2, 1.0)]),
        ([1.0, 3.0, 3.0, 2.0], False, [(1, 1.0), (2, 3.0), (2, 3.0), (2, 3.0)]),
        ([2.0, 2.0, 2.0], True, [(1, 2.0)] * 3),
    ],
)
def test_selection_follows_the_best_and_ties_keep_the_earlier(scores, minimize, best):
    recorder = best_recorder()
    runner = regression_run(
        [recorder],
        runner=ScriptRunner(scores),
        num_epochs=len(scores),
        main_metric="score",
        minimize_metric=minimize,
    )
    assert recorder.column("best_epoch", "best_valid_metric") == best
    assert (runner.best_epoch, runner.best_valid_metric) == best[-1]


def test_default_selection_minimises_valid_loss():
    recorder = best_recorder()
    values: list[float] = []
    runner = regression_run(
        [
            recorder,
            FunctionCallback(
                "epoch_end", lambda r: values.append(r.epoch_metrics["valid"]["loss"])
            ),
        ],
        num_epochs=3,
    )
    assert runner.best_valid_metric == min(values)
    assert runner.best_epoch == values.index(min(values)) + 1


@pytest.mark.parametrize(
    ("kwargs", "best"),
    [
        ({"valid_metric": "score", "minimize_valid_metric": False}, (2, 3.0)),
        ({"valid_metric": "score"}, (3, 0.5)),
        ({"main_metric": "score", "minimize_valid_metric": False}, (2, 3.0)),
        ({"valid_metric": "score", "main_metric": "score", "minimize_metric": False}, (2, 3.0)),
    ],
)
def test_catalyst22_aliases(kwargs, best):
    runner = regression_run(runner=ScriptRunner([1.0, 3.0, 0.5]), num_epochs=3, **kwargs)
    assert (runner.best_epoch, runner.best_valid_metric) == best


def test_aliases_that_disagree_are_refused():
    with pytest.raises(ValueError, match="valid_metric"):
        regression_run(runner=ScriptRunner([1.0]), main_metric="loss", valid_metric="score")
    with pytest.raises(ValueError, match="minimize_valid_metric"):
        regression_run(
            runner=ScriptRunner([1.0]), minimize_metric=False, minimize_valid_metric=True
        )


def test_no_valid_loader_means_no_selection(caplog):
    recorder = best_recorder()
    with caplog.at_level(logging.INFO):
        runner = regression_run(
            [recorder], loaders=make_loaders({"train": [2], "infer": [2]}), num_epochs=3
        )
    assert recorder.column("best_epoch", "best_valid_metric") == [(1, None), (2, None), (3, None)]
    assert runner.best_epoch == 3 and runner.best_valid_metric is None
    notes = [r for r in caplog.records if "selection" in r.getMessage()]
    assert len(notes) == 1, [r.getMessage() for r in caplog.records]


def test_default_metric_not_produced_means_no_selection(caplog):
    class NoLoss(Runner):
        def handle_batch(self, batch):
            self.batch_metrics["mae"] = (self.model(batch["x"]) - batch["y"]).abs().mean()

    with caplog.at_level(logging.INFO):
        runner = regression_run(
            runner=NoLoss(), loaders=make_loaders({"valid": [2]}), num_epochs=3, optimizer=None
        )
    assert runner.best_epoch == 3 and runner.best_valid_metric is None
    notes = [r for r in caplog.records if "selection" in r.getMessage()]
    assert len(notes) == 1 and "'loss'" in notes[0].getMessage()


@pytest.mark.parametrize("valid_loader", ["valid", "valid2"])
def test_missing_explicit_valid_loader_fails_before_training(valid_loader):
    runner = ScriptRunner([1.0])
    with pytest.raises(ValueError, match=rf"valid_loader '{valid_loader}'.*train, valid_other"):
        regression_run(
            runner=runner,
            loaders=make_loaders({"train": [2], "valid_other": [2]}),
            valid_loader=valid_loader,
        )
    assert runner.handled == []


def test_unknown_explicit_main_metric_fails_after_epoch_one():
    class TwoMetrics(ScriptRunner):
        def handle_batch(self, batch):
            super().handle_batch(batch)
            self.batch_metrics["mae"] = 0.5

    runner = TwoMetrics([1.0] * 3)
    with pytest.raises(ValueError, match="'accuracy01'") as info:
        regression_run(runner=runner, main_metric="accuracy01", num_epochs=3)
    message = str(info.value)
    assert "'valid'" in message
    for produced in ("loss", "mae", "score"):
        assert produced in message
    assert runner.epoch_step == 1
    handled = [(epoch, loader) for epoch, loader, _ in runner.handled]
    assert {epoch for epoch, _ in handled} == {1}
    assert (1, "valid") in handled  # the whole first epoch ran


def test_load_best_on_end_restores_a_snapshot_without_logdir():
    recorder, weights = best_recorder(), WeightsRecorder()
    model = nn.Linear(3, 1)
    regression_run(
        [recorder, weights],
        runner=ScriptRunner([3.0, 1.0, 2.0, 4.0]),
        num_epochs=4,
        model=model,
        main_metric="score",
        load_best_on_end=True,
        lr=0.1,
    )
    assert recorder.column("best_epoch", "best_valid_metric")[-1] == (2, 1.0)
    final = model.state_dict()
    for key, value in final.items():
        assert torch.equal(value, weights.weights[2][key])  # epoch 2's weights
        assert not torch.equal(value, weights.weights[4][key])  # not the live model's


def test_without_load_best_on_end_the_last_weights_stay():
    weights = WeightsRecorder()
    model = nn.Linear(3, 1)
    regression_run(
        [weights],
        runner=ScriptRunner([3.0, 1.0, 2.0]),
        num_epochs=3,
        model=model,
        main_metric="score",
        lr=0.1,
    )
    for key, value in model.state_dict().items():
        assert torch.equal(value, weights.weights[3][key])
