"""Where a run's time goes: per subscriber and event, and per batch phase of each loader.

``runner.train(..., profile=True)`` (or ``eventrunner run --profile``) adds
:class:`ProfilerCallback`. At ``experiment_start`` it wraps every subscription of the bus and
``runner.handle_batch`` with a timer and adds two markers around each batch, so a run without
it pays nothing: the loop never checks a flag. At ``experiment_end`` it prints a table, writes
it to ``logdir/profile.txt`` (and the numbers to ``profile.json``), and warns about subscribers
whose ``batch_end`` takes more than ``warn_share`` of the step. The clocks and the report are
:mod:`eventrunner.profiling`'s; this subscriber installs them and removes them again.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from eventrunner.checkpoint import atomic_file
from eventrunner.events import BATCH_END, BATCH_START, LOADER_START, Callback, Subscription
from eventrunner.profiling import (
    BatchPhases,
    ProfilerWarning,
    SubscriptionStat,
    build_report,
    clock,
    render_report,
    timed,
)
from plugins._run_info import is_main_process

if TYPE_CHECKING:
    from eventrunner.state import RunState

__all__ = ["ProfilerCallback", "ProfilerWarning"]

_FIRST = -(10**9)  # the markers' orders: before and after every other subscriber
_LAST = 10**9


class ProfilerCallback(Callback):
    """Times each subscriber per event and each batch phase; prints and saves a table.

    Batch phases per loader: *data wait* (from the end of one batch, or of ``loader_start``,
    to the start of the next: the prefetch queue and the loop's bookkeeping), *handle_batch*,
    and *subscribers* (``batch_start`` + ``batch_end`` handlers and their dispatch); the
    *step* is ``handle_batch`` + subscribers. ``experiment_start`` handlers are not timed
    (the timers are installed then). Background subscribers are timed on their worker
    (``(bg)`` in the table); a job still running at ``experiment_end`` is not counted.

    ``warn_share``: warn (``ProfilerWarning``) when a subscriber's ``batch_end`` time is more
    than this share of the step time. The backward and optimizer subscribers are the step's
    own work and are exempt (``exempt_kinds``).

    Example: ``runner.train(..., profile=True)``, or
    ``callbacks=[ProfilerCallback(warn_share=0.1)]``.
    """

    kind = "profiler"

    def __init__(
        self,
        logdir: str | os.PathLike[str] | None = None,
        warn_share: float = 0.25,
        exempt_kinds: Iterable[str] = ("backward", "optimizer"),
        stream: TextIO | None = None,
        print_table: bool = True,
    ) -> None:
        # Last in every event: its experiment_end reports after the others' have been timed.
        super().__init__(order=_LAST)
        if not warn_share > 0:
            raise ValueError(f"ProfilerCallback: warn_share must be > 0, got {warn_share!r}")
        self.logdir = logdir
        self.warn_share = float(warn_share)
        self.exempt_kinds = frozenset(exempt_kinds)
        self.stream = stream
        self.print_table = print_table
        self.stats: dict[int, SubscriptionStat] = {}
        self.batch_phases = BatchPhases()
        self.report: dict[str, Any] = {}
        self.table = ""
        self._bus: Any = None
        self._originals: dict[int, Callable[[Any], Any]] = {}
        self._markers: list[Subscription] = []
        self._t_run = 0.0

    @property
    def phases(self) -> dict[str, list[float]]:
        """Per loader: ``[batches, data wait s, step s, handle_batch s]`` so far."""
        return self.batch_phases.phases

    # ------------------------------------------------------------------ install

    def on_experiment_start(self, runner: RunState) -> None:
        self.stats = {}
        self.batch_phases = phases = BatchPhases()
        self.report = {}
        self.table = ""
        self._t_run = clock()
        # The loop's own bus, beyond RunState: only a profiler rewires the subscriptions.
        bus = self._bus = runner.bus
        self._originals = {}
        bus.wrap_handlers(self._wrap)
        self._markers = [
            bus.connect(LOADER_START, phases.loader_ready, order=_LAST, name="profiler"),
            bus.connect(BATCH_START, phases.batch_started, order=_FIRST, name="profiler"),
            bus.connect(BATCH_END, phases.batch_ended, order=_LAST, name="profiler"),
        ]
        self._wrap_handle_batch(runner)

    def _wrap(self, sub: Subscription) -> Callable[[Any], Any]:
        if getattr(sub.handler, "__self__", None) is self:
            return sub.handler
        stat = self.stats[sub.seq] = SubscriptionStat(sub)
        self._originals[sub.seq] = sub.handler
        return timed(sub.handler, stat, sub.is_async)

    def _wrap_handle_batch(self, runner: Any) -> None:
        self._unwrap_handle_batch(runner)  # one left by a run that failed before its report
        original = runner.__dict__.get("handle_batch")  # an instance attribute, if any
        handle_batch = self.batch_phases.timed_handle_batch(runner.handle_batch)
        handle_batch._eventrunner_profiled = (original,)  # type: ignore[attr-defined]
        runner.handle_batch = handle_batch

    @staticmethod
    def _unwrap_handle_batch(runner: Any) -> None:
        wrapper = runner.__dict__.get("handle_batch")
        found = getattr(wrapper, "_eventrunner_profiled", None)
        if found is None:
            return
        (original,) = found
        if original is None:
            del runner.__dict__["handle_batch"]
        else:
            runner.__dict__["handle_batch"] = original

    def _unwrap(self, runner: Any) -> None:
        self._unwrap_handle_batch(runner)
        bus, self._bus = self._bus, None
        if bus is not None:
            for marker in self._markers:
                bus.disconnect(marker)
            bus.wrap_handlers(lambda sub: self._originals.get(sub.seq, sub.handler))
        self._markers = []

    # ------------------------------------------------------------------ report

    def on_experiment_end(self, runner: RunState) -> None:
        wall = clock() - self._t_run
        self._unwrap(runner)
        self.report = build_report(
            self.stats.values(), self.phases, wall, self.warn_share, self.exempt_kinds
        )
        self.table = render_report(self.report)
        if not is_main_process(runner):
            return
        for message in self.report["warnings"]:
            warnings.warn(message, ProfilerWarning, stacklevel=2)
        if self.print_table:
            print(self.table, file=self.stream or sys.stdout, flush=True)
        logdir = self.logdir if self.logdir is not None else runner.logdir
        if logdir is not None:
            folder = Path(logdir)
            folder.mkdir(parents=True, exist_ok=True)
            with atomic_file(folder / "profile.txt", "w", encoding="utf-8") as file:
                file.write(self.table + "\n")
            with atomic_file(folder / "profile.json", "w", encoding="utf-8") as file:
                json.dump(self.report, file, indent=1)
