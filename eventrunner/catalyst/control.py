"""Catalyst 22.04's control-flow callbacks: which callbacks, loaders and batches run when.

- :class:`ControlFlowCallbackWrapper`: runs a wrapped subscriber only on some epochs/loaders.
- :class:`PeriodicLoaderCallback`: runs each loader every N epochs (0: never).
- :class:`CheckRunCallback`: Catalyst's check mode, N batches per loader and N epochs.
"""

from __future__ import annotations

import builtins
import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from eventrunner.checks import is_number, positive_int, require_loaders
from eventrunner.data.loaders import BatchLimitLoaderWrapper
from eventrunner.events import (
    EPOCH_END,
    EPOCH_START,
    EXCEPTION,
    EXPERIMENT_END,
    EXPERIMENT_START,
    Callback,
    Order,
)
from eventrunner.writes import declared_writes

if TYPE_CHECKING:
    from eventrunner.state import RunState

Loaders = str | Sequence[str] | Mapping[str, int | Sequence[int]]
FilterFn = Callable[[int, str], bool]

#: Events a wrapper lets through whatever its filter says: Catalyst decides per loader pass
#: (at loader start) and is enabled again after each loader end, so the epoch and experiment
#: events of the wrapped callback always run.
_UNGATED = frozenset({EXPERIMENT_START, EPOCH_START, EPOCH_END, EXPERIMENT_END, EXCEPTION})

#: Names a ``filter_fn`` string may use: it is a lambda of (epoch, loader), not a program.
_FILTER_BUILTINS = {
    name: getattr(builtins, name)
    for name in ("abs", "all", "any", "bool", "int", "len", "max", "min", "range", "set", "str")
}


class _EpochFilter:
    def __init__(self, epochs: int | float | Sequence[int], reverse: bool, what: str) -> None:
        if isinstance(epochs, bool) or not isinstance(epochs, int | float | list | tuple):
            raise ValueError(
                f"ControlFlowCallbackWrapper: {what} should be int/float/Sequence[int], "
                f"got {epochs!r}"
            )
        if isinstance(epochs, int | float):
            self.period: int | None = int(epochs)
            if self.period < 1:
                raise ValueError(
                    f"ControlFlowCallbackWrapper: {what} as a period must be >= 1, got {epochs!r}"
                )
            self.epochs: frozenset[int] = frozenset()
        else:
            self.period = None
            self.epochs = frozenset(int(epoch) for epoch in epochs)
        self.reverse = reverse

    def __call__(self, epoch: int, loader: str) -> bool:
        hit = epoch % self.period == 0 if self.period is not None else epoch in self.epochs
        return hit != self.reverse


class _LoaderFilter:
    def __init__(self, loaders: Loaders, reverse: bool, what: str) -> None:
        if isinstance(loaders, str):
            loaders = [loaders]
        self.names: frozenset[str] | None = None
        self.epochs: dict[str, frozenset[int]] = {}
        if isinstance(loaders, Mapping):
            for name, epochs in loaders.items():
                if is_number(epochs):
                    self.epochs[name] = frozenset({int(epochs)})
                elif isinstance(epochs, Sequence) and all(is_number(e) for e in epochs):
                    self.epochs[name] = frozenset(int(e) for e in epochs)
                else:
                    raise ValueError(
                        f"ControlFlowCallbackWrapper: {what}[{name!r}] should be an epoch "
                        f"(int) or a list of epochs, got {epochs!r}"
                    )
        elif isinstance(loaders, list | tuple) and all(isinstance(n, str) for n in loaders):
            self.names = frozenset(loaders)
        else:
            raise ValueError(
                f"ControlFlowCallbackWrapper: {what} should be a loader name, a list of names "
                f"or {{name: epoch(s)}}, got {loaders!r}"
            )
        self.reverse = reverse

    def __call__(self, epoch: int, loader: str) -> bool:
        if self.names is not None:
            hit = loader in self.names
        else:  # {loader: epochs}: a loader not named has no epochs
            hit = epoch in self.epochs.get(loader, frozenset())
        return hit != self.reverse


