"""Turns an event's subscriptions into the plain tuple of calls the loop walks.

Filters that hold for a whole loader pass (loader names, epoch frequency) are applied once,
when the tuple is built; only ``every=N`` on batch events is checked per batch. The event's
public blinker signal (:mod:`eventrunner.signals`) is the last call when it has receivers at
that moment, so a signal nobody listens to costs nothing per batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from eventrunner.events import BATCH_EVENTS, Subscription

if TYPE_CHECKING:
    import blinker

    from eventrunner.background import BackgroundWorker
    from eventrunner.state import RunState

Call = Callable[["RunState"], Any]


def _every_batch(handler: Call, every: int) -> Call:
    def call(runner: RunState) -> Any:
        if runner.loader_batch_step % every == 0:
            return handler(runner)
        return None

    return call


def _in_background(handler: Call, worker: BackgroundWorker, sub: Subscription) -> Call:
    submit, name, with_batch = worker.submit, sub.name, sub.snapshot_batch

    def call(runner: RunState) -> None:
        submit(handler, runner.snapshot(with_batch), runner.epoch_step, name)

    return call


def compile_calls(
    event: str,
    subscriptions: Iterable[Subscription],
    loader_key: str | None,
    epoch_step: int,
    worker: BackgroundWorker | None,
    signal: blinker.Signal | None = None,
) -> tuple[tuple[Call, ...], bool]:
    """The calls for ``event`` in order, and whether any of them must be awaited."""
    calls = []
    awaits = False
    batch_event = event in BATCH_EVENTS
    for sub in subscriptions:
        if batch_event:
            if sub.loaders and (loader_key is None or not sub.loaders(loader_key)):
                continue
        elif not sub.fires_for(event, loader_key, epoch_step):
            continue
        call = sub.handler
        if sub.background:
            if worker is None:
                raise RuntimeError(f"{sub.name}: background subscriber without a worker")
            call = _in_background(call, worker, sub)
        else:
            awaits = awaits or sub.is_async
        if batch_event and sub.every is not None and sub.every > 1:
            call = _every_batch(call, sub.every)
        calls.append(call)
    if signal is not None and signal.receivers:
        calls.append(signal.send)  # receivers get sender=runner; blinker calls them in turn
    return tuple(calls), awaits
