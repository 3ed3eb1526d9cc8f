"""The event bus and the loop's events: sequence, counters, order, filters, async handlers.

An ``EventRecorder`` writes down every event it receives; the tests compare that record with
the sequence SPEC 6 promises for a small run.
"""

from __future__ import annotations

import gc
from typing import Any

import anyio
import blinker
import pytest
import torch

from eventrunner import EVENTS, Callback, EventBus, FunctionCallback, Order, Runner
from eventrunner.testing import EventRecorder, RegressionRunner, make_loaders, regression_run

LOADERS_SPEC = {"train": 3, "valid": 2}


def expected_sequence(spec: dict[str, int], num_epochs: int) -> list[tuple[str, Any, int, int]]:
    """SPEC 6's order, written out by hand, as ``EventRecorder`` records it:
    ``(event, loader_key, epoch_step, loader_batch_step)``."""
    seq: list[tuple[str, Any, int, int]] = [("experiment_start", None, 0, 0)]
    last_loader: str | None = None
    last_step = 0
    for epoch in range(1, num_epochs + 1):
        seq.append(("epoch_start", last_loader, epoch, last_step))
        for key, n in spec.items():
            seq.append(("loader_start", key, epoch, 0))
            for step in range(1, n + 1):
                seq.append(("batch_start", key, epoch, step))
                seq.append(("batch_end", key, epoch, step))
            seq.append(("loader_end", key, epoch, n))
            last_loader, last_step = key, n
        seq.append(("epoch_end", last_loader, epoch, last_step))
    seq.append(("experiment_end", last_loader, num_epochs, last_step))
    return seq


# ----------------------------------------------------------------- the sequence


def test_exact_event_sequence_of_a_small_run():
    recorder = EventRecorder()
    regression_run([recorder], loaders=make_loaders(LOADERS_SPEC), num_epochs=2)
    assert recorder.events == expected_sequence(LOADERS_SPEC, 2)


def test_event_counters():
    recorder = EventRecorder()
    spec = {"train": 3, "valid": 2, "infer": 1}
    regression_run([recorder], loaders=make_loaders(spec), num_epochs=3)
    assert recorder.counts() == {
        "experiment_start": 1,
        "epoch_start": 3,
        "loader_start": 9,
        "batch_start": 18,
        "batch_end": 18,
        "loader_end": 9,
        "epoch_end": 3,
        "experiment_end": 1,
        "exception": 0,
    }


def test_handle_batch_runs_between_batch_start_and_batch_end():
    log: list[str] = []

    class LoggingRunner(RegressionRunner):
        def handle_batch(self, batch):
            log.append("handle_batch")
            super().handle_batch(batch)

    regression_run(
        [
            FunctionCallback("batch_start", lambda r: log.append("batch_start")),
            FunctionCallback("batch_end", lambda r: log.append("batch_end")),
        ],
        loaders=make_loaders({"train": 2}),
        num_epochs=1,
        runner=LoggingRunner(),
    )
    assert log == ["batch_start", "handle_batch", "batch_end"] * 2


def test_exception_sequence():
    class Boom(RuntimeError):
        pass

    class FailingRunner(RegressionRunner):
        def handle_batch(self, batch):
            if self.loader_key == "valid" and self.loader_batch_step == 2:
                raise Boom("boom")
            super().handle_batch(batch)

    recorder = EventRecorder()
    with pytest.raises(Boom):
        regression_run(
            [recorder], loaders=make_loaders(LOADERS_SPEC), runner=FailingRunner(), num_epochs=2
        )
    assert recorder.names()[-3:] == ["batch_start", "exception", "experiment_end"]
    assert recorder.events[-2] == ("exception", "valid", 1, 2)
    names = recorder.names()
    valid_start = len(names) - 1 - names[::-1].index("loader_start")
    assert recorder.events[valid_start][1] == "valid"
    assert "loader_end" not in names[valid_start:]  # the failed pass does not end normally


# ----------------------------------------------------------------- order


