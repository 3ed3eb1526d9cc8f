"""Runs the async loop from synchronous code, also where an event loop is already running."""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio

T = TypeVar("T")


def _loop_is_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def run_sync(fn: Callable[..., Awaitable[T]], **kwargs: Any) -> T:
    """``anyio.run(fn(**kwargs))``; inside a running loop (Jupyter), on a fresh thread.

    The training loop runs synchronously between its awaits, so it would block a running
    loop anyway: giving it a thread of its own keeps the caller's loop untouched.
    """
    call = functools.partial(fn, **kwargs)
    if not _loop_is_running():
        return anyio.run(call)
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = anyio.run(call)
        except BaseException as error:  # re-raised on the caller's thread
            outcome["error"] = error

    thread = threading.Thread(target=target, name="eventrunner-train")
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]
