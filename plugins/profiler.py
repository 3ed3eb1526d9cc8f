"""Where a run's time goes: per subscriber and event, and per batch phase of each loader.

``runner.train(..., profile=True)`` (or ``eventrunner run --profile``) adds
:class:`ProfilerCallback`. At ``experiment_start`` it wraps every subscription of the bus and
``runner.handle_batch`` with a timer and adds two markers around each batch, so a run without
it pays nothing: the loop never checks a flag. At ``experiment_end`` it prints a table, writes
it to ``logdir/profile.txt`` (and the numbers to ``profile.json``), and warns about subscribers
whose ``batch_end`` takes more than ``warn_share`` of the step.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TextIO

from eventrunner.events import (
    BATCH_END,
    BATCH_EVENTS,
    BATCH_START,
    EVENTS,
    EXPERIMENT_START,
    LOADER_START,
    Callback,
    Subscription,
)
from plugins._run_info import is_main_process

_FIRST = -(10**9)  # the markers' orders: before and after every other subscriber
_LAST = 10**9
_clock = time.perf_counter


class ProfilerWarning(UserWarning):
    """A subscriber takes a large share of each training step."""


class _Stat:
    """Calls and seconds of one subscription (one subscriber on one event)."""

    __slots__ = ("background", "calls", "event", "kind", "name", "order", "seconds", "seq")

    def __init__(self, sub: Subscription) -> None:
        self.name = sub.name
        self.event = sub.event
        self.order = sub.order
        self.seq = sub.seq
        self.background = sub.background
        self.kind = getattr(getattr(sub.handler, "__self__", None), "kind", None)
        self.calls = 0
        self.seconds = 0.0


def _timed(handler: Callable[[Any], Any], stat: _Stat, is_async: bool) -> Callable[[Any], Any]:
    if is_async:

        async def timed_async(runner: Any) -> Any:
            start = _clock()
            try:
                return await handler(runner)
            finally:
                stat.seconds += _clock() - start
                stat.calls += 1

        return timed_async

    def timed(runner: Any) -> Any:
        start = _clock()
        try:
            return handler(runner)
        finally:
            stat.seconds += _clock() - start
            stat.calls += 1

    return timed


def _format_table(header: list[str], rows: Iterable[list[str]], text_columns: int) -> list[str]:
    """Aligned plain-text table: the first ``text_columns`` left-aligned, numbers right-aligned."""
    rows = list(rows)
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(
            cell.ljust(width) if i < text_columns else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return [line(header), "  ".join("-" * w for w in widths), *map(line, rows)]


def _us(seconds: float, count: int) -> str:
    return f"{seconds / count * 1e6:.1f}" if count else "-"


def _pct(part: float, whole: float) -> str:
    return f"{100 * part / whole:.1f}%" if whole > 0 else "-"


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
        self.stats: dict[int, _Stat] = {}
        self.phases: dict[str, list[float]] = {}
        self.report: dict[str, Any] = {}
        self.table = ""
        self._bus: Any = None
        self._originals: dict[int, Callable[[Any], Any]] = {}
        self._markers: list[Subscription] = []
        self._cell: list[float] = [0, 0.0, 0.0, 0.0]
        self._t_prev = 0.0
        self._t_start = 0.0
        self._t_run = 0.0

    # ------------------------------------------------------------------ install

    def on_experiment_start(self, runner: Any) -> None:
        self.stats = {}
        self.phases = {}
        self.report = {}
        self.table = ""
        self._t_run = _clock()
        bus = self._bus = runner.bus
        self._originals = {}
        bus.wrap_handlers(self._wrap)
        self._markers = [
            bus.connect(LOADER_START, self._loader_ready, order=_LAST, name="profiler"),
            bus.connect(BATCH_START, self._batch_started, order=_FIRST, name="profiler"),
            bus.connect(BATCH_END, self._batch_ended, order=_LAST, name="profiler"),
        ]
        self._wrap_handle_batch(runner)

    def _wrap(self, sub: Subscription) -> Callable[[Any], Any]:
        if getattr(sub.handler, "__self__", None) is self:
            return sub.handler
        stat = self.stats[sub.seq] = _Stat(sub)
        self._originals[sub.seq] = sub.handler
        return _timed(sub.handler, stat, sub.is_async)

    def _wrap_handle_batch(self, runner: Any) -> None:
        self._unwrap_handle_batch(runner)  # one left by a run that failed before its report
        original = runner.__dict__.get("handle_batch")  # an instance attribute, if any
        handle = runner.handle_batch
        profiler = self

        def handle_batch(batch: Any) -> Any:
            start = _clock()
            try:
                return handle(batch)
            finally:
                profiler._cell[3] += _clock() - start

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

    # ------------------------------------------------------------------ markers

    def _loader_ready(self, runner: Any) -> None:
        # [batches, data wait s, step s, handle_batch s]
        self._cell = self.phases.setdefault(runner.loader_key, [0, 0.0, 0.0, 0.0])
        self._t_prev = _clock()

    def _batch_started(self, runner: Any) -> None:
        now = self._t_start = _clock()
        self._cell[1] += now - self._t_prev

    def _batch_ended(self, runner: Any) -> None:
        now = self._t_prev = _clock()
        cell = self._cell
        cell[0] += 1
        cell[2] += now - self._t_start

    # ------------------------------------------------------------------ report

    def on_experiment_end(self, runner: Any) -> None:
        wall = _clock() - self._t_run
        self._unwrap(runner)
        self.report = self._build_report(wall)
        self.table = self._render(self.report)
        if not is_main_process(runner):
            return
        for message in self.report["warnings"]:
            warnings.warn(message, ProfilerWarning, stacklevel=2)
        if self.print_table:
            print(self.table, file=self.stream or sys.stdout, flush=True)
        logdir = self.logdir if self.logdir is not None else getattr(runner, "logdir", None)
        if logdir is not None:
            folder = Path(logdir)
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "profile.txt").write_text(self.table + "\n", encoding="utf-8")
            (folder / "profile.json").write_text(
                json.dumps(self.report, indent=1), encoding="utf-8"
            )

    def _build_report(self, wall: float) -> dict[str, Any]:
        step_total = sum(cell[2] for cell in self.phases.values())
        batches = sum(int(cell[0]) for cell in self.phases.values())
        names: dict[str, int] = {}
        subscribers = []
        event_rank = {event: i for i, event in enumerate(EVENTS)}
        for stat in sorted(
            self.stats.values(), key=lambda s: (event_rank[s.event], s.order, s.seq)
        ):
            subscribers.append(
                {
                    "subscriber": stat.name,
                    "kind": stat.kind,
                    "event": stat.event,
                    "order": stat.order,
                    "background": stat.background,
                    "calls": stat.calls,
                    "seconds": stat.seconds,
                    "timed": stat.event != EXPERIMENT_START,
                    "share_of_step": (
                        stat.seconds / step_total
                        if stat.event in BATCH_EVENTS and step_total > 0
                        else None
                    ),
                }
            )
            names[stat.name] = names.get(stat.name, 0) + 1
        phases = {
            loader: {
                "batches": int(cell[0]),
                "data_wait_s": cell[1],
                "handle_batch_s": cell[3],
                "subscribers_s": max(cell[2] - cell[3], 0.0),
                "step_s": cell[2],
            }
            for loader, cell in self.phases.items()
        }
        warned = []
        for row in subscribers:
            share = row["share_of_step"]
            if (
                row["event"] == BATCH_END
                and share is not None
                and share > self.warn_share
                and row["kind"] not in self.exempt_kinds
            ):
                warned.append(
                    f"{row['subscriber']} takes {100 * share:.0f}% of the step at batch_end "
                    f"({_us(row['seconds'], row['calls'])} µs per call; the whole step "
                    f"{_us(step_total, batches)} µs per batch, share limit "
                    f"{100 * self.warn_share:.0f}%): consider every=N, background=True, or "
                    "moving the work to loader_end"
                )
        return {
            "wall_s": wall,
            "batches": batches,
            "step_s": step_total,
            "phases": phases,
            "subscribers": subscribers,
            "warnings": warned,
        }

    def _render(self, report: dict[str, Any]) -> str:
        lines = [
            f"Profile: {report['batches']} batches, {report['wall_s']:.3f} s from experiment_start"
        ]
        phase_rows = []
        for loader, phase in report["phases"].items():
            count = phase["batches"]
            whole = phase["data_wait_s"] + phase["step_s"]
            for label, key in (
                ("data wait", "data_wait_s"),
                ("handle_batch", "handle_batch_s"),
                ("subscribers", "subscribers_s"),
                ("step", "step_s"),
            ):
                seconds = phase[key]
                phase_rows.append(
                    [
                        loader,
                        label,
                        str(count),
                        f"{seconds:.4f}",
                        _us(seconds, count),
                        _pct(seconds, whole),
                    ]
                )
        lines.append("")
        lines += _format_table(
            ["loader", "phase", "batches", "total s", "µs/batch", "% of batch"], phase_rows, 2
        )
        sub_rows = []
        for row in report["subscribers"]:
            share = row["share_of_step"]
            sub_rows.append(
                [
                    row["subscriber"],
                    f"{row['event']} (bg)" if row["background"] else row["event"],
                    str(row["order"]),
                    str(row["calls"]) if row["timed"] else "-",
                    f"{row['seconds'] * 1e3:.3f}" if row["timed"] else "-",
                    _us(row["seconds"], row["calls"]) if row["timed"] else "-",
                    f"{100 * share:.1f}%" if share is not None and not math.isnan(share) else "-",
                ]
            )
        lines.append("")
        lines += _format_table(
            ["subscriber", "event", "order", "calls", "total ms", "µs/call", "% of step"],
            sub_rows,
            2,
        )
        lines.append(
            "(experiment_start handlers are not timed: the profiler installs its timers then)"
        )
        if report["warnings"]:
            lines.append("")
            lines += [f"warning: {message}" for message in report["warnings"]]
        return "\n".join(lines)
