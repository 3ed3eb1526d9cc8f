"""Fetches batches ahead of the loop and moves them to the runner's device.

A producer thread fills a bounded queue (``prefetch`` batches); the loop takes from it.
Errors raised by the loader reach the loop with their type and traceback; leaving the
``prefetched`` context early stops the producer and drops what it had fetched.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch

_END = object()


def move_to_device(obj: Any, device: torch.device, non_blocking: bool = False) -> Any:
    """Every tensor in a (nested) dict/list/tuple moved to ``device``; other values untouched."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=non_blocking)
    if isinstance(obj, dict):
        return {key: move_to_device(value, device, non_blocking) for key, value in obj.items()}
    if isinstance(obj, list):
        return [move_to_device(value, device, non_blocking) for value in obj]
    if isinstance(obj, tuple):
        moved = [move_to_device(value, device, non_blocking) for value in obj]
        return type(obj)(*moved) if hasattr(obj, "_fields") else tuple(moved)
    return obj


class _Failure:
    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


class _Producer:
    def __init__(self, loader: Iterable[Any], transform: Callable[[Any], Any], size: int):
        self._loader = loader
        self._transform = transform
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=size)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="eventrunner-prefetch", daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            for batch in self._loader:
                if not self._put(self._transform(batch)):
                    return
        except BaseException as error:
            self._put(_Failure(error))
            return
        self._put(_END)

    def __iter__(self) -> Iterator[Any]:
        get = self._queue.get
        while True:
            item = get()
            if item is _END:
                return
            if type(item) is _Failure:
                raise item.error
            yield item

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(queue.Empty):
            while True:
                self._queue.get_nowait()
        self._thread.join()


@contextlib.contextmanager
def prefetched(
    loader: Iterable[Any], transform: Callable[[Any], Any], prefetch: int = 2
) -> Iterator[Iterator[Any]]:
    """Iterate ``transform(batch)`` for each batch of ``loader``, ``prefetch`` batches ahead."""
    if prefetch <= 0:
        yield map(transform, loader)
        return
    producer = _Producer(loader, transform, prefetch)
    try:
        yield iter(producer)
    finally:
        producer.close()
