"""Where a run stands inside an epoch: what a mid-epoch checkpoint adds, and resuming there.

A checkpoint written inside a loader pass holds the run state plus its ``position``: the
epoch in progress, the pass (loader key and place among the loaders), the batches and
samples the loop has consumed (its own counters, not what the prefetch producer fetched
ahead), the RNG states at the start of the pass, the pass's running metric sums, an open
gradient-accumulation group (its sample count and the gradients so far) and the metrics of
the epoch's loaders already done. The RNG states at the save are the checkpoint's ``rng``.

Resuming replays the pass's start (RNG states, ``loader_start``), so the sampler draws the
same order, then skips the consumed batches (:mod:`eventrunner.data.skip`) and puts the
rest back: the next batch is the one the interrupted run would have trained on next.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from eventrunner.checkpoint.files import CheckpointError
from eventrunner.checks import is_int, is_number
from eventrunner.data.loaders import BatchLimitLoaderWrapper
from eventrunner.data.skip import (
    PassFrom,
    has_seedable_workers,
    is_stateful,
    start_persistent_workers,
)
from eventrunner.data.worker_seeds import pass_seed
from eventrunner.distributed import gather_objects, get_rank, get_world_size, unwrap_model
from eventrunner.rng import rng_state, set_rng_state

if TYPE_CHECKING:
    from eventrunner.state import RunState


# ------------------------------------------------------------------------ saving


def loader_states(loaders: Mapping[str, Any]) -> dict[str, Any]:
    """The state of each loader that has one to restore: the batches a
    :class:`~eventrunner.data.loaders.BatchLimitLoaderWrapper` keeps and replays."""
    return {
        key: loader.state_dict()
        for key, loader in loaders.items()
        if isinstance(loader, BatchLimitLoaderWrapper)
    }


def _own_part(runner: RunState) -> dict[str, Any]:
    """What differs between the ranks of a DDP run: this process's share of the pass."""
    means = runner.running_metrics
    window = runner.accumulation
    grads = {}
    if window.steps > 1 and window.samples > 0:  # an open group: its gradients so far
        for name, param in unwrap_model(runner.model).named_parameters():
            if param.grad is not None:
                grads[name] = param.grad.detach().cpu()
    sums = {
        k: v.detach().cpu() if isinstance(v, torch.Tensor) else v for k, v in means.sums.items()
    }
    return {
        "running_metrics": {"sums": sums, "counts": dict(means.counts)},
        "accumulation": {"full": int(window.full), "samples": int(window.samples)},
        "grads": grads,
        # A StatefulDataLoader's own position (fetched inline, so it is the loop's).
        "loader_state": runner.loader.state_dict() if is_stateful(runner.loader) else None,
    }


def capture_position(runner: RunState) -> dict[str, Any]:
    """The runner's place in its current loader pass (see the module docstring).

    Under DDP every rank must call it at the same batch: each rank's share of the pass
    (metric sums, open gradients, a stateful loader's state) is gathered, by rank.
    """
    if runner.loader_key is None or runner.position_rng is None:
        raise RuntimeError("capture_position: the runner is not inside a recorded loader pass")
    return {
        "epoch": int(runner.epoch_step),
        "loader": str(runner.loader_key),
        "loader_index": list(runner.loaders).index(runner.loader_key),
        "batches": int(runner.loader_batch_step),
        "samples": int(runner.loader_sample_step),
        "pass_rng": runner.position_rng,
        "epoch_metrics": {key: dict(value) for key, value in runner.epoch_metrics.items()},
        "ranks": gather_objects(_own_part(runner)),
    }


# ----------------------------------------------------------------------- checking


def _fail(path: Path, where: str, expected: str, value: Any) -> CheckpointError:
    return CheckpointError(
        f"checkpoint {path}: position.{where} must be {expected}, found {value!r:.80}"
    )


