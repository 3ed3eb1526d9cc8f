"""The profiler's clocks and report: per-subscription timers, per-loader batch phases, the table.

:class:`plugins.profiler.ProfilerCallback` installs these on a run; they know nothing of the bus.
A subscription's timer adds its calls and seconds to a :class:`SubscriptionStat`;
:class:`BatchPhases` splits each batch into data wait, ``handle_batch`` and subscribers from
three markers; :func:`build_report` turns both into numbers and warnings, and
:func:`render_report` into plain-text tables.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from eventrunner.events import BATCH_END, BATCH_EVENTS, EVENTS, EXPERIMENT_START

if TYPE_CHECKING:
    from eventrunner.events import Subscription
    from eventrunner.state import RunState

clock = time.perf_counter


class ProfilerWarning(UserWarning):
    """A subscriber takes a large share of each training step."""


class SubscriptionStat:
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


def timed(
    handler: Callable[[Any], Any], stat: SubscriptionStat, is_async: bool
) -> Callable[[Any], Any]:
    """``handler`` adding each call's time to ``stat`` (awaited through, when ``is_async``)."""
    if is_async:

        async def timed_async(runner: Any) -> Any:
            start = clock()
            try:
                return await handler(runner)
            finally:
                stat.seconds += clock() - start
                stat.calls += 1

        return timed_async

    def timed_call(runner: Any) -> Any:
        start = clock()
        try:
            return handler(runner)
        finally:
            stat.seconds += clock() - start
            stat.calls += 1

    return timed_call


class BatchPhases:
    """Per loader: batches, data wait, step and ``handle_batch`` seconds, from markers.

    :meth:`loader_ready` runs last at ``loader_start``, :meth:`batch_started` first at
    ``batch_start`` and :meth:`batch_ended` last at ``batch_end``: the data wait runs from
    the end of one batch (or of ``loader_start``) to the start of the next, the step from
    ``batch_start`` to the end of ``batch_end``. :meth:`timed_handle_batch` wraps the
    runner's ``handle_batch``. Lists, not objects, per loader: these run on every batch.
    """

    def __init__(self) -> None:
        #: loader -> [batches, data wait s, step s, handle_batch s]
        self.phases: dict[str, list[float]] = {}
        self._cell: list[float] = [0, 0.0, 0.0, 0.0]
        self._t_prev = 0.0
        self._t_start = 0.0

    def loader_ready(self, runner: RunState) -> None:
        self._cell = self.phases.setdefault(runner.loader_key, [0, 0.0, 0.0, 0.0])
        self._t_prev = clock()

    def batch_started(self, runner: RunState) -> None:
        now = self._t_start = clock()
        self._cell[1] += now - self._t_prev

    def batch_ended(self, runner: RunState) -> None:
        now = self._t_prev = clock()
        cell = self._cell
        cell[0] += 1
        cell[2] += now - self._t_start

    def timed_handle_batch(self, handle: Callable[[Any], Any]) -> Callable[[Any], Any]:
        """``handle`` adding its time to the current loader's ``handle_batch`` seconds."""

        def handle_batch(batch: Any) -> Any:
            start = clock()
            try:
                return handle(batch)
            finally:
                self._cell[3] += clock() - start

        return handle_batch


def _us(seconds: float, count: int) -> str:
    return f"{seconds / count * 1e6:.1f}" if count else "-"


def _pct(part: float, whole: float) -> str:
    return f"{100 * part / whole:.1f}%" if whole > 0 else "-"


def _subscriber_row(stat: SubscriptionStat, step_total: float) -> dict[str, Any]:
    share = None
    if stat.event in BATCH_EVENTS and step_total > 0:
        share = stat.seconds / step_total
    return {
        "subscriber": stat.name,
        "kind": stat.kind,
        "event": stat.event,
        "order": stat.order,
        "background": stat.background,
        "calls": stat.calls,
        "seconds": stat.seconds,
        "timed": stat.event != EXPERIMENT_START,
        "share_of_step": share,
    }


