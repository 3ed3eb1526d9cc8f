"""The runner's state during and after a run: counters at every event, the attributes
``handle_batch`` sees, and a user subscriber replacing a default one of its kind."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

import plugins
from eventrunner import Callback
from eventrunner.testing import EventRecorder, RegressionRunner, make_loaders, regression_run

STATE_ATTRS = (
    "epoch_step",
    "loader_key",
    "loader_batch_step",
    "loader_batch_len",
    "batch_step",
    "sample_step",
    "batch_size",
    "is_train_loader",
    "is_valid_loader",
    "is_infer_loader",
)

# ----------------------------------------------------------------- state


def test_counters_at_every_event():
    recorder = EventRecorder(fields=STATE_ATTRS)
    spec = {"train": [3, 3, 2], "valid": [5, 1]}
    runner = regression_run([recorder], loaders=make_loaders(spec), num_epochs=2)

    batch_ends = recorder.states_at("batch_end")
    sizes = [3, 3, 2, 5, 1] * 2
    assert [s["batch_size"] for s in batch_ends] == sizes
    assert [s["batch_step"] for s in batch_ends] == list(range(1, 11))
    assert [s["sample_step"] for s in batch_ends] == [sum(sizes[: i + 1]) for i in range(10)]
    assert [s["loader_batch_step"] for s in batch_ends] == [1, 2, 3, 1, 2] * 2
    assert [s["epoch_step"] for s in batch_ends] == [1] * 5 + [2] * 5
    assert [s["loader_key"] for s in batch_ends] == ["train"] * 3 + ["valid"] * 2 + [
        "train"
    ] * 3 + ["valid"] * 2
    assert [s["loader_batch_len"] for s in batch_ends] == [3, 3, 3, 2, 2] * 2
    # batch_start already counts this batch
    batch_starts = recorder.states_at("batch_start")
    assert batch_starts == batch_ends
    loader_starts = recorder.states_at("loader_start")
    assert [
        (s["loader_key"], s["loader_batch_step"], s["loader_batch_len"]) for s in loader_starts
    ] == [("train", 0, 3), ("valid", 0, 2), ("train", 0, 3), ("valid", 0, 2)]
    assert [
        (s["is_train_loader"], s["is_valid_loader"], s["is_infer_loader"]) for s in loader_starts
    ] == [(True, False, False), (False, True, False)] * 2
    loader_ends = recorder.states_at("loader_end")
    assert [s["loader_batch_step"] for s in loader_ends] == [3, 2, 3, 2]
    assert [s["epoch_step"] for s in recorder.states_at("epoch_start")] == [1, 2]

    # after train() the values of the last batch, loader and epoch are kept
    assert runner.epoch_step == 2
    assert runner.loader_key == "valid"
    assert runner.loader_batch_step == 2
    assert runner.batch_step == 10
    assert runner.sample_step == sum(sizes)
    assert runner.batch_size == 1
    assert runner.batch is runner.loaders["valid"][1]
    assert runner.output["out"].shape == (1, 1)
    assert set(runner.epoch_metrics) == {"train", "valid"}
    assert runner.loader_metrics is runner.epoch_metrics["valid"]
    assert runner.best_epoch in (1, 2)
    assert runner.num_epochs == 2


def test_state_attributes_exist_inside_handle_batch():
    seen: dict[str, Any] = {}

    class Probe(RegressionRunner):
        def handle_batch(self, batch):
            seen["batch_is_batch"] = self.batch is batch
            seen["metrics_empty"] = self.batch_metrics == {}
            seen["output_reset"] = self.output is None
            for name in (
                "model",
                "criterion",
                "optimizer",
                "scheduler",
                "loaders",
                "device",
                "logdir",
                "num_epochs",
                "best_valid_metric",
                "best_epoch",
                "need_early_stop",
                "loader_metrics",
                "epoch_metrics",
            ):
                seen[name] = getattr(self, name)
            super().handle_batch(batch)

    model = nn.Linear(3, 1)
    criterion = nn.MSELoss()
    loaders = make_loaders({"train": [2, 2]})
    regression_run(runner=Probe(), loaders=loaders, model=model, criterion=criterion, num_epochs=3)
    assert seen["batch_is_batch"] and seen["metrics_empty"] and seen["output_reset"]
    assert seen["model"] is model and seen["criterion"] is criterion
    assert isinstance(seen["optimizer"], torch.optim.SGD)
    assert seen["scheduler"] is None
    assert list(seen["loaders"]) == ["train"]
    assert seen["device"] == torch.device("cpu")
    assert seen["logdir"] is None
    assert seen["num_epochs"] == 3
    assert seen["need_early_stop"] is False


def test_handle_batch_may_overwrite_batch_size():
    class Weigh(RegressionRunner):
        def handle_batch(self, batch):
            super().handle_batch(batch)
            self.batch_size = 10

    recorder = EventRecorder(fields=STATE_ATTRS)
    runner = regression_run([recorder], runner=Weigh(), loaders=make_loaders({"train": [3, 2]}))
    ends = recorder.states_at("batch_end")
    assert [s["batch_size"] for s in ends] == [10, 10]
    assert [s["sample_step"] for s in ends] == [10, 20]
    assert runner.sample_step == 20


def test_counters_restart_with_each_train_call():
    runner = RegressionRunner()
    regression_run(runner=runner, loaders=make_loaders({"train": [2, 2]}), num_epochs=2)
    assert runner.batch_step == 4
    regression_run(runner=runner, loaders=make_loaders({"train": [2]}), num_epochs=1)
    assert (runner.epoch_step, runner.batch_step, runner.sample_step) == (1, 1, 2)


# ----------------------------------------------------------------- replacing defaults


def test_user_subscriber_of_the_same_kind_replaces_the_default():
    class MyCheckpoint(plugins.CheckpointCallback):  # inherits kind "checkpoint"
        pass

    class QuietConsole(Callback):
        kind = "console"

        def __init__(self) -> None:
            super().__init__(order=80)
            self.lines = 0

        def on_loader_end(self, runner):
            self.lines += 1

    console = QuietConsole()
    runner = RegressionRunner()
    runner.train(
        model=nn.Linear(3, 1),
        loaders=make_loaders({"valid": [2]}),
        callbacks=[MyCheckpoint(), console],
        num_epochs=2,
    )
    kinds = [c.kind for c in runner.callbacks]
    assert kinds.count("checkpoint") == 1 and kinds.count("console") == 1
    assert any(isinstance(c, MyCheckpoint) for c in runner.callbacks)
    assert not any(isinstance(c, plugins.ConsoleLogger) for c in runner.callbacks)
    assert console.lines == 2
