"""Checkpoints: each ``CheckpointCallback`` keeps its own best epoch, and files to resume.

After each epoch its loader's metric is compared with its best so far; ties keep the earlier
epoch. Several can run side by side (one minimising ``m1``, one maximising ``m2``), each with
its own best, folder and index; ``runner.best_epoch``/``best_valid_metric`` belong to the
run's own selection (``plugins.selection``, order 60) and none of them writes those. With a
``logdir`` each epoch is saved to ``logdir/checkpoints`` (``last.pth``, ``best.pth``, the
top-k ``epoch_N.pth``, ``index.json``; see :mod:`eventrunner.checkpoint`) at its own
``epoch_end``, at ``Order.CHECKPOINT`` (90): after selection, early stopping, user
subscribers and loggers, so epoch e's checkpoint holds exactly e's state. Without a logdir
the best weights are kept as a CPU snapshot (not the live model) for ``load_best_on_end``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from eventrunner import checkpoint as ckpt
from eventrunner import components, distributed
from eventrunner.checks import is_int
from eventrunner.distributed import unwrap_model
from eventrunner.events import Callback, Order
from eventrunner.preemption import Preempted
from eventrunner.signals import checkpoint_saved
from plugins._inside_epoch import SaveInsideEpoch
from plugins._selection import Watched, checked_history

if TYPE_CHECKING:
    from eventrunner.state import RunState

log = logging.getLogger("eventrunner")


def cpu_state_dict(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A copy of the module's state on the CPU, unaffected by further training."""
    return ckpt.copy_to_cpu(unwrap_model(module).state_dict())