def build_report(
    stats: Iterable[SubscriptionStat],
    phases: Mapping[str, list[float]],
    wall: float,
    warn_share: float,
    exempt_kinds: Collection[str],
) -> dict[str, Any]:
    """The run's numbers (JSON-ready): phases per loader, each subscription, and warnings for
    the ``batch_end`` subscribers (not of ``exempt_kinds``) above ``warn_share`` of the step."""
    step_total = sum(cell[2] for cell in phases.values())
    batches = sum(int(cell[0]) for cell in phases.values())
    event_rank = {event: i for i, event in enumerate(EVENTS)}
    ordered = sorted(stats, key=lambda s: (event_rank[s.event], s.order, s.seq))
    subscribers = [_subscriber_row(stat, step_total) for stat in ordered]
    phase_numbers = {
        loader: {
            "batches": int(cell[0]),
            "data_wait_s": cell[1],
            "handle_batch_s": cell[3],
            "subscribers_s": max(cell[2] - cell[3], 0.0),
            "step_s": cell[2],
        }
        for loader, cell in phases.items()
    }
    warned = []
    for row in subscribers:
        share = row["share_of_step"]
        if (
            row["event"] == BATCH_END
            and share is not None
            and share > warn_share
            and row["kind"] not in exempt_kinds
        ):
            warned.append(
                f"{row['subscriber']} takes {100 * share:.0f}% of the step at batch_end "
                f"({_us(row['seconds'], row['calls'])} µs per call; the whole step "
                f"{_us(step_total, batches)} µs per batch, share limit "
                f"{100 * warn_share:.0f}%): consider every=N, background=True, or "
                "moving the work to loader_end"
            )
    return {
        "wall_s": wall,
        "batches": batches,
        "step_s": step_total,
        "phases": phase_numbers,
        "subscribers": subscribers,
        "warnings": warned,
    }


def format_table(header: list[str], rows: Iterable[list[str]], text_columns: int) -> list[str]:
    """Aligned plain-text table: the first ``text_columns`` left-aligned, numbers right-aligned."""
    rows = list(rows)
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(
            cell.ljust(width) if i < text_columns else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return [line(header), "  ".join("-" * w for w in widths), *map(line, rows)]


_PHASE_LABELS = (
    ("data wait", "data_wait_s"),
    ("handle_batch", "handle_batch_s"),
    ("subscribers", "subscribers_s"),
    ("step", "step_s"),
)


def _phase_rows(report: Mapping[str, Any]) -> list[list[str]]:
    rows = []
    for loader, phase in report["phases"].items():
        count = phase["batches"]
        whole = phase["data_wait_s"] + phase["step_s"]
        for label, key in _PHASE_LABELS:
            seconds = phase[key]
            rows.append(
                [
                    loader,
                    label,
                    str(count),
                    f"{seconds:.4f}",
                    _us(seconds, count),
                    _pct(seconds, whole),
                ]
            )
    return rows


def _subscriber_rows(report: Mapping[str, Any]) -> list[list[str]]:
    rows = []
    for row in report["subscribers"]:
        share = row["share_of_step"]
        rows.append(
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
    return rows


def render_report(report: Mapping[str, Any]) -> str:
    """The report of :func:`build_report` as plain-text tables (phases, then subscribers)."""
    lines = [
        f"Profile: {report['batches']} batches, {report['wall_s']:.3f} s from experiment_start"
    ]
    lines.append("")
    lines += format_table(
        ["loader", "phase", "batches", "total s", "µs/batch", "% of batch"],
        _phase_rows(report),
        2,
    )
    lines.append("")
    lines += format_table(
        ["subscriber", "event", "order", "calls", "total ms", "µs/call", "% of step"],
        _subscriber_rows(report),
        2,
    )
    lines.append("(experiment_start handlers are not timed: the profiler installs its timers then)")
    if report["warnings"]:
        lines.append("")
        lines += [f"warning: {message}" for message in report["warnings"]]
    return "\n".join(lines)
