"""What a checkpoint holds: the run state collected from a runner, its schema, reading it back.

A checkpoint is a plain dict (tensors, numbers, strings, lists, dicts) with
``format``/``version``, the model, optimizer, scheduler and grad scaler states, the counters,
the run's selection (best metric and epoch, history), the last epoch's scalar metrics, every
subscriber's ``state_dict`` and the RNG states. Read back, it is data: its structure is
checked (:func:`check_structure`) before anything is restored.
"""

from __future__ import annotations

import copy
import operator
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from eventrunner import components
from eventrunner.checkpoint.files import CheckpointError, torch_load
from eventrunner.checkpoint.position import loader_states
from eventrunner.checks import is_int, is_number
from eventrunner.data.tensors import map_tensors
from eventrunner.distributed import unwrap_model
from eventrunner.metrics import as_number
from eventrunner.rng import rng_state

if TYPE_CHECKING:
    from eventrunner.state import RunState

FORMAT = "eventrunner.checkpoint"
VERSION = 1


# ------------------------------------------------------------------------ collecting


def callback_keys(callbacks: Iterable[Any]) -> list[tuple[str, Any]]:
    """``(key, callback)`` pairs: the key is the ``kind`` or class name, ``#2``... on repeats."""
    counts: dict[str, int] = {}
    keyed = []
    for callback in callbacks:
        base = getattr(callback, "kind", None) or type(callback).__name__
        counts[base] = counts.get(base, 0) + 1
        keyed.append((base if counts[base] == 1 else f"{base}#{counts[base]}", callback))
    return keyed


