"""Helpers for testing subscribers: fire one event at them on a fake runner, or run them in a
tiny real training that takes a fraction of a second.

Example (in a plugin package's tests)::

    from eventrunner.testing import fake_runner, fire, tiny_run

    def test_adds_lr_to_train_metrics():
        runner = fire(LearningRateMonitor(), "loader_end", loader_key="train", optimizer=opt)
        assert runner.loader_metrics["lr"] == 0.1
        runner = tiny_run([LearningRateMonitor()], num_epochs=2)
        assert "lr" in runner.epoch_metrics["train"]
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import anyio
import torch
from torch import nn

from eventrunner.data.loaders import loader_kind
from eventrunner.dispatch import compile_calls
from eventrunner.events import Callback, EventBus, Order
from eventrunner.runner import Runner, Selection
from eventrunner.supervised import SupervisedRunner

__all__ = ["EventRecorder", "fake_runner", "fire", "tiny_loader", "tiny_run"]

_SELECTION_KEYS = ("valid_loader", "main_metric", "minimize_metric")


def fake_runner(**state: Any) -> Runner:
    """A :class:`Runner` (no model, CPU) whose state attributes are set from ``state``.

    Defaults describe the first batch of a ``train`` loader in epoch 1 of 1. ``loader_key``
    also sets ``is_train_loader``/``is_valid_loader``/``is_infer_loader`` (unless given);
    ``valid_loader``, ``main_metric`` and ``minimize_metric`` set the selection. Any other
    attribute (``optimizer``, ``loader_metrics``, ``epoch_metrics``, ...) is set as given.
    """
    defaults: dict[str, Any] = {
        "num_epochs": 1,
        "epoch_step": 1,
        "loader_key": "train",
        "loader_batch_step": 1,
        "batch_step": 1,
        "batch_size": 1,
        "batch": {},
        "output": {},
    }
    merged = {**defaults, **state}
    merged.setdefault("loaders", {merged["loader_key"]: [merged["batch"]]})
    return _update(Runner(device="cpu"), merged)


def _update(runner: Runner, state: dict[str, Any]) -> Runner:
    selection = {key: state.pop(key) for key in _SELECTION_KEYS if key in state}
    if "loader_key" in state:
        kind = loader_kind(state["loader_key"])
        state.setdefault("is_train_loader", kind == "train")
        state.setdefault("is_valid_loader", kind == "valid")
        state.setdefault("is_infer_loader", kind == "infer")
    for key, value in state.items():
        setattr(runner, key, value)
    if selection:
        runner.selection = Selection(
            loader=selection.get("valid_loader", runner.selection.loader),
            metric=selection.get("main_metric", runner.selection.metric),
            minimize=selection.get("minimize_metric", runner.selection.minimize),
            loader_given="valid_loader" in selection,
            metric_given="main_metric" in selection,
        )
    return runner


def fire(
    callbacks: Callback | Iterable[Callback],
    event: str,
    runner: Runner | None = None,
    **state: Any,
) -> Runner:
    """Publish ``event`` to ``callbacks`` as the loop would, and return the runner.

    Subscribers run in their ``order`` (ties: the order given) and their ``loaders=`` and
    ``every=`` filters apply, against ``runner`` (or ``fake_runner(**state)``; with a runner,
    ``state`` updates it). ``async def`` handlers are awaited. Background subscribers run
    inline here, on the runner itself; :func:`tiny_run` exercises the real background path.
    """
    if isinstance(callbacks, Callback):
        callbacks = [callbacks]
    runner = fake_runner(**state) if runner is None else _update(runner, dict(state))
    bus = EventBus()
    for callback in callbacks:
        bus.subscribe(callback)
    subscriptions = [dataclasses.replace(sub, background=False) for sub in bus.subscriptions(event)]
    calls, awaits = compile_calls(event, subscriptions, runner.loader_key, runner.epoch_step, None)
    if awaits:
        anyio.run(_call_all, calls, runner)
    else:
        for call in calls:
            call(runner)
    return runner


async def _call_all(calls: Sequence[Any], runner: Runner) -> None:
    for call in calls:
        result = call(runner)
        if inspect.isawaitable(result):
            await result


class EventRecorder(Callback):
    """Records every event it sees as ``(event, loader_key, epoch_step, loader_batch_step)``.

    Example: ``recorder = EventRecorder(); tiny_run([recorder]); recorder.names()``.
    """

    def __init__(self, order: int = Order.EXTERNAL, **filters: Any) -> None:
        super().__init__(order=order, **filters)
        self.events: list[tuple[str, str | None, int, int]] = []

    def _record(self, event: str, runner: Any) -> None:
        self.events.append((event, runner.loader_key, runner.epoch_step, runner.loader_batch_step))

    def names(self) -> list[str]:
        """The event names, in the order they fired."""
        return [event for event, *_ in self.events]

    def on_experiment_start(self, runner: Any) -> None:
        self._record("experiment_start", runner)

    def on_epoch_start(self, runner: Any) -> None:
        self._record("epoch_start", runner)

    def on_loader_start(self, runner: Any) -> None:
        self._record("loader_start", runner)

    def on_batch_start(self, runner: Any) -> None:
        self._record("batch_start", runner)

    def on_batch_end(self, runner: Any) -> None:
        self._record("batch_end", runner)

    def on_loader_end(self, runner: Any) -> None:
        self._record("loader_end", runner)

    def on_epoch_end(self, runner: Any) -> None:
        self._record("epoch_end", runner)

    def on_experiment_end(self, runner: Any) -> None:
        self._record("experiment_end", runner)

    def on_exception(self, runner: Any) -> None:
        self._record("exception", runner)


def tiny_loader(num_batches: int = 4, batch_size: int = 8, seed: int = 0) -> list[dict[str, Any]]:
    """Seeded dict batches ``{"features": (batch_size, 4), "targets": (batch_size,)}``.

    Two classes, learnable by a linear model in a few steps; usable as a loader in a config
    (``_target_: eventrunner.testing:tiny_loader``).
    """
    generator = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(num_batches):
        features = torch.randn(batch_size, 4, generator=generator)
        targets = (features[:, 0] + features[:, 1] > 0).long()
        batches.append({"features": features, "targets": targets})
    return batches


def tiny_run(
    callbacks: Sequence[Callback] | Mapping[str, Callback] = (),
    *,
    num_epochs: int = 2,
    loaders: Sequence[str] = ("train", "valid"),
    num_batches: int = 4,
    batch_size: int = 8,
    runner: Runner | None = None,
    **train_kwargs: Any,
) -> Runner:
    """Train a 4->2 linear classifier for a few batches with ``callbacks``; returns the runner.

    The data is synthetic and seeded (dict batches ``features``/``targets``), the loop real:
    default subscribers, prefetch, background workers. ``train_kwargs`` go to
    ``runner.train`` (``main_metric=...``, ``logdir=...``); the console logger is off unless
    ``console=True``.
    """
    data = {name: tiny_loader(num_batches, batch_size, seed=i) for i, name in enumerate(loaders)}
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    kwargs: dict[str, Any] = {
        "model": model,
        "criterion": nn.CrossEntropyLoss(),
        "optimizer": torch.optim.SGD(model.parameters(), lr=0.1),
        "loaders": data,
        "callbacks": callbacks,
        "num_epochs": num_epochs,
        "console": False,
        "seed": 0,
    }
    kwargs.update(train_kwargs)
    runner = runner or SupervisedRunner()
    runner.train(**kwargs)
    return runner
