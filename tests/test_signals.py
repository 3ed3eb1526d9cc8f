"""Each event is a public blinker signal the loop sends with ``sender=runner``."""

from __future__ import annotations

import pytest

from eventrunner import signals
from eventrunner.events import EVENTS, FunctionCallback, Order
from eventrunner.supervised import SupervisedRunner
from eventrunner.testing import tiny_run


def test_a_receiver_sees_every_epoch_of_two_runners_with_sender():
    seen = []

    def on_epoch_end(sender):
        seen.append((sender, sender.epoch_step, dict(sender.epoch_metrics["valid"])))

    first, second = SupervisedRunner(), SupervisedRunner()
    with signals.epoch_end.connected_to(on_epoch_end):
        tiny_run(runner=first, num_epochs=2)
        tiny_run(runner=second, num_epochs=3)
    assert [(s, epoch) for s, epoch, _ in seen] == [
        (first, 1),
        (first, 2),
        (second, 1),
        (second, 2),
        (second, 3),
    ]
    # Sent after the event's subscribers: the epoch's metrics are final.
    assert all("loss" in metrics for _, _, metrics in seen)
    tiny_run(num_epochs=1)
    assert len(seen) == 5  # disconnected on leaving the block


def test_a_receiver_for_one_sender_sees_only_that_runner():
    seen = []
    watched, other = SupervisedRunner(), SupervisedRunner()
    with signals.loader_end.connected_to(lambda s: seen.append(s.loader_key), sender=watched):
        tiny_run(runner=other, num_epochs=1)
        tiny_run(runner=watched, num_epochs=1)
    assert seen == ["train", "valid"]


def test_every_event_is_sent_in_loop_order_after_its_subscribers():
    order = []

    def receiver(event):
        return lambda sender: order.append(("signal", event))

    receivers = {event: receiver(event) for event in EVENTS if event != "exception"}
    last = [
        FunctionCallback(event, lambda r, e=event: order.append(("callback", e)), order=100)
        for event in receivers
    ]
    for event, fn in receivers.items():
        signals.SIGNALS[event].connect(fn)
    try:
        tiny_run(last, num_epochs=1, loaders=("train",), num_batches=1)
    finally:
        for event, fn in receivers.items():
            signals.SIGNALS[event].disconnect(fn)
    events = [
        "experiment_start",
        "epoch_start",
        "loader_start",
        "batch_start",
        "batch_end",
        "loader_end",
        "epoch_end",
        "experiment_end",
    ]
    assert order == [(kind, event) for event in events for kind in ("callback", "signal")]


def test_exception_signal_on_a_failed_run():
    seen = []

    def fail(runner):
        raise RuntimeError("boom")

    with (
        signals.exception.connected_to(lambda s: seen.append(("exception", repr(s.exception)))),
        signals.experiment_end.connected_to(lambda s: seen.append(("experiment_end", None))),
        pytest.raises(RuntimeError, match="boom"),
    ):
        tiny_run([FunctionCallback("epoch_end", fail, order=Order.USER)])
    assert seen == [("exception", "RuntimeError('boom')"), ("experiment_end", None)]


def test_the_bus_exposes_the_public_signals():
    runner = tiny_run(num_epochs=1)
    assert runner.bus.signal("epoch_end") is signals.epoch_end
    assert set(signals.SIGNALS) == set(EVENTS)
    assert all(getattr(signals, event) is signals.SIGNALS[event] for event in EVENTS)
