"""Exact resume: check that a checkpoint fits the run, then put the run back where it left off.

Everything that can be checked is checked before anything changes (:func:`check_fits`); the
RNG states are restored last, so that the next draw is the one the saved run would have made.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eventrunner import components
from eventrunner.checkpoint.files import CheckpointError
from eventrunner.checkpoint.folder import LAST
from eventrunner.checkpoint.position import ResumePoint, check_position
from eventrunner.checkpoint.state import (
    callback_keys,
    check_model_state,
    check_structure,
    class_name,
    load_checkpoint,
    peek_epoch,
)
from eventrunner.data.skip import has_seedable_workers
from eventrunner.distributed import unwrap_model
from eventrunner.rng import check_rng_state, persistent_worker_loaders, set_rng_state

if TYPE_CHECKING:
    from eventrunner.state import RunState

log = logging.getLogger("eventrunner")


# ------------------------------------------------------------------ checking a checkpoint


def _parts(target: Any, state: Any, what: str, path: Path) -> list[tuple[Any, Any, str]]:
    """``(component, its saved state, name)``: one triple, or one per key of a dict of them."""
    if not components.is_dict(target):
        return [(target, state, what)]
    if state is None:
        return [(value, None, f"{what}[{key!r}]") for key, value in target.items()]
    if not isinstance(state, Mapping) or set(state) - set(target):
        got = sorted(state) if isinstance(state, Mapping) else type(state).__name__
        raise CheckpointError(
            f"checkpoint {path}: holds {what} states for {got}; the run's {what}s are "
            f"{sorted(target)}"
        )
    return [(value, state.get(key), f"{what}[{key!r}]") for key, value in target.items()]


def _check_class(target: Any, checkpoint: Mapping[str, Any], what: str, path: Path) -> None:
    saved = (checkpoint.get("classes") or {}).get(what)  # absent from older checkpoints
    own = class_name(target)
    if target is None or saved is None or saved == own:
        return
    raise CheckpointError(
        f"checkpoint {path}: holds the {what} state of {saved}, but runner.{what} is "
        f"{own}: resume with the same {what} classes, or start a new run"
    )


def _check_param_groups(optimizer: Any, state: Any, path: Path) -> None:
    # torch checks this too, but only once the model is loaded: here nothing is touched yet.
    if components.is_dict(optimizer):
        for each, each_state, _ in _parts(optimizer, state, "optimizer", path):
            _check_param_groups(each, each_state, path)
        return
    if optimizer is None or not isinstance(state, Mapping):
        return
    groups = state.get("param_groups")
    if not isinstance(groups, list) or not all(
        isinstance(g, Mapping) and isinstance(g.get("params"), list) for g in groups
    ):
        raise CheckpointError(f"checkpoint {path}: optimizer.param_groups is not a list of groups")
    saved = [len(g["params"]) for g in groups]
    own = [len(g["params"]) for g in optimizer.param_groups]
    if saved != own:
        raise CheckpointError(
            f"checkpoint {path}: its optimizer has parameter groups of sizes {saved}; "
            f"runner.optimizer has {own}"
        )


def _check_rng(state: Any, loaders: Mapping[str, Any], path: Path) -> None:
    try:
        check_rng_state(state, loaders)
    except ValueError as error:
        raise CheckpointError(f"checkpoint {path}: {error}") from error


def _scheduler(runner: RunState) -> Any:
    scheduler = runner.scheduler
    stateful = components.is_dict(scheduler) or hasattr(scheduler, "load_state_dict")
    return scheduler if stateful else None


def check_fits(runner: RunState, checkpoint: Mapping[str, Any], path: str | Path) -> None:
    """Everything :func:`restore_run` can check before it changes anything: the structure, the
    model's keys and shapes, the optimizer's and scheduler's classes, the RNG states."""
    path = Path(path)
    check_structure(checkpoint, path)
    check_model_state(runner.model, checkpoint["model"], path)
    _check_class(runner.optimizer, checkpoint, "optimizer", path)
    _check_class(_scheduler(runner), checkpoint, "scheduler", path)
    _check_param_groups(runner.optimizer, checkpoint.get("optimizer"), path)
    _check_rng(checkpoint["rng"], runner.loaders, path)


