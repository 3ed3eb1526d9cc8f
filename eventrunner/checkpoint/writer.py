"""The checkpoint writer: runs each write inline or on a thread, at most one in flight."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable


class CheckpointWriter:
    """Runs checkpoint writes inline or on a thread, at most one in flight.

    A background write's error is raised by the next :meth:`submit` or by :meth:`wait`.
    """

    def __init__(self, background: bool = True) -> None:
        self.background = background
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._what = ""

    def submit(self, what: str, job: Callable[[], None]) -> None:
        """Run ``job`` (after the previous one finished); ``what`` names it in errors."""
        self.wait()
        if not self.background:
            job()
            return

        def run() -> None:
            try:
                job()
            except BaseException as error:  # handed to the loop by wait()
                self._error = error

        self._what = what
        # Not a daemon: an interpreter that exits while a checkpoint is half-written waits.
        self._thread = threading.Thread(target=run, name="eventrunner-checkpoint")
        self._thread.start()

    @property
    def busy(self) -> bool:
        """Whether a background write is running."""
        return self._thread is not None and self._thread.is_alive()

    def wait(self) -> None:
        """Wait for the write in flight; raise its error, if any."""
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join()
        error, self._error = self._error, None
        if error is not None:
            with contextlib.suppress(AttributeError):
                error.add_note(f"eventrunner: raised by the background save of {self._what}")
            raise error