def check_position(position: Any, runner: RunState, path: Path, epochs_done: int) -> None:
    """Raise a CheckpointError naming the file and the field where ``position`` (data read
    from the file) does not fit this run's loaders; nothing is changed."""
    if not isinstance(position, Mapping):
        raise _fail(path, "", "a dict", position)
    for key in ("epoch", "loader_index", "batches", "samples"):
        if not is_int(position.get(key)) or position[key] < (1 if key == "epoch" else 0):
            raise _fail(path, key, "an int >= 0 (epoch >= 1)", position.get(key))
    if position["epoch"] != epochs_done + 1:
        expected = f"the epoch after counters.epoch_step ({epochs_done + 1})"
        raise _fail(path, "epoch", expected, position["epoch"])
    keys = list(runner.loaders)
    index, loader = position["loader_index"], position.get("loader")
    if index >= len(keys) or keys[index] != loader:
        raise CheckpointError(
            f"checkpoint {path}: was written inside the pass over loader {loader!r} "
            f"(loader {index + 1} of its run); this run's loaders are {keys}: resume with the "
            "same loaders, in the same order"
        )
    ranks = position.get("ranks")
    world = get_world_size()
    if not isinstance(ranks, list) or len(ranks) != world:
        count = len(ranks) if isinstance(ranks, list) else ranks
        raise CheckpointError(
            f"checkpoint {path}: was written inside an epoch by {count!r} processes; this run "
            f"has {world}: resume inside an epoch with as many processes"
        )
    params = dict(unwrap_model(runner.model).named_parameters())
    for rank, part in enumerate(ranks):
        _check_part(part, f"ranks[{rank}]", params, path)
    metrics = position.get("epoch_metrics")
    if not isinstance(metrics, Mapping) or not all(
        isinstance(v, Mapping) for v in metrics.values()
    ):
        raise _fail(path, "epoch_metrics", "a dict of dicts", metrics)


def _check_part(part: Any, where: str, params: Mapping[str, Any], path: Path) -> None:
    if not isinstance(part, Mapping):
        raise _fail(path, where, "a dict", part)
    means = part.get("running_metrics")
    if not isinstance(means, Mapping) or not all(
        isinstance(means.get(key), Mapping) for key in ("sums", "counts")
    ):
        raise _fail(path, f"{where}.running_metrics", "{'sums': {...}, 'counts': {...}}", means)
    if not all(is_number(v) or isinstance(v, torch.Tensor) for v in means["sums"].values()):
        raise _fail(path, f"{where}.running_metrics.sums", "numbers", means["sums"])
    if not all(is_int(v) for v in means["counts"].values()):
        raise _fail(path, f"{where}.running_metrics.counts", "ints", means["counts"])
    window = part.get("accumulation")
    if not isinstance(window, Mapping) or not all(
        is_int(window.get(key)) for key in ("full", "samples")
    ):
        raise _fail(path, f"{where}.accumulation", "{'full': int, 'samples': int}", window)
    grads = part.get("grads")
    if not isinstance(grads, Mapping):
        raise _fail(path, f"{where}.grads", "a dict of tensors", grads)
    for name, grad in grads.items():
        param = params.get(name)
        if param is None or not isinstance(grad, torch.Tensor) or grad.shape != param.shape:
            raise _fail(path, f"{where}.grads[{name!r}]", "a gradient of a model parameter", grad)


# ---------------------------------------------------------------------- resuming


@dataclass
class ResumePoint:
    """What a resumed run puts back once its loop runs (after ``experiment_start``)."""

    path: Path
    rng: Mapping[str, Any]
    callbacks: Mapping[str, Any]
    loader_states: Mapping[str, Any]
    position: Mapping[str, Any] | None


def start_epoch(runner: RunState) -> int:
    """At each epoch's start: the index of its first loader to run (0 but in the epoch a
    checkpoint was written inside, where its finished loaders' metrics come back)."""
    point = runner.resume_point
    if point is None:
        return 0
    for key, state in point.loader_states.items():  # subscribers may have wrapped the loaders
        loader = runner.loaders.get(key)
        if isinstance(loader, BatchLimitLoaderWrapper):
            try:
                loader.load_state_dict(state)
            except ValueError as error:
                raise CheckpointError(f"checkpoint {point.path}: loader {key!r}: {error}") from None
    if runner.epoch_step > 1:  # the interrupted run had started them in its first epoch
        seeded = seeds_worker_batches(runner)
        for loader in runner.loaders.values():
            start_persistent_workers(getattr(loader, "loader", loader), seeded)
    position = point.position
    if position is None:
        runner.resume_point = None
        return 0
    runner.epoch_metrics = {key: dict(value) for key, value in position["epoch_metrics"].items()}
    return int(position["loader_index"])