def _filter_function(filter_fn: str | FilterFn) -> FilterFn:
    if isinstance(filter_fn, str):
        text = filter_fn.strip()
        if not text.startswith("lambda"):
            raise ValueError(
                f"ControlFlowCallbackWrapper: a filter_fn string must be a lambda of two "
                f"arguments, epoch and loader ('lambda e, l: ...'), got {filter_fn!r}"
            )
        try:
            # Catalyst evaluates the string; here only as a lambda with a few builtins.
            filter_fn = eval(text, {"__builtins__": _FILTER_BUILTINS}, {})
        except SyntaxError as error:
            raise ValueError(
                f"ControlFlowCallbackWrapper: filter_fn {filter_fn!r} is not a valid lambda: "
                f"{error}"
            ) from error
    if not callable(filter_fn):
        raise ValueError(
            f"ControlFlowCallbackWrapper: filter_fn should be a callable, got {filter_fn!r}"
        )
    try:
        inspect.signature(filter_fn).bind(1, "train")
    except TypeError as error:
        raise ValueError(
            "ControlFlowCallbackWrapper: filter_fn should take two arguments, epoch and loader"
        ) from error
    except ValueError:  # a builtin without a signature: let its call decide
        pass
    return filter_fn


class _Gated(Callback):
    """One part of the wrapped subscriber: same order, filters and writes, handlers gated."""

    def __init__(self, owner: CallbackWrapper, part: Callback) -> None:
        self.owner = owner
        self.part = part
        self.order = part.order
        self.loader_filter = part.loader_filter
        self.every = part.every
        self.background = part.background
        self.snapshot_batch = part.snapshot_batch
        self.writes = declared_writes(part)

    def describe_name(self) -> str:
        return f"{type(self.owner).__name__}[{self.part.describe_name()}]"

    def handlers(self) -> dict[str, Callable[[RunState], Any]]:
        return {
            event: self._gate(event, handler) for event, handler in self.part.handlers().items()
        }

    def _gate(self, event: str, handler: Callable[[RunState], Any]) -> Callable[[RunState], Any]:
        allows = self.owner.allows
        if inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
            getattr(handler, "__call__", None)  # noqa: B004 - a callable object's async __call__
        ):

            async def gated_async(runner: RunState) -> Any:
                if allows(event, runner):
                    return await handler(runner)
                return None

            return gated_async

        def gated(runner: RunState) -> Any:
            return handler(runner) if allows(event, runner) else None

        return gated


class CallbackWrapper(Callback):
    """Runs ``base_callback``'s handlers while ``enabled`` (``enable_callback`` at first).

    Each part of the wrapped subscriber keeps its order, loader filter and declared writes;
    ``kind`` is the wrapped one's (a wrapped default replaces that default), and so is the
    checkpointed state.
    """

    def __init__(self, base_callback: Callback, enable_callback: bool = True) -> None:
        if not isinstance(base_callback, Callback):
            raise ValueError(
                f"{type(self).__name__}: expected a Callback to wrap, got "
                f"{type(base_callback).__name__} ({base_callback!r})"
            )
        super().__init__(order=base_callback.order)
        self.callback = base_callback
        self.kind = base_callback.kind
        self.enabled = bool(enable_callback)

    def allows(self, event: str, runner: RunState) -> bool:
        """Whether the wrapped handler of ``event`` runs now."""
        return self.enabled

    def parts(self) -> tuple[Callback, ...]:
        return tuple(_Gated(self, part) for part in self.callback.parts())

    def handlers(self) -> dict[str, Callable[[RunState], Any]]:
        return {}  # its parts carry the wrapped handlers

    def describe_name(self) -> str:
        return f"{type(self).__name__}[{self.callback.describe_name()}]"

    def state_dict(self) -> dict[str, Any]:
        return self.callback.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.callback.load_state_dict(state)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.callback!r})"


