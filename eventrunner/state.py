"""``RunState``: what a subscriber sees of a run, as one documented type.

The bus and :class:`~eventrunner.events.Callback` are typed against this protocol, not against
the loop class: any object with these attributes can drive the subscribers (the runner does,
and so does its background snapshot). Which fields a subscriber writes, it declares in
``Callback.writes``; the bus checks those declarations before the first batch.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch
from torch import nn

from eventrunner.metrics import WeightedMeans

if TYPE_CHECKING:
    from eventrunner.accumulation import AccumulationWindow
    from eventrunner.events import Callback, EventBus
    from eventrunner.settings import Selection, TrainSettings

#: The fields a subscriber may declare in ``Callback.writes``: the state below that changes
#: while a run goes on (settings and components are the user's, not a subscriber's, to set).
WRITABLE_FIELDS: frozenset[str] = frozenset(
    {
        "model",
        "loader",
        "loaders",
        "output",
        "batch_metrics",
        "batch_size",
        "loader_metrics",
        "epoch_metrics",
        "running_metrics",
        "non_scalar_metrics",
        "best_valid_metric",
        "best_epoch",
        "need_early_stop",
    }
)


class RunState(Protocol):
    """The run as subscribers see it. Catalyst's names, read on the runner.

    Components (set by ``train()``; a DDP subscriber may wrap ``model``):
        ``model``, ``criterion``, ``optimizer``, ``scheduler``, ``scaler`` (fp16 AMP),
        ``loaders`` (name -> loader), ``callbacks`` (the composed subscribers), ``bus`` (their
        :class:`~eventrunner.events.EventBus`), ``device``.
    Settings:
        ``settings`` (the frozen :class:`~eventrunner.settings.TrainSettings`), and read-outs
        of it: ``num_epochs``, ``logdir``, ``selection`` (``valid_loader``, ``main_metric``,
        ``minimize_metric``), ``amp_dtype``, ``accumulation_steps``, ``grad_clip_norm``,
        ``grad_clip_value``, ``ddp``; ``accumulation``, the run's one
        :class:`~eventrunner.accumulation.AccumulationWindow` (backward and step share it).
    Counters (1-based once running):
        ``epoch_step``, ``batch_step``, ``sample_step`` over the run; ``loader_batch_step``,
        ``loader_sample_step`` and ``loader_batch_len`` (None without ``len``) in a loader pass.
    The loader pass and the batch:
        ``loader_key``, ``loader``, ``is_train_loader``/``is_valid_loader``/
        ``is_infer_loader``, ``batch`` (on the device, as the loader yields it: a dict, a tuple
        or a list; a ``SupervisedRunner``'s is a dict), ``batch_size`` (the leading dimension
        of its first tensor), ``output``.
    Metrics:
        ``batch_metrics`` (this batch, tensors), ``running_metrics`` (this loader pass so far:
        a :class:`~eventrunner.metrics.WeightedMeans` kept on the device; its ``compute()``
        reads floats, a device sync, so call it sparingly), ``loader_metrics`` (final after
        ``loader_end`` order 20), ``epoch_metrics`` (loader -> its loader metrics),
        ``non_scalar_metrics``.
    Results and requests:
        ``best_epoch``, ``best_valid_metric`` (the run's selection), ``need_early_stop`` (set
        to end the run after this epoch), ``exception`` (during ``exception`` and after);
        ``handle_batch_backward`` and ``handle_batch_step``, set once ``handle_batch`` is seen
        to do its own backward pass / optimizer step (the default backward and optimizer
        subscribers then stand aside, see :mod:`eventrunner.step_probe`); ``stop_requested``
        (why the run stops after this batch, e.g. ``"SIGTERM"``; under DDP a signal first sets
        ``stop_pending``, until every rank agrees; see :mod:`eventrunner.preemption`).
    Position (for checkpoints inside an epoch, :mod:`eventrunner.checkpoint.position`):
        ``records_position`` (set by a subscriber that may save inside a pass: the loop then
        records ``position_rng``, the RNG states at each pass's start) and ``resume_point``
        (what a resumed run still has to put back; None once it has); ``worker_seed``, what
        DataLoader workers seed each batch from while the run may checkpoint inside a pass
        (:mod:`eventrunner.data.worker_seeds`; saved in checkpoints).
    """

    model: nn.Module
    criterion: Any
    optimizer: torch.optim.Optimizer | None
    scheduler: Any
    scaler: torch.amp.GradScaler | None
    loaders: dict[str, Any]
    callbacks: list[Callback]
    bus: EventBus
    device: torch.device
    settings: TrainSettings
    num_epochs: int
    logdir: Path | None
    selection: Selection
    amp_dtype: torch.dtype | None
    accumulation_steps: int
    accumulation: AccumulationWindow
    grad_clip_norm: float | None
    grad_clip_value: float | None
    ddp: bool
    loss_key: str

    epoch_step: int
    batch_step: int
    sample_step: int
    loader_batch_step: int
    loader_sample_step: int
    loader_batch_len: int | None

    loader_key: str | None
    loader: Any
    is_train_loader: bool
    is_valid_loader: bool
    is_infer_loader: bool
    batch: Any
    batch_size: int
    output: Any

    batch_metrics: dict[str, Any]
    running_metrics: WeightedMeans
    loader_metrics: dict[str, Any]
    epoch_metrics: dict[str, dict[str, Any]]
    non_scalar_metrics: dict[str, dict[str, tuple[int, ...]]]

    best_epoch: int | None
    best_valid_metric: float | None
    need_early_stop: bool
    exception: BaseException | None
    handle_batch_backward: bool
    handle_batch_step: bool
    stop_requested: str | None
    stop_pending: str | None
    records_position: bool
    position_rng: dict[str, Any] | None
    resume_point: Any
    worker_seed: int | None

    def snapshot(self, with_batch: bool = False) -> RunState:
        """A copy whose counters and metrics no longer change with the loop."""
        ...


def reset_run_state(runner: Any) -> None:
    """Set the state that changes while a run goes on to its value before the first event."""
    runner.epoch_step = runner.batch_step = runner.sample_step = 0
    runner.loader_key = runner.loader = None
    runner.loader_batch_step = runner.loader_sample_step = 0
    runner.loader_batch_len = None
    runner.batch = runner.output = None
    runner.batch_size = 0
    runner.batch_metrics = {}
    runner.running_metrics = WeightedMeans()
    runner.loader_metrics = {}
    runner.epoch_metrics = {}
    # loader -> {batch_metrics key: shape} of its last pass's non-scalars (not aggregated).
    runner.non_scalar_metrics = {}
    runner.is_train_loader = runner.is_valid_loader = runner.is_infer_loader = False
    runner.best_valid_metric = runner.best_epoch = None
    runner.need_early_stop = False
    runner.exception = None
    runner.handle_batch_backward = runner.handle_batch_step = False
    runner.stop_requested = None
    runner.stop_pending = None
    runner.records_position = False
    runner.position_rng = None
    runner.resume_point = None
    runner.worker_seed = None
