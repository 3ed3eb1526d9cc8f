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
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
from torch import nn

from eventrunner import checkpoint, compose, distributed, precision
from eventrunner.asyncio_bridge import interrupts_raise, run_sync
from eventrunner.background import BackgroundWorker
from eventrunner.checks import positive_int
from eventrunner.data.loaders import loader_kind, loader_length, validate_loaders
from eventrunner.data.prefetch import Prefetcher, check_prefetch, move_to_device
from eventrunner.dispatch import compile_calls
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
from eventrunner.logdir import check_new_run
from eventrunner.rng import seed_everything

log = logging.getLogger("eventrunner")


class _Default(str):
    """A default argument value that remembers it was not given explicitly."""


_VALID_LOADER = _Default("valid")
_MAIN_METRIC = _Default("loss")


@dataclass(frozen=True)
class Selection:
    """Which loader's metric picks the best epoch, and whether the user named them."""

    loader: str
    metric: str
    minimize: bool
    loader_given: bool
    metric_given: bool


def _leading_dim(batch: Mapping[str, Any]) -> int:
    for value in batch.values():
        if isinstance(value, torch.Tensor):
            return value.shape[0] if value.ndim else 1
    for value in batch.values():
        if isinstance(value, Mapping):
            return _leading_dim(value)
    return 1


def _resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _pick_alias(name: str, value: Any, alias: str, alias_value: Any) -> Any:
    if alias_value is None:
        return value
    if not isinstance(value, _Default) and value is not True and value != alias_value:
        raise ValueError(f"{name}={value!r} and its alias {alias}={alias_value!r} disagree")
    return alias_value


