"""The trial that decides, per loader on the CPU, whether a producer thread pays.

A thread only pays when fetching releases the GIL (sleep, I/O, torch ops); over in-memory
batches it fights the loop for the GIL. So after ``TRIAL_BATCHES`` untimed warm-up batches, a
loader's batches are timed both ways, in alternating rounds (inline first) so that a burst of
load on the machine hits both ways alike, and the faster way is kept; :class:`Plan`
remembers the numbers and the choice.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Iterator
from typing import Any, Protocol

log = logging.getLogger("eventrunner")

#: Batches timed per way and round; the ways alternate (inline first) for TRIAL_ROUNDS rounds.
TRIAL_BATCHES = 5
TRIAL_ROUNDS = 3
#: The thread must be this much faster per batch to be kept (it costs a core and GIL traffic).
THREAD_MARGIN = 0.10


class Plan:
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
        """Keep the thread when its median batch is :data:`THREAD_MARGIN` faster."""
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


class Ways(Protocol):
    """One pass over a loader that can switch between fetching inline and on its thread."""

    #: Set once the loader is exhausted.
    ended: bool

    @property
    def producing(self) -> bool:
        """Whether the producer thread runs."""
        ...

    def start(self) -> None:
        """Start the producer thread on the pass's iterator."""
        ...

    def from_thread(self) -> Iterator[Any]:
        """Batches from the producer thread."""
        ...

    def handback(self) -> Iterator[Any]:
        """Stop the producer; yield what it had fetched (sets ``ended`` at the loader's end)."""
        ...

    def from_loop(self) -> Iterator[Any]:
        """Batches fetched on the loop's thread."""
        ...


def _timed(ways: Ways, source: Iterator[Any], samples: list[float]) -> Iterator[Any]:
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
    ways.ended = True


def _warm_up(ways: Ways) -> Iterator[Any]:
    count = 0
    for count, batch in enumerate(ways.from_loop(), 1):
        yield batch
        if count == TRIAL_BATCHES:
            return
    ways.ended = True


def _thread_ways(ways: Ways) -> Iterator[Any]:
    if not ways.producing:
        ways.start()
    return ways.from_thread()


def _loop_ways(ways: Ways) -> Iterator[Any]:
    yield from ways.handback()
    if not ways.ended:
        yield from ways.from_loop()


def trial(ways: Ways, plan: Plan, key: str | None) -> Iterator[Any]:
    """The batches of one pass, timing both ways while ``plan`` lacks numbers; then the
    faster one. A loader too short for the whole measurement goes on with it next pass."""
    ways.ended = False
    if not plan.inline and not plan.thread:
        # A loader's first batches run cold (allocator, caches): timing them would charge
        # the warm-up to the way timed first. They are fetched inline, untimed.
        yield from _warm_up(ways)
        if ways.ended:
            return
    while (way := plan.next_way()) is not None:
        if way == "thread":
            yield from _timed(ways, _thread_ways(ways), plan.thread)
        else:
            yield from ways.handback()
            if not ways.ended:
                yield from _timed(ways, ways.from_loop(), plan.inline)
        if ways.ended:
            return
    if plan.decide(key):
        yield from _thread_ways(ways)
    else:
        yield from _loop_ways(ways)
