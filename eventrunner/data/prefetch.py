"""Fetches batches ahead of the loop and moves them to the runner's device.

A producer thread fetches up to ``prefetch`` batches ahead and hands them over through a
plain queue (a few µs; anyio's cross-thread calls cost 3-200 µs, see ARCHITECTURE.md). On
CUDA every tensor is pinned and copied with ``non_blocking=True`` on a side stream that the
compute stream waits on. On the CPU a thread only pays when fetching releases the GIL (sleep,
I/O, torch ops); over in-memory batches it fights the loop for the GIL. So each loader's first
batches are timed both ways there and the faster way is kept (see :class:`Prefetcher`).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import statistics
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch

log = logging.getLogger("eventrunner")

Convert = Callable[[Any], Any]

#: Batches timed per way and round; the ways alternate (inline first) for TRIAL_ROUNDS rounds.
TRIAL_BATCHES = 5
TRIAL_ROUNDS = 3
#: The thread must be this much faster per batch to be kept (it costs a core and GIL traffic).
THREAD_MARGIN = 0.10
#: The most batches ``prefetch`` may fetch ahead: each one waiting is held in memory.
MAX_PREFETCH = 1024
#: Seconds a closing pass waits for the producer's current fetch before leaving it running.
STOP_TIMEOUT = 1.0


def check_prefetch(value: Any, what: str = "prefetch") -> int:
    """``value`` when it is an int from 0 to :data:`MAX_PREFETCH`; else an error naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, int):
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


def _pinned_to_device(obj: Any, device: torch.device) -> Any:
    """Like :func:`move_to_device`, pinning host tensors first so the copy is truly async."""
    if isinstance(obj, torch.Tensor):
        if obj.device.type == "cpu" and not obj.is_pinned():
            obj = obj.pin_memory()
        return obj.to(device, non_blocking=True)
    if isinstance(obj, dict):
        return {key: _pinned_to_device(value, device) for key, value in obj.items()}
    if isinstance(obj, list):
        return [_pinned_to_device(value, device) for value in obj]
    if isinstance(obj, tuple):
        moved = [_pinned_to_device(value, device) for value in obj]
        return type(obj)(*moved) if hasattr(obj, "_fields") else tuple(moved)
    return obj


def _record_stream(obj: Any, stream: Any) -> None:
    """Tell the caching allocator that ``stream`` uses every CUDA tensor of ``obj``."""
    if isinstance(obj, torch.Tensor):
        if obj.is_cuda:
            obj.record_stream(stream)
    elif isinstance(obj, dict):
        for value in obj.values():
            _record_stream(value, stream)
    elif isinstance(obj, list | tuple):
        for value in obj:
            _record_stream(value, stream)


class _CudaMover:
    """Copies batches on a side stream; the compute stream waits for each copy.

    ``put`` (producer thread) issues the copy on the side stream and records an event after
    it. ``take`` (loop thread) makes the compute stream wait on that event, a device-side wait
    with no host sync, and records the compute stream on every tensor so that the allocator
    does not reuse a batch's memory while kernels that read it are still queued. ``mark``
    records the compute stream's progress when a batch is handed out; the producer waits for
    it before copying the batch that takes that slot, so the host never runs more than
    ``prefetch`` batches ahead of the GPU and at most ``prefetch + 1`` batches are on it.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.stream = torch.cuda.Stream(device)

    def put(self, batch: Any, after: Any = None) -> tuple[Any, Any]:
        if after is not None:
            after.synchronize()  # on the producer thread: the loop itself never waits here
        with torch.cuda.stream(self.stream):
            moved = _pinned_to_device(batch, self.device)
            copied = torch.cuda.Event()
            copied.record(self.stream)
        return moved, copied

    def take(self, item: tuple[Any, Any]) -> Any:
        moved, copied = item
        stream = torch.cuda.current_stream(self.device)
        stream.wait_event(copied)
        _record_stream(moved, stream)
        return moved

    def mark(self) -> Any:
        event = torch.cuda.Event()
        event.record(torch.cuda.current_stream(self.device))
        return event


class _Failure:
    """An exception raised by the loader (or the conversion), carried to the loop."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


_END = object()


