"""Checkpoints: each ``CheckpointCallback`` keeps its own best epoch, and files to resume.

After each epoch its loader's metric is compared with its best so far; ties keep the earlier
epoch. Several can run side by side (one minimising ``m1``, one maximising ``m2``), each with
its own best, folder and index; ``runner.best_epoch``/``best_valid_metric`` belong to the
run's own selection (``plugins.selection``) and none of them writes those. With a ``logdir``
each finished epoch is saved to ``logdir/checkpoints`` (``last.pth``, ``best.pth``, the top-k
``epoch_N.pth``, ``index.json``; see :mod:`eventrunner.checkpoint`); without one the best
weights are kept as a CPU snapshot (not the live model) for ``load_best_on_end``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from eventrunner import checkpoint as ckpt
from eventrunner import distributed
from eventrunner.checks import is_int, is_number
from eventrunner.events import Callback, Order
from plugins._selection import Watched

log = logging.getLogger("eventrunner")


def cpu_state_dict(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A copy of the module's state on the CPU, unaffected by further training."""
    return {
        key: value.detach().to("cpu", copy=True)
        for key, value in ckpt.unwrap_model(module).state_dict().items()
    }


@dataclass
class _Finished:
    """An epoch whose ``epoch_end`` ran; saved once every ``epoch_end`` subscriber is done."""

    epoch: int
    metric: float | None
    metrics: dict[str, dict[str, Any]]
    plan: ckpt.SavePlan


