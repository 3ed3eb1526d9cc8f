"""Backward pass and optimizer step on ``train*`` loaders, as two subscribers (orders 30, 40).

Both read ``train(accumulation_steps=, grad_clip_norm=, grad_clip_value=, amp=)`` from the
runner unless given their own values. With accumulation both work on the run's one
:class:`~eventrunner.accumulation.AccumulationWindow` (``runner.accumulation``): the backward
scales each loss by its share of the group, the optimizer steps when the group closes and
rescales a partial last group; both claim the window with their step count, so a mismatch is
refused before the first batch. Under DDP the batches before the last of a group run under
``no_sync``. Gradients are cleared right after the step, not between forward and backward:
measured on a 512-2048-10 MLP, the latter costs 160-450 µs per step, in plain PyTorch too.

A ``handle_batch`` that runs the backward pass (``runner.handle_batch_backward``) or steps the
optimizer itself (``runner.handle_batch_step``), as Catalyst's README runner does, is not
backpropagated or stepped again: the loop finds out on the first train batch
(:mod:`eventrunner.step_probe`) and these subscribers stand aside from then on.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from eventrunner import components
from eventrunner.accumulation import AccumulationWindow
from eventrunner.checks import positive_int, positive_number
from eventrunner.distributed import all_reduce_gradients
from eventrunner.events import Callback, Order

if TYPE_CHECKING:
    from eventrunner.state import RunState


def _check_steps(value: Any, owner: str) -> int | None:
    return positive_int(value, f"{owner}: accumulation_steps", optional=True)


def _check_limit(value: Any, name: str) -> float | None:
    return positive_number(value, f"OptimizerCallback: {name}", optional=True)


def clip_function(
    fn: str | Callable[..., Any] | None, params: Mapping[str, Any] | None, owner: str
) -> Callable[..., Any] | None:
    """Catalyst's ``grad_clip_fn``/``grad_clip_params``: a function of the parameters, or the
    name of one in ``torch.nn.utils`` (``"clip_grad_norm_"``, ``"clip_grad_value_"``)."""
    if fn is None:
        if params:
            raise ValueError(f"{owner}: grad_clip_params={params!r} needs a grad_clip_fn")
        return None
    if isinstance(fn, str):
        found = getattr(torch.nn.utils, fn, None) or getattr(torch.nn.utils, f"{fn}_", None)
        if found is None or not callable(found):
            raise ValueError(
                f"{owner}: grad_clip_fn={fn!r} is not a function of torch.nn.utils "
                "(e.g. 'clip_grad_norm_', 'clip_grad_value_')"
            )
        fn = found
    if not callable(fn):
        raise TypeError(f"{owner}: grad_clip_fn must be callable or a name, got {fn!r}")
    return functools.partial(fn, **params) if params else fn


class BackwardCallback(Callback):
    """``batch_metrics[metric_key].backward()`` on each train batch (Catalyst's arguments).

    ``grad_clip_fn`` (a function of the parameters or a ``torch.nn.utils`` name, with
    ``grad_clip_params``) clips after each backward, as in Catalyst; ``log_gradient`` puts
    the norm it returns in ``batch_metrics["gradient/<metric_key>/norm"]``. ``loss_key`` is
    another name for ``metric_key``.

    The loss is scaled for accumulation (by the run's accumulation window) and by ``runner.scaler``
    with fp16 AMP; the loop's autocast covers ``handle_batch`` only, so the backward runs
    outside it, as PyTorch recommends.
    """

    kind = "backward"
    writes = ()  # gradients only: no run-state field

    def __init__(
        self,
        metric_key: str | None = None,
        grad_clip_fn: str | Callable[..., Any] | None = None,
        grad_clip_params: Mapping[str, Any] | None = None,
        log_gradient: bool = False,
        *,
        loss_key: str | None = None,
        accumulation_steps: int | None = None,
    ) -> None:
        super().__init__(order=Order.BACKWARD, loaders="train*")
        if metric_key is not None and loss_key is not None and metric_key != loss_key:
            raise ValueError(
                f"BackwardCallback: metric_key={metric_key!r} and its alias "
                f"loss_key={loss_key!r} disagree"
            )
        self.loss_key = metric_key if metric_key is not None else loss_key
        self.accumulation_steps = _check_steps(accumulation_steps, "BackwardCallback")
        self.grad_clip_fn = clip_function(grad_clip_fn, grad_clip_params, "BackwardCallback")
        self.log_gradient = log_gradient
        self._gradient_key = f"gradient/{self.loss_key or 'loss'}/norm"
        self._params: list[torch.Tensor] = []
        self.steps = 1
        self._window = AccumulationWindow()
        self._scaler: torch.amp.GradScaler | None = None
        self._ddp: nn.parallel.DistributedDataParallel | None = None
        self._no_sync: Any = None
        self._unsynced = False

    def on_experiment_start(self, runner: RunState) -> None:
        self._window = runner.accumulation
        steps = self.accumulation_steps or runner.accumulation_steps
        self.steps = self._window.claim(steps, type(self).__name__)
        self._scaler = runner.scaler
        model = runner.model
        is_ddp = isinstance(model, nn.parallel.DistributedDataParallel)
        self._ddp = model if is_ddp and self.steps > 1 else None
        if self.grad_clip_fn is not None:
            if self._scaler is not None and self.steps > 1:
                raise ValueError(
                    "BackwardCallback: grad_clip_fn clips after each backward, which fp16 "
                    "loss scaling with accumulation_steps > 1 does not allow; use "
                    "train(grad_clip_norm=...) (clipped once per step) instead"
                )
            self._params = [p for p in model.parameters() if p.requires_grad]

    def on_loader_start(self, runner: RunState) -> None:
        self._window.start_pass()
        self._unsynced = False

    def on_batch_start(self, runner: RunState) -> None:
        # DDP decides in the forward whether the next backward all-reduces: skip it on every
        # batch of a group but the last (known from the loader's length when it has one).
        if self._ddp is None:
            return
        step = runner.loader_batch_step
        if not (self._window.closes_group(step) or step == runner.loader_batch_len):
            self._no_sync = self._ddp.no_sync()
            self._no_sync.__enter__()

    def on_batch_end(self, runner: RunState) -> None:
        if runner.handle_batch_backward:
            self._leave_no_sync()
            return
        key = self.loss_key or runner.loss_key
        loss = runner.batch_metrics.get(key)
        if loss is None:
            self._leave_no_sync()
            raise ValueError(
                f"loader {runner.loader_key!r}: batch_metrics has no {key!r} to backward "
                f"(it has {sorted(runner.batch_metrics)}); set self.batch_metrics[{key!r}] in "
                "handle_batch, or give the runner a criterion"
            )
        if not isinstance(loss, torch.Tensor) or not loss.requires_grad:
            self._leave_no_sync()
            raise ValueError(
                f"loader {runner.loader_key!r}: batch_metrics[{key!r}] must be a tensor that "
                f"requires grad to train, got {type(loss).__name__}"
            )
        if self.steps > 1:
            loss = loss * self._window.loss_scale(runner.batch_size)
        if self._scaler is not None:
            loss = self._scaler.scale(loss)
        loss.backward()
        if self.grad_clip_fn is not None:
            self._clip(runner)
        if self._no_sync is not None:
            self._unsynced = True
            self._leave_no_sync()
        elif self._unsynced:
            self._unsynced = False

    def on_loader_end(self, runner: RunState) -> None:
        # A loader that ended earlier than its len() said left its last group unsynchronised:
        # average it by hand before the optimizer (order 40) steps.
        if self._unsynced:
            self._unsynced = False
            all_reduce_gradients([p for p in runner.model.parameters() if p.requires_grad])

    def on_exception(self, runner: RunState) -> None:
        self._leave_no_sync()

    def on_experiment_end(self, runner: RunState) -> None:
        self._ddp = None  # the wrapper (and its reducer) must not outlive the process group

    def _clip(self, runner: RunState) -> None:
        # Catalyst clips after each backward; fp16 gradients are unscaled first.
        if self._scaler is not None:
            runner.engine.unscale_gradients()
        norm = self.grad_clip_fn(self._params)
        if self.log_gradient and norm is not None:
            runner.batch_metrics[self._gradient_key] = norm

    def _leave_no_sync(self) -> None:
        if self._no_sync is not None:
            context, self._no_sync = self._no_sync, None
            context.__exit__(None, None, None)


class OptimizerCallback(Callback):
    """``optimizer.step()`` every ``accumulation_steps`` train batches (and at loader end for a
    partial group), with optional gradient clipping; gradients are cleared after each step.

    ``grad_clip_value`` clamps each gradient element, ``grad_clip_norm`` rescales all of them
    to that total norm (``grad_clip_norm_type``: 2 by default), in that order when both are
    given; with fp16 AMP the gradients are unscaled first. ``None`` takes ``train()``'s value.
    Catalyst's arguments: ``optimizer_key`` steps one of a dict of optimizers, ``grad_clip_fn``
    (with ``grad_clip_params``) clips before each step; ``metric_key`` is accepted and unused.
    """

    kind = "optimizer"
    writes = ()  # parameters and gradients only: no run-state field

    def __init__(
        self,
        metric_key: str | None = None,
        optimizer_key: str | None = None,
        accumulation_steps: int | None = None,
        grad_clip_fn: str | Callable[..., Any] | None = None,
        grad_clip_params: Mapping[str, Any] | None = None,
        *,
        grad_clip_norm: float | None = None,
        grad_clip_value: float | None = None,
        grad_clip_norm_type: float = 2.0,
    ) -> None:
        super().__init__(order=Order.OPTIMIZER, loaders="train*")
        self.metric_key = metric_key  # Catalyst's argument; the step needs no loss
        self.optimizer_key = optimizer_key
        self.optimizer: torch.optim.Optimizer | None = None
        self.grad_clip_fn = clip_function(grad_clip_fn, grad_clip_params, "OptimizerCallback")
        self.accumulation_steps = _check_steps(accumulation_steps, "OptimizerCallback")
        self.grad_clip_norm = _check_limit(grad_clip_norm, "grad_clip_norm")
        self.grad_clip_value = _check_limit(grad_clip_value, "grad_clip_value")
        self.grad_clip_norm_type = grad_clip_norm_type
        self.steps = 1
        self._window = AccumulationWindow()
        self._clip_norm: float | None = None
        self._clip_value: float | None = None
        self._scaler: torch.amp.GradScaler | None = None
        self._params: list[torch.Tensor] = []

    def on_experiment_start(self, runner: RunState) -> None:
        self.optimizer = optimizer = components.pick(
            runner, "optimizer", self.optimizer_key, "OptimizerCallback"
        )
        self._window = runner.accumulation
        steps = self.accumulation_steps or runner.accumulation_steps
        self.steps = self._window.claim(steps, type(self).__name__)
        # train()'s limits are checked there; as floats, as this subscriber's own are.
        self._clip_norm = (
            self.grad_clip_norm
            if self.grad_clip_norm is not None
            else _check_limit(runner.grad_clip_norm, "grad_clip_norm")
        )
        self._clip_value = (
            self.grad_clip_value
            if self.grad_clip_value is not None
            else _check_limit(runner.grad_clip_value, "grad_clip_value")
        )
        self._scaler = runner.scaler
        self._params = [p for group in optimizer.param_groups for p in group["params"]]
        optimizer.zero_grad(set_to_none=True)

    def on_loader_start(self, runner: RunState) -> None:
        self._window.start_pass()

    def on_batch_end(self, runner: RunState) -> None:
        if runner.handle_batch_step:
            return
        if self.steps == 1:
            self._step(self.optimizer)
            return
        self._window.add(runner.batch_size)
        if self._window.closes_group(runner.loader_batch_step):
            self._step(self.optimizer)

    def on_loader_end(self, runner: RunState) -> None:
        if runner.handle_batch_step:
            return
        if self.steps > 1 and not self._window.closes_group(runner.loader_batch_step):
            self._step(self.optimizer)  # the pass's last, partial group

    def _step(self, optimizer: torch.optim.Optimizer) -> None:
        scaler = self._scaler
        if self.steps > 1:
            factor = self._window.close()
            if factor is not None:  # a partial group: make it the mean over its samples
                for param in self._params:
                    if param.grad is not None:
                        param.grad.mul_(factor)
        clips = (self._clip_value, self._clip_norm, self.grad_clip_fn)
        if any(clip is not None for clip in clips):
            if scaler is not None:
                scaler.unscale_(optimizer)
            if self.grad_clip_fn is not None:
                self.grad_clip_fn(self._params)
            if self._clip_value is not None:
                torch.nn.utils.clip_grad_value_(self._params, self._clip_value)
            if self._clip_norm is not None:
                torch.nn.utils.clip_grad_norm_(
                    self._params, self._clip_norm, norm_type=self.grad_clip_norm_type
                )
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
