"""Runs the async loop from synchronous code, also where an event loop is already running.

``run_sync`` is what ``Runner.train`` calls: ``anyio.run`` in a plain script, a thread of its
own inside a running loop (Jupyter). ``interrupts_raise`` makes Ctrl-C stop the loop at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import ctypes
import functools
import signal
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import anyio

from eventrunner.process_signals import temporary_handler

T = TypeVar("T")


def _loop_is_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _cancels_a_task(handler: Any) -> bool:
    # asyncio.Runner (used by asyncio.run and anyio.run) turns the first Ctrl-C into a
    # cancellation of the main task, delivered at its next suspension: a training loop that
    # awaits nothing between batches would go on to the end of the run.
    func = getattr(handler, "func", None)
    return isinstance(handler, functools.partial) and getattr(func, "__name__", "") == "_on_sigint"


@contextlib.contextmanager
def interrupts_raise() -> Iterator[None]:
    """Within the block, Ctrl-C raises KeyboardInterrupt where the loop is, not at an await.

    Only on the main thread, and only over Python's default handler or asyncio's; a handler
    the user installed is left alone.
    """

    def replaces(previous: Any) -> bool:
        return previous is signal.default_int_handler or _cancels_a_task(previous)

    with temporary_handler(signal.SIGINT, _raise_interrupt, replaces):
        yield


def _interrupt_thread(thread: threading.Thread) -> None:
    """Raise KeyboardInterrupt in ``thread`` at its next bytecode (the only way in CPython)."""
    if thread.ident is not None:
        ctypes.pythonapi.PyThreadState_SetAsyncExc(
            ctypes.c_ulong(thread.ident), ctypes.py_object(KeyboardInterrupt)
        )


def run_sync(fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
    """``anyio.run(fn(*args, **kwargs))``; inside a running loop (Jupyter), on a thread of its own.

    The training loop runs synchronously between its awaits, so it would block a running
    loop anyway: giving it a thread keeps the caller's loop untouched. There, Ctrl-C (a
    KeyboardInterrupt in the caller's thread) is passed on to the training thread, which stops
    the way an interrupted script does (``exception``, ``experiment_end``, no thread left)
    before the interrupt is re-raised here.
    """
    call = functools.partial(fn, *args, **kwargs)
    if not _loop_is_running():
        with interrupts_raise():
            return anyio.run(call)
    outcome: dict[str, Any] = {}
    context = contextvars.copy_context()  # the caller's context variables carry over

    def target() -> None:
        try:
            outcome["value"] = context.run(anyio.run, call)
        except BaseException as error:  # re-raised on the caller's thread
            outcome["error"] = error

    thread = threading.Thread(target=target, name="eventrunner-train")
    thread.start()
    try:
        with interrupts_raise():
            thread.join()
    except KeyboardInterrupt:
        _interrupt_thread(thread)
        thread.join()
        raise
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]
