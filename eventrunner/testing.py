"""Helpers for testing subscribers: fire one event at them on a fake runner, or run them in a
tiny real training that takes a fraction of a second.

Example (in a plugin package's tests)::

    from eventrunner.testing import fake_runner, fire, tiny_run

    def test_adds_lr_to_train_metrics():
        runner = fire(LearningRateMonitor(), "loader_end", loader_key="train", optimizer=opt)
        assert runner.loader_metrics["lr"] == 0.1
        runner = tiny_run([LearningRateMonitor()], num_epochs=2)
        assert "lr" in runner.epoch_metrics["train"]

For tests of the loop itself there is a second, even smaller shape: :func:`make_loaders` of
``{"x", "y"}`` regression batches, a :class:`RegressionRunner` (or a :class:`ScriptRunner`
whose valid metrics are scripted per epoch) and :func:`regression_run`; an
:class:`EventRecorder` with ``fields=`` and a :class:`WeightsRecorder` watch such a run.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import anyio
import torch
from torch import nn

from eventrunner.data.loaders import loader_kind
from eventrunner.dispatch import compile_calls
from eventrunner.events import EVENTS, Callback, EventBus, Order
from eventrunner.runner import Runner, Selection
from eventrunner.supervised import SupervisedRunner

__all__ = [
    "EventRecorder",
    "RegressionRunner",
    "ScriptRunner",
    "WeightsRecorder",
    "fake_runner",
    "fire",
    "make_loaders",
    "regression_batches",
    "regression_run",
    "same_weights",
    "tiny_loader",
    "tiny_run",
]

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


#: What a recorded event says: ``(event, loader_key, epoch_step, loader_batch_step)``.
EventRecord = tuple[str, str | None, int, int]
_RECORD_NAMES = ("event", "loader_key", "epoch_step", "loader_batch_step")


class EventRecorder(Callback):
    """Records every event it sees as ``(event, loader_key, epoch_step, loader_batch_step)``.

    ``events=`` subscribes it to those events only. ``fields=`` also keeps a snapshot of the
    run state at each record, in :attr:`states` (one dict per entry of :attr:`events`):
    attribute names (dotted ones too), or ``{name: fn(runner)}`` for computed values. A plain
    ``dict`` value is copied, since the loop refills ``batch_metrics`` and ``loader_metrics``
    in place. ``loaders=`` and ``every=`` filter it like any subscriber.

    Example::

        recorder = EventRecorder()
        tiny_run([recorder])
        recorder.names()  # ["experiment_start", "epoch_start", "loader_start", ...]

        sizes = EventRecorder(events=["batch_end"], fields=["batch_size", "sample_step"])
        tiny_run([sizes], loaders={"train": 2})
        sizes.column("loader_batch_step", "sample_step")  # [(1, 8), (2, 16), (1, 24), ...]
    """

    def __init__(
        self,
        order: int = Order.EXTERNAL,
        *,
        events: Iterable[str] | None = None,
        fields: Sequence[str] | Mapping[str, Callable[[Any], Any]] = (),
        **filters: Any,
    ) -> None:
        super().__init__(order=order, **filters)
        self.only_events = None if events is None else tuple(events)
        if self.only_events is not None and not set(self.only_events) <= set(EVENTS):
            raise ValueError(f"EventRecorder: events must be among {EVENTS}, got {events!r}")
        if isinstance(fields, Mapping):
            self.fields: dict[str, Callable[[Any], Any]] = dict(fields)
        else:
            self.fields = {name: operator.attrgetter(name) for name in fields}
        self.events: list[EventRecord] = []
        self.states: list[dict[str, Any]] = []

    def handlers(self) -> dict[str, Callable[[Any], Any]]:
        found = super().handlers()
        if self.only_events is None:
            return found
        return {event: found[event] for event in EVENTS if event in self.only_events}

    def _record(self, event: str, runner: Any) -> None:
        self.events.append((event, runner.loader_key, runner.epoch_step, runner.loader_batch_step))
        state = {name: read(runner) for name, read in self.fields.items()}
        self.states.append({k: dict(v) if type(v) is dict else v for k, v in state.items()})

    def names(self) -> list[str]:
        """The event names, in the order they fired."""
        return [event for event, *_ in self.events]

    def counts(self) -> dict[str, int]:
        """How many times each of the nine events fired (zero included), in loop order."""
        names = self.names()
        return {event: names.count(event) for event in EVENTS}

    def states_at(self, event: str) -> list[dict[str, Any]]:
        """The ``fields=`` snapshots taken at ``event``, in order."""
        return [s for (e, *_), s in zip(self.events, self.states, strict=True) if e == event]

    def column(self, *names: str, event: str | None = None) -> list[Any]:
        """One value per record (of ``event`` only, if given): a record field or a snapshot.

        ``names`` are ``event``, ``loader_key``, ``epoch_step``, ``loader_batch_step`` or a
        name of ``fields=``; one name gives its values, several give tuples.
        """
        rows = []
        for record, state in zip(self.events, self.states, strict=True):
            if event is not None and record[0] != event:
                continue
            values = {**dict(zip(_RECORD_NAMES, record, strict=True)), **state}
            row = tuple(values[name] for name in names)
            rows.append(row[0] if len(names) == 1 else row)
        return rows

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


class WeightsRecorder(Callback):
    """The model's weights at the end of every epoch: ``weights[epoch_step]``, detached copies.

    Example::

        weights = WeightsRecorder()
        runner = tiny_run([weights], num_epochs=2, load_best_on_end=True)
        assert same_weights(runner.model.state_dict(), weights.weights[runner.best_epoch])
    """

    def __init__(self, order: int = Order.USER, **filters: Any) -> None:
        super().__init__(order=order, **filters)
        self.weights: dict[int, dict[str, torch.Tensor]] = {}

    def on_epoch_end(self, runner: Any) -> None:
        state = runner.model.state_dict()
        self.weights[runner.epoch_step] = {k: v.detach().clone() for k, v in state.items()}


def same_weights(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> bool:
    """True when two state dicts have the same keys and equal tensors (``torch.equal``)."""
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


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
    loaders: Sequence[str] | Mapping[str, int] = ("train", "valid"),
    num_batches: int = 4,
    batch_size: int = 8,
    runner: Runner | None = None,
    **train_kwargs: Any,
) -> Runner:
    """Train a 4->2 linear classifier for a few batches with ``callbacks``; returns the runner.

    The data is synthetic and seeded (dict batches ``features``/``targets``), the loop real:
    default subscribers, prefetch, background workers. ``train_kwargs`` go to
    ``runner.train`` (``main_metric=...``, ``logdir=...``); the console logger is off unless
    ``console=True``. ``loaders`` names the loaders (``num_batches`` each) or maps each name
    to its number of batches: ``tiny_run(loaders={"train": 6, "valid": 2})``.
    """
    sizes = loaders if isinstance(loaders, Mapping) else dict.fromkeys(loaders, num_batches)
    data = {name: tiny_loader(n, batch_size, seed=i) for i, (name, n) in enumerate(sizes.items())}
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


# ----------------------------------------------------------------- the loop's own tests

Batch = dict[str, torch.Tensor]


def regression_batches(
    sizes: int | Sequence[int], *, batch_size: int = 4, generator: torch.Generator | None = None
) -> list[Batch]:
    """Random ``{"x": (n, 3), "y": (n, 1)}`` batches: ``sizes`` batches of ``batch_size``, or
    one per size in ``sizes``; from ``generator`` or else the global RNG (``torch.manual_seed``).

    Example: ``regression_batches([3, 3, 2])`` is a loader whose last batch is short.
    """
    counts = [batch_size] * sizes if isinstance(sizes, int) else list(sizes)
    draw = functools.partial(torch.randn, generator=generator)
    return [{"x": draw(n, 3), "y": draw(n, 1)} for n in counts]


def make_loaders(
    spec: Mapping[str, int | Sequence[int]], *, batch_size: int = 4, seed: int | None = None
) -> dict[str, list[Batch]]:
    """Loaders of :func:`regression_batches`: ``{name: number of batches or batch sizes}``.

    ``seed`` draws them from one seeded generator, loader after loader; without it they come
    from the global RNG.

    Example: ``make_loaders({"train": 3, "valid": [4, 1]})`` is three train batches of 4 and
    a valid loader of a batch of 4 and one of 1.
    """
    generator = None if seed is None else torch.Generator().manual_seed(seed)
    return {
        name: regression_batches(sizes, batch_size=batch_size, generator=generator)
        for name, sizes in spec.items()
    }


class RegressionRunner(Runner):
    """Fits ``model(batch["x"])`` to ``batch["y"]``: ``batch_metrics["loss"]`` is the mean
    squared error, ``output`` is ``{"out": prediction}``. ``handled`` lists where each batch
    was handled, as ``(epoch_step, loader_key, loader_batch_step)``.

    Example::

        runner = regression_run(loaders=make_loaders({"train": 2}), num_epochs=2)
        assert runner.handled == [(1, "train", 1), (1, "train", 2), (2, "train", 1), ...]
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.handled: list[tuple[int, str, int]] = []

    def handle_batch(self, batch: Mapping[str, Any]) -> None:
        self.handled.append((self.epoch_step, self.loader_key, self.loader_batch_step))
        out = self.model(batch["x"])
        self.batch_metrics["loss"] = ((out - batch["y"]) ** 2).mean()
        self.output = {"out": out}