class CheckpointCallback(Callback):
    """Selects the best epoch by ``loader_key``/``metric_key``/``minimize`` (default: the
    runner's ``valid_loader``/``main_metric``/``minimize_metric``) and, with a ``logdir`` (its
    own or the runner's), writes checkpoints: ``last.pth``, ``best.pth``, the ``topk`` best
    epochs and ``index.json``.

    ``best_epoch``/``best_metric`` are its own best so far. ``load_best_on_end=None`` follows
    ``train(load_best_on_end=)`` when this callback selects by the run's own metric (or when
    no CheckpointCallback of the run does and this is the first).

    It records each epoch (its history, best and top-k plan) at order 60, with the run's
    model selection, and saves it at its ``epoch_end`` at order 90, after every other
    ``epoch_end`` subscriber: the file holds the run state at the end of that epoch (every
    CheckpointCallback's record of it included), nothing of the next one. An ``epoch_end``
    that fails before the save leaves the epoch unsaved (``last.pth`` keeps the one before).

    Catalyst's arguments: ``mode`` ("model" or "runner") is accepted; every file holds the
    whole run state (weights, optimizer, scheduler, counters, RNG), so it serves both.
    ``resume_model`` loads a checkpoint's weights and ``resume_runner`` its weights, optimizer
    and scheduler states at experiment start (``train(resume=)`` continues a whole run).

    ``every_n_batches``/``every_seconds`` (default: ``train(checkpoint_every_n_batches=,
    checkpoint_every_seconds=)``) also write ``last.pth`` inside train passes, and on SIGTERM
    it is written at the batch the run stops after: ``train(resume=)`` goes on from the next
    batch (:mod:`eventrunner.checkpoint.position`). After each file is durable (fsync,
    rename) it sends ``eventrunner.signals.checkpoint_saved``.

    ``background_save`` copies the state at epoch end and writes it on a thread while the next
    epoch trains; by default (None) it does so when the model is on an accelerator, where the
    CPU is free to write. On the CPU, training and the writer share the same cores: measured
    no faster there (the checkpoint_save benchmark), and the copy costs memory, so it writes
    inline.
    """

    kind = "checkpoint"
    # It writes runner.model at experiment_end when it loads the best weights, but declaring
    # {"experiment_end": ("model",)} would make two CheckpointCallbacks of one run (same
    # order 90, e.g. one per metric) a refused write conflict, although at most the one that
    # follows the run's selection loads by default. Left undeclared.
    writes = ()

    def __init__(
        self,
        logdir: str | Path | None = None,
        loader_key: str | None = None,
        metric_key: str | None = None,
        minimize: bool | None = None,
        topk: int = 1,
        mode: str = "model",
        save_last: bool = True,
        save_best: bool = True,
        resume_model: str | Path | None = None,
        resume_runner: str | Path | None = None,
        load_best_on_end: bool | None = None,
        background_save: bool | None = None,
        every_n_batches: int | None = None,
        every_seconds: float | None = None,
    ) -> None:
        super().__init__(order=Order.CHECKPOINT)
        self._inside = SaveInsideEpoch(self, every_n_batches, every_seconds)
        if not is_int(topk) or topk < 0:
            raise ValueError(f"CheckpointCallback: topk must be an int >= 0, got {topk!r}")
        if mode not in ("model", "runner"):
            raise ValueError(f"CheckpointCallback: mode must be 'model' or 'runner', got {mode!r}")
        if save_last is not True or save_best is not True:
            raise ValueError(
                "CheckpointCallback: last.pth and best.pth are always written (resume and "
                "load_best_on_end read them); save_last/save_best take only True"
            )
        self.mode = mode
        self.resume_model = resume_model
        self.resume_runner = resume_runner
        self.logdir = logdir
        self.watched = Watched(loader_key, metric_key, minimize)
        self.topk = topk
        self.load_best_on_end = load_best_on_end
        self.background_save = background_save
        self.history: list[dict[str, Any]] = []
        self.best_epoch: int | None = None
        self.best_metric: float | None = None
        self.best_state: dict[str, torch.Tensor] | None = None
        self.folder: ckpt.CheckpointFolder | None = None
        self._active = True
        self._target = self.watched
        self._plan: ckpt.SavePlan | None = None
        self._follows_run = True
        self._writer = ckpt.CheckpointWriter(bool(background_save))
        self._resumed_kept: list[ckpt.Entry] = []
        self._resumed_best: ckpt.Entry | None = None
        self._resumed_selection: dict[str, Any] | None = None

    # ---------------------------------------------------------------- the run

    def _load_given_states(self, runner: RunState) -> None:
        """Catalyst's ``resume_model`` (weights) / ``resume_runner`` (weights, optimizer and
        scheduler states; not the counters: ``train(resume=)`` continues a run)."""
        if self.resume_model is not None:
            ckpt.load_weights(runner.model, self.resume_model)
        if self.resume_runner is not None:
            saved = ckpt.load_weights(runner.model, self.resume_runner)
            components.load_state_dicts(runner.optimizer, saved.get("optimizer"), "optimizer")
            components.load_state_dicts(runner.scheduler, saved.get("scheduler"), "scheduler")

    def on_experiment_start(self, runner: RunState) -> None:
        self._load_given_states(runner)
        self._target = self.watched.resolve(runner)
        selection = runner.selection
        loader_given = self.watched.loader is not None or selection.loader_given
        if self._target.loader not in runner.loaders:
            if loader_given:
                raise ValueError(
                    f"valid_loader {self._target.loader!r} is not among the loaders "
                    f"({', '.join(runner.loaders)})"
                )
            self._disable(runner, f"no {self._target.loader!r} loader")
        elif runner.epoch_step == 0:
            self._active = True
        self._follows_run = self._follows_run_selection(runner)
        resumed = runner.epoch_step > 0  # restore_run() ran before experiment_start
        if resumed:
            self._check_resumed_selection(runner)
        else:
            self.history = []
            self._resumed_kept, self._resumed_best, self._resumed_selection = [], None, None
        self._best_from_history(runner.epoch_step)
        self.best_state = None
        self._plan = None
        background = self.background_save
        if background is None:
            background = runner.device.type != "cpu"
        self._writer = ckpt.CheckpointWriter(background)
        self.folder = None
        logdir = self._logdir(runner)
        self._check_own_folder(runner)
        self._warn_best_on_end(runner)
        if logdir is not None and self._writes_files(runner):
            self.folder = ckpt.CheckpointFolder(
                Path(logdir) / "checkpoints", self.topk, bool(self._target.minimize)
            )
            if resumed:
                last = self.history[-1] if self.history else {}
                self.folder.resume(
                    runner.settings.resume,
                    ckpt.Entry(
                        ckpt.LAST,
                        runner.epoch_step,
                        last.get("metric") if last.get("epoch") == runner.epoch_step else None,
                    ),
                    self._resumed_kept,
                    self._resumed_best,
                    self.best_epoch,
                    self.best_metric,
                    self._selection(),
                )
            else:
                self.folder.prepare()
        elif resumed and self._keeps_weights_in_memory(runner):
            self._best_from_resumed_folder(runner)
        self._inside.start(runner, self.folder is not None)
        if self.folder is not None or self._inside.on:
            runner.records_position = True  # a save inside a pass needs its start's RNG

    def _logdir(self, runner: RunState) -> Path | None:
        logdir = self.logdir if self.logdir is not None else runner.logdir
        return None if logdir is None else Path(logdir)

    def _check_own_folder(self, runner: RunState) -> None:
        # Two callbacks in one folder would overwrite each other's best.pth and index.json.
        mine = self._logdir(runner)
        if mine is None:
            return
        for other in runner.callbacks:
            if other is self:
                return
            theirs = other._logdir(runner) if isinstance(other, CheckpointCallback) else None
            if theirs is not None and theirs.resolve() == mine.resolve():
                raise ValueError(
                    f"two CheckpointCallbacks write to {mine / 'checkpoints'} (one by "
                    f"{other.watched.resolve(runner).metric!r}, one by {self._target.metric!r}): "
                    "give each its own logdir=, e.g. CheckpointCallback(logdir='logs/by_m1', ...)"
                )

    def _warn_best_on_end(self, runner: RunState) -> None:
        follows = (
            self.load_best_on_end is None and runner.settings.load_best_on_end and self._follows_run
        )
        if follows and not self._tracks(runner):
            run = runner.selection
            log.warning(
                "eventrunner: load_best_on_end: no CheckpointCallback selects by the run's "
                "%s %s, so the best weights by %s %s (its first CheckpointCallback) are "
                "loaded; runner.best_epoch still follows %s",
                run.loader,
                run.metric,
                self._target.loader,
                self._target.metric,
                run.metric,
            )

    def _tracks(self, runner: RunState) -> bool:
        """Whether this callback selects by the run's own loader, metric and direction."""
        run = runner.selection
        target = self.watched.resolve(runner)
        return (target.loader, target.metric, bool(target.minimize)) == (
            run.loader,
            run.metric,
            bool(run.minimize),
        )

    def _follows_run_selection(self, runner: RunState) -> bool:
        # train(load_best_on_end=) concerns the run's selection: the callback that selects by
        # it, or, when none does, the first CheckpointCallback of the run.
        if self._tracks(runner):
            return True
        others = [cb for cb in runner.callbacks if isinstance(cb, CheckpointCallback)]
        return not any(cb._tracks(runner) for cb in others) and bool(others) and others[0] is self

    def _best_from_history(self, epoch: int) -> None:
        # A resumed run rebuilds its best from the saved history (ties keep the earlier epoch).
        self.best_epoch, self.best_metric = None, None
        for item in self.history:
            if self._target.improves(item["metric"], self.best_metric):
                self.best_epoch, self.best_metric = int(item["epoch"]), float(item["metric"])
        if not self._active and epoch > 0:
            self.best_epoch = epoch

    def _check_resumed_selection(self, runner: RunState) -> None:
        saved, now = self._resumed_selection, self._selection()
        if saved is not None and now is not None and saved != now:
            log.warning(
                "eventrunner: %s chose its best epoch (%s) by %s; this run selects by %s",
                runner.settings.resume,
                self._resumed_best.epoch if self._resumed_best else runner.best_epoch,
                saved,
                now,
            )

    def _writes_files(self, runner: RunState) -> bool:
        """Whether this process writes checkpoint files: rank 0 only (every process outside DDP).

        The other ranks keep the best weights in memory for ``load_best_on_end``.
        """
        return distributed.is_main_process()

    def _disable(self, runner: RunState, why: str) -> None:
        self._active = False
        if not self._tracks(runner):  # the run's own selection says so for the run's metric
            log.warning(
                "eventrunner: %s: no model selection (%s); its best epoch is the last epoch",
                type(self).__name__,
                why,
            )

    def _metric_given(self, runner: RunState) -> bool:
        return self.watched.metric is not None or runner.selection.metric_given

    def parts(self) -> tuple[Callback, ...]:
        # Records the epoch with model selection (60), saves after everything else (90): every
        # CheckpointCallback of a run has recorded epoch e before the first of them saves it.
        return (_RecordEpoch(self), self, self._inside)

    def on_epoch_end(self, runner: RunState) -> None:
        # The weights as saved: after every epoch_end subscriber before this one.
        best = self._active and self.best_epoch == runner.epoch_step
        if best and self._keeps_weights_in_memory(runner):
            self.best_state = cpu_state_dict(runner.model)
        self._save(runner)

    def record(self, runner: RunState) -> None:
        """This epoch's metric into the history, the best so far and the top-k plan."""
        if self._active:
            produced = runner.epoch_metrics.get(self._target.loader, {})
            if self._target.metric not in produced and not self._metric_given(runner):
                self._disable(
                    runner,
                    f"loader {self._target.loader!r} produced no {self._target.metric!r} metric",
                )
        value: float | None = None
        if not self._active:
            self.best_epoch = runner.epoch_step
            self.best_metric = None
        else:
            value = self._target.value(runner, "model selection")
            self.history.append({"epoch": runner.epoch_step, "metric": value})
            if self._target.improves(value, self.best_metric):
                self.best_metric = value
                self.best_epoch = runner.epoch_step
        if self.folder is not None:
            self._plan = self.folder.plan(
                runner.epoch_step, value, self.best_epoch, self.best_metric, self._selection()
            )

    def on_exception(self, runner: RunState) -> None:
        # A background write in flight finishes (or reports its failure) before the run ends.
        self._writer.wait()
        if isinstance(runner.exception, Preempted) and runner.loader_key is not None:
            where = self._inside.save(runner)  # the batch the run stopped after
            self._writer.wait()
            if where is not None and self.folder is not None:
                log.warning(
                    "eventrunner: %s: saved %s in epoch %d, %s after batch %d",
                    runner.exception.reason,
                    self.folder.path / ckpt.LAST,
                    where["epoch"],
                    where["loader"],
                    where["batches"],
                )

    def on_experiment_end(self, runner: RunState) -> None:
        self._writer.close()
        if runner.exception is None and self._wants_best_on_end(runner):
            self._load_best(runner)

    # ------------------------------------------------------------- saving

    def _save(self, runner: RunState) -> None:
        folder, plan = self.folder, self._plan
        if folder is None or plan is None:
            return
        # The previous background write's error surfaces here, before this epoch is written.
        self._writer.wait()
        self._plan = None
        # The file's "selection" block is the run's own (resume restores runner.best_* from
        # it); this callback's own best lives in its state (history) and in its index.json.
        state = ckpt.capture_state(
            runner,
            epoch=plan.epoch,
            epoch_metrics=runner.epoch_metrics,
            history=self.history if self._tracks(runner) else None,
        )
        self._write(runner, state, plan, None)

    def _write(
        self, runner: RunState, state: Any, plan: ckpt.SavePlan, where: dict[str, Any] | None
    ) -> None:
        folder = self.folder
        assert folder is not None
        if self._writer.background:
            # Copied now (synchronously): training goes on changing the live tensors.
            state = ckpt.copy_to_cpu(state)

        def write() -> None:
            folder.write(state, plan)
            checkpoint_saved.send(
                runner,
                path=folder.path / ckpt.LAST,
                files=[folder.path / name for name in plan.targets],
                epoch=plan.epoch,
                position=where,
            )

        what = f"epoch {plan.epoch}" if where is None else f"epoch {where['epoch']} (inside)"
        self._writer.submit(f"{what} to {folder.path}", write)

    def _selection(self) -> dict[str, Any] | None:
        if not self._active:
            return None
        target = self._target
        return {"loader": target.loader, "metric": target.metric, "minimize": bool(target.minimize)}

    def _load_best(self, runner: RunState) -> None:
        if self.folder is None:
            if self.best_state is not None:
                unwrap_model(runner.model).load_state_dict(self.best_state)
            elif self.best_epoch is not None and self.best_epoch != runner.epoch_step:
                log.warning(
                    "eventrunner: load_best_on_end: the weights of epoch %d were not kept "
                    "(resumed run without logdir); the model keeps its last weights",
                    self.best_epoch,
                )
            return
        best = self.folder.best
        if best is None or best.epoch != self.best_epoch:
            log.warning(
                "eventrunner: load_best_on_end: %s does not hold the best epoch %s; the model "
                "keeps its last weights",
                self.folder.path / ckpt.BEST,
                self.best_epoch,
            )
            return
        ckpt.load_weights(runner.model, self.folder.path / ckpt.BEST)

    def _best_from_resumed_folder(self, runner: RunState) -> None:
        # Resumed without a logdir: the best weights may sit beside the resumed file.
        if self.best_epoch is None or runner.settings.resume is None:
            return
        source = Path(runner.settings.resume)
        for candidate in (source, source.parent / ckpt.BEST):
            if ckpt.peek_epoch(candidate) == self.best_epoch:
                self.best_state = ckpt.load_checkpoint(candidate)["model"]
                return

    # ---------------------------------------------------------- load_best_on_end

    def _wants_best_on_end(self, runner: RunState) -> bool:
        if self.load_best_on_end is not None:
            return self.load_best_on_end
        return bool(runner.settings.load_best_on_end) and self._follows_run

    def _keeps_weights_in_memory(self, runner: RunState) -> bool:
        # With a folder, best.pth is the snapshot: no second copy in memory.
        return self.folder is None and self._wants_best_on_end(runner)

    # ------------------------------------------------------------------ state

    def state_dict(self) -> dict[str, Any]:
        folder = self.folder
        return {
            "history": [dict(item) for item in self.history],
            "active": self._active,
            "topk": [entry.as_dict() for entry in folder.kept] if folder is not None else [],
            "best_file": folder.best.as_dict() if folder is not None and folder.best else None,
            "selection": self._selection(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history = checked_history(state.get("history", []))
        self._active = bool(state.get("active", True))
        self._resumed_kept = [ckpt.Entry.from_dict(item) for item in state.get("topk", [])]
        best = state.get("best_file")
        self._resumed_best = ckpt.Entry.from_dict(best) if best else None
        self._resumed_selection = state.get("selection")


class _RecordEpoch(Callback):
    """The part of a :class:`CheckpointCallback` that records each epoch, at order 60."""

    def __init__(self, owner: CheckpointCallback) -> None:
        super().__init__(order=Order.SELECTION)
        self.owner = owner

    def describe_name(self) -> str:
        return f"{self.owner.describe_name()}.record"

    def on_epoch_end(self, runner: RunState) -> None:
        self.owner.record(runner)