class ControlFlowCallbackWrapper(CallbackWrapper):
    """Runs ``base_callback`` only on some epochs and loaders (one filter; the first given wins).

    - ``epochs``: a period N (epochs with ``epoch % N == 0``) or a list of epochs to run on;
      ``ignore_epochs``: the same, to skip.
    - ``loaders``: loader names to run on, or ``{loader: epoch or epochs}`` (that loader on those
      epochs only); ``ignore_loaders``: the same, to skip.
    - ``filter_fn(epoch, loader) -> bool``, or its text ``"lambda e, l: l != 'train'"``.

    The decision is taken per loader pass, for the wrapped subscriber's ``loader_start``,
    batch and ``loader_end`` handlers; its epoch and experiment handlers always run, as in
    Catalyst. Orders, loader filters, writes, ``kind`` and state as :class:`CallbackWrapper`.

    Example: ``ControlFlowCallbackWrapper(CriterionCallback(...), ignore_loaders="valid")``.
    """

    def __init__(
        self,
        base_callback: Callback,
        epochs: int | Sequence[int] | None = None,
        ignore_epochs: int | Sequence[int] | None = None,
        loaders: Loaders | None = None,
        ignore_loaders: Loaders | None = None,
        filter_fn: str | FilterFn | None = None,
    ) -> None:
        super().__init__(base_callback, True)
        filter_: FilterFn
        if epochs is not None:
            filter_ = _EpochFilter(epochs, False, "epochs")
        elif ignore_epochs is not None:
            filter_ = _EpochFilter(ignore_epochs, True, "ignore_epochs")
        elif loaders is not None:
            filter_ = _LoaderFilter(loaders, False, "loaders")
        elif ignore_loaders is not None:
            filter_ = _LoaderFilter(ignore_loaders, True, "ignore_loaders")
        elif filter_fn is not None:
            filter_ = _filter_function(filter_fn)
        else:
            raise ValueError(
                "ControlFlowCallbackWrapper: expected one of 'epochs', 'ignore_epochs', "
                "'loaders', 'ignore_loaders' or 'filter_fn'"
            )
        self.filter_fn = filter_
        self._decided: tuple[int, str | None, bool] | None = None

    def allows(self, event: str, runner: RunState) -> bool:
        if event in _UNGATED:
            return True
        # Decided once per loader pass, as Catalyst's loader_start does.
        decided = self._decided
        if decided is None or decided[0] != runner.epoch_step or decided[1] != runner.loader_key:
            allowed = bool(self.filter_fn(runner.epoch_step, str(runner.loader_key)))
            decided = self._decided = (runner.epoch_step, runner.loader_key, allowed)
        return decided[2]


def _check_period(name: str, period: Any) -> int:
    if isinstance(period, bool) or not is_number(period):
        raise TypeError(
            f"PeriodicLoaderCallback: expected loader period type is int/float but got "
            f"{type(period).__name__} for {name!r}"
        )
    if math.isnan(period) or int(period) < 0:
        raise ValueError(
            f"PeriodicLoaderCallback: period should be >= 0, but got {period} for {name!r}"
        )
    return int(period)