def test_subscribers_run_by_order_then_registration():
    calls: list[str] = []

    def tracer(name: str, order: int) -> FunctionCallback:
        return FunctionCallback("batch_end", lambda r: calls.append(name), order=order)

    callbacks = [
        tracer("a70", 70),
        tracer("b10", 10),
        tracer("c70", 70),
        tracer("d100", 100),
        tracer("e0", 0),
        tracer("f10", 10),
        tracer("g70", 70),
    ]
    regression_run(callbacks, loaders=make_loaders({"train": 1}), num_epochs=1)
    assert calls == ["e0", "b10", "f10", "a70", "c70", "g70", "d100"]


def test_user_subscriber_runs_after_the_defaults_of_its_event():
    seen: dict[str, Any] = {}

    def probe(runner: Runner) -> None:
        # order 70: after backward (30) and optimizer (40) cleared the grads
        seen["grad"] = runner.model.weight.grad
        seen["metrics"] = dict(runner.loader_metrics)

    regression_run(
        [FunctionCallback("batch_end", probe), FunctionCallback("loader_end", probe)],
        loaders=make_loaders({"train": 2}),
        num_epochs=1,
    )
    assert seen["grad"] is None
    assert "loss" in seen["metrics"]  # aggregation (20) ran before order 70 at loader_end


def test_builtin_orders_are_distinct_and_as_specified():
    assert Order.INTERNAL == 0
    assert Order.METRIC == 10
    assert Order.METRIC_AGGREGATION == 20
    assert Order.BACKWARD == 30
    assert Order.OPTIMIZER == 40
    assert Order.SCHEDULER == 50
    assert Order.SELECTION == 60
    assert Order.EARLY_STOPPING == 65
    assert Order.USER == 70
    assert Order.LOGGING == 80
    assert Order.CHECKPOINT == 90  # saves after everything its epoch does
    assert Order.EXTERNAL == 100
    assert len({int(o) for o in Order}) == len(Order)


def test_composed_pipeline_is_listed_in_order():
    runner = regression_run([EventRecorder()], loaders=make_loaders({"train": 1}), num_epochs=1)
    orders = [s.order for s in runner.bus.subscriptions("batch_end")]
    assert orders == sorted(orders)
    names = [s.name for s in runner.bus.subscriptions("batch_end")]
    assert (
        names.index("BackwardCallback")
        < names.index("OptimizerCallback")
        < names.index("EventRecorder")
    )
    text = runner.bus.describe()
    for event in EVENTS:
        assert f"{event}:" in text


