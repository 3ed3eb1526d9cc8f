"""The runner as a subscriber, as in Catalyst: a ``Runner`` subclass's own ``on_<event>`` methods.

A subclass that overrides ``on_loader_start``, ``on_loader_end``, ... has them connected to the
bus: on ``*_start`` events before every subscriber, on ``*_end`` events and ``exception`` after
every subscriber, which is where Catalyst's runner runs its own handlers. Only the overridden
methods are connected, so a runner without hooks costs the loop nothing.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from eventrunner.events import EVENTS, EventBus, Subscription
from eventrunner.metrics import as_number

if TYPE_CHECKING:
    from eventrunner.state import RunState

#: The runner's start hooks run before every subscriber, its end hooks after every one.
RUNNER_FIRST = -1_000_000
RUNNER_LAST = 1_000_000


def hook_order(event: str) -> int:
    """Where the runner's own handler of ``event`` runs among the subscribers."""
    return RUNNER_FIRST if event.endswith("_start") else RUNNER_LAST


class RunnerHooks:
    """Catalyst's runner handlers, for subclasses to extend with ``super().on_<event>(runner)``.

    The loop sets the counters, ``loader_key``, ``is_train_loader``, ``batch_size`` and resets
    ``batch_metrics``/``loader_metrics``/``epoch_metrics`` before publishing each event, so the
    base handlers have nothing left to do but one: :meth:`on_loader_end` files
    ``loader_metrics`` in ``epoch_metrics[loader_key]`` (as floats), so that what a subclass
    put in ``self.loader_metrics`` before ``super().on_loader_end(runner)`` reaches the epoch.

    Example::

        class MyRunner(Runner):
            def on_loader_start(self, runner):
                super().on_loader_start(runner)
                self.seen = 0

            def on_loader_end(self, runner):
                self.loader_metrics["seen"] = self.seen
                super().on_loader_end(runner)
    """

    def on_experiment_start(self, runner: RunState) -> None:
        """Runs before every subscriber's ``experiment_start``."""

    def on_epoch_start(self, runner: RunState) -> None:
        """Runs before every subscriber's ``epoch_start``; ``epoch_step`` is already counted."""

    def on_loader_start(self, runner: RunState) -> None:
        """Runs before every subscriber's ``loader_start``; the pass's state is already set."""

    def on_batch_start(self, runner: RunState) -> None:
        """Runs before every subscriber's ``batch_start``; counters and ``batch_size`` are set."""

    def on_batch_end(self, runner: RunState) -> None:
        """Runs after every subscriber's ``batch_end``."""

    def on_loader_end(self, runner: RunState) -> None:
        """Runs after every subscriber's ``loader_end``: files ``loader_metrics`` in
        ``epoch_metrics[loader_key]``, numbers (tensors, numpy scalars) as floats."""
        metrics = runner.loader_metrics
        for key, value in metrics.items():
            number = as_number(value)
            if number is not None and not isinstance(value, float):
                metrics[key] = float(number)
        if runner.loader_key is not None:
            runner.epoch_metrics[runner.loader_key] = metrics

    def on_epoch_end(self, runner: RunState) -> None:
        """Runs after every subscriber's ``epoch_end``."""

    def on_experiment_end(self, runner: RunState) -> None:
        """Runs after every subscriber's ``experiment_end``."""

    def on_exception(self, runner: RunState) -> None:
        """Runs after every subscriber's ``exception``; the loop re-raises the error after it."""


@functools.cache
def _overridden(cls: type) -> tuple[str, ...]:
    """The events whose ``on_<event>`` ``cls`` overrides (once per class, like
    :meth:`~eventrunner.events.Callback.handlers`)."""
    return tuple(
        event
        for event in EVENTS
        if getattr(cls, f"on_{event}", None) is not getattr(RunnerHooks, f"on_{event}")
    )


def runner_handlers(runner: Any) -> dict[str, Callable[[RunState], Any]]:
    """The bound ``on_<event>`` methods that ``runner``'s class overrides."""
    return {event: getattr(runner, f"on_{event}") for event in _overridden(type(runner))}


def subscribe_runner(bus: EventBus, runner: Any) -> list[Subscription]:
    """Connect ``runner``'s overridden handlers to ``bus``, first or last (:func:`hook_order`)."""
    name = type(runner).__name__
    return [
        bus.connect(event, handler, order=hook_order(event), name=f"{name}.on_{event}")
        for event, handler in runner_handlers(runner).items()
    ]
