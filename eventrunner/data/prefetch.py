"""Fetches batches ahead of the loop and moves them to the runner's device.

A producer thread fetches up to ``prefetch`` batches ahead and hands them over through a
plain queue (a few µs; anyio's cross-thread calls cost 3-200 µs). On
CUDA every tensor is pinned and copied with ``non_blocking=True`` on a side stream that the
compute stream waits on (:mod:`eventrunner.data.device`). On the CPU a thread only pays when
fetching releases the GIL, so each loader's first batches are timed both ways there and the
faster way is kept (:mod:`eventrunner.data.prefetch_trial`).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch

from eventrunner.checks import is_int
from eventrunner.data.device import CudaMover, move_to_device
from eventrunner.data.prefetch_trial import Plan, trial
from eventrunner.data.skip import PassFrom

__all__ = [
    "MAX_PREFETCH",
    "STOP_TIMEOUT",
    "Prefetcher",
    "check_prefetch",
    "move_to_device",
    "prefetched",
]

log = logging.getLogger("eventrunner")

Convert = Callable[[Any], Any]

#: The most batches ``prefetch`` may fetch ahead: each one waiting is held in memory.
MAX_PREFETCH = 1024
#: Seconds a closing pass waits for the producer's current fetch before leaving it running.
STOP_TIMEOUT = 1.0


def check_prefetch(value: Any, what: str = "prefetch") -> int:
    """``value`` when it is an int from 0 to :data:`MAX_PREFETCH`; else an error naming ``what``."""
    if not is_int(value):
        raise TypeError(f"{what} must be an int (batches fetched ahead), got {value!r}")
    if not 0 <= value <= MAX_PREFETCH:
        raise ValueError(
            f"{what} must be from 0 to {MAX_PREFETCH} (batches fetched ahead), got {value!r}"
        )
    return value


def _release_workers(it: Any, loader: Any) -> None:
    """Stop the worker processes of a DataLoader iterator that a failed pass leaves behind.

    Otherwise they live as long as the iterator, which the exception's traceback (kept in
    ``runner.exception``) holds. A persistent-workers loader keeps that iterator for its next
    pass: it is dropped so that the next pass starts new workers.
    """
    shutdown = getattr(it, "_shutdown_workers", None)
    if not callable(shutdown):
        return
    shutdown()
    if getattr(loader, "_iterator", None) is it:
        loader._iterator = None


def _close_iterator(it: Any) -> None:
    close = getattr(it, "close", None)
    if callable(close):
        close()


class _Failure:
    """An exception raised by the loader (or the conversion), carried to the loop."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


_END = object()


