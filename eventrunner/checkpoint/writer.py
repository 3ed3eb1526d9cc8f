"""The checkpoint writer: runs each write inline or on a thread, at most one in flight."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor


class CheckpointWriter:
    """Runs checkpoint writes inline or on one worker thread, at most one in flight.

    A background write's error is raised by the next :meth:`submit` or by :meth:`wait`. The
    worker is started by the first background write and kept for the next ones; :meth:`close`
    ends it. An interpreter that exits while a write runs waits for it (``concurrent.futures``
    joins its workers at exit), so a checkpoint is never left half-written by the exit.
    """

    def __init__(self, background: bool = True) -> None:
        self.background = background
        self._executor: ThreadPoolExecutor | None = None
        self._pending: Future[None] | None = None
        self._what = ""

    def submit(self, what: str, job: Callable[[], None]) -> None:
        """Run ``job`` (after the previous one finished); ``what`` names it in errors."""
        self.wait()
        if not self.background:
            job()
            return
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="eventrunner-checkpoint")
        self._what = what
        self._pending = self._executor.submit(job)

    @property
    def busy(self) -> bool:
        """Whether a background write is running."""
        return self._pending is not None and not self._pending.done()

    def wait(self) -> None:
        """Wait for the write in flight; raise its error, if any."""
        pending, self._pending = self._pending, None
        error = pending.exception() if pending is not None else None
        if error is not None:
            with contextlib.suppress(AttributeError):
                error.add_note(f"eventrunner: raised by the background save of {self._what}")
            raise error

    def close(self) -> None:
        """Wait for the write in flight (raising its error), then end the worker thread."""
        executor, self._executor = self._executor, None
        try:
            self.wait()
        finally:
            if executor is not None:
                executor.shutdown()