class Runner:
    """A training loop over dict batches; subclass it and write :meth:`handle_batch`.

    Example::

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
        self.num_epochs = 0
        self.logdir: Path | None = None
        self.selection = Selection("valid", "loss", True, False, False)
        self.prefetch = 2
        self.resume: str | Path | None = None
        self.overwrite_logdir = False
        self.load_best_on_end = False
        self.overfit = False
        self.verbose = False
        self._worker: BackgroundWorker | None = None
        self._prefetcher = Prefetcher()
        # Scale and precision (SPEC 10), set by train(); read by the DDP/backward subscribers.
        self.ddp = False
        self.ddp_kwargs: dict[str, Any] = {}
        self.ddp_timeout = timedelta(seconds=distributed.DEFAULT_DDP_TIMEOUT_S)
        self.amp_dtype: torch.dtype | None = None
        self.scaler: torch.amp.GradScaler | None = None
        self.accumulation_steps = 1
        self.grad_clip_norm: float | None = None
        self.grad_clip_value: float | None = None
        self._reset_counters()

    def _reset_counters(self) -> None:
        self.epoch_step = 0
        self.batch_step = 0
        self.sample_step = 0
        self.loader_key: str | None = None
        self.loader: Any = None
        self.loader_batch_step = 0
        self.loader_sample_step = 0
        self.loader_batch_len: int | None = None
        self.batch: Any = None
        self.batch_size = 0
        self.output: Any = None
        self.batch_metrics: dict[str, Any] = {}
        self.loader_metrics: dict[str, Any] = {}
        self.epoch_metrics: dict[str, dict[str, Any]] = {}
        # loader -> {batch_metrics key: shape} of its last pass's non-scalars (not aggregated).
        self.non_scalar_metrics: dict[str, dict[str, tuple[int, ...]]] = {}
        self.is_train_loader = False
        self.is_valid_loader = False
        self.is_infer_loader = False
        self.best_valid_metric: float | None = None
        self.best_epoch: int | None = None
        self.need_early_stop = False
        self.exception: BaseException | None = None

    # ----------------------------------------------------------------- user hooks

    def handle_batch(self, batch: dict[str, Any]) -> None:
        """Process one batch: set ``self.output`` and fill ``self.batch_metrics``."""
        raise NotImplementedError(
            f"{type(self).__name__}.handle_batch(batch) is not written: subclass Runner and "
            "compute self.output and self.batch_metrics there (or use SupervisedRunner)"
        )

    def to_dict_batch(self, batch: Any) -> dict[str, Any]:
        """The batch as a dict; a plain Runner accepts mappings only."""
        if type(batch) is dict:
            return batch
        if isinstance(batch, Mapping):
            return dict(batch)
        raise TypeError(
            f"loader {self.loader_key!r} yielded a {type(batch).__name__} batch: "
            f"{type(self).__name__} expects dict batches "
            "({'features': ..., 'targets': ...}); "
            "use SupervisedRunner for (input, target) tuples"
        )

    # ------------------------------------------------------------------ state

    @property
    def is_train(self) -> bool:
        return self.is_train_loader

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

    def train(self, **kwargs: Any) -> None:
        """Train for ``num_epochs`` over ``loaders``; the arguments are those of :meth:`compose`.

        Works in a plain script and where an event loop is already running (Jupyter).
        """
        run_sync(self.atrain, **kwargs)

    @distributed.process_group_scope
    async def atrain(self, **kwargs: Any) -> None:
        """Train: :meth:`compose` the run from ``kwargs`` (its arguments), then run it."""
        self.compose(**kwargs)
        check_new_run(self.logdir, overwrite=self.overwrite_logdir, resume=self.resume)
        if self.resume is not None:
            # After seeding (RNG states are restored over the seed), before experiment_start
            # (every subscriber starts from the resumed counters and states).
            checkpoint.restore_run(self, self.resume)
        with interrupts_raise():  # Ctrl-C stops the loop where it is, not at its next await
            await self._run_experiment()

    def compose(
        self,
        *,
        loaders: Mapping[str, Iterable[Any]],
        model: nn.Module | None = None,
        criterion: Any = None,
        optimizer: torch.optim.Optimizer | None = None,
        scheduler: Any = None,
        callbacks: Sequence[Callback] | Mapping[str, Callback] | None = None,
        num_epochs: int = 1,
        valid_loader: str = _VALID_LOADER,
        main_metric: str = _MAIN_METRIC,
        minimize_metric: bool = True,
        valid_metric: str | None = None,
        minimize_valid_metric: bool | None = None,
        logdir: str | Path | None = None,
        overfit: bool = False,
        load_best_on_end: bool = False,
        seed: int | None = 42,
        verbose: bool = False,
        console: bool = True,
        device: str | torch.device | None = None,
        resume: str | Path | None = None,
        overwrite: bool = False,
        prefetch: int = 2,
        profile: bool = False,
        ddp: bool | None = None,
        ddp_kwargs: Mapping[str, Any] | None = None,
        ddp_timeout: float | timedelta = distributed.DEFAULT_DDP_TIMEOUT_S,
        amp: bool | str | torch.dtype = False,
        accumulation_steps: int = 1,
        grad_clip_norm: float | None = None,
        grad_clip_value: float | None = None,
    ) -> EventBus:
        """Validate the arguments, seed, compose the subscribers and return the bus; no training.

        :meth:`train`/:meth:`atrain` take these arguments and then run ``num_epochs`` epochs
        over ``loaders``; ``print(runner.compose(...).describe())`` shows the pipeline.

        Arguments left out keep what the runner already holds (``model``, ``criterion``,
        ``optimizer``, ``scheduler``). ``valid_loader``/``main_metric``/``minimize_metric``
        pick the best epoch (``valid_metric``/``minimize_valid_metric`` are Catalyst 22's
        names). ``overfit=True`` runs one batch per loader. ``verbose`` shows progress bars,
        ``console`` prints one line per loader per epoch. ``prefetch`` batches are fetched
        ahead (0 turns it off). ``resume`` continues from a checkpoint. A ``logdir`` that
        holds a previous run is refused unless ``resume`` continues it or ``overwrite=True``
        lets the new run replace its files. ``profile=True``
        times every subscriber and batch phase and prints a table at the end.

        Scale and precision: ``ddp`` trains data-parallel (None: when launched by torchrun)
        with ``ddp_kwargs`` for ``DistributedDataParallel`` (e.g. ``find_unused_parameters``);
        ``ddp_timeout`` (seconds or a ``timedelta``; 10 min) ends the run when a rank is stuck;
        ``amp`` autocasts (True: bf16 on CPU, fp16 + GradScaler on CUDA; or ``"fp16"``,
        ``"bf16"``); ``accumulation_steps`` batches per optimizer step; ``grad_clip_norm`` /
        ``grad_clip_value`` clip gradients before each step.
        """
        self._configure(
            loaders=loaders,
            model=model,
            criterion=criterion,
            optimizer=optimizer,
            scheduler=scheduler,
            num_epochs=num_epochs,
            selection=self._selection(
                valid_loader, main_metric, minimize_metric, valid_metric, minimize_valid_metric
            ),
            logdir=logdir,
            device=device,
            prefetch=prefetch,
        )
        self.resume = resume
        if not isinstance(overwrite, bool):
            raise TypeError(f"overwrite must be True or False, got {overwrite!r}")
        self.overwrite_logdir = overwrite
        self.load_best_on_end = load_best_on_end
        self.overfit = overfit
        self.verbose = verbose
        self.ddp = distributed.ddp_active(ddp)
        self.ddp_kwargs = dict(ddp_kwargs or {})
        self.ddp_timeout = distributed.as_timeout(ddp_timeout)
        self.amp_dtype = precision.resolve_amp(amp, self.device)
        self.scaler = precision.grad_scaler(self.amp_dtype, self.device)
        self.accumulation_steps = accumulation_steps
        self.grad_clip_norm, self.grad_clip_value = grad_clip_norm, grad_clip_value
        if seed is not None:
            seed_everything(seed)
        self.callbacks = compose.compose_callbacks(
            self, callbacks, overfit=overfit, verbose=verbose, console=console, profile=profile
        )
        self.bus = EventBus()
        for callback in self.callbacks:
            self.bus.subscribe(callback)
        return self.bus

    def _selection(
        self,
        valid_loader: str,
        main_metric: str,
        minimize_metric: bool,
        valid_metric: str | None,
        minimize_valid_metric: bool | None,
    ) -> Selection:
        main_metric = _pick_alias("main_metric", main_metric, "valid_metric", valid_metric)
        minimize = _pick_alias(
            "minimize_metric", minimize_metric, "minimize_valid_metric", minimize_valid_metric
        )
        if not isinstance(valid_loader, str):
            raise TypeError(f"valid_loader must be a loader name, got {valid_loader!r}")
        if not isinstance(main_metric, str):
            raise TypeError(f"main_metric must be a metric name, got {main_metric!r}")
        return Selection(
            loader=str(valid_loader),
            metric=str(main_metric),
            minimize=bool(minimize),
            loader_given=not isinstance(valid_loader, _Default),
            metric_given=not isinstance(main_metric, _Default),
        )

    def _configure(
        self,
        *,
        loaders: Any,
        model: nn.Module | None,
        criterion: Any,
        optimizer: Any,
        scheduler: Any,
        num_epochs: int,
        selection: Selection,
        logdir: str | Path | None,
        device: str | torch.device | None,
        prefetch: int,
    ) -> None:
        """Validate the arguments and set the run's state; raises before any batch runs."""
        self.loaders = validate_loaders(loaders)
        positive_int(num_epochs, "num_epochs")
        check_prefetch(prefetch)
        if selection.loader_given and selection.loader not in self.loaders:
            raise ValueError(
                f"valid_loader {selection.loader!r} is not among the loaders "
                f"({', '.join(self.loaders)})"
            )
        self.model = model if model is not None else self.model
        if self.model is None:
            raise ValueError("train() needs a model: pass model=...")
        self.criterion = criterion if criterion is not None else self.criterion
        self.optimizer = optimizer if optimizer is not None else self.optimizer
        self.scheduler = scheduler if scheduler is not None else self.scheduler
        if device is not None:
            self.device = _resolve_device(device)
        self.num_epochs = num_epochs
        self.selection = selection
        self.logdir = Path(logdir) if logdir is not None else None
        self.prefetch = prefetch
        self._reset_counters()
        self.model.to(self.device)
        if isinstance(self.criterion, nn.Module):
            self.criterion.to(self.device)

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

    async def _publish(self, event: str) -> None:
        calls, awaits = compile_calls(
            event, self.bus.subscriptions(event), self.loader_key, self.epoch_step, self._worker
        )
        for call in calls:
            result = call(self)
            if awaits and inspect.isawaitable(result):
                await result

    def _calls(self, event: str) -> tuple[Any, ...]:
        calls, _ = compile_calls(
            event, self.bus.subscriptions(event), self.loader_key, self.epoch_step, self._worker
        )
        return calls

    async def _publish_after_failure(
        self, event: str, error: BaseException, calls: tuple[Any, ...] | None = None
    ) -> None:
        # Every handler gets its turn (loggers must close, files flush); their own errors are
        # logged and noted on the original exception, which is the one that propagates.
        for call in self._calls(event) if calls is None else calls:
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
        calls = self._calls(EXPERIMENT_END)
        for position, call in enumerate(calls):
            try:
                result = call(self)
                if inspect.isawaitable(result):
                    await result
            except BaseException as error:
                self.exception = error
                await self._publish_after_failure(EXCEPTION, error)
                await self._publish_after_failure(EXPERIMENT_END, error, calls[position + 1 :])
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

    async def _run_epoch(self) -> None:
        self.epoch_step += 1
        self.epoch_metrics = {}
        await self._publish(EPOCH_START)
        for loader_key, loader in self.loaders.items():
            await self._run_loader(loader_key, loader)
        await self._publish(EPOCH_END)
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
        self.loader_metrics = {}

    def _prepare_batch(self, batch: Any) -> dict[str, Any]:
        batch = self.to_dict_batch(batch)
        if self.device.type != "cpu":
            batch = move_to_device(batch, self.device, non_blocking=True)
        return batch

    async def _run_loader(self, loader_key: str, loader: Any) -> None:
        self._set_loader(loader_key, loader)
        self.model.train(self.is_train_loader)
        with torch.set_grad_enabled(self.is_train_loader):
            await self._publish(LOADER_START)
            await self._run_batches()
            if self.loader_batch_step == 0:
                used_up = (
                    " (an iterator is used up after one pass)"
                    if isinstance(loader, Iterator)
                    else ""
                )
                raise ValueError(f"loader {loader_key!r} yielded no batches{used_up}")
            await self._publish(LOADER_END)

    async def _run_batches(self) -> None:
        subs = self.bus.subscriptions
        starts, starts_await = compile_calls(
            BATCH_START, subs(BATCH_START), self.loader_key, self.epoch_step, self._worker
        )
        ends, ends_await = compile_calls(
            BATCH_END, subs(BATCH_END), self.loader_key, self.epoch_step, self._worker
        )
        # Autocast per batch, around handle_batch only (see eventrunner.precision).
        handle_batch = precision.autocast_each_call(
            self.handle_batch, self.device.type, self.amp_dtype
        )
        # Subscribers may replace runner.loader at loader_start (batch limits, samplers).
        with self._prefetcher.batches(
            self.loader, self.to_dict_batch, self.prefetch, self.device, self.loader_key
        ) as batches:
            for batch in batches:
                self.batch = batch
                self.output = None
                self.batch_metrics = {}
                self.batch_size = size = _leading_dim(batch)
                self.batch_step += 1
                self.loader_batch_step += 1
                self.sample_step += size
                self.loader_sample_step += size
                if starts_await:
                    await _call_all(starts, self)
                else:
                    for call in starts:
                        call(self)
                handle_batch(batch)
                if self.batch_size != size:  # handle_batch may reweigh the batch
                    self.sample_step += self.batch_size - size
                    self.loader_sample_step += self.batch_size - size
                if ends_await:
                    await _call_all(ends, self)
                else:
                    for call in ends:
                        call(self)

    # ----------------------------------------------------------- evaluation

    def evaluate_loader(
        self,
        loader: Iterable[Any],
        callbacks: Sequence[Callback] | Mapping[str, Callback] | None = None,
        model: nn.Module | None = None,
        *,
        seed: int | None = 42,
        verbose: bool = False,
    ) -> dict[str, Any]:
        """Run one ``valid`` pass over ``loader`` and return its loader metrics."""
        # Evaluating must not step the LR scheduler (the default one steps at epoch end).
        scheduler, self.scheduler = self.scheduler, None
        try:
            self.train(
                model=model,
                loaders={"valid": loader},
                callbacks=callbacks,
                num_epochs=1,
                seed=seed,
                verbose=verbose,
                console=False,
            )
        finally:
            self.scheduler = scheduler
        return dict(self.loader_metrics)

    def predict_batch(self, batch: Any) -> Any:
        """Forward one batch as the loader yields it and return ``self.output``.

        The batch goes through :meth:`to_dict_batch`, is moved to the device, and
        :meth:`handle_batch` runs without grad (under autocast with ``amp``). The model is
        used in the mode it is in: call ``runner.model.eval()`` first, as
        :meth:`predict_loader` does.
        """
        return self._predict_prepared(self._prepare_batch(batch))

    def _predict_prepared(self, batch: dict[str, Any]) -> Any:
        with torch.no_grad(), precision.autocast(self):
            self.batch = batch
            self.output = None
            self.batch_metrics = {}
            self.handle_batch(batch)
        return self.output

    def predict_loader(
        self, loader: Iterable[Any], model: nn.Module | None = None, *, prefetch: int = 2
    ) -> Iterator[Any]:
        """Yield ``self.output`` for each batch of ``loader``, model in eval mode, no grad.

        Batches are converted (:meth:`to_dict_batch`, once) and moved to the device ahead of
        the forward by the prefetcher; no subscriber runs. Example::

            for output in runner.predict_loader(test_loader):
                predictions.append(output["logits"].argmax(dim=1).cpu())
        """
        if model is not None:
            self.model = model
        if self.model is None:
            raise ValueError("predict_loader() needs a model: pass model=...")
        self.model.to(self.device).eval()
        self._set_loader("infer", loader)
        with self._prefetcher.batches(
            loader, self.to_dict_batch, prefetch, self.device, "infer"
        ) as batches:
            for batch in batches:  # already dicts on the device
                self.loader_batch_step += 1
                yield self._predict_prepared(batch)


# train() and atrain() take compose()'s arguments: show them in help() and IDEs.
Runner.train.__signature__ = inspect.signature(Runner.compose).replace(  # type: ignore[attr-defined]
    return_annotation=None
)
Runner.atrain.__signature__ = Runner.train.__signature__  # type: ignore[attr-defined]


async def _call_all(calls: tuple[Any, ...], runner: Runner) -> None:
    for call in calls:
        result = call(runner)
        if result is not None and inspect.isawaitable(result):
            await result


def _note_secondary(error: BaseException, where: str, secondary: BaseException) -> None:
    log.error("%s failed while handling %r: %r", where, error, secondary, exc_info=secondary)
    with contextlib.suppress(AttributeError):
        error.add_note(f"eventrunner: {where} also failed: {secondary!r}")