class _Pass:
    """One pass over a loader: its iterator, and the producer thread while there is one.

    It fetches either way, inline (:meth:`from_loop`) or on the producer thread
    (:meth:`from_thread`), and can switch between them mid-pass without losing a batch; the
    trial (:func:`~eventrunner.data.prefetch_trial.trial`) does.
    """

    def __init__(
        self,
        loader: Iterable[Any],
        convert: Convert,
        depth: int,
        device: torch.device,
        key: str | None,
    ) -> None:
        self._depth = depth
        self._key = key
        self._mover = CudaMover(device) if device.type == "cuda" else None
        if device.type in ("cpu", "cuda"):
            self._prepare = convert  # the CUDA copy is the mover's
        else:
            self._prepare = lambda batch: move_to_device(convert(batch), device, non_blocking=True)
        self._ready: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._credits: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self.ended = False  # the loader is exhausted (seen while timing)
        self._left_running = False  # the producer was left inside a fetch that did not return
        self._loader = loader
        # Created here, on the loop's thread, and its first batch is fetched there too: a
        # sampler draws its seed from the global RNG then, at the same point every run.
        self._it: Iterator[Any] | None = iter(loader)

    # ------------------------------------------------------------------ producer

    @property
    def producing(self) -> bool:
        return self._thread is not None

    def _produce(self) -> None:
        it, prepare, mover = self._it, self._prepare, self._mover
        ready, credits = self._ready, self._credits
        assert it is not None
        # The intra-op thread count is per thread for OpenMP: without this a collate's torch
        # ops here may use every core and fight the loop's (measured: ~10% slower batches).
        torch.set_num_threads(torch.get_num_threads())
        try:
            with torch.cuda.stream(mover.stream) if mover else contextlib.nullcontext():
                while True:
                    credit = credits.get()  # a free slot: at most `depth` batches wait ahead
                    if self._stopping:
                        return
                    try:
                        batch = next(it)
                    except StopIteration:
                        ready.put(_END)
                        return
                    batch = prepare(batch)
                    ready.put(batch if mover is None else mover.put(batch, credit))
        except BaseException as error:  # re-raised in the loop, traceback included
            ready.put(_Failure(error))

    def start(self) -> None:
        """Start the producer on the pass's iterator, with ``depth`` free slots."""
        self._stopping = False
        for _ in range(self._depth):
            self._credits.put(None)
        self._thread = threading.Thread(
            target=self._produce, name=f"eventrunner-prefetch-{self._key}", daemon=True
        )
        self._thread.start()

    def _stop(self, timeout: float | None = None) -> list[Any]:
        """Stop the producer after its current fetch; what it had fetched, in order.

        With a ``timeout``, a producer still inside the loader after it is left running (a
        daemon thread that stops once the fetch returns) and nothing is returned.
        """
        thread = self._thread
        if thread is None:
            return []
        self._stopping = True
        self._credits.put(None)  # wakes a producer waiting for a slot
        thread.join(timeout)
        self._thread = None
        if thread.is_alive():
            self._left_running = True
            log.warning(
                "eventrunner: loader %r: the prefetch thread is still inside the loader's "
                "__next__ after %.1f s; it is left running as a daemon thread and stops when "
                "that fetch returns",
                self._key,
                timeout,
            )
            return []
        items = []
        with contextlib.suppress(queue.Empty):
            while True:
                items.append(self._ready.get_nowait())
        with contextlib.suppress(queue.Empty):
            while True:
                self._credits.get_nowait()
        return items

    # ------------------------------------------------------------------ consumer

    def _unwrap(self, item: Any) -> Any:
        """A fetched item as the loop gets it; a loader's error is raised here."""
        if type(item) is _Failure:
            error, item.error = item.error, None
            raise error  # type: ignore[misc]
        return item if self._mover is None else self._mover.take(item)

    def from_thread(self) -> Iterator[Any]:
        """Batches from the producer: the per-batch path of the prefetching loop."""
        get, give, mover = self._ready.get, self._credits.put, self._mover
        if mover is None:
            while True:
                item = get()
                give(None)
                if item is _END:
                    return
                if type(item) is _Failure:
                    self._unwrap(item)
                yield item
        else:
            take, mark = mover.take, mover.mark
            while (item := get()) is not _END:
                batch = self._unwrap(item) if type(item) is _Failure else take(item)
                give(mark())
                yield batch

    def from_loop(self) -> Iterator[Any]:
        """Batches fetched on the loop's thread, when it asks for them."""
        assert self._it is not None
        if self._mover is None:
            return map(self._prepare, self._it)
        device = self._mover.device
        return (move_to_device(self._prepare(b), device, non_blocking=True) for b in self._it)

    def handback(self) -> Iterator[Any]:
        """Stop the producer; yield what it had fetched (not timed: it was ready)."""
        for item in self._stop():
            if item is _END:
                self.ended = True
                return
            yield self._unwrap(item)

    def threaded(self) -> Iterator[Any]:
        """The first batch fetched inline (the loop waits for it anyway), then the thread."""
        assert self._it is not None
        for batch in self._it:
            first = self._prepare(batch)
            break
        else:
            return
        if self._mover is not None:
            first = self._mover.take(self._mover.put(first))  # its copy goes first
        self.start()
        yield first
        yield from self.from_thread()

    def close(self, failed: bool = False) -> None:
        """Stop the producer, drop what it fetched, close the loader's iterator.

        A producer stuck in a fetch is not waited for (a hung data source must not hang
        Ctrl-C). After a failure a DataLoader's worker processes are stopped at once.
        """
        self._stop(STOP_TIMEOUT)
        it, self._it = self._it, None
        if not self._left_running:  # a generator running on another thread cannot be closed
            _close_iterator(it)
        if failed:
            _release_workers(it, self._loader)