def _resumes_this_pass(runner: RunState) -> bool:
    point = runner.resume_point
    return point is not None and point.position is not None


def start_pass(runner: RunState) -> None:
    """Before ``loader_start``: the RNG states the pass starts from, recorded (for a later
    mid-pass checkpoint) or, in the pass a checkpoint was written inside, restored."""
    if _resumes_this_pass(runner):
        runner.position_rng = runner.resume_point.position["pass_rng"]
        set_rng_state(runner.position_rng, runner.loaders, source=str(runner.resume_point.path))
    elif runner.records_position:
        runner.position_rng = rng_state(runner.loaders)


def seeds_worker_batches(runner: RunState) -> bool:
    """Whether DataLoader workers seed each batch (:mod:`eventrunner.data.worker_seeds`):
    in a run that may checkpoint inside a pass, and in a resumed one."""
    return runner.records_position or runner.settings.resume is not None


def _worker_seed(runner: RunState) -> int | None:
    if not seeds_worker_batches(runner):
        return None
    if runner.worker_seed is None:  # a new run: train(seed=), else a fresh random one
        seed = runner.settings.seed
        runner.worker_seed = int(seed) if seed is not None else secrets.randbits(62)
    return pass_seed(runner.worker_seed, get_rank(), runner.epoch_step, str(runner.loader_key))


def pass_loader(runner: RunState) -> Any:
    """After ``loader_start``: what the pass iterates. In the pass a checkpoint was written
    inside, the consumed batches are skipped and the pass's state put back; DataLoader
    workers seed each batch where :func:`seeds_worker_batches`."""
    seed = _worker_seed(runner)
    if not _resumes_this_pass(runner):
        if seed is None or not has_seedable_workers(runner.loader):
            return runner.loader
        return PassFrom(runner.loader, worker_seed=seed)
    point, runner.resume_point = runner.resume_point, None
    part = _put_back(runner, point)

    def restore_rng() -> None:
        set_rng_state(point.rng, runner.loaders, source=str(point.path))

    skip = int(point.position["batches"])
    return PassFrom(runner.loader, skip, restore_rng, part.get("loader_state"), seed)


def _put_back(runner: RunState, point: ResumePoint) -> Mapping[str, Any]:
    """The interrupted pass's state, after its ``loader_start``; this rank's share of it."""
    from eventrunner.checkpoint.resume import load_callback_states  # resume imports this module

    position = point.position
    assert position is not None
    load_callback_states(runner, point.callbacks, point.path)  # over what loader_start reset
    runner.loader_batch_step = int(position["batches"])
    runner.loader_sample_step = int(position["samples"])
    part = position["ranks"][get_rank()]
    means = part["running_metrics"]
    runner.running_metrics.sums = {
        k: v.to(runner.device) if isinstance(v, torch.Tensor) else v
        for k, v in means["sums"].items()
    }
    runner.running_metrics.counts = dict(means["counts"])
    window = part["accumulation"]
    runner.accumulation.full = int(window["full"])
    runner.accumulation.samples = int(window["samples"])
    params = dict(unwrap_model(runner.model).named_parameters())
    for name, grad in part["grads"].items():
        params[name].grad = grad.to(params[name].device, params[name].dtype)
    return part


def prefetch_depth(runner: RunState, loader: Any, depth: int) -> int:
    """How far ahead to fetch ``loader``: not at all for a stateful loader whose position a
    mid-pass checkpoint saves (its ``state_dict()`` must be the loop's position, not the
    producer's; its own workers still load ahead)."""
    return 0 if runner.records_position and is_stateful(loader) else depth
