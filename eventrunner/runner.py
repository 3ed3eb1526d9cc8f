"""``Runner``: the training loop, its state, and the events it publishes.

The loop knows batches, loaders, counters and events; everything that acts on a run
(backward, optimizer step, metrics, selection, logging...) is a subscriber from ``plugins``.
See :mod:`eventrunner.events` for the loop as pseudocode.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import logging
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from eventrunner import checkpoint, components, compose, distributed, precision
from eventrunner.accumulation import AccumulationWindow
from eventrunner.asyncio_bridge import interrupts_raise, run_sync
from eventrunner.background import BackgroundWorker
from eventrunner.catalyst.engines import Engine
from eventrunner.checkpoint import position
from eventrunner.data.loaders import loader_kind, loader_length
from eventrunner.data.prefetch import Prefetcher, move_to_device
from eventrunner.data.tensors import leading_dim
from eventrunner.dispatch import Call, compile_calls
from eventrunner.events import (
    BATCH_END,
    BATCH_START,
    EPOCH_END,
    EPOCH_START,
    EXCEPTION,
    EXPERIMENT_END,
    EXPERIMENT_START,
    LOADER_END,
    LOADER_START,
    Callback,
    EventBus,
)
from eventrunner.inference import InferenceMixin
from eventrunner.logdir import check_new_run
from eventrunner.metrics import WeightedMeans
from eventrunner.preemption import Preempted, stop_on_sigterm
from eventrunner.rng import seed_everything
from eventrunner.runner_hooks import RunnerHooks, subscribe_runner
from eventrunner.settings import Selection, TrainSettings
from eventrunner.settings import signature as settings_signature
from eventrunner.signals import SIGNALS
from eventrunner.state import reset_run_state
from eventrunner.step_probe import probe_handle_batch

log = logging.getLogger("eventrunner")


def _resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class Runner(RunnerHooks, InferenceMixin):
    """A training loop; subclass it and write :meth:`handle_batch`.

    ``handle_batch`` gets each batch as the loader yields it (a dict, a tuple, a list), moved
    to the device. The subclass's own ``on_<event>`` methods, if any, run as subscribers
    (:class:`~eventrunner.runner_hooks.RunnerHooks`). Example::

        class MyRunner(Runner):
            def handle_batch(self, batch):
                logits = self.model(batch["features"])
                self.batch_metrics.update(loss=self.criterion(logits, batch["targets"]))
                self.output = {"logits": logits}

        MyRunner().train(model=model, criterion=criterion, optimizer=optimizer,
                         loaders={"train": train_loader, "valid": valid_loader}, num_epochs=3)
    """

    #: Key of the loss in ``batch_metrics`` that the backward subscriber uses.
    loss_key: str = "loss"

    def __init__(
        self,
        model: nn.Module | None = None,
        *,
        criterion: Any = None,
        optimizer: torch.optim.Optimizer | None = None,
        scheduler: Any = None,
        device: str | torch.device | None = None,
    ) -> None:
        self.model = model
        self.criterion = criterion
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.device = _resolve_device(device)
        self.loaders: dict[str, Any] = {}
        self.callbacks: list[Callback] = []
        self.bus = EventBus()
        self._num_epochs = 0
        self.engine = Engine().bind(self)  # Catalyst's runner.engine: device, backward(loss)
        self.logdir: Path | None = None
        self.settings: TrainSettings | None = None
        self.selection = Selection("valid", "loss", True, False, False)
        self._worker: BackgroundWorker | None = None
        self._prefetcher = Prefetcher()
        self._prefetch = 2  # batches ahead: train(prefetch=)
        # Scale and precision (SPEC 10), set by train(); read by the DDP/backward subscribers.
        self.ddp = False
        self.amp_dtype: torch.dtype | None = None
        self.scaler: torch.amp.GradScaler | None = None
        self.accumulation_steps = 1
        self.accumulation = AccumulationWindow()
        self.grad_clip_norm: float | None = None
        self.grad_clip_value: float | None = None
        reset_run_state(self)

    # ----------------------------------------------------------------- user hooks

    def handle_batch(self, batch: Any) -> None:
        """Process one batch: set ``self.output`` and fill ``self.batch_metrics``."""
        raise NotImplementedError(
            f"{type(self).__name__}.handle_batch(batch) is not written: subclass Runner and "
            "compute self.output and self.batch_metrics there (or use SupervisedRunner)"
        )

    def default_callbacks(self, settings: TrainSettings) -> list[Callback]:
        """Subscribers this runner class adds to the defaults (one of the user's kind replaces
        each); :class:`~eventrunner.SupervisedRunner` adds its loss here."""
        return []

    def to_dict_batch(self, batch: Any) -> Any:
        """The batch ``handle_batch`` gets: a mapping as a dict, a tuple or list as it is."""
        if type(batch) is dict or isinstance(batch, tuple | list):
            return batch
        if isinstance(batch, Mapping):
            return dict(batch)
        raise TypeError(
            f"loader {self.loader_key!r} yielded a {type(batch).__name__} batch: "
            f"{type(self).__name__} takes dict batches ({{'features': ..., 'targets': ...}}) "
            "or tuple/list batches ((features, targets))"
        )

    # ------------------------------------------------------------------ state

    @property
    def is_train(self) -> bool:
        return self.is_train_loader

    @property
    def num_epochs(self) -> int:
        """Epochs the run trains (``train(num_epochs=)``); a subclass may make it a property."""
        return self._num_epochs

    @num_epochs.setter
    def num_epochs(self, value: int) -> None:
        self._num_epochs = value

    def snapshot(self, with_batch: bool = False) -> Runner:
        """A copy of the runner whose counters and metrics no longer change with the loop.

        Its ``batch`` and ``output`` are None unless ``with_batch``: a queued background call
        would otherwise keep them (and their device memory) alive.
        """
        snap = copy.copy(self)
        if not with_batch:
            snap.batch = snap.output = None
        snap.batch_metrics = dict(self.batch_metrics)
        snap.loader_metrics = dict(self.loader_metrics)
        snap.epoch_metrics = {key: dict(value) for key, value in self.epoch_metrics.items()}
        return snap

    # --------------------------------------------------------------- training

    def train(self, settings: TrainSettings | None = None, /, **kwargs: Any) -> None:
        """Train for ``num_epochs`` over ``loaders``; the arguments are those of :meth:`compose`.

        Works in a plain script and where an event loop is already running (Jupyter).
        """
        run_sync(self.atrain, settings, **kwargs)

    async def atrain(self, settings: TrainSettings | None = None, /, **kwargs: Any) -> None:
        """Train: :meth:`compose` the run from the arguments, then run it."""
        settings = _settings(settings, kwargs)
        if settings.resume == "auto":
            settings = settings.replace(**checkpoint.auto_resume(settings.logdir))
        with distributed.process_group_scope(
            settings.ddp, settings.device, self.device, settings.timeout
        ) as device:
            self.compose(settings.replace(device=device) if device != self.device else settings)
            check_new_run(self.logdir, overwrite=settings.overwrite, resume=settings.resume)
            if settings.resume is not None:
                # After seeding (RNG states are restored over the seed), before
                # experiment_start (every subscriber starts from the resumed counters and states).
                checkpoint.restore_run(self, settings.resume)
            # Ctrl-C stops the loop where it is, not at its next await; SIGTERM after a batch.
            with interrupts_raise(), stop_on_sigterm(self):
                await self._run_experiment()

    def compose(self, settings: TrainSettings | None = None, /, **kwargs: Any) -> EventBus:
        """Validate the arguments, seed, compose the subscribers and return the bus; no training.

        :meth:`train`/:meth:`atrain` take the same arguments (the fields of
        :class:`~eventrunner.settings.TrainSettings`, or one such object) and then run
        ``num_epochs`` epochs over ``loaders``; ``print(runner.compose(...).describe())`` shows
        the pipeline. Components left out (``model``, ``criterion``, ``optimizer``,
        ``scheduler``) keep what the runner already holds.
        """
        settings = _settings(settings, kwargs)
        self._configure(settings)
        if settings.seed is not None:
            seed_everything(settings.seed)
        self.callbacks = compose.compose_callbacks(self, settings)
        self.bus = EventBus()
        for callback in self.callbacks:
            self.bus.subscribe(callback)
        subscribe_runner(self.bus, self)  # the subclass's own on_<event> methods, if any
        # Before any batch (and in --dry-run): two writers of one field in no decided order.
        self.bus.check_writes(self.loaders)
        return self.bus

    def _configure(self, settings: TrainSettings) -> None:
        """Set the run's components and settings; raises before any batch runs."""
        model = settings.model if settings.model is not None else self.model
        if model is None:
            raise ValueError("train() needs a model: pass model=...")
        self.model = components.as_model(model)
        for name in ("criterion", "optimizer", "scheduler"):
            if getattr(settings, name) is not None:
                setattr(self, name, components.as_components(getattr(settings, name), name))
        if settings.device is not None:
            self.device = _resolve_device(settings.device)
        self.settings = settings
        self.loaders = dict(settings.loaders)
        self._num_epochs = settings.num_epochs
        self.selection = settings.selection
        self.logdir = Path(settings.logdir) if settings.logdir is not None else None
        self._prefetch = settings.prefetch
        self.ddp = distributed.ddp_active(settings.ddp)
        self.amp_dtype = precision.resolve_amp(settings.amp, self.device)
        self.scaler = precision.grad_scaler(self.amp_dtype, self.device)
        self.accumulation_steps = settings.accumulation_steps
        self.grad_clip_norm = settings.grad_clip_norm
        self.grad_clip_value = settings.grad_clip_value
        self.accumulation = AccumulationWindow()
        reset_run_state(self)
        self.model.to(self.device)
        for criterion in components.each(self.criterion):
            if isinstance(criterion, nn.Module):
                criterion.to(self.device)
        engine = settings.engine if settings.engine is not None else Engine()
        self.engine = engine.bind(self)
        self.model = engine.prepare_model(self.model)

    @property
    def valid_loader(self) -> str:
        return self.selection.loader

    @property
    def main_metric(self) -> str:
        return self.selection.metric

    @property
    def minimize_metric(self) -> bool:
        return self.selection.minimize

    # ------------------------------------------------------------------ the loop

    def _calls(self, event: str) -> tuple[tuple[Call, ...], bool]:
        """The calls ``event`` makes now (subscribers in order, then its signal's receivers),
        and whether one of them must be awaited: the one place the loop compiles them."""
        return compile_calls(
            event,
            self.bus.subscriptions(event),
            self.loader_key,
            self.epoch_step,
            self._worker,
            SIGNALS[event],
        )

    async def _publish(self, event: str) -> None:
        calls, awaits = self._calls(event)
        if awaits:
            await _call_all(calls, self)
        else:
            for call in calls:
                call(self)

    async def _publish_after_failure(
        self, event: str, error: BaseException, calls: tuple[Any, ...] | None = None
    ) -> None:
        # Every handler gets its turn (loggers must close, files flush); their own errors are
        # logged and noted on the original exception, which is the one that propagates.
        for call in self._calls(event)[0] if calls is None else calls:
            try:
                result = call(self)
                if inspect.isawaitable(result):
                    await result
            except BaseException as secondary:
                _note_secondary(error, f"{event} handler {call!r}", secondary)

    async def _end_experiment(self) -> None:
        """``experiment_end`` of a run that did not fail. A handler that fails here (the final
        save on a full disk) makes it a failed run: ``exception`` is published, the handlers
        after it still get their ``experiment_end``, and its error propagates."""
        calls, _ = self._calls(EXPERIMENT_END)
        for index, call in enumerate(calls):
            try:
                result = call(self)
                if inspect.isawaitable(result):
                    await result
            except BaseException as error:
                self.exception = error
                await self._publish_after_failure(EXCEPTION, error)
                await self._publish_after_failure(EXPERIMENT_END, error, calls[index + 1 :])
                raise

    async def _run_experiment(self) -> None:
        if self.bus.has_background():
            self._worker = BackgroundWorker(self.device.type)
        try:
            await self._publish(EXPERIMENT_START)
            # need_early_stop is also checked first: a resumed run that early stopping ended
            # (restored with the counters) runs no epoch.
            while self.epoch_step < self.num_epochs and not self.need_early_stop:
                await self._run_epoch()
        except BaseException as error:
            self.exception = error
            await self._publish_after_failure(EXCEPTION, error)
            await self._publish_after_failure(EXPERIMENT_END, error)
            self._close_worker(error)
            raise
        else:
            try:
                await self._end_experiment()
            except BaseException as error:
                self._close_worker(error)
                raise
            self._close_worker(None)

    def _close_worker(self, error: BaseException | None) -> None:
        worker, self._worker = self._worker, None
        if worker is None:
            return
        try:
            worker.close()
            worker.wait()
        except BaseException as secondary:
            if error is None:
                raise
            _note_secondary(error, "background subscriber", secondary)

    @contextlib.asynccontextmanager
    async def _events(self, start: str, end: str) -> AsyncIterator[None]:
        """``<start>``, the body, ``<end>``: the shape of the epoch and loader levels (a failing
        body skips ``<end>``; the experiment level's failure path handles it)."""
        await self._publish(start)
        yield
        await self._publish(end)

    async def _run_epoch(self) -> None:
        self.epoch_step += 1
        self.epoch_metrics = {}
        first = position.start_epoch(self)  # resumed inside this epoch: its next loader
        async with self._events(EPOCH_START, EPOCH_END):
            for loader_key, loader in list(self.loaders.items())[first:]:
                await self._run_loader(loader_key, loader)
        if self._worker is not None:
            self._worker.wait(up_to_epoch=self.epoch_step - 1)

    def _set_loader(self, loader_key: str, loader: Any) -> None:
        kind = loader_kind(loader_key)
        self.loader_key = loader_key
        self.loader = loader
        self.is_train_loader = kind == "train"
        self.is_valid_loader = kind == "valid"
        self.is_infer_loader = kind == "infer"
        self.loader_batch_step = 0
        self.loader_sample_step = 0
        self.loader_batch_len = loader_length(loader)
        self.running_metrics = WeightedMeans()
        self.loader_metrics = {}

    def _prepare_batch(self, batch: Any) -> Any:
        batch = self.to_dict_batch(batch)
        if self.device.type != "cpu":
            batch = move_to_device(batch, self.device, non_blocking=True)
        return batch

    async def _run_loader(self, loader_key: str, loader: Any) -> None:
        self._set_loader(loader_key, loader)
        position.start_pass(self)
        self.model.train(self.is_train_loader)
        with torch.set_grad_enabled(self.is_train_loader):
            async with self._events(LOADER_START, LOADER_END):
                await self._run_batches()
                if self.loader_batch_step == 0:
                    used_up = (
                        " (an iterator is used up after one pass)"
                        if isinstance(loader, Iterator)
                        else ""
                    )
                    raise ValueError(f"loader {loader_key!r} yielded no batches{used_up}")

    async def _run_batches(self) -> None:
        starts, starts_await = self._calls(BATCH_START)
        ends, ends_await = self._calls(BATCH_END)
        # Autocast per batch, around handle_batch only (see eventrunner.precision).
        handle_batch = precision.autocast_each_call(
            self.handle_batch, self.device.type, self.amp_dtype
        )
        # The first train batch of a pass is watched until handle_batch is seen to do its own
        # backward or step (eventrunner.step_probe); the others run it as they are.
        probe = self.is_train_loader and not self.handle_batch_backward
        # Subscribers may replace runner.loader at loader_start (batch limits, samplers).
        loader = position.pass_loader(self)  # resumed inside this pass: after its batches
        depth = position.prefetch_depth(self, self.loader, self._prefetch)
        with self._prefetcher.batches(
            loader, self.to_dict_batch, depth, self.device, self.loader_key
        ) as batches:
            for batch in batches:
                self.batch = batch
                self.output = None
                self.batch_metrics = {}
                self.batch_size = size = leading_dim(batch)
                self.batch_step += 1
                self.loader_batch_step += 1
                self.sample_step += size
                self.loader_sample_step += size
                if starts_await:
                    await _call_all(starts, self)
                else:
                    for call in starts:
                        call(self)
                # self.batch: a batch_start subscriber may have replaced it (a transform).
                if probe:
                    probe = False
                    probe_handle_batch(self, handle_batch, self.batch)
                else:
                    handle_batch(self.batch)
                if self.batch_size != size:  # handle_batch may reweigh the batch
                    self.sample_step += self.batch_size - size
                    self.loader_sample_step += self.batch_size - size
                if ends_await:
                    await _call_all(ends, self)
                else:
                    for call in ends:
                        call(self)
                if self.stop_requested:  # SIGTERM: stop after this batch (preemption)
                    raise Preempted(self.stop_requested)


# train(), atrain() and compose() take TrainSettings' fields: show them in help() and IDEs.
Runner.train.__signature__ = settings_signature()  # type: ignore[attr-defined]
Runner.atrain.__signature__ = settings_signature()  # type: ignore[attr-defined]


def _settings(settings: TrainSettings | None, kwargs: dict[str, Any]) -> TrainSettings:
    if settings is None:
        return TrainSettings.from_kwargs(kwargs)
    if not isinstance(settings, TrainSettings):
        raise TypeError(f"train() takes keyword arguments (or one TrainSettings), got {settings!r}")
    return settings.replace(**kwargs) if kwargs else settings


async def _call_all(calls: tuple[Any, ...], runner: Runner) -> None:
    for call in calls:
        result = call(runner)
        if result is not None and inspect.isawaitable(result):
            await result


def _note_secondary(error: BaseException, where: str, secondary: BaseException) -> None:
    log.error("%s failed while handling %r: %r", where, error, secondary, exc_info=secondary)
    with contextlib.suppress(AttributeError):
        error.add_note(f"eventrunner: {where} also failed: {secondary!r}")
