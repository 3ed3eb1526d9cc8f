"""DDP set-up as a subscriber (order 0, first of all): wraps the model, shards the loaders.

Composed by ``train()`` when the run is distributed (under torchrun, or ``ddp=True``). At
experiment start every loader gets a ``DistributedSampler`` (train: padded to equal per-rank
lengths; valid/infer: each sample once, so metrics equal the single-process ones) and the model
is wrapped in ``DistributedDataParallel``; every epoch the samplers get ``set_epoch``; at
experiment end ``runner.model`` is the user's module again.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from eventrunner import distributed
from eventrunner.checks import positive_int
from eventrunner.data.loaders import loader_kind
from eventrunner.events import Callback, Order

if TYPE_CHECKING:
    from eventrunner.state import RunState


class DistributedCallback(Callback):
    """Data-parallel training over the default process group.

    ``ddp_kwargs`` go to ``DistributedDataParallel`` on top of ``train(ddp_kwargs=...)``
    (e.g. ``find_unused_parameters=True``). ``shard_loaders=False`` leaves the loaders alone.
    ``seed`` seeds the samplers' shuffling (default: rank 0's torch seed, i.e. ``train(seed=)``).
    Every ``stop_check_every`` batches of a train pass the ranks agree whether any of them got
    SIGTERM (one small all-reduce): then all stop after that same batch, which is saved.
    """

    kind = "distributed"
    writes = {"experiment_start": ("model", "loaders"), "experiment_end": ("model",)}

    def __init__(
        self,
        ddp_kwargs: Mapping[str, Any] | None = None,
        shard_loaders: bool = True,
        seed: int | None = None,
        stop_check_every: int = 16,
    ) -> None:
        super().__init__(order=Order.INTERNAL)
        self.ddp_kwargs = dict(ddp_kwargs or {})
        self.shard_loaders = shard_loaders
        self.seed = seed
        self.stop_check_every = positive_int(
            stop_check_every, "DistributedCallback: stop_check_every"
        )
        self._module: nn.Module | None = None

    def parts(self) -> tuple[Callback, ...]:
        return (self, _AgreeOnStop(self.stop_check_every))

    def on_experiment_start(self, runner: RunState) -> None:
        if not distributed.is_dist_ready():
            raise ValueError(
                "DistributedCallback needs a process group: launch the script with torchrun, "
                "or pass train(ddp=True)"
            )
        if self.shard_loaders:
            self._shard(runner)
        # What the user gave (a compiled model stays compiled), without a DDP wrapper of ours.
        self._module = distributed.without_ddp(runner.model)
        if self._module is not runner.model or not self._trains(runner):
            return
        kwargs = {**(runner.settings.ddp_kwargs or {}), **self.ddp_kwargs}
        runner.model = distributed.wrap_ddp(runner.model, runner.device, kwargs)

    def _shard(self, runner: RunState) -> None:
        # The same seed on every rank, or the shards would overlap.
        seed = (
            self.seed
            if self.seed is not None
            else distributed.broadcast_value(torch.initial_seed() % 2**62)
        )
        runner.loaders = {
            key: distributed.distributed_loader(
                key, loader, seed=seed, pad=loader_kind(key) == "train"
            )
            for key, loader in runner.loaders.items()
        }

    @staticmethod
    def _trains(runner: RunState) -> bool:
        # DDP refuses a module without trainable parameters; evaluation needs no wrapper.
        has_train = any(loader_kind(key) == "train" for key in runner.loaders)
        return has_train and any(p.requires_grad for p in runner.model.parameters())

    def on_epoch_start(self, runner: RunState) -> None:
        for loader in runner.loaders.values():
            sampler = distributed.find_sampler(loader)
            if sampler is not None:
                sampler.set_epoch(runner.epoch_step - 1)

    def on_experiment_end(self, runner: RunState) -> None:
        if self._module is not None:
            runner.model = self._module
            self._module = None


class _AgreeOnStop(Callback):
    """Every ``every`` train batches: stop every rank if any rank got SIGTERM. Train passes
    only: their shards have equal lengths, so each rank reaches the same batches."""

    def __init__(self, every: int) -> None:
        super().__init__(order=Order.EXTERNAL, loaders="train*", every=every)

    def describe_name(self) -> str:
        return "DistributedCallback.agree_on_stop"

    def on_batch_end(self, runner: RunState) -> None:
        if distributed.any_rank(bool(runner.stop_pending)):
            runner.stop_requested = runner.stop_pending or "SIGTERM on another rank"