class CheckpointCallback(Callback):
    """Selects the best epoch by ``loader_key``/``metric_key``/``minimize`` (default: the
    runner's ``valid_loader``/``main_metric``/``minimize_metric``) and, with a ``logdir`` (its
    own or the runner's), writes checkpoints: ``last.pth``, ``best.pth``, the ``topk`` best
    epochs and ``index.json``.

    ``best_epoch``/``best_metric`` are its own best so far. ``load_best_on_end=None`` follows
    ``train(load_best_on_end=)`` when this callback selects by the run's own metric (or when
    no CheckpointCallback of the run does and this is the first).

    ``background_save`` copies the state at epoch end and writes it on a thread while the next
    epoch trains; by default (None) it does so when the model is on an accelerator, where the
    CPU is free to write. On the CPU, training and the writer share the same cores: measured
    no faster there (benchmarks/checkpoint_save.py), and the copy costs memory, so it writes
    inline.

    An epoch is saved after all its ``epoch_end`` subscribers ran (early stopping's state
    included): at the next ``epoch_start``, or at ``experiment_end`` for the last one.
    """

    kind = "checkpoint"

    def __init__(
        self,
        logdir: str | Path | None = None,
        loader_key: str | None = None,
        metric_key: str | None = None,
        minimize: bool | None = None,
        topk: int = 1,
        load_best_on_end: bool | None = None,
        background_save: bool | None = None,
    ) -> None:
        super().__init__(order=Order.CHECKPOINT)
        if isinstance(topk, bool) or not isinstance(topk, int) or topk < 0:
            raise ValueError(f"CheckpointCallback: topk must be an int >= 0, got {topk!r}")
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
        self._finished: _Finished | None = None
        self._follows_run = True
        self._writer = ckpt.CheckpointWriter(bool(background_save))
        self._resumed_kept: list[ckpt.Entry] = []
        self._resumed_best: ckpt.Entry | None = None
        self._resumed_selection: dict[str, Any] | None = None

    # ---------------------------------------------------------------- the run

    def on_experiment_start(self, runner: Any) -> None:
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
        self._finished = None
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
                    runner.resume,
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

    def _logdir(self, runner: Any) -> Path | None:
        logdir = self.logdir if self.logdir is not None else runner.logdir
        return None if logdir is None else Path(logdir)

    def _check_own_folder(self, runner: Any) -> None:
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

    def _warn_best_on_end(self, runner: Any) -> None:
        follows = self.load_best_on_end is None and runner.load_best_on_end and self._follows_run
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

    def _tracks(self, runner: Any) -> bool:
        """Whether this callback selects by the run's own loader, metric and direction."""
        run = runner.selection
        target = self.watched.resolve(runner)
        return (target.loader, target.metric, bool(target.minimize)) == (
            run.loader,
            run.metric,
            bool(run.minimize),
        )

    def _follows_run_selection(self, runner: Any) -> bool:
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

    def _check_resumed_selection(self, runner: Any) -> None:
        saved, now = self._resumed_selection, self._selection()
        if saved is not None and now is not None and saved != now:
            log.warning(
                "eventrunner: %s chose its best epoch (%s) by %s; this run selects by %s",
                runner.resume,
                self._resumed_best.epoch if self._resumed_best else runner.best_epoch,
                saved,
                now,
            )

    def _writes_files(self, runner: Any) -> bool:
        """Whether this process writes checkpoint files: rank 0 only (every process outside DDP).

        The other ranks keep the best weights in memory for ``load_best_on_end``.
        """
        return distributed.is_main_process()

    def _disable(self, runner: Any, why: str) -> None:
        self._active = False
        if not self._tracks(runner):  # the run's own selection says so for the run's metric
            log.warning(
                "eventrunner: %s: no model selection (%s); its best epoch is the last epoch",
                type(self).__name__,
                why,
            )

    def _metric_given(self, runner: Any) -> bool:
        return self.watched.metric is not None or runner.selection.metric_given

    def on_epoch_start(self, runner: Any) -> None:
        if self._finished is not None:
            self._save(runner)

    def on_epoch_end(self, runner: Any) -> None:
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
                if self._keeps_weights_in_memory(runner):
                    self.best_state = cpu_state_dict(runner.model)
        if self.folder is not None:
            # Planned now, written at the next epoch_start (after every epoch_end subscriber):
            # a checkpoint another CheckpointCallback writes in between holds this plan.
            metrics = {k: dict(v) for k, v in runner.epoch_metrics.items()}
            plan = self.folder.plan(
                runner.epoch_step, value, self.best_epoch, self.best_metric, self._selection()
            )
            self._finished = _Finished(runner.epoch_step, value, metrics, plan)

    def on_exception(self, runner: Any) -> None:
        # A finished epoch not saved yet: the failure came from an epoch_start subscriber
        # before ours, so nothing of the new epoch ran. A failure inside epoch_end leaves
        # that epoch unfinished: not saved, last.pth keeps the one before.
        finished = self._finished
        if finished is not None and finished.epoch == runner.epoch_step - 1:
            self._save(runner)
        self._finished = None
        self._writer.wait()

    def on_experiment_end(self, runner: Any) -> None:
        if runner.exception is not None:
            self._writer.wait()
            return
        if self._finished is not None:
            self._save(runner)
        self._writer.wait()
        if self._wants_best_on_end(runner):
            self._load_best(runner)

    # ------------------------------------------------------------- saving

    def _save(self, runner: Any) -> None:
        folder = self.folder
        if self._finished is None or folder is None:
            return
        # The previous write's error surfaces here, before this epoch is planned: the epoch
        # stays pending, and on_exception tries it once more.
        self._writer.wait()
        finished, self._finished = self._finished, None
        plan = finished.plan
        # The file's "selection" block is the run's own (resume restores runner.best_* from
        # it); this callback's own best lives in its state (history) and in its index.json.
        state = ckpt.capture_state(
            runner,
            epoch=finished.epoch,
            epoch_metrics=finished.metrics,
            history=self.history if self._tracks(runner) else None,
        )
        what = f"epoch {finished.epoch} to {folder.path}"
        if self._writer.background:
            # Copied now (synchronously): training goes on changing the live tensors.
            state = ckpt.copy_to_cpu(state)
        self._writer.submit(what, lambda: folder.write(state, plan))

    def _selection(self) -> dict[str, Any] | None:
        if not self._active:
            return None
        target = self._target
        return {"loader": target.loader, "metric": target.metric, "minimize": bool(target.minimize)}

    def _load_best(self, runner: Any) -> None:
        if self.folder is None:
            if self.best_state is not None:
                ckpt.unwrap_model(runner.model).load_state_dict(self.best_state)
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

    def _best_from_resumed_folder(self, runner: Any) -> None:
        # Resumed without a logdir: the best weights may sit beside the resumed file.
        if self.best_epoch is None or runner.resume is None:
            return
        source = Path(runner.resume)
        for candidate in (source, source.parent / ckpt.BEST):
            if ckpt.peek_epoch(candidate) == self.best_epoch:
                self.best_state = ckpt.load_checkpoint(candidate)["model"]
                return

    # ---------------------------------------------------------- load_best_on_end

    def _wants_best_on_end(self, runner: Any) -> bool:
        if self.load_best_on_end is not None:
            return self.load_best_on_end
        return bool(runner.load_best_on_end) and self._follows_run

    def _keeps_weights_in_memory(self, runner: Any) -> bool:
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
        self.history = _checked_history(state.get("history", []))
        self._active = bool(state.get("active", True))
        self._resumed_kept = [ckpt.Entry.from_dict(item) for item in state.get("topk", [])]
        best = state.get("best_file")
        self._resumed_best = ckpt.Entry.from_dict(best) if best else None
        self._resumed_selection = state.get("selection")


def _checked_history(history: Any) -> list[dict[str, Any]]:
    """A selection history read from a checkpoint (data): ``[{"epoch": int, "metric": float}]``."""
    if not isinstance(history, list):
        raise ValueError(f"history: expected a list, got {type(history).__name__}")
    checked = []
    for index, item in enumerate(history):
        epoch = item.get("epoch") if isinstance(item, dict) else None
        metric = item.get("metric") if isinstance(item, dict) else None
        if not is_int(epoch) or epoch < 1 or not is_number(metric):
            raise ValueError(
                f"history[{index}]: expected {{'epoch': int >= 1, 'metric': number}}, got {item!r}"
            )
        checked.append({"epoch": epoch, "metric": float(metric)})
    return checked