class PeriodicLoaderCallback(Callback):
    """Runs loader ``name`` only on epochs divisible by its period (``name=N``; 0: never).

    Loaders it does not name run every epoch. On an epoch without ``valid_loader_key``, its
    epoch metrics are ``{valid_metric_key: +inf}`` (``-inf`` when not ``minimize``), as in
    Catalyst: model selection and early stopping see no improvement on that epoch.

    Example: ``PeriodicLoaderCallback("valid", "loss", minimize=True, train_additional=2,
    valid=3)``.
    """

    def __init__(
        self,
        valid_loader_key: str,
        valid_metric_key: str,
        minimize: bool,
        **loader_periods: int | float,
    ) -> None:
        super().__init__(order=Order.INTERNAL)
        self.valid_loader_key = valid_loader_key
        self.valid_metric_key = valid_metric_key
        self.minimize_metric = minimize
        self.loader_periods = {
            name: _check_period(name, period) for name, period in loader_periods.items()
        }
        if self.loader_periods.get(valid_loader_key, 1) < 1:
            raise ValueError(
                f"PeriodicLoaderCallback: period for a validation loader ({valid_loader_key!r}) "
                "should be > 0"
            )
        self.loaders: dict[str, Any] = {}
        self.writes = {
            EPOCH_START: ("loaders",),
            EPOCH_END: (f"epoch_metrics.{valid_loader_key}",),
            EXPERIMENT_END: ("loaders",),
        }

    def on_experiment_start(self, runner: RunState) -> None:
        require_loaders(self.loader_periods, runner.loaders, "PeriodicLoaderCallback: loader")
        self.loaders = dict(runner.loaders)
        periods = [self.loader_periods.get(name, 1) for name in self.loaders]
        for epoch in range(1, runner.num_epochs + 1):
            if all(p == 0 or epoch % p != 0 for p in periods):
                raise ValueError(
                    f"PeriodicLoaderCallback: there will be no loaders in epoch {epoch}"
                )

    def on_epoch_start(self, runner: RunState) -> None:
        epoch = runner.epoch_step
        loaders = {
            name: loader
            for name, loader in self.loaders.items()
            if (period := self.loader_periods.get(name, 1)) > 0 and epoch % period == 0
        }
        if not loaders:
            raise ValueError(f"PeriodicLoaderCallback: there are no loaders in epoch {epoch}")
        runner.loaders = loaders

    def on_epoch_end(self, runner: RunState) -> None:
        if self.valid_loader_key not in runner.loaders:
            worst = math.inf if self.minimize_metric else -math.inf
            runner.epoch_metrics[self.valid_loader_key] = {self.valid_metric_key: worst}

    def on_experiment_end(self, runner: RunState) -> None:
        if self.loaders:  # the run's loaders again, for what uses runner.loaders afterwards
            runner.loaders = self.loaders


class _CheckRunBatches(Callback):
    """The loader-start part of :class:`CheckRunCallback`: before anyone reads the loader."""

    writes = {"loader_start": ("loader",)}

    def __init__(self, owner: CheckRunCallback) -> None:
        super().__init__(order=Order.INTERNAL)
        self.owner = owner

    def describe_name(self) -> str:
        return "CheckRunCallback.batches"

    def on_loader_start(self, runner: RunState) -> None:
        # A fresh wrapper per pass: each pass takes the first batches of that pass.
        runner.loader = BatchLimitLoaderWrapper(runner.loader, self.owner.num_batch_steps)


class CheckRunCallback(Callback):
    """Catalyst's check mode: ``num_batch_steps`` batches per loader pass, then the run ends
    after ``num_epoch_steps`` epochs.

    Example: ``CheckRunCallback(num_batch_steps=3, num_epoch_steps=3)``.
    """

    kind = "check_run"
    writes = {"epoch_end": ("need_early_stop",)}

    def __init__(self, num_batch_steps: int = 3, num_epoch_steps: int = 3) -> None:
        super().__init__(order=Order.EXTERNAL)
        self.num_batch_steps = positive_int(num_batch_steps, "CheckRunCallback: num_batch_steps")
        self.num_epoch_steps = positive_int(num_epoch_steps, "CheckRunCallback: num_epoch_steps")

    def parts(self) -> tuple[Callback, ...]:
        return (self, _CheckRunBatches(self))

    def on_epoch_end(self, runner: RunState) -> None:
        if runner.epoch_step >= self.num_epoch_steps:
            runner.need_early_stop = True


#: The name Catalyst's docstrings use for the wrapper.
ControlFlowCallback = ControlFlowCallbackWrapper

__all__ = [
    "CallbackWrapper",
    "CheckRunCallback",
    "ControlFlowCallback",
    "ControlFlowCallbackWrapper",
    "PeriodicLoaderCallback",
]
