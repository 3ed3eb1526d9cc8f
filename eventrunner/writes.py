"""Declared writes: which run-state fields each subscriber writes, checked before the first batch.

A subscriber declares what it writes in ``Callback.writes`` (or ``connect(..., writes=)``):
a field of :data:`~eventrunner.state.WRITABLE_FIELDS` (``"loader_metrics"``) or one key of a
dict field (``"loader_metrics.accuracy"``). Before ``experiment_start`` the bus refuses two
subscriptions of one event that write the same field (the whole field, or one key both name)
with the same ``order`` and loader filters that both let one of the run's loaders through:
which of them wins would depend on the order they were registered in. Subscribers that
declare nothing are not checked (third-party code keeps working).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from eventrunner.state import WRITABLE_FIELDS

if TYPE_CHECKING:
    from eventrunner.events import Callback, Subscription

#: Events with a loader: their subscriptions' loader filters decide whether two can collide.
_LOADER_EVENTS = frozenset({"loader_start", "batch_start", "batch_end", "loader_end"})


class WriteConflictError(ValueError):
    """Two subscribers write one run-state field on one event in no decided order."""


def check_fields(fields: Iterable[str], owner: str) -> frozenset[str]:
    """``fields`` as a set, each a writable field or ``field.key`` of one; else a clear error."""
    if isinstance(fields, str):
        fields = (fields,)
    checked = set()
    for field in fields:
        if not isinstance(field, str):
            raise TypeError(f"{owner}: writes: expected field names (str), got {field!r}")
        base = field.split(".", 1)[0]
        if base not in WRITABLE_FIELDS:
            raise ValueError(
                f"{owner}: writes: {field!r} is not a run-state field a subscriber writes; "
                f"expected one of {sorted(WRITABLE_FIELDS)} (or 'field.key' of a dict field)"
            )
        checked.add(field)
    return frozenset(checked)


def declared_writes(callback: Callback) -> dict[str, tuple[str, ...]]:
    """``callback.writes`` per handled event: a tuple applies to every event it handles."""
    handled = callback.handlers()
    declared = callback.writes
    if not isinstance(declared, Mapping):
        return {event: tuple(declared) for event in handled} if declared else {}
    owner = callback.describe_name()
    for event in declared:
        if event not in handled:
            raise ValueError(
                f"{owner}: writes names event {event!r}, which it does not handle; "
                f"it handles {sorted(handled)}"
            )
    return {event: tuple(fields) for event, fields in declared.items()}


def _overlap(first: frozenset[str], second: frozenset[str]) -> str | None:
    """A field both write: the same name, or a whole field and one of its keys."""
    for a in sorted(first):
        for b in sorted(second):
            if a == b or b.startswith(a + ".") or a.startswith(b + "."):
                return a if len(a) <= len(b) else b
    return None


def _shared_loader(
    first: Subscription, second: Subscription, loader_keys: tuple[str, ...]
) -> str | None:
    for key in loader_keys:
        if first.loaders(key) and second.loaders(key):
            return key
    return None


def check_conflicts(
    subscriptions: Mapping[str, tuple[Subscription, ...]], loader_keys: tuple[str, ...]
) -> None:
    """Raise :class:`WriteConflictError` naming both subscribers, the field, event and order."""
    for event, subs in subscriptions.items():
        writers = [sub for sub in subs if sub.writes]
        for i, first in enumerate(writers):
            for second in writers[i + 1 :]:
                if first.order != second.order:
                    continue
                field = _overlap(first.writes, second.writes)
                if field is None:
                    continue
                where = ""
                if event in _LOADER_EVENTS:
                    shared = _shared_loader(first, second, loader_keys)
                    if shared is None:
                        continue
                    where = f" on loader {shared!r}"
                raise WriteConflictError(
                    f"{first.name} and {second.name} both write {field!r} on {event}{where} "
                    f"at order {first.order}: which one wins would depend on registration "
                    "order. Give one of them another order (Callback(order=...)), or drop one"
                )
