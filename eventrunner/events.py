"""Lifecycle events, the bus that publishes them, and the ``Callback`` base class.

The loop, as pseudocode; each ``<name>`` is an event published on the bus::

    <experiment_start>
    for epoch_step in 1..num_epochs:
        <epoch_start>
        for loader_key, loader in loaders.items():    # train* / valid* / infer*
            <loader_start>                            # train/eval and grad mode hold to loader_end
            for batch in prefetch(loader):            # as the loader yields them, on the device
                <batch_start>
                runner.handle_batch(batch)            # sets runner.output, runner.batch_metrics
                <batch_end>                           # metrics 10..20, backward 30, step 40, ...
            <loader_end>                              # loader_metrics final after order 20
        <epoch_end>                                   # scheduler 50, selection 60, early stop 65,
                                                      # loggers 80, checkpoint 90
        if runner.need_early_stop: break
    <experiment_end>

    on any exception: <exception>, then <experiment_end>, then the exception propagates.

A Runner subclass's own ``on_<event>`` methods run first on ``*_start`` events and last on
``*_end`` and ``exception`` (:mod:`eventrunner.runner_hooks`). Subscribers run in ascending
``order``; ties keep registration order: a tuple sorted by
``(order, registration)`` per event, rebuilt on (dis)connect and walked in a plain loop. Each
event is also a public blinker signal (:mod:`eventrunner.signals`), sent after the event's
subscribers, for code that observes runs. A subscriber declares the run state it writes
(``Callback.writes``); two that write the same field on the same event with the same order
are refused before the first batch (:meth:`EventBus.check_writes`).
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from enum import IntEnum
from typing import TYPE_CHECKING, Any

from eventrunner.checks import positive_int
from eventrunner.writes import check_conflicts, check_fields, declared_writes

if TYPE_CHECKING:
    import blinker

    from eventrunner.state import RunState

EXPERIMENT_START = "experiment_start"
EPOCH_START = "epoch_start"
LOADER_START = "loader_start"
BATCH_START = "batch_start"
BATCH_END = "batch_end"
LOADER_END = "loader_end"
EPOCH_END = "epoch_end"
EXPERIMENT_END = "experiment_end"
EXCEPTION = "exception"

#: The nine events, in the order the loop first publishes them.
EVENTS: tuple[str, ...] = (
    EXPERIMENT_START,
    EPOCH_START,
    LOADER_START,
    BATCH_START,
    BATCH_END,
    LOADER_END,
    EPOCH_END,
    EXPERIMENT_END,
    EXCEPTION,
)
BATCH_EVENTS = frozenset({BATCH_START, BATCH_END})
_ALWAYS_EVENTS = frozenset({EXPERIMENT_START, EXPERIMENT_END, EXCEPTION})


class Order(IntEnum):
    """Built-in subscriber orders; lower runs first."""

    INTERNAL = 0
    METRIC = 10
    METRIC_AGGREGATION = 20
    GUARD = 25
    BACKWARD = 30
    OPTIMIZER = 40
    SCHEDULER = 50
    SELECTION = 60
    EARLY_STOPPING = 65
    USER = 70
    LOGGING = 80
    #: After everything an epoch does (loggers included): epoch e's checkpoint is e's state.
    CHECKPOINT = 90
    EXTERNAL = 100


class LoaderFilter:
    """Matches loader names: exact names, or prefixes written as ``"valid*"``."""

    def __init__(self, loaders: str | Iterable[str] | None):
        if loaders is None:
            names: tuple[str, ...] = ()
        elif isinstance(loaders, str):
            names = (loaders,)
        else:
            names = tuple(loaders)
        for name in names:
            if not isinstance(name, str) or not name:
                raise TypeError(f"loaders filter: expected loader names, got {name!r}")
        self.names = names
        self._exact = frozenset(n for n in names if not n.endswith("*"))
        self._prefixes = tuple(n[:-1] for n in names if n.endswith("*"))

    def __bool__(self) -> bool:
        return bool(self.names)

    def __call__(self, loader_key: str) -> bool:
        if not self.names:
            return True
        return loader_key in self._exact or loader_key.startswith(self._prefixes)

    def __repr__(self) -> str:
        return f"loaders={list(self.names)!r}"


@dataclass(frozen=True)
class Subscription:
    """One handler connected to one event, with its place in the order and its filters."""

    event: str
    handler: Callable[[RunState], Any]
    order: int
    seq: int
    name: str
    loaders: LoaderFilter
    every: int | None = None
    is_async: bool = False
    background: bool = False
    snapshot_batch: bool = False
    #: The run-state fields this handler writes (``"loader_metrics"`` or one key of it,
    #: ``"loader_metrics.accuracy"``); see :mod:`eventrunner.writes`.
    writes: frozenset[str] = frozenset()

    def fires_for(self, event: str, loader_key: str | None, epoch_step: int) -> bool:
        """Whether the loader and frequency filters let a non-batch event through."""
        if event in _ALWAYS_EVENTS:
            return True
        if (
            self.loaders
            and event not in (EPOCH_START, EPOCH_END)
            and (loader_key is None or not self.loaders(loader_key))
        ):
            return False
        return self.every is None or epoch_step % self.every == 0

    def describe(self) -> str:
        flags = [f"order={self.order}"]
        if self.loaders:
            flags.append(repr(self.loaders))
        if self.every:
            flags.append(f"every={self.every}")
        if self.background:
            flags.append("background")
        elif self.is_async:
            flags.append("async")
        if self.writes:
            flags.append(f"writes={','.join(sorted(self.writes))}")
        return f"{self.name} ({', '.join(flags)})"


def _is_async(handler: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
        getattr(handler, "__call__", None)  # noqa: B004 - a callable object's async __call__
    )


def _check_every(every: int | None, owner: str) -> int | None:
    return positive_int(every, f"{owner}: every=", optional=True)


class EventBus:
    """Publishes the loop's events to subscribers, in a deterministic order.

    The subscribers of one run; the public blinker signals (:mod:`eventrunner.signals`)
    are shared by every run in the process and sent after them.
    """

    def __init__(self) -> None:
        self._subscriptions: dict[str, list[Subscription]] = {event: [] for event in EVENTS}
        self._sorted: dict[str, tuple[Subscription, ...]] = {event: () for event in EVENTS}
        self._seq = itertools.count()

    def signal(self, event: str) -> blinker.NamedSignal:
        """The public blinker signal of an event (:mod:`eventrunner.signals`)."""
        from eventrunner.signals import SIGNALS  # that module imports this one

        return SIGNALS[_check_event(event)]

    def connect(
        self,
        event: str,
        handler: Callable[[RunState], Any],
        *,
        order: int = Order.USER,
        loaders: str | Iterable[str] | None = None,
        every: int | None = None,
        background: bool = False,
        snapshot_batch: bool = False,
        name: str | None = None,
        writes: Iterable[str] = (),
    ) -> Subscription:
        """Connect a function ``handler(runner)`` (sync or ``async def``) to ``event``.

        ``background=True`` runs it on the background worker, on a snapshot of the runner
        that holds the batch and output only with ``snapshot_batch=True``. ``writes`` names
        the run-state fields it writes (checked by :meth:`check_writes`).
        """
        _check_event(event)
        if not callable(handler):
            raise TypeError(f"event {event!r}: handler must be callable, got {handler!r}")
        label = name or getattr(handler, "__qualname__", None) or repr(handler)
        sub = Subscription(
            event=event,
            handler=handler,
            order=int(order),
            seq=next(self._seq),
            name=label,
            loaders=loaders if isinstance(loaders, LoaderFilter) else LoaderFilter(loaders),
            every=_check_every(every, label),
            is_async=_is_async(handler),
            background=background,
            snapshot_batch=snapshot_batch,
            writes=check_fields(writes, label),
        )
        self._subscriptions[event].append(sub)
        self._resort(event)
        return sub

    def disconnect(self, subscription: Subscription) -> None:
        self._subscriptions[subscription.event].remove(subscription)
        self._resort(subscription.event)

    def subscribe(self, callback: Callback) -> list[Subscription]:
        """Connect every ``on_<event>`` method that ``callback``'s class (and each of its
        :meth:`~Callback.parts`) defines."""
        subscriptions = []
        for part in callback.parts():
            label = part.describe_name()
            writes = declared_writes(part)
            subscriptions.extend(
                self.connect(
                    event,
                    handler,
                    order=part.order,
                    loaders=part.loader_filter,
                    every=part.every,
                    background=part.background,
                    snapshot_batch=part.snapshot_batch,
                    name=label,
                    writes=writes.get(event, ()),
                )
                for event, handler in part.handlers().items()
            )
        return subscriptions

    def subscriptions(self, event: str) -> tuple[Subscription, ...]:
        """The subscriptions of ``event`` in the order they run."""
        return self._sorted[_check_event(event)]

    def check_writes(self, loader_keys: Iterable[str]) -> None:
        """Refuse two subscriptions that write one field on one event in no decided order.

        Called by the loop before ``experiment_start``; see :mod:`eventrunner.writes`.
        """
        check_conflicts(self._sorted, tuple(loader_keys))

    def has_subscribers(self, event: str) -> bool:
        return bool(self._sorted[event])

    def has_background(self) -> bool:
        """Whether any subscription runs on the background worker."""
        return any(sub.background for subs in self._sorted.values() for sub in subs)

    def wrap_handlers(self, wrap: Callable[[Subscription], Callable[[RunState], Any]]) -> None:
        """Replace each subscription's handler by ``wrap(subscription)``, keeping the order.

        For profilers and tracers: the loop compiles its calls from the subscriptions per
        event and loader pass, so the wrappers take effect from the next event on.
        """
        for event in EVENTS:
            self._subscriptions[event] = [
                replace(sub, handler=wrap(sub)) for sub in self._subscriptions[event]
            ]
            self._resort(event)

    def _resort(self, event: str) -> None:
        self._sorted[event] = tuple(
            sorted(self._subscriptions[event], key=lambda s: (s.order, s.seq))
        )

    def describe(self) -> str:
        """The composed pipeline: each event with its subscribers in order."""
        lines = []
        for event in EVENTS:
            lines.append(f"{event}:")
            subs = self._sorted[event]
            lines.extend(f"  {s.describe()}" for s in subs) if subs else lines.append("  -")
        return "\n".join(lines)


def _check_event(event: str) -> str:
    if event not in EVENTS:
        raise ValueError(f"unknown event {event!r}; expected one of {', '.join(EVENTS)}")
    return event


class Callback:
    """Base class of subscribers: define ``on_<event>(self, runner)`` for the events you need.

    Only the ``on_*`` methods a subclass overrides are connected. ``order`` places it among the
    other subscribers (see :class:`Order`), ``loaders`` limits it to some loaders (a name, a
    list, or a prefix ``"valid*"``), ``every=N`` fires batch events every N-th batch of a
    loader and loader/epoch events every N-th epoch. Set the class attribute ``background =
    True`` to run off the loop's path (on a snapshot of the runner's counters and metrics;
    its ``batch`` and ``output`` are None unless ``snapshot_batch = True``, so that queued
    calls do not keep batches alive). Past a few dozen queued background calls the loop
    waits for the worker (back-pressure; :data:`eventrunner.background.MAX_PENDING`).

    Example::

        class PrintLoss(Callback):
            def __init__(self):
                super().__init__(order=Order.LOGGING, loaders="valid*")

            def on_loader_end(self, runner):
                print(runner.loader_key, runner.loader_metrics["loss"])
    """

    #: Registry name; a user subscriber of the same kind replaces the default one.
    kind: str | None = None
    #: Run-state fields this subscriber writes: names for every event it handles, or
    #: ``{event: names}``; a key of a dict field is ``"loader_metrics.accuracy"``. Two
    #: subscribers with the same ``order`` that write one field on one event are refused.
    writes: tuple[str, ...] | Mapping[str, tuple[str, ...]] = ()
    #: Run handlers on the background worker instead of in the loop.
    background: bool = False
    #: Background only: the snapshot keeps ``runner.batch`` and ``runner.output`` (memory!).
    snapshot_batch: bool = False
    order: int = Order.USER
    every: int | None = None
    loader_filter: LoaderFilter = LoaderFilter(None)

    def __init__(
        self,
        order: int = Order.USER,
        loaders: str | Iterable[str] | None = None,
        every: int | None = None,
    ) -> None:
        self.order = int(order)
        self.loader_filter = LoaderFilter(loaders)
        self.every = _check_every(every, type(self).__name__)

    def on_experiment_start(self, runner: RunState) -> Any: ...
    def on_epoch_start(self, runner: RunState) -> Any: ...
    def on_loader_start(self, runner: RunState) -> Any: ...
    def on_batch_start(self, runner: RunState) -> Any: ...
    def on_batch_end(self, runner: RunState) -> Any: ...
    def on_loader_end(self, runner: RunState) -> Any: ...
    def on_epoch_end(self, runner: RunState) -> Any: ...
    def on_experiment_end(self, runner: RunState) -> Any: ...
    def on_exception(self, runner: RunState) -> Any: ...

    def handlers(self) -> dict[str, Callable[[RunState], Any]]:
        """The bound ``on_<event>`` methods that this object's class overrides."""
        found = {}
        for event in EVENTS:
            attr = f"on_{event}"
            if getattr(type(self), attr) is not getattr(Callback, attr):
                found[event] = getattr(self, attr)
        return found

    def describe_name(self) -> str:
        return type(self).__name__

    def parts(self) -> tuple[Callback, ...]:
        """The subscribers this one is made of, each with its own order: ``(self,)``.

        A subscriber with two jobs on one event at different orders (a checkpoint records
        its epoch with model selection, at 60, and saves after everything else, at 90)
        returns a helper part besides itself; only ``self`` is saved in checkpoints.
        """
        return (self,)

    def state_dict(self) -> dict[str, Any]:
        """State to save in checkpoints (plain Python values and tensors)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(order={self.order})"


class FunctionCallback(Callback):
    """A plain function ``fn(runner)`` subscribed to one event.

    Example: ``FunctionCallback("epoch_end", lambda runner: print(runner.epoch_step))``;
    ``writes=("loader_metrics.f1",)`` declares what it writes (see :mod:`eventrunner.writes`).
    """

    def __init__(
        self,
        event: str,
        fn: Callable[[RunState], Any],
        order: int = Order.USER,
        loaders: str | Iterable[str] | None = None,
        every: int | None = None,
        writes: Iterable[str] = (),
    ) -> None:
        super().__init__(order=order, loaders=loaders, every=every)
        self.event = _check_event(event)
        if not callable(fn):
            raise TypeError(f"FunctionCallback({event!r}): expected a callable, got {fn!r}")
        self.fn = fn
        self.writes = (writes,) if isinstance(writes, str) else tuple(writes)

    def handlers(self) -> dict[str, Callable[[RunState], Any]]:
        return {self.event: self.fn}

    def describe_name(self) -> str:
        return getattr(self.fn, "__qualname__", repr(self.fn))