# --------------------------------------------------------------------------- restoring


def _load_part(target: Any, state: Any, what: str, path: Path) -> None:
    if target is None:
        if state:
            log.warning("eventrunner: %s holds a %s state but the run has no %s", path, what, what)
        return
    if state is None:
        log.warning("eventrunner: %s holds no %s state; the %s starts fresh", path, what, what)
        return
    try:
        target.load_state_dict(state)
    except (KeyError, ValueError, RuntimeError, TypeError, IndexError) as error:
        raise CheckpointError(
            f"checkpoint {path}: its {what} state does not fit runner.{what} "
            f"({type(target).__name__}): {error}"
        ) from error


def load_callback_states(runner: RunState, states: Mapping[str, Any], path: Path) -> None:
    """Each subscriber's ``load_state_dict`` from a checkpoint's states (by kind or class)."""
    for key, callback in callback_keys(runner.callbacks):
        if key not in states:
            continue
        try:
            callback.load_state_dict(states[key])
        except (KeyError, ValueError, TypeError, IndexError, AttributeError) as error:
            raise CheckpointError(
                f"checkpoint {path}: the state of subscriber {key!r} "
                f"({type(callback).__name__}) does not load: {error}"
            ) from error


def _restore_counters(runner: RunState, checkpoint: Mapping[str, Any]) -> None:
    counters = checkpoint["counters"]
    runner.epoch_step = counters["epoch_step"]
    runner.batch_step = counters["batch_step"]
    runner.sample_step = counters["sample_step"]
    runner.need_early_stop = counters.get("need_early_stop", False)
    runner.worker_seed = counters.get("worker_seed")
    selection = checkpoint["selection"]
    runner.best_valid_metric = selection.get("best_valid_metric")
    runner.best_epoch = selection.get("best_epoch")
    runner.epoch_metrics = {k: dict(v) for k, v in checkpoint.get("epoch_metrics", {}).items()}


def _log_resumed(runner: RunState, path: Path, position: Mapping[str, Any] | None) -> None:
    epoch = runner.epoch_step
    if position is not None:
        log.info(
            "eventrunner: resumed from %s in epoch %d, loader %r after batch %d",
            path,
            position["epoch"],
            position["loader"],
            position["batches"],
        )
    elif runner.need_early_stop:
        log.warning(
            "eventrunner: %s: early stopping ended that run after epoch %d: no epoch left to "
            "train (num_epochs=%d); start a new run from its weights to train on",
            path,
            epoch,
            runner.num_epochs,
        )
    elif epoch >= runner.num_epochs:
        log.warning(
            "eventrunner: %s is epoch %d and num_epochs=%d: no epoch left to train",
            path,
            epoch,
            runner.num_epochs,
        )
    else:
        log.info("eventrunner: resumed from %s after epoch %d", path, epoch)
    _warn_worker_randomness(runner, path, position)


def _warn_worker_randomness(
    runner: RunState, path: Path, position: Mapping[str, Any] | None
) -> None:
    # DataLoader workers seed each batch from the run's seed (eventrunner.data.worker_seeds)
    # where they can; elsewhere fresh workers cannot continue the random streams of workers
    # that had already loaded part of a pass (or, persistent, of the run).
    inside = position["loader"] if position is not None and position["batches"] else None
    persistent = dict(persistent_worker_loaders(runner.loaders))
    for key, loader in runner.loaders.items():
        if not getattr(getattr(loader, "loader", loader), "num_workers", 0):
            continue
        if has_seedable_workers(loader):
            continue  # each batch seeded from the run's worker seed, restored with it
        if key in persistent or key == inside:
            when = (
                f"{persistent[key]} has persistent_workers=True"
                if key in persistent
                else f"it resumes inside a pass, after batch {position['batches']}"
            )
            why = (
                f"{when}, and its workers seed themselves when they start; a DataLoader given "
                "as the loader, over a map-style dataset with a batch size, has each batch "
                "seeded instead"
            )
        else:
            continue
        log.warning(
            "eventrunner: %s: resume is not exact for loader %r: its batches are the same as "
            "the interrupted run's, but random numbers drawn inside its DataLoader workers "
            "(augmentation in the dataset) differ: %s",
            path,
            key,
            why,
        )