def _in_memory(loader: Any) -> bool:
    # Batches already held in a list or tuple cost nothing to fetch on the CPU.
    return isinstance(loader, list | tuple)


class Prefetcher:
    """Fetches each loader pass's batches ahead of the loop; remembers how best to, per loader.

    ``batches(...)`` yields the converted batches of one pass, on ``device``. With ``depth``
    0 they are fetched when the loop asks for them. On CUDA a producer thread copies them
    ahead on a side stream. Elsewhere the first batches of each loader are timed inline and
    with the producer thread, in alternating rounds (``TRIAL_ROUNDS`` x ``TRIAL_BATCHES``
    each), and the thread is kept only when it is ``THREAD_MARGIN`` faster; later passes over
    the same loader reuse the choice. A list or tuple of batches on the CPU is iterated inline
    at once. ``mode="thread"`` or ``"inline"`` forces a way.
    """

    def __init__(self, mode: str = "auto") -> None:
        if mode not in ("auto", "thread", "inline"):
            raise ValueError(f"Prefetcher mode must be 'auto', 'thread' or 'inline', got {mode!r}")
        self.mode = mode
        self._plans: dict[str | None, Plan] = {}

    def _plan(self, key: str | None, loader: Any) -> Plan:
        if isinstance(loader, PassFrom):  # one pass's view: the choice is the loader's
            loader = loader.loader
        plan = self._plans.get(key)
        if plan is None or plan.loader is not loader:
            plan = self._plans[key] = Plan(loader)
        return plan

    def choices(self) -> dict[str | None, str]:
        """How each measured loader is fetched: ``thread``, ``inline`` or ``measuring``."""
        names = {True: "thread", False: "inline", None: "measuring"}
        return {key: names[plan.use_thread] for key, plan in self._plans.items()}

    @contextlib.contextmanager
    def batches(
        self,
        loader: Iterable[Any],
        convert: Convert,
        depth: int = 2,
        device: torch.device | str = "cpu",
        key: str | None = None,
    ) -> Iterator[Iterator[Any]]:
        """The batches of one pass over ``loader``, ``convert``-ed and on ``device``.

        Leaving the block, normally or by an exception, stops the producer thread and drops
        the batches it had fetched; an exception raised by the loader reaches the loop with
        its own type and traceback.
        """
        check_prefetch(depth)
        device = torch.device(device)
        mode = self.mode
        if mode == "auto" and device.type == "cpu" and _in_memory(loader):
            mode = "inline"
        if depth == 0 or (mode == "inline" and device.type == "cpu"):
            with _plain_pass(loader, convert, device) as batches:
                yield batches
            return
        run = _Pass(loader, convert, depth, device, key)
        try:
            if mode == "thread" or (mode == "auto" and device.type == "cuda"):
                yield run.threaded()
            elif mode == "inline":
                yield run.from_loop()
            else:
                plan = self._plan(key, loader)
                if plan.use_thread is None:
                    yield trial(run, plan, key)
                else:
                    yield run.threaded() if plan.use_thread else run.from_loop()
        except BaseException:
            run.close(failed=True)
            raise
        run.close()


@contextlib.contextmanager
def _plain_pass(loader: Iterable[Any], convert: Convert, device: torch.device) -> Iterator[Any]:
    """The batches fetched on the loop's thread when it asks for them; no producer."""
    it = iter(loader)
    try:
        if device.type == "cpu":
            yield map(convert, it)
        else:
            yield (move_to_device(convert(b), device, non_blocking=True) for b in it)
    except BaseException:
        _close_iterator(it)
        _release_workers(it, loader)
        raise


@contextlib.contextmanager
def prefetched(
    loader: Iterable[Any],
    transform: Convert,
    prefetch: int = 2,
    device: torch.device | str = "cpu",
    mode: str = "auto",
) -> Iterator[Iterator[Any]]:
    """Iterate ``transform(batch)`` for each batch of ``loader``, ``prefetch`` batches ahead.

    A one-pass :class:`Prefetcher`; ``mode="thread"`` always uses the producer thread.
    """
    with Prefetcher(mode).batches(loader, transform, prefetch, device) as batches:
        yield batches