def _scalar_metrics(epoch_metrics: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    # The run's one rule for a scalar metric (eventrunner.metrics.as_number).
    return {
        loader: {
            name: float(number)
            for name, value in metrics.items()
            if (number := as_number(value)) is not None
        }
        for loader, metrics in epoch_metrics.items()
    }


def class_name(obj: Any) -> str | dict[str, str] | None:
    """The class a state belongs to (checked on resume); by key for a dict of components."""
    if components.is_dict(obj):
        return {key: type(value).__name__ for key, value in obj.items()}
    return None if obj is None else type(obj).__name__


def capture_state(
    runner: RunState,
    *,
    epoch: int,
    epoch_metrics: Mapping[str, Mapping[str, Any]] | None = None,
    history: list[dict[str, Any]] | None = None,
    selection: Mapping[str, Any] | None = None,
    position: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything needed to continue ``runner`` after ``epoch``; tensors are live references.

    ``selection`` (loader, metric, minimize) is what chose the best epoch, if not
    ``runner.selection``; ``position`` is where inside epoch ``epoch + 1`` the run stands
    (:func:`~eventrunner.checkpoint.position.capture_position`) for a mid-epoch checkpoint.
    Copy the result with :func:`copy_to_cpu` before training goes on if it is written later.
    """
    if selection is None:
        chosen = runner.selection
        selection = {
            "loader": chosen.loader,
            "metric": chosen.metric,
            "minimize": bool(chosen.minimize),
        }
    scheduler = runner.scheduler
    scaler = runner.scaler
    return plain_numbers(
        {
            "format": FORMAT,
            "version": VERSION,
            "epoch": int(epoch),
            "model": unwrap_model(runner.model).state_dict(),
            "optimizer": components.state_dicts(runner.optimizer),
            "scheduler": components.state_dicts(scheduler),
            "scaler": scaler.state_dict() if scaler is not None else None,
            "counters": {
                "epoch_step": int(epoch),
                "batch_step": int(runner.batch_step),
                "sample_step": int(runner.sample_step),
                # The stop decision is part of the run: a resumed stopped run trains no more.
                "need_early_stop": bool(runner.need_early_stop),
                # What DataLoader workers seed their batches from (eventrunner.data.worker_seeds).
                "worker_seed": runner.worker_seed,
            },
            "selection": {
                **selection,
                "best_valid_metric": runner.best_valid_metric,
                "best_epoch": runner.best_epoch,
                "history": list(history or []),
            },
            "epoch_metrics": _scalar_metrics(epoch_metrics or {}),
            "callbacks": {key: cb.state_dict() for key, cb in callback_keys(runner.callbacks)},
            "rng": rng_state(runner.loaders),
            "loaders": loader_states(runner.loaders),
            "position": dict(position) if position is not None else None,
            # Checked on resume: another class's state loads silently and fails at its first step.
            "classes": {
                "optimizer": class_name(runner.optimizer),
                "scheduler": class_name(scheduler) if _has_state(scheduler) else None,
            },
        }
    )


def _has_state(value: Any) -> bool:
    return components.state_dicts(value) is not None


# Values plain_numbers keeps as they are without looking further (checked by exact type: fast).
_LEAVES = frozenset((type(None), bool, int, float, str, bytes, torch.Tensor, nn.Parameter))


def plain_numbers(obj: Any) -> Any:
    """``obj`` with NumPy scalars (keys too) as Python numbers, which ``weights_only`` loads.

    Catalyst-style metrics and user state often hold ``np.float64``/``np.int64``; a container
    is rebuilt (as its own type, ``_metadata`` kept) only where something changed.
    """
    if type(obj) in _LEAVES:
        return obj
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Mapping):
        changed = False
        items = []
        for key, value in obj.items():
            plain_key, plain_value = plain_numbers(key), plain_numbers(value)
            changed = changed or plain_key is not key or plain_value is not value
            items.append((plain_key, plain_value))
        if not changed:
            return obj
        out: Any = dict(items)
        if isinstance(obj, dict) and type(obj) is not dict:  # OrderedDict, Counter, ...
            out, rebuilt = copy.copy(obj), out
            out.clear()
            out.update(rebuilt)  # a mapping: a Counter takes its counts as they are
        metadata = getattr(obj, "_metadata", None)
        if metadata is not None:
            out._metadata = metadata  # type: ignore[attr-defined]
        return out
    if isinstance(obj, list | tuple) and not hasattr(obj, "_fields"):
        values = [plain_numbers(value) for value in obj]
        if all(map(operator.is_, values, obj)):
            return obj
        return type(obj)(values)
    return obj


def _cpu_copy(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.detach().to("cpu", copy=True)


def copy_to_cpu(obj: Any) -> Any:
    """A copy of a nested state whose tensors are on the CPU and no longer change with training.

    Containers are rebuilt (an ``OrderedDict`` keeps its ``_metadata``, which
    ``load_state_dict`` reads); a tensor reached twice (tied weights) is copied once.
    """
    return map_tensors(_cpu_copy, obj, memo={})


# --------------------------------------------------------------------------- reading


def _check_format(obj: Any, path: Path) -> dict[str, Any]:
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        found = (
            f"a dict with keys {sorted(map(str, obj))[:8]}"
            if isinstance(obj, dict)
            else f"a {type(obj).__name__}"
        )
        raise CheckpointError(
            f"checkpoint {path}: not an eventrunner checkpoint (expected a dict with "
            f"format={FORMAT!r}, found {found}); plain weights load with "
            "model.load_state_dict(torch.load(path, weights_only=True))"
        )
    version = obj.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise CheckpointError(
            f"checkpoint {path}: format version {version!r}; this eventrunner reads up to {VERSION}"
        )
    return obj


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint with ``torch.load(weights_only=True)``, tensors on the CPU.

    Raises :class:`CheckpointError` (a ``ValueError``) naming the file when it is truncated,
    garbage, a foreign pickle (refused without running its code) or not one of ours.
    """
    path = Path(path)
    return _check_format(torch_load(path), path)


def peek_epoch(path: str | Path) -> int | None:
    """The epoch a checkpoint file holds, or None when it is missing or unreadable.

    Memory-maps the file, so tensor data is not read.
    """
    path = Path(path)
    try:
        return int(_check_format(torch_load(path, mmap=True), path)["epoch"])
    except (OSError, CheckpointError, KeyError, TypeError, ValueError):
        return None


# --------------------------------------------------------------------------- the schema


def _is_mapping(value: Any) -> bool:
    return isinstance(value, Mapping)


def _is_mapping_or_none(value: Any) -> bool:
    return value is None or isinstance(value, Mapping)


# What restore_run reads: key path, whether it must be there, the test, what is expected.
_STRUCTURE: tuple[tuple[str, bool, Callable[[Any], bool], str], ...] = (
    ("model", True, _is_mapping, "a dict of tensors"),
    ("optimizer", False, _is_mapping_or_none, "a dict or None"),
    ("scheduler", False, _is_mapping_or_none, "a dict or None"),
    ("scaler", False, _is_mapping_or_none, "a dict or None"),
    ("counters", True, _is_mapping, "a dict"),
    ("counters.epoch_step", True, lambda v: is_int(v) and v >= 0, "an int >= 0"),
    ("counters.batch_step", True, lambda v: is_int(v) and v >= 0, "an int >= 0"),
    ("counters.sample_step", True, lambda v: is_int(v) and v >= 0, "an int >= 0"),
    ("counters.need_early_stop", False, lambda v: isinstance(v, bool), "a bool"),
    ("counters.worker_seed", False, lambda v: v is None or is_int(v), "an int or None"),
    ("selection", True, _is_mapping, "a dict"),
    ("selection.best_epoch", False, lambda v: v is None or is_int(v), "an int or None"),
    ("selection.best_valid_metric", False, lambda v: v is None or is_number(v), "a number"),
    (
        "epoch_metrics",
        False,
        lambda v: _is_mapping(v) and all(map(_is_mapping, v.values())),
        "a dict of dicts",
    ),
    ("callbacks", False, _is_mapping, "a dict of subscriber states"),
    ("rng", True, _is_mapping, "a dict"),
    ("loaders", False, _is_mapping, "a dict of loader states"),
    ("position", False, _is_mapping_or_none, "a dict or None"),
    (
        "classes",
        False,
        lambda v: _is_mapping(v) and all(map(_is_class_name, v.values())),
        "a dict of class names (by key for a dict of components)",
    ),
)
_MISSING = object()


def _is_class_name(value: Any) -> bool:
    if _is_mapping(value):
        return all(isinstance(key, str) and isinstance(n, str) for key, n in value.items())
    return value is None or isinstance(value, str)


def _lookup(checkpoint: Mapping[str, Any], where: str) -> Any:
    value: Any = checkpoint
    for key in where.split("."):
        value = value.get(key, _MISSING) if isinstance(value, Mapping) else _MISSING
    return value


def check_structure(checkpoint: Mapping[str, Any], path: str | Path) -> None:
    """Raise a CheckpointError naming the file and the key where ``checkpoint`` lacks or holds
    something else than what ``restore_run`` reads; checked before anything is restored."""
    for where, required, test, expected in _STRUCTURE:
        value = _lookup(checkpoint, where)
        if value is _MISSING:
            if required:
                raise CheckpointError(
                    f"checkpoint {path}: {where} is missing; an eventrunner checkpoint holds "
                    "model, counters, selection and rng"
                )
            continue
        if not test(value):
            raise CheckpointError(
                f"checkpoint {path}: {where} must be {expected}, found {type(value).__name__}"
            )


# --------------------------------------------------------------------------- the weights


def _shape(value: Any) -> tuple[int, ...] | None:
    return tuple(value.shape) if isinstance(value, torch.Tensor) else None


def check_model_state(model: nn.Module, state: Mapping[str, Any], source: str | Path) -> None:
    """Raise a CheckpointError listing the keys and shapes where ``state`` does not fit."""
    own = unwrap_model(model).state_dict()
    missing = [key for key in own if key not in state]
    unexpected = [key for key in state if key not in own]
    shapes = [
        f"{key} {_shape(state[key])} vs {_shape(value)}"
        for key, value in own.items()
        if key in state and _shape(state[key]) != _shape(value)
    ]
    if not (missing or unexpected or shapes):
        return

    def listed(keys: list[str]) -> str:
        more = f" (+{len(keys) - 8} more)" if len(keys) > 8 else ""
        return ", ".join(map(str, keys[:8])) + more

    parts = []
    if missing:
        parts.append(f"missing from the checkpoint: {listed(missing)}")
    if unexpected:
        parts.append(f"not in the model: {listed(unexpected)}")
    if shapes:
        parts.append(f"shape (checkpoint vs model): {listed(shapes)}")
    raise CheckpointError(
        f"checkpoint {source}: holds the weights of another model "
        f"({type(unwrap_model(model)).__name__} keys differ); " + "; ".join(parts)
    )


def load_model_state(model: nn.Module, state: Mapping[str, Any], source: str | Path) -> None:
    """``model.load_state_dict(state)``, with an error that lists the keys that differ."""
    check_model_state(model, state, source)
    unwrap_model(model).load_state_dict(state)


def load_weights(model: nn.Module, path: str | Path) -> dict[str, Any]:
    """Load only the model weights of a checkpoint (``best.pth``, say); returns the checkpoint."""
    checkpoint = load_checkpoint(path)
    if not isinstance(checkpoint.get("model"), Mapping):
        raise CheckpointError(f"checkpoint {path}: model is missing or not a dict of tensors")
    load_model_state(model, checkpoint["model"], path)
    return checkpoint
