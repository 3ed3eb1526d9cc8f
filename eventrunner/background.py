"""Background subscribers: run in order, off the loop's path, on an event loop of their own.

The loop hands each call (handler, runner snapshot, grad/autocast mode) to a worker thread
through a plain queue, so submitting never waits. The worker runs the calls one after another
(``async def`` handlers are awaited there, under anyio). A call made during epoch ``e`` has
finished, and its error is raised, by the end of epoch ``e + 1`` at the latest (the loop
waits for it there); ``experiment_end`` waits for all of them.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import anyio
import torch

log = logging.getLogger("eventrunner")

_STOP = object()


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
    """Runs submitted handlers one after another on a thread with its own anyio event loop."""

    def __init__(self, device_type: str = "cpu") -> None:
        self._device_type = device_type
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._jobs: list[tuple[int, Future[Any]]] = []
        self._thread = threading.Thread(
            target=anyio.run, args=(self._serve,), name="eventrunner-background", daemon=True
        )
        self._thread.start()

    def submit(self, handler: Callable[[Any], Any], snapshot: Any, epoch: int) -> None:
        """Queue ``handler(snapshot)``; returns at once. ``epoch`` is when it was made."""
        future: Future[Any] = Future()
        self._jobs.append((epoch, future))
        self._queue.put((handler, snapshot, _Mode(self._device_type), future))

    async def _serve(self) -> None:
        # This event loop serves the background calls only, one at a time: between calls it
        # has nothing else to run, so waiting for the next one blocks nobody.
        get = self._queue.get
        while (job := get()) is not _STOP:
            handler, snapshot, mode, future = job
            try:
                with contextlib.ExitStack() as stack:
                    mode.enter(stack)
                    result = handler(snapshot)
                    if inspect.isawaitable(result):
                        await result
            except BaseException as error:  # raised in the loop by wait()
                future.set_exception(error)
            else:
                future.set_result(None)

    def wait(self, up_to_epoch: int | None = None) -> None:
        """Wait for the calls made up to epoch ``up_to_epoch`` (all when None).

        Raises the first error among them; later ones are logged.
        """
        if up_to_epoch is None:
            done, self._jobs = self._jobs, []
        else:
            done = [job for job in self._jobs if job[0] <= up_to_epoch]
            self._jobs = [job for job in self._jobs if job[0] > up_to_epoch]
        first_error = None
        for _, future in done:
            error = future.exception()
            if error is None:
                continue
            if first_error is None:
                first_error = error
            else:
                log.error("eventrunner: background subscriber also failed: %r", error)
        if first_error is not None:
            raise first_error

    def close(self) -> None:
        """Finish the queued calls and stop the thread. Errors are raised by :meth:`wait`."""
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join()
