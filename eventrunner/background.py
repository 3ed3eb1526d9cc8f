"""Background subscribers: run in order, off the loop's path, on an event loop of their own.

The loop hands each call (handler, runner snapshot, grad/autocast mode) to a worker thread
through a bounded queue: submitting does not wait while fewer than :data:`MAX_PENDING` calls
are queued; past that the loop waits for a free place (back-pressure, with one warning that
names the slowest subscriber), so a slow subscriber cannot pile up snapshots without end. The
snapshot holds no batch or output unless the subscriber sets ``snapshot_batch = True``. The
worker runs the calls one after another (``async def`` handlers are awaited there, under
anyio). A call made during epoch ``e`` has finished, and its error is raised, by the end of
epoch ``e + 1`` at the latest (the loop waits for it there); ``experiment_end`` waits for all.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import anyio
import torch

from eventrunner.checks import positive_int

log = logging.getLogger("eventrunner")

_STOP = object()
#: Background calls that may wait for the worker before the loop waits for a free place.
MAX_PENDING = 64
#: Seconds between checks that the worker thread is still alive while waiting for it.
_POLL = 0.1


class _Mode:
    """The loop's grad and autocast mode when it made a call, re-entered on the worker thread.

    Both are thread-local in torch: without this a handler on the worker would run with
    grad on and autocast off whatever the loop had.
    """

    __slots__ = ("autocast", "device_type", "grad")

    def __init__(self, device_type: str) -> None:
        self.device_type = device_type
        self.grad = torch.is_grad_enabled()
        self.autocast = (
            torch.get_autocast_dtype(device_type)
            if torch.is_autocast_enabled(device_type)
            else None
        )

    def enter(self, stack: contextlib.ExitStack) -> None:
        stack.enter_context(torch.set_grad_enabled(self.grad))
        if self.autocast is not None:
            stack.enter_context(torch.autocast(self.device_type, dtype=self.autocast))


class BackgroundWorker:
    """Runs submitted handlers one after another on a thread with its own anyio event loop.

    At most ``max_pending`` calls (default :data:`MAX_PENDING`) wait in its queue; a submit
    past that waits for the worker to take one.
    """

    def __init__(self, device_type: str = "cpu", max_pending: int | None = None) -> None:
        self._device_type = device_type
        self.max_pending = positive_int(
            MAX_PENDING if max_pending is None else max_pending, "max_pending"
        )
        self._queue: queue.Queue[Any] = queue.Queue(self.max_pending)
        self._submitted = 0  # calls submitted, counted on the loop's thread
        self._last_call_of: dict[int, int] = {}  # epoch -> number of its last call
        self._warned = False
        # Written by the worker under _done: calls finished, errors with their call's epoch.
        self._done = threading.Condition()
        self._finished = 0
        self._errors: list[tuple[int, BaseException]] = []
        # Seconds spent per subscriber name, and the call running now (name, start).
        self._seconds: dict[str, float] = {}
        self._running: tuple[str, float] | None = None
        self._thread = threading.Thread(
            target=anyio.run, args=(self._serve,), name="eventrunner-background", daemon=True
        )
        self._thread.start()

    def submit(
        self, handler: Callable[[Any], Any], snapshot: Any, epoch: int, name: str | None = None
    ) -> None:
        """Queue ``handler(snapshot)``; ``epoch`` is when it was made, ``name`` its subscriber.

        Returns at once while fewer than ``max_pending`` calls wait; else waits for room.
        """
        self._submitted += 1
        self._last_call_of[epoch] = self._submitted
        job = (handler, snapshot, _Mode(self._device_type), epoch, name)
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            self._put(job, warn=True)
            # Once the worker has timed a queue's worth of calls, they show who is slow.
            if not self._warned and self._finished >= self.max_pending:
                self._warn_slow()

    def _put(self, job: Any, warn: bool = False) -> None:
        # In steps, so that a worker that died cannot leave the loop waiting for ever.
        while True:
            try:
                self._queue.put(job, timeout=_POLL)
                return
            except queue.Full:
                self._check_alive()
                if warn and not self._warned:  # one call holds the loop up that long
                    self._warn_slow()

    def _check_alive(self) -> None:
        if not self._thread.is_alive():
            raise RuntimeError("eventrunner: the background worker thread stopped unexpectedly")

    def _warn_slow(self) -> None:
        self._warned = True
        seconds = dict(self._seconds)  # a copy: the worker adds to it meanwhile
        running = self._running
        if running is not None:
            name, started = running
            seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - started
        slowest = max(seconds, key=seconds.__getitem__) if seconds else "?"
        log.warning(
            "eventrunner: background subscriber %s is slower than the loop: %d calls wait, "
            "the most allowed, and the loop now waits whenever the queue is full (it has "
            "taken %.3f s so far; make it faster, or run it less often with every=N)",
            slowest,
            self.max_pending,
            seconds.get(slowest, 0.0),
        )

    async def _serve(self) -> None:
        # This event loop serves the background calls only, one at a time: between calls it
        # has nothing else to run, so waiting for the next one blocks nobody.
        get, perf = self._queue.get, time.perf_counter
        while (job := get()) is not _STOP:
            handler, snapshot, mode, epoch, name = job
            job = None  # the snapshot goes as soon as the call is done
            if name is None:
                name = getattr(handler, "__qualname__", None) or repr(handler)
            started = perf()
            self._running = (name, started)
            error = await _call(handler, snapshot, mode)
            handler = snapshot = None
            self._running = None
            self._seconds[name] = self._seconds.get(name, 0.0) + perf() - started
            with self._done:
                self._finished += 1
                if error is not None:
                    self._errors.append((epoch, error))
                self._done.notify_all()
            error = None

    def wait(self, up_to_epoch: int | None = None) -> None:
        """Wait for the calls made up to epoch ``up_to_epoch`` (all when None).

        Raises the first error among them; later ones are logged.
        """
        if up_to_epoch is None:
            target, self._last_call_of = self._submitted, {}
        else:
            # Calls are numbered in order and epochs never decrease: the calls of epochs up
            # to ``up_to_epoch`` are the first ``target`` ones.
            target = max(
                (n for epoch, n in self._last_call_of.items() if epoch <= up_to_epoch), default=0
            )
            self._last_call_of = {
                epoch: n for epoch, n in self._last_call_of.items() if epoch > up_to_epoch
            }
        with self._done:
            while self._finished < target:
                self._check_alive()
                self._done.wait(_POLL)
            errors, self._errors = _split(self._errors, up_to_epoch)
        for error in errors[1:]:
            log.error("eventrunner: background subscriber also failed: %r", error)
        if errors:
            raise errors[0]

    def close(self) -> None:
        """Finish the queued calls and stop the thread. Errors are raised by :meth:`wait`."""
        if self._thread.is_alive():
            self._put(_STOP)
            self._thread.join()


async def _call(handler: Callable[[Any], Any], snapshot: Any, mode: _Mode) -> BaseException | None:
    """Run one background call in the loop's mode; the error it raised, if any."""
    try:
        with contextlib.ExitStack() as stack:
            mode.enter(stack)
            result = handler(snapshot)
            if inspect.isawaitable(result):
                await result
    except BaseException as error:  # raised in the loop by wait()
        return error
    return None


def _split(
    errors: list[tuple[int, BaseException]], up_to_epoch: int | None
) -> tuple[list[BaseException], list[tuple[int, BaseException]]]:
    """The errors of calls made up to ``up_to_epoch`` (all when None), and the others."""
    due = [error for epoch, error in errors if up_to_epoch is None or epoch <= up_to_epoch]
    rest = [item for item in errors if up_to_epoch is not None and item[0] > up_to_epoch]
    return due, rest