def test_order_does_not_depend_on_blinker(monkeypatch):
    """blinker promises no order: the ordered subscribers never go through its ``send``."""
    bus = EventBus()
    for i, order in enumerate([50, 10, 50, 10, 0]):
        bus.connect("epoch_end", lambda r, i=i: None, order=order, name=f"h{i}")
    assert [s.name for s in bus.subscriptions("epoch_end")] == ["h4", "h1", "h3", "h0", "h2"]

    def no_send(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the bus must not dispatch through blinker's unordered send")

    def scramble(runner: Runner) -> None:
        # reverse blinker's own receiver bookkeeping: the loop's order must not change
        for event in EVENTS:
            signal = runner.bus.signal(event)
            signal.receivers = dict(reversed(list(signal.receivers.items())))

    monkeypatch.setattr(blinker.Signal, "send", no_send)
    calls: list[int] = []
    callbacks = [FunctionCallback("experiment_start", scramble, order=0)] + [
        FunctionCallback("batch_end", lambda r, i=i: calls.append(i), order=order)
        for i, order in enumerate([50, 10, 50, 10, 0])
    ]
    regression_run(callbacks, loaders=make_loaders({"train": 1}), num_epochs=1)
    assert calls == [4, 1, 3, 0, 2]


def test_same_order_in_repeated_runs():
    def record() -> list[str]:
        calls: list[str] = []
        callbacks = [
            FunctionCallback(event, lambda r, n=f"{event}{i}": calls.append(n), order=70 - (i % 2))
            for i in range(6)
            for event in ("loader_start", "batch_end")
        ]
        regression_run(callbacks, loaders=make_loaders({"train": 2, "valid": 1}), num_epochs=1)
        return calls

    first = record()
    second = record()
    assert first == second
    assert first[:6] == [
        "loader_start1",
        "loader_start3",
        "loader_start5",
        "loader_start0",
        "loader_start2",
        "loader_start4",
    ]


def test_subscribers_are_held_strongly():
    bus = EventBus()
    calls: list[int] = []

    class Temp:
        def handler(self, runner: Runner) -> None:
            calls.append(1)

    bus.connect("epoch_start", lambda r: calls.append(0))
    bus.connect("epoch_start", Temp().handler)  # bound method of a temporary object
    gc.collect()
    runner = RegressionRunner()
    runner.bus = bus
    anyio.run(runner._publish, "epoch_start")
    assert calls == [0, 1]


def test_only_overridden_handlers_are_connected():
    class EpochOnly(Callback):
        def on_epoch_end(self, runner):
            pass

    bus = EventBus()
    subs = bus.subscribe(EpochOnly())
    assert [s.event for s in subs] == ["epoch_end"]
    assert not bus.has_subscribers("batch_end")


def test_disconnect_removes_the_handler():
    bus = EventBus()
    calls: list[str] = []
    a = bus.connect("epoch_start", lambda r: calls.append("a"))
    bus.connect("epoch_start", lambda r: calls.append("b"))
    bus.disconnect(a)
    runner = RegressionRunner()
    runner.bus = bus
    anyio.run(runner._publish, "epoch_start")
    assert calls == ["b"]


# ----------------------------------------------------------------- filters

FILTER_SPEC = {"train": 2, "valid": 2, "valid2": 2, "train_extra": 1, "infer": 1}


def _loaders_seen(loaders: Any) -> set[str]:
    recorder = EventRecorder(loaders=loaders)
    regression_run([recorder], loaders=make_loaders(FILTER_SPEC), num_epochs=1)
    seen = {
        loader
        for event, loader, _, _ in recorder.events
        if event in ("loader_start", "batch_start", "batch_end", "loader_end")
    }
    # every loader-level event of a matching loader fired, and only those
    for key in seen:
        n = FILTER_SPEC[key]
        got = [e for e in recorder.events if e[1] == key and e[0] != "epoch_end"]
        assert [e[0] for e in got].count("batch_end") == n
        assert [e[0] for e in got].count("loader_start") == 1
    return seen


@pytest.mark.parametrize(
    ("loaders", "expected"),
    [
        ("valid", {"valid"}),
        (["train", "valid2"], {"train", "valid2"}),
        ("valid*", {"valid", "valid2"}),
        ("train*", {"train", "train_extra"}),
        (["infer", "valid*"], {"infer", "valid", "valid2"}),
        (None, set(FILTER_SPEC)),
    ],
)
def test_loader_filter(loaders, expected):
    assert _loaders_seen(loaders) == expected


def test_loader_filter_still_gets_experiment_events():
    recorder = EventRecorder(loaders="valid2")
    regression_run([recorder], loaders=make_loaders({"train": 1}), num_epochs=1)
    assert "experiment_start" in recorder.names()
    assert "experiment_end" in recorder.names()
    assert "batch_end" not in recorder.names()


def test_every_n_batches():
    recorder = EventRecorder(every=2)
    regression_run([recorder], loaders=make_loaders({"train": 5, "valid": 3}), num_epochs=1)
    batch_steps = [
        (loader, step) for event, loader, _, step in recorder.events if event == "batch_end"
    ]
    assert batch_steps == [("train", 2), ("train", 4), ("valid", 2)]
    assert [e for e in recorder.events if e[0] == "batch_start"] == [
        ("batch_start", "train", 1, 2),
        ("batch_start", "train", 1, 4),
        ("batch_start", "valid", 1, 2),
    ]


def test_every_n_epochs_for_loader_and_epoch_events():
    recorder = EventRecorder(every=2)
    regression_run([recorder], loaders=make_loaders({"train": 1, "valid": 1}), num_epochs=5)
    for event in ("epoch_start", "epoch_end"):
        assert [e[2] for e in recorder.events if e[0] == event] == [2, 4]
    for event in ("loader_start", "loader_end"):
        assert [(e[2], e[1]) for e in recorder.events if e[0] == event] == [
            (2, "train"),
            (2, "valid"),
            (4, "train"),
            (4, "valid"),
        ]
    assert recorder.counts()["experiment_start"] == 1
    assert recorder.counts()["experiment_end"] == 1


def test_experiment_and_exception_always_fire():
    class FailingRunner(RegressionRunner):
        def handle_batch(self, batch):
            raise KeyError("missing")

    recorder = EventRecorder(every=7, loaders="valid")
    with pytest.raises(KeyError, match="missing"):
        regression_run(
            [recorder],
            runner=FailingRunner(),
            loaders=make_loaders({"train": 1, "valid": 1}),
            num_epochs=2,
        )
    assert recorder.names() == ["experiment_start", "exception", "experiment_end"]


def test_every_must_be_positive_int():
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="every"):
            EventRecorder(every=bad)