class _Plan:
    """What was measured for one loader: seconds per batch inline and with the thread."""

    __slots__ = ("inline", "loader", "thread", "use_thread")

    def __init__(self, loader: Any) -> None:
        self.loader = loader
        self.inline: list[float] = []
        self.thread: list[float] = []
        self.use_thread: bool | None = None

    def next_way(self) -> str | None:
        """The way to time next (``inline`` first, then alternating), None when done."""
        total = TRIAL_ROUNDS * TRIAL_BATCHES
        if len(self.inline) >= total and len(self.thread) >= total:
            return None
        return "inline" if len(self.inline) <= len(self.thread) else "thread"

    def decide(self, key: str | None) -> bool:
        inline, thread = statistics.median(self.inline), statistics.median(self.thread)
        self.use_thread = thread < inline * (1.0 - THREAD_MARGIN)
        log.debug(
            "eventrunner: loader %r: %.0f µs per batch inline, %.0f µs with a prefetch thread: %s",
            key,
            inline * 1e6,
            thread * 1e6,
            "thread" if self.use_thread else "inline",
        )
        return self.use_thread


class _Pass:
    """One pass over a loader: its iterator, and the producer thread while there is one."""

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
        self._mover = _CudaMover(device) if device.type == "cuda" else None
        if device.type in ("cpu", "cuda"):
            self._prepare = convert  # the CUDA copy is the mover's
        else:
            self._prepare = lambda batch: move_to_device(convert(batch), device, non_blocking=True)
        self._ready: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._credits: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._ended = False  # the loader is exhausted (seen while timing)
        self._left_running = False  # the producer was left inside a fetch that did not return
        self._loader = loader
        # Created here, on the loop's thread, and its first batch is fetched there too: a
        # sampler draws its seed from the global RNG then, at the same point every run.
        self._it: Iterator[Any] | None = iter(loader)

    # ------------------------------------------------------------------ producer

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

    def _start(self) -> None:
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

    def _threaded(self) -> Iterator[Any]:
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

    def _inline(self) -> Iterator[Any]:
        """Batches fetched on the loop's thread, when it asks for them."""
        assert self._it is not None
        if self._mover is None:
            return map(self._prepare, self._it)
        device = self._mover.device
        return (move_to_device(self._prepare(b), device, non_blocking=True) for b in self._it)

    def _timed(self, source: Iterator[Any], samples: list[float]) -> Iterator[Any]:
        """Yield from ``source``, recording ``TRIAL_BATCHES`` times between requests (fetch +
        step); the first interval, which holds the way's start-up, is left out."""
        perf = time.perf_counter
        last = None
        for batch in source:
            yield batch
            now = perf()
            if last is not None:
                samples.append(now - last)
                if len(samples) % TRIAL_BATCHES == 0:
                    return
            last = now
        self._ended = True

    def _handback(self) -> Iterator[Any]:
        """Stop the producer; yield what it had fetched (not timed: it was ready)."""
        for item in self._stop():
            if item is _END:
                self._ended = True
                return
            yield self._unwrap(item)

    def trial(self, plan: _Plan) -> Iterator[Any]:
        """Time both ways in alternating rounds; go on with the faster one.

        Rounds alternate so that a burst of load on the machine hits both ways alike. A
        loader too short for the whole measurement goes on with it in its next pass.
        """
        self._ended = False
        while (way := plan.next_way()) is not None:
            if way == "thread":
                if self._thread is None:
                    self._start()
                yield from self._timed(self._threaded(), plan.thread)
            else:
                yield from self._handback()
                if not self._ended:
                    yield from self._timed(self._inline(), plan.inline)
            if self._ended:
                return
        if plan.decide(self._key):
            if self._thread is None:
                self._start()
            yield from self._threaded()
        else:
            yield from self._handback()
            if not self._ended:
                yield from self._inline()

    def inline(self) -> Iterator[Any]:
        return self._inline()

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
        self._start()
        yield first
        yield from self._threaded()

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
        self._plans: dict[str | None, _Plan] = {}

    def _plan(self, key: str | None, loader: Any) -> _Plan:
        plan = self._plans.get(key)
        if plan is None or plan.loader is not loader:
            plan = self._plans[key] = _Plan(loader)
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
                yield run.inline()
            else:
                plan = self._plan(key, loader)
                if plan.use_thread is None:
                    yield run.trial(plan)
                else:
                    yield run.threaded() if plan.use_thread else run.inline()
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