def restore_run(runner: RunState, path: str | Path) -> dict[str, Any]:
    """Put a run back where ``path`` left it, so that the loop continues from the next epoch
    (or, from a checkpoint written inside a loader pass, the next batch of that pass).

    Restores the model, optimizer, scheduler, grad scaler, counters (the stop request of early
    stopping included), best metric and epoch, every subscriber's ``load_state_dict`` (matched
    by kind or class name) and, last, the RNG states: call it after seeding and after the
    loaders are set. A checkpoint that does not fit is refused (:func:`check_fits`) before
    anything is changed.
    """
    path = Path(path)
    checkpoint = load_checkpoint(path)
    check_fits(runner, checkpoint, path)
    position = checkpoint.get("position")
    if position is not None:
        check_position(position, runner, path, checkpoint["counters"]["epoch_step"])
    # Subscriber states first: they are the other part a crafted file can make fail (a top-k
    # file name that is not ours), and they live in memory only.
    load_callback_states(runner, checkpoint.get("callbacks") or {}, path)
    for name, target in (("optimizer", runner.optimizer), ("scheduler", _scheduler(runner))):
        for part, state, what in _parts(target, checkpoint.get(name), name, path):
            _load_part(part, state, what, path)
    # A disabled GradScaler saves {}: nothing to restore.
    _load_part(runner.scaler, checkpoint.get("scaler") or None, "scaler", path)
    unwrap_model(runner.model).load_state_dict(checkpoint["model"])
    _restore_counters(runner, checkpoint)
    set_rng_state(checkpoint["rng"], runner.loaders, source=str(path))
    # The loop puts back the rest once subscribers have started (loader states, position).
    runner.resume_point = ResumePoint(
        path,
        checkpoint["rng"],
        checkpoint.get("callbacks") or {},
        checkpoint.get("loaders") or {},
        position,
    )
    _log_resumed(runner, path, position)
    return checkpoint


def find_resume(logdir: str | Path | None) -> Path | None:
    """``resume="auto"``: the newest durable checkpoint in ``logdir/checkpoints`` (``last.pth``,
    else the latest ``epoch_N.pth`` that reads back), or None when there is none."""
    if logdir is None:
        raise ValueError("resume='auto' needs a logdir: it resumes from logdir/checkpoints")
    folder = Path(logdir) / "checkpoints"
    last = folder / LAST
    if peek_epoch(last) is not None:
        return last
    epochs = sorted(
        ((peek_epoch(path), path) for path in folder.glob("epoch_*.pth")),
        key=lambda item: -1 if item[0] is None else item[0],
    )
    if epochs and epochs[-1][0] is not None:
        return epochs[-1][1]
    return None


def auto_resume(logdir: str | Path | None) -> dict[str, Any]:
    """The settings ``resume="auto"`` stands for: ``resume=`` the newest durable checkpoint,
    or, when ``logdir`` has none, a new run (``overwrite=True``: no checkpoint to lose)."""
    found = find_resume(logdir)
    if found is None:
        log.info("eventrunner: resume='auto': no checkpoint in %s, starting a new run", logdir)
        return {"resume": None, "overwrite": True}
    log.info("eventrunner: resume='auto': resuming from %s", found)
    return {"resume": found}