class ScriptRunner(RegressionRunner):
    """A :class:`RegressionRunner` whose valid loaders report chosen metrics, per epoch: in
    epoch ``e`` every valid batch sets ``batch_metrics[name] = values[e - 1]``.

    A list scripts ``"score"``; a mapping scripts each of its names (a scripted ``"loss"``
    replaces the real one). ``valid_loss=False`` drops the real loss on valid loaders. Train
    loaders train for real, so the weights change every epoch while the best epoch is known.

    Example::

        runner = regression_run(runner=ScriptRunner([3.0, 1.0, 2.0]), num_epochs=3,
                                main_metric="score")
        assert (runner.best_epoch, runner.best_valid_metric) == (2, 1.0)
    """

    def __init__(
        self,
        scores: Sequence[float] | Mapping[str, Sequence[float]],
        *,
        valid_loss: bool = True,
        **runner_kwargs: Any,
    ) -> None:
        super().__init__(**runner_kwargs)
        self.scripts = dict(scores) if isinstance(scores, Mapping) else {"score": scores}
        self.valid_loss = valid_loss

    def handle_batch(self, batch: Mapping[str, Any]) -> None:
        super().handle_batch(batch)
        if self.is_valid_loader:
            if not self.valid_loss:
                del self.batch_metrics["loss"]
            for name, values in self.scripts.items():
                self.batch_metrics[name] = values[self.epoch_step - 1]


