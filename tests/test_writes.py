"""Declared writes: two subscribers writing one run-state field in no decided order are refused
before any batch runs, and ``describe()`` shows who writes what."""

from __future__ import annotations

import pytest

from eventrunner.events import Callback, FunctionCallback, Order
from eventrunner.testing import tiny_run
from eventrunner.writes import WriteConflictError
from plugins import AccuracyCallback, CheckpointCallback


class F1(Callback):
    """Writes loader_metrics.f1 at loader end (a third-party metric, as users write them)."""

    writes = {"loader_end": ("loader_metrics.f1",)}

    def __init__(
        self, value: float, order: int = Order.METRIC, name: str = "F1", loaders=None
    ) -> None:
        super().__init__(order=order, loaders=loaders)
        self.value = value
        self.name = name

    def describe_name(self) -> str:
        return self.name

    def on_loader_end(self, runner) -> None:
        runner.loader_metrics["f1"] = self.value


class CountsBatches(Callback):
    """Fails the test if any batch ran."""

    batches = 0

    def on_batch_start(self, runner) -> None:
        CountsBatches.batches += 1


def test_two_writers_of_one_key_are_refused_before_any_batch_naming_both():
    CountsBatches.batches = 0
    with pytest.raises(WriteConflictError) as caught:
        tiny_run([F1(0.1, name="MacroF1"), F1(0.9, name="MicroF1"), CountsBatches()])
    message = str(caught.value)
    assert "MacroF1" in message and "MicroF1" in message
    assert "'loader_metrics.f1'" in message and "loader_end" in message
    assert f"order {int(Order.METRIC)}" in message
    assert CountsBatches.batches == 0


def test_a_whole_field_and_one_of_its_keys_conflict():
    whole = FunctionCallback(
        "loader_end", lambda r: r.loader_metrics.clear(), order=15, writes="loader_metrics"
    )
    with pytest.raises(WriteConflictError, match="loader_metrics"):
        tiny_run([whole, F1(0.5, order=15)])


def test_two_accuracy_callbacks_with_one_prefix_collide():
    # Before declared writes the second silently overwrote the first's accuracy01.
    with pytest.raises(WriteConflictError, match="accuracy01"):
        tiny_run(
            [
                AccuracyCallback(input_key="logits", topk=(1,)),
                AccuracyCallback(input_key="features", topk=(1, 2)),
            ]
        )


def test_writers_in_a_decided_order_or_of_other_keys_or_loaders_run():
    runner = tiny_run(
        [
            F1(0.1, order=15, name="first"),
            F1(0.9, order=16, name="second"),  # ordered: the later one wins, by design
            AccuracyCallback(topk=(1,), prefix="acc"),
            AccuracyCallback(topk=(1,), prefix="top"),
        ]
    )
    assert runner.epoch_metrics["valid"]["f1"] == 0.9
    assert {"acc01", "top01"} <= set(runner.epoch_metrics["valid"])

    runner = tiny_run([F1(0.1, loaders="train"), F1(0.9, loaders="valid*")])
    assert runner.epoch_metrics["train"]["f1"] == 0.1
    assert runner.epoch_metrics["valid"]["f1"] == 0.9


def test_two_checkpoint_callbacks_side_by_side_do_not_conflict(tmp_path):
    # Each keeps its own best and folder; none writes the run's selection.
    runner = tiny_run(
        [
            CheckpointCallback(logdir=tmp_path / "a", metric_key="loss", minimize=True),
            CheckpointCallback(logdir=tmp_path / "b", metric_key="accuracy01", minimize=False),
            AccuracyCallback(),
        ],
        logdir=tmp_path / "run",
    )
    assert runner.epoch_step == 2


def test_undeclared_third_party_subscribers_are_not_checked():
    seen = []
    tiny_run(
        [
            FunctionCallback("loader_end", lambda r: seen.append(1), order=20),
            FunctionCallback("loader_end", lambda r: seen.append(2), order=20),
        ]
    )
    assert seen == [1, 2] * 4


def test_describe_shows_who_writes_what():
    runner = tiny_run([F1(0.5, order=15, name="F1")], num_epochs=1)
    text = runner.bus.describe()
    assert "F1 (order=15, writes=loader_metrics.f1)" in text
    assert "writes=best_epoch,best_valid_metric" in text  # the run's model selection


def test_bad_declarations_name_the_subscriber():
    with pytest.raises(ValueError, match=r"Typo: writes: 'loader_metric'"):

        class Typo(Callback):
            writes = ("loader_metric",)

            def on_loader_end(self, runner) -> None: ...

        tiny_run([Typo()])
    with pytest.raises(ValueError, match="does not handle"):

        class WrongEvent(Callback):
            writes = {"epoch_end": ("loader_metrics",)}

            def on_loader_end(self, runner) -> None: ...

        tiny_run([WrongEvent()])