# ----------------------------------------------------------------- functions and async


def test_function_callback_with_filters():
    steps: list[tuple[str, int]] = []
    fn = FunctionCallback(
        "batch_end",
        lambda r: steps.append((r.loader_key, r.loader_batch_step)),
        loaders="valid*",
        every=2,
    )
    regression_run([fn], loaders=make_loaders({"train": 4, "valid": 4, "valid2": 3}), num_epochs=1)
    assert steps == [("valid", 2), ("valid", 4), ("valid2", 2)]


def test_function_callback_checks_its_arguments():
    with pytest.raises(ValueError, match="batch_ends"):
        FunctionCallback("batch_ends", print)
    with pytest.raises(TypeError, match="callable"):
        FunctionCallback("batch_end", 3)


def test_plain_function_on_the_bus():
    bus = EventBus()
    with pytest.raises(ValueError, match="unknown event"):
        bus.connect("on_batch_end", print)
    sub = bus.connect("loader_end", lambda r: None, order=Order.LOGGING)
    assert bus.subscriptions("loader_end") == (sub,)


def test_async_handlers_awaited_in_their_place():
    log: list[str] = []

    class AsyncRecorder(Callback):
        async def on_loader_start(self, runner):
            await anyio.sleep(0)
            log.append(f"async-start-{runner.loader_key}")

        async def on_batch_end(self, runner):
            log.append("async-in")
            await anyio.sleep(0.001)
            log.append("async-out")

        async def on_experiment_end(self, runner):
            await anyio.sleep(0)
            log.append("async-experiment-end")

    async def async_fn(runner: Runner) -> None:
        await anyio.sleep(0)
        log.append("fn-async")

    callbacks = [
        FunctionCallback("loader_start", lambda r: log.append("sync-start-first"), order=60),
        AsyncRecorder(order=65),
        FunctionCallback("loader_start", lambda r: log.append("sync-start-last"), order=75),
        FunctionCallback("batch_end", lambda r: log.append("sync-before"), order=60),
        FunctionCallback("batch_end", async_fn, order=70),
        FunctionCallback("batch_end", lambda r: log.append("sync-after"), order=80),
        FunctionCallback("experiment_end", lambda r: log.append("sync-experiment-end"), order=90),
    ]
    regression_run(callbacks, loaders=make_loaders({"train": 2}), num_epochs=1)
    per_batch = ["sync-before", "async-in", "async-out", "fn-async", "sync-after"]
    assert log == [
        "sync-start-first",
        "async-start-train",
        "sync-start-last",
        *per_batch,
        *per_batch,
        "async-experiment-end",
        "sync-experiment-end",
    ]


def test_async_handler_sees_the_loop_mode():
    modes: list[tuple[str, bool]] = []

    async def probe(runner: Runner) -> None:
        await anyio.sleep(0)
        modes.append((runner.loader_key, torch.is_grad_enabled()))

    regression_run(
        [FunctionCallback("batch_end", probe)],
        loaders=make_loaders({"train": 1, "valid": 1}),
        num_epochs=1,
    )
    assert modes == [("train", True), ("valid", False)]
