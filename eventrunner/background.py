"""Background subscribers: run in order, off the loop's path, on an anyio event loop thread.

A job started during epoch ``e`` has finished, and its error is raised, by the end of epoch
``e + 1`` at the latest; ``experiment_end`` waits for all of them. Jobs run with the grad and
autocast mode the loop had when it submitted them.
"""

from __future__ import annotations

import contextlib
import queue
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import anyio
import anyio.from_thread
import anyio.to_thread
import torch

_STOP = object()


class _Mode:
    """The loop's grad and autocast mode, re-entered on the worker thread."""

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
    """Runs submitted handlers one after another on a thread with its own event loop."""

    def __init__(self, device_type: str = "cpu") -> None:
        self._device_type = device_type
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._jobs: list[tuple[int, Future[Any]]] = []
        self._stack = contextlib.ExitStack()
        portal = self._stack.enter_context(anyio.from_thread.start_blocking_portal())
        self._consumer = portal.start_task_soon(self._consume)

    def submit(self, handler: Callable[[Any], Any], snapshot: Any, epoch: int) -> None:
        future: Future[Any] = Future()
        self._jobs.append((epoch, future))
        self._queue.put((handler, snapshot, _Mode(self._device_type), future))

    async def _consume(self) -> None:
        while True:
            job = await anyio.to_thread.run_sync(self._queue.get)
            if job is _STOP:
                return
            handler, snapshot, mode, future = job
            try:
                with contextlib.ExitStack() as stack:
                    mode.enter(stack)
                    result = handler(snapshot)
                    if hasattr(result, "__await__"):
                        await result
            except BaseException as exc:  # handed to the loop through the future
                future.set_exception(exc)
            else:
                future.set_result(None)

    def wait(self, up_to_epoch: int | None = None) -> None:
        """Wait for the jobs of epochs ``<= up_to_epoch`` (all when None); raise the first error."""
        done = [job for job in self._jobs if up_to_epoch is None or job[0] <= up_to_epoch]
        self._jobs = [job for job in self._jobs if job not in done]
        first_error = None
        for _, future in done:
            error = future.exception()
            if error is not None and first_error is None:
                first_error = error
        if first_error is not None:
            raise first_error

    def close(self) -> None:
        """Finish queued jobs, stop the thread. Errors are raised by :meth:`wait`, not here."""
        self._queue.put(_STOP)
        with contextlib.suppress(BaseException):
            self._consumer.result()
        self._stack.close()
