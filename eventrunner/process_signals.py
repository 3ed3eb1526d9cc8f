"""A process signal handler of ours for the length of a block (Ctrl-C, SIGTERM)."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any


@contextlib.contextmanager
def temporary_handler(
    signum: int, handler: Callable[[int, Any], Any], replaces: Callable[[Any], bool]
) -> Iterator[None]:
    """``handler`` for ``signum`` within the block, the previous one back after it.

    Only on the main thread (the only one Python delivers signals to), and only over a handler
    ``replaces(previous)`` accepts (the default one, say): one the user installed is left alone.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signum)
    if not replaces(previous):
        yield
        return
    signal.signal(signum, handler)
    try:
        yield
    finally:
        if signal.getsignal(signum) is handler:
            signal.signal(signum, previous)