def regression_run(
    callbacks: Sequence[Callback] = (),
    *,
    loaders: Mapping[str, Any] | None = None,
    runner: Runner | None = None,
    model: nn.Module | None = None,
    lr: float = 0.01,
    num_epochs: int = 1,
    **train_kwargs: Any,
) -> Runner:
    """Train ``runner`` (default a :class:`RegressionRunner`) with ``callbacks``; returns it.

    ``loaders`` defaults to ``make_loaders({"train": 2, "valid": 1})``, ``model`` to
    ``nn.Linear(3, 1)``, the optimizer to SGD with ``lr`` (``optimizer=`` replaces it, ``None``
    included). ``train_kwargs`` go to ``runner.train``; the console logger is off unless
    ``console=True``.

    Example::

        recorder = EventRecorder(events=["batch_end"], fields=["sample_step"])
        regression_run([recorder], loaders=make_loaders({"train": [3, 2]}))
        assert recorder.column("sample_step") == [3, 5]
    """
    model = model if model is not None else nn.Linear(3, 1)
    kwargs: dict[str, Any] = {"console": False, **train_kwargs}
    if "optimizer" not in kwargs:
        kwargs["optimizer"] = torch.optim.SGD(model.parameters(), lr=lr)
    runner = runner if runner is not None else RegressionRunner()
    runner.train(
        model=model,
        loaders=loaders if loaders is not None else make_loaders({"train": 2, "valid": 1}),
        callbacks=list(callbacks),
        num_epochs=num_epochs,
        **kwargs,
    )
    return runner
