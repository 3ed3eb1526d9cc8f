"""Async and background subscribers, atrain(), and train() inside a running event loop."""

from __future__ import annotations

import asyncio
import faulthandler
import signal
import threading
import time

import anyio
import pytest
import torch
from torch import nn

import eventrunner
from eventrunner.background import BackgroundWorker


@pytest.fixture(autouse=True)
def _no_hang():
    faulthandler.dump_traceback_later(60, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


class Loss(eventrunner.Runner):
    def handle_batch(self, batch):
        self.batch_metrics["loss"] = batch["x"].mean()


def batches(n: int = 4) -> list[dict]:
    return [{"x": torch.full((2, 1), float(i))} for i in range(n)]


def fit(callbacks=(), runner=None, **kwargs):
    runner = runner or Loss()
    kwargs.setdefault("loaders", {"train": batches(), "valid": batches(2)})
    runner.train(model=nn.Linear(1, 1), callbacks=list(callbacks), console=False, **kwargs)
    return runner


def _new_threads(before: set[threading.Thread]) -> list[str]:
    return [t.name for t in threading.enumerate() if t not in before and t.is_alive()]


class Sync(eventrunner.Callback):
    def __init__(self, log, name, order):
        super().__init__(order=order)
        self.log, self.name = log, name

    def on_batch_end(self, runner):
        self.log.append((self.name, runner.loader_key, runner.loader_batch_step))


class Async(Sync):
    async def on_batch_end(self, runner):
        await anyio.sleep(0)  # a real suspension: the loop must wait for it in its place
        self.log.append((self.name, runner.loader_key, runner.loader_batch_step))


class Background(Sync):
    background = True

    def __init__(self, log, name, order, delay=0.0):
        super().__init__(log, name, order)
        self.delay = delay

    def on_batch_end(self, runner):
        time.sleep(self.delay)  # slower than the loop: it must not hold the loop up
        self.log.append((self.name, runner.loader_key, runner.loader_batch_step))


class AsyncBackground(Background):
    async def on_batch_end(self, runner):
        await anyio.sleep(self.delay)
        self.log.append((self.name, runner.loader_key, runner.loader_batch_step))


def test_sync_and_async_run_in_their_place_background_in_order_among_themselves():
    loop_log, bg_log = [], []
    fit(
        [
            Sync(loop_log, "sync-b", 75),
            Async(loop_log, "async", 72),
            Sync(loop_log, "sync-a", 71),
            Background(bg_log, "bg-1", 73, delay=0.002),
            AsyncBackground(bg_log, "bg-2", 74, delay=0.001),
        ]
    )
    steps = [(key, step) for key, n in (("train", 4), ("valid", 2)) for step in range(1, n + 1)]
    assert loop_log == [(name, *s) for s in steps for name in ("sync-a", "async", "sync-b")]
    assert bg_log == [(name, *s) for s in steps for name in ("bg-1", "bg-2")]


def test_background_does_not_block_the_loop():
    released = threading.Event()
    outcome = []

    class WaitsForTheLoop(eventrunner.Callback):
        background = True

        def on_epoch_end(self, runner):
            if runner.epoch_step == 1:  # only the loop going on can release it
                outcome.append(released.wait(timeout=20))

    class Release(eventrunner.Callback):
        def on_epoch_start(self, runner):
            if runner.epoch_step == 2:
                released.set()

    fit([WaitsForTheLoop(), Release()], num_epochs=2)
    assert outcome == [True]


def test_background_sees_a_snapshot_of_the_counters():
    seen = []

    class Slow(eventrunner.Callback):
        background = True

        def on_batch_end(self, runner):
            time.sleep(0.002)
            seen.append((runner.batch_step, runner.loader_batch_step, dict(runner.batch_metrics)))

    fit([Slow()], loaders={"train": batches(6)})
    assert [(b, lb) for b, lb, _ in seen] == [(i, i) for i in range(1, 7)]
    assert [float(m["loss"]) for _, _, m in seen] == [float(i) for i in range(6)]


def test_background_error_is_raised_by_the_end_of_the_next_epoch():
    epochs_started = []

    class Fails(eventrunner.Callback):
        background = True

        def on_epoch_end(self, runner):
            if runner.epoch_step == 1:
                raise LookupError("upload failed")

    class Count(eventrunner.Callback):
        def on_epoch_start(self, runner):
            epochs_started.append(runner.epoch_step)

    before = set(threading.enumerate())
    with pytest.raises(LookupError, match="upload failed"):
        fit([Fails(), Count()], num_epochs=5)
    assert epochs_started == [1, 2]
    assert _new_threads(before) == []


def test_experiment_end_waits_for_all_background_calls():
    done = []

    class SlowWriter(eventrunner.Callback):
        background = True

        async def on_epoch_end(self, runner):
            await anyio.sleep(0.05)
            done.append(runner.epoch_step)

        def on_experiment_end(self, runner):
            time.sleep(0.05)
            done.append("end")

    before = set(threading.enumerate())
    fit([SlowWriter()], num_epochs=3)
    assert done == [1, 2, 3, "end"]
    assert _new_threads(before) == []


def test_async_and_background_handlers_run_with_the_loops_grad_mode():
    modes = []

    class Grad(eventrunner.Callback):
        async def on_batch_end(self, runner):
            modes.append(("async", runner.loader_key, torch.is_grad_enabled()))

    class BackgroundGrad(eventrunner.Callback):
        background = True

        def on_batch_end(self, runner):
            modes.append(("background", runner.loader_key, torch.is_grad_enabled()))

    fit([Grad(), BackgroundGrad()], loaders={"train": batches(1), "valid": batches(1)})
    assert sorted(modes) == sorted(
        [
            ("async", "train", True),
            ("async", "valid", False),
            ("background", "train", True),
            ("background", "valid", False),
        ]
    )


def test_background_worker_reenters_autocast():
    seen = []

    def handler(snapshot):
        seen.append(
            (
                torch.is_grad_enabled(),
                torch.is_autocast_enabled("cpu"),
                torch.get_autocast_dtype("cpu"),
            )
        )

    worker = BackgroundWorker("cpu")
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        worker.submit(handler, None, epoch=1)
    worker.submit(handler, None, epoch=1)
    worker.close()
    worker.wait()
    assert seen[0] == (False, True, torch.bfloat16)
    assert seen[1][:2] == (True, False)


def test_train_inside_a_running_event_loop():
    before = set(threading.enumerate())

    async def notebook_cell():
        runner = fit(num_epochs=2)  # a plain train() call, as in a Jupyter cell
        return runner

    runner = asyncio.run(notebook_cell())
    assert runner.epoch_step == 2
    assert runner.epoch_metrics["train"]["loss"] == pytest.approx(1.5)
    assert _new_threads(before) == []


def test_errors_of_train_inside_a_running_loop_propagate():
    class Broken(Loss):
        def handle_batch(self, batch):
            raise ArithmeticError("bad step")

    async def cell():
        fit(runner=Broken())

    with pytest.raises(ArithmeticError, match="bad step"):
        asyncio.run(cell())


def test_atrain():
    async def main():
        runner = Loss()
        await runner.atrain(
            model=nn.Linear(1, 1),
            loaders={"train": batches(), "valid": batches(2)},
            num_epochs=2,
            console=False,
        )
        return runner

    runner = asyncio.run(main())
    assert runner.epoch_step == 2
    assert runner.epoch_metrics["valid"]["loss"] == pytest.approx(0.5)


def test_atrain_on_trio_backend_if_installed():
    pytest.importorskip("trio")
    runner = Loss()
    anyio.run(
        lambda: runner.atrain(model=nn.Linear(1, 1), loaders={"train": batches()}, console=False),
        backend="trio",
    )
    assert runner.batch_step == 4


def test_ctrl_c_during_train_inside_a_running_loop_stops_the_training_thread():
    main = threading.main_thread().ident
    before = set(threading.enumerate())
    steps = []

    class Slow(Loss):
        def handle_batch(self, batch):
            steps.append(1)
            if len(steps) == 5:
                signal.pthread_kill(main, signal.SIGINT)  # Ctrl-C, the caller is in join()
            time.sleep(0.002)
            super().handle_batch(batch)

    async def cell():
        fit(runner=Slow(), loaders={"train": batches(200)}, num_epochs=3)

    with pytest.raises(KeyboardInterrupt):
        asyncio.run(cell())
    assert len(steps) < 100
    assert _new_threads(before) == []


def test_ctrl_c_during_atrain_under_asyncio_run_stops_at_once():
    # asyncio.run turns the first Ctrl-C into a cancellation delivered at the next await,
    # which a loop that awaits nothing between batches would reach only at the end.
    main = threading.main_thread().ident
    steps = []

    class Slow(Loss):
        def handle_batch(self, batch):
            steps.append(1)
            if len(steps) == 5:
                signal.pthread_kill(main, signal.SIGINT)
            time.sleep(0.001)
            super().handle_batch(batch)

    async def app():
        await Slow().atrain(model=nn.Linear(1, 1), loaders={"train": batches(200)}, console=False)

    with pytest.raises(KeyboardInterrupt):
        asyncio.run(app())
    assert len(steps) < 100
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


class Doubles(Loss):
    def handle_batch(self, batch):
        super().handle_batch(batch)
        self.output = {"y": batch["x"] * 2}


def test_a_slow_background_subscriber_is_bounded_and_named_once(monkeypatch, caplog):
    from eventrunner import background

    monkeypatch.setattr(background, "MAX_PENDING", 4, raising=False)
    waiting = []

    class SlowUpload(eventrunner.Callback):
        background = True

        def on_batch_end(self, runner):
            time.sleep(0.005)  # far slower than the loop's batches

    class FastLog(eventrunner.Callback):
        background = True

        def on_batch_end(self, runner):
            pass

    class Watch(eventrunner.Callback):
        def on_batch_end(self, runner):
            waiting.append(runner._worker._queue.qsize())  # calls queued, not yet started

    subscribers = [FastLog(order=71), SlowUpload(order=72), Watch(order=73)]
    with caplog.at_level("WARNING", logger="eventrunner"):
        fit(subscribers, loaders={"train": batches(40)})
    assert len(waiting) == 40
    assert max(waiting) <= 4
    warned = [r.getMessage() for r in caplog.records if "background" in r.getMessage()]
    assert len(warned) == 1, caplog.text
    assert "SlowUpload" in warned[0] and "FastLog" not in warned[0]
    assert "4 calls" in warned[0]


def test_background_snapshot_carries_the_batch_only_when_asked():
    seen: dict[str, list] = {"plain": [], "with_batch": []}

    class Plain(eventrunner.Callback):
        background = True

        def on_batch_end(self, runner):
            seen["plain"].append((runner.batch, runner.output, float(runner.batch_metrics["loss"])))

    class WithBatch(Plain):
        snapshot_batch = True

        def on_batch_end(self, runner):
            seen["with_batch"].append((runner.batch, runner.output))

    data = batches(3)
    fit([Plain(), WithBatch()], runner=Doubles(), loaders={"train": data})
    assert seen["plain"] == [(None, None, float(i)) for i in range(3)]
    assert len(seen["with_batch"]) == 3
    for (batch, output), want in zip(seen["with_batch"], data, strict=True):
        assert torch.equal(batch["x"], want["x"])
        assert torch.equal(output["y"], want["x"] * 2)


def test_a_call_that_holds_the_loop_up_is_named_while_the_loop_waits(caplog):
    def stuck_upload(snapshot):
        time.sleep(0.3)

    worker = BackgroundWorker("cpu", max_pending=1)
    with caplog.at_level("WARNING", logger="eventrunner"):
        for _ in range(3):
            worker.submit(stuck_upload, None, epoch=1, name="StuckUpload")
    worker.close()
    worker.wait()
    warned = [r.getMessage() for r in caplog.records if "background" in r.getMessage()]
    assert len(warned) == 1 and "StuckUpload" in warned[0]
