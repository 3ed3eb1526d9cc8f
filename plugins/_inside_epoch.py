"""The part of a ``CheckpointCallback`` that writes ``last.pth`` inside train passes.

Every ``every_n_batches`` batches of a train pass and/or every ``every_seconds`` seconds
(``train(checkpoint_every_n_batches=, checkpoint_every_seconds=)`` when the callback is not
given its own), at ``Order.CHECKPOINT`` of ``batch_end``: after the batch's backward pass,
step and metrics. Its batch handler is compiled into a pass only when it is on and the
loader is a train loader, so a run without mid-epoch checkpoints pays nothing per batch.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from eventrunner import checkpoint as ckpt
from eventrunner.checks import positive_int, positive_number
from eventrunner.events import Callback, LoaderFilter, Order

if TYPE_CHECKING:
    from eventrunner.state import RunState


class _TrainPassesWhileOn(LoaderFilter):
    """Train loaders, while the part is on (checked once per pass, when its calls compile)."""

    def __init__(self, part: SaveInsideEpoch) -> None:
        super().__init__("train*")
        self.part = part

    def __bool__(self) -> bool:
        return True

    def __call__(self, loader_key: str) -> bool:
        return self.part.on and super().__call__(loader_key)

    def __repr__(self) -> str:
        return f"{super().__repr__()} with mid-epoch checkpoints"


class SaveInsideEpoch(Callback):
    """Asks its owner to save inside the epoch when a train pass is due."""

    def __init__(self, owner: Any, every_n_batches: int | None, every_seconds: float | None):
        super().__init__(order=Order.CHECKPOINT)
        self.loader_filter = _TrainPassesWhileOn(self)
        self.owner = owner
        name = type(owner).__name__
        self.every_n_batches = positive_int(
            every_n_batches, f"{name}: every_n_batches", optional=True
        )
        self.every_seconds = positive_number(every_seconds, f"{name}: every_seconds", optional=True)
        self.on = False
        self._n: int | None = None
        self._seconds: float | None = None
        self._since = 0.0

    def describe_name(self) -> str:
        return f"{self.owner.describe_name()}.inside_epoch"

    def start(self, runner: RunState, writes_files: bool) -> None:
        """At the owner's ``experiment_start``: its own settings, else the run's. Under DDP
        every rank takes part in each save (its share of the pass is gathered), rank 0 writes."""
        settings = runner.settings
        self._n = self.every_n_batches or settings.checkpoint_every_n_batches
        self._seconds = self.every_seconds or settings.checkpoint_every_seconds
        if runner.ddp and self._seconds is not None:
            raise ValueError(
                f"{self.describe_name()}: checkpoint_every_seconds under DDP would let the "
                "ranks decide at different batches; use checkpoint_every_n_batches"
            )
        wanted = self._n is not None or self._seconds is not None
        if wanted and self.owner._logdir(runner) is None and self._nothing_writes(runner):
            raise ValueError(
                f"{self._setting(runner)} writes logdir/checkpoints/last.pth, but the run has "
                "no logdir: pass train(logdir=...) (or the callback's own logdir=)"
            )
        takes_part = writes_files or (runner.ddp and self.owner._logdir(runner) is not None)
        self.on = takes_part and (self._n is not None or self._seconds is not None)

    def _setting(self, runner: RunState) -> str:
        """Where the mid-epoch saves were asked for, as the user wrote it."""
        own = {"every_n_batches": self.every_n_batches, "every_seconds": self.every_seconds}
        if any(value is not None for value in own.values()):
            call, values = type(self.owner).__name__, own
        else:
            call, values = (
                "train",
                {
                    "checkpoint_every_n_batches": runner.settings.checkpoint_every_n_batches,
                    "checkpoint_every_seconds": runner.settings.checkpoint_every_seconds,
                },
            )
        given = ", ".join(f"{key}={value!r}" for key, value in values.items() if value is not None)
        return f"{call}({given})"

    def _nothing_writes(self, runner: RunState) -> bool:
        """Whether no checkpoint callback of the run has a logdir: the run's settings ask
        every one of them, and one with a folder of its own is enough."""
        if self.every_n_batches is not None or self.every_seconds is not None:
            return True  # this callback's own settings: it must write them itself
        owners = [cb for cb in runner.callbacks if isinstance(cb, type(self.owner))]
        return all(cb._logdir(runner) is None for cb in owners)

    def on_loader_start(self, runner: RunState) -> None:
        self._since = time.monotonic()

    def on_batch_end(self, runner: RunState) -> None:
        n, seconds = self._n, self._seconds
        if not (n is not None and runner.loader_batch_step % n == 0) and not (
            seconds is not None and time.monotonic() - self._since >= seconds
        ):
            return
        self.save(runner)
        self._since = time.monotonic()

    def save(self, runner: RunState) -> dict[str, Any] | None:
        """Write the owner's ``last.pth`` where the run stands inside its loader pass; where
        that is (epoch, loader, batches), or None where this process writes nothing."""
        owner = self.owner
        if runner.position_rng is None:
            return None
        position = ckpt.capture_position(runner)  # under DDP: on every rank (a gather)
        folder = owner.folder
        if folder is None:
            return None
        owner._writer.wait()
        where = {key: position[key] for key in ("epoch", "loader", "batches")}
        done = runner.epoch_step - 1
        plan = folder.plan_inside_epoch(
            done, where, owner.best_epoch, owner.best_metric, owner._selection()
        )
        state = ckpt.capture_state(
            runner,
            epoch=done,
            epoch_metrics=runner.epoch_metrics,
            history=owner.history if owner._tracks(runner) else None,
            position=position,
        )
        owner._write(runner, state, plan, where)
        return where
