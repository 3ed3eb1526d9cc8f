"""Catalyst 22.04's ``catalyst.utils`` helpers that training scripts call, as ``eventrunner.utils``.

Same names, arguments and results as Catalyst's, written on the core's pieces. On purpose
different: :func:`load_checkpoint` reads with ``torch.load(weights_only=True)`` (a checkpoint
is data, never code) and :func:`save_checkpoint` writes atomically (a crash never leaves half
a file). The model post-processing helpers (``trace_model``, ``quantize_model``,
``prune_model``, ``onnx_export``) come from :mod:`eventrunner.catalyst.model_tools`.
"""

from __future__ import annotations

import copy
import datetime
import itertools
import os
import random
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn

from eventrunner import distributed
from eventrunner.catalyst.model_tools import (
    get_pruning_fn,
    onnx_export,
    prune_model,
    quantize_model,
    remove_reparametrization,
    trace_model,
)
from eventrunner.checkpoint.files import atomic_file, torch_load
from eventrunner.distributed import unwrap_model

T = TypeVar("T")

__all__ = [
    "any2device",
    "flatten_dict",
    "get_attr",
    "get_available_gpus",
    "get_by_keys",
    "get_device",
    "get_nn_from_ddp_module",
    "get_optimizer_momentum",
    "get_optimizer_momentum_list",
    "get_pruning_fn",
    "get_rank",
    "get_requires_grad",
    "get_utcnow_time",
    "get_world_size",
    "load_checkpoint",
    "make_tuple",
    "maybe_recursive_call",
    "merge_dicts",
    "mixup_batch",
    "onnx_export",
    "pack_checkpoint",
    "pairwise",
    "prepare_cudnn",
    "prune_model",
    "quantize_model",
    "remove_reparametrization",
    "save_checkpoint",
    "set_global_seed",
    "set_optimizer_momentum",
    "set_requires_grad",
    "soft_update",
    "trace_model",
    "unpack_checkpoint",
]

_PARTS = ("model", "criterion", "optimizer", "scheduler")


# ------------------------------------------------------------------ seeds and devices


def set_global_seed(seed: int) -> None:
    """Seed Python's ``random`` (and ``PYTHONHASHSEED`` for child processes), NumPy, torch."""
    os.environ["PYTHONHASHSEED"] = str(seed)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # every CUDA device too


def prepare_cudnn(deterministic: bool | None = None, benchmark: bool | None = None) -> None:
    """cuDNN's deterministic and benchmark modes (defaults from ``CUDNN_DETERMINISTIC`` and
    ``CUDNN_BENCHMARK``, "True" unless set); nothing without CUDA."""
    if not torch.cuda.is_available():
        return
    if deterministic is None:
        deterministic = os.environ.get("CUDNN_DETERMINISTIC", "True") == "True"
    if benchmark is None:
        benchmark = os.environ.get("CUDNN_BENCHMARK", "True") == "True"
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = benchmark


def get_device() -> torch.device:
    """``cuda`` when available, else ``cpu``."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def get_available_gpus() -> list[int]:
    """The indices of the visible CUDA devices."""
    return list(range(torch.cuda.device_count()))


def any2device(value: Any, device: str | torch.device) -> Any:
    """``value`` on ``device``: tensors, modules, NumPy arrays (as tensors) in dicts and lists.

    As in Catalyst, tuples come back as lists and a structured array as a dict of its fields.
    """
    if isinstance(value, dict):
        return {key: any2device(item, device) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [any2device(item, device) for item in value]
    if isinstance(value, torch.Tensor):
        return value.to(device, non_blocking=True)
    if isinstance(value, np.ndarray | np.void) and value.dtype.fields is not None:
        return {key: any2device(value[key], device) for key in value.dtype.fields}
    if isinstance(value, np.ndarray):
        return torch.tensor(value, device=device)
    if isinstance(value, nn.Module):
        return value.to(device)
    return value


def get_rank() -> int:
    """This process's rank in the process group; -1 without one, as in Catalyst."""
    return distributed.get_rank() if distributed.is_dist_ready() else -1


def get_world_size() -> int:
    """The number of processes in the process group; 1 without one."""
    return distributed.get_world_size() if distributed.is_dist_ready() else 1


def get_nn_from_ddp_module(model: nn.Module) -> nn.Module:
    """The module inside a ``DistributedDataParallel``/``DataParallel`` wrapper."""
    return unwrap_model(model)


# ---------------------------------------------------------------- models, optimizers


def set_requires_grad(model: nn.Module, requires_grad: bool | Mapping[str, bool]) -> None:
    """Freeze or unfreeze every parameter, or each by name (every name must be given)."""
    if isinstance(requires_grad, Mapping):
        for name, param in model.named_parameters():
            if name not in requires_grad:
                raise KeyError(f"set_requires_grad: parameter {name!r} is not in requires_grad")
            param.requires_grad = bool(requires_grad[name])
        return
    for param in model.parameters():
        param.requires_grad = bool(requires_grad)


def get_requires_grad(model: nn.Module) -> dict[str, bool]:
    """Parameter name -> whether it requires grad."""
    return {name: param.requires_grad for name, param in model.named_parameters()}


def get_optimizer_momentum_list(optimizer: torch.optim.Optimizer) -> list[float | None]:
    """Each param group's momentum: ``betas[0]`` (Adam-like) or ``momentum`` (SGD-like)."""
    values = []
    for group in optimizer.param_groups:
        betas = group.get("betas")
        values.append(betas[0] if betas is not None else group.get("momentum"))
    return values


def get_optimizer_momentum(optimizer: torch.optim.Optimizer) -> float | None:
    """The first param group's momentum (see :func:`get_optimizer_momentum_list`)."""
    return get_optimizer_momentum_list(optimizer)[0]


def set_optimizer_momentum(optimizer: torch.optim.Optimizer, value: float, index: int = 0) -> None:
    """Set param group ``index``'s momentum (``betas[0]`` or ``momentum``)."""
    group = optimizer.param_groups[index]
    if group.get("betas") is not None:
        group["betas"] = (value, group["betas"][1])
    elif group.get("momentum") is not None:
        group["momentum"] = value


def soft_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """``target = (1 - tau) * target + tau * source``, parameter by parameter, in place."""
    with torch.no_grad():
        for target_param, param in zip(target.parameters(), source.parameters(), strict=True):
            target_param.copy_(target_param * (1.0 - tau) + param * tau)


def mixup_batch(
    batch: list[torch.Tensor], alpha: float = 0.2, mode: str = "replace"
) -> list[torch.Tensor]:
    """Mixup of each tensor of ``batch`` with the next sample (weights from NumPy's global
    ``Beta(alpha, alpha)``): ``"replace"`` keeps the batch size, ``"add"`` appends the mix."""
    if not alpha >= 0:
        raise ValueError(f"mixup_batch: alpha must be >= 0, got {alpha!r}")
    if mode not in ("add", "replace"):
        raise ValueError(f"mixup_batch: mode must be 'add' or 'replace', got {mode!r}")
    size = batch[0].shape[0]
    weights = np.random.beta(alpha, alpha, size).astype(np.float32)
    shifted = (np.arange(size) + 1) % size
    for i, values in enumerate(batch):
        weight = torch.as_tensor(weights.reshape([size] + [1] * (values.ndim - 1)))
        mixed = values * weight.to(values.device) + values[shifted] * (1 - weight.to(values.device))
        batch[i] = mixed if mode == "replace" else torch.cat([values, mixed])
    return batch


# -------------------------------------------------------------------- checkpoints


def _named_parts(part: str, value: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for key, item in value.items():
            if item is not None:
                yield f"{part}_{key}_state_dict", item
    elif value is not None:
        yield f"{part}_state_dict", value


def pack_checkpoint(
    model: Any = None, criterion: Any = None, optimizer: Any = None, scheduler: Any = None, **kwargs
) -> dict[str, Any]:
    """Catalyst's checkpoint dict: ``model_state_dict`` (or ``model_<key>_state_dict`` for a
    dict of models), the same for criterion, optimizer and scheduler, plus ``kwargs``."""
    checkpoint = dict(kwargs)
    for part, value in zip(_PARTS, (model, criterion, optimizer, scheduler), strict=True):
        for key, item in _named_parts(part, value):
            if isinstance(item, nn.Module):
                item = unwrap_model(item)
            checkpoint[key] = item.state_dict()
    return checkpoint


def unpack_checkpoint(
    checkpoint: Mapping[str, Any],
    model: Any = None,
    criterion: Any = None,
    optimizer: Any = None,
    scheduler: Any = None,
) -> None:
    """Load the states :func:`pack_checkpoint` wrote into the objects given."""
    for part, value in zip(_PARTS, (model, criterion, optimizer, scheduler), strict=True):
        for key, item in _named_parts(part, value):
            if key not in checkpoint:
                raise KeyError(f"unpack_checkpoint: the checkpoint has no {key!r}")
            item.load_state_dict(checkpoint[key])


def save_checkpoint(checkpoint: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    """``torch.save(checkpoint, path)``, atomically (``path`` is never half-written)."""
    with atomic_file(Path(path)) as file:
        torch.save(dict(checkpoint), file)


def load_checkpoint(path: str | os.PathLike[str]) -> Any:
    """The checkpoint at ``path``, on the CPU, read with ``weights_only=True``."""
    return torch_load(Path(path))


# ---------------------------------------------------------------------- dicts, misc


def flatten_dict(
    dictionary: Mapping[str, Any], parent_key: str = "", separator: str = "/"
) -> OrderedDict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a/b": 1}``."""
    items: list[tuple[str, Any]] = []
    for key, value in dictionary.items():
        name = f"{parent_key}{separator}{key}" if parent_key else key
        if isinstance(value, MutableMapping):
            items.extend(flatten_dict(value, name, separator=separator).items())
        else:
            items.append((name, value))
    return OrderedDict(items)


def merge_dicts(*dicts: Mapping[str, Any] | None) -> dict[str, Any]:
    """A deep copy of the first dict with the others merged in, nested dicts recursively."""
    if len(dicts) < 2:
        raise ValueError("merge_dicts: expected at least two dicts")
    merged = copy.deepcopy(dicts[0])
    for other in dicts[1:]:
        for key, value in (other or {}).items():
            if isinstance(merged.get(key), dict) and isinstance(value, Mapping):
                merged[key] = merge_dicts(merged[key], value)
            else:
                merged[key] = value
    return merged


def make_tuple(tuple_like: Any) -> Any:
    """A list or tuple as it is; anything else ``(value, value)``."""
    return tuple_like if isinstance(tuple_like, list | tuple) else (tuple_like, tuple_like)


def pairwise(iterable: Iterable[T]) -> Iterator[tuple[T, T]]:
    """``s -> (s0, s1), (s1, s2), ...``."""
    return itertools.pairwise(iterable)


def get_by_keys(dict_: Mapping[str, Any], *keys: Any, default: T | None = None) -> Any:
    """``dict_[k1][k2]...``, or ``default`` when a key is missing."""
    if not isinstance(dict_, Mapping):
        raise ValueError(f"get_by_keys: expected a dict, got {type(dict_).__name__}")
    key, *rest = keys
    if not rest or key not in dict_:
        return dict_.get(key, default)
    return get_by_keys(dict_[key], *rest, default=default)


def get_attr(obj: Any, key: str, inner_key: str | None = None) -> Any:
    """``obj.key`` or ``obj.key[inner_key]`` (``get_attr(runner, "optimizer", "adam")``)."""
    value = getattr(obj, key)
    return value if inner_key is None else value[inner_key]


def maybe_recursive_call(
    object_or_dict: Any,
    method: str | Callable[..., Any],
    recursive_args: Any = None,
    recursive_kwargs: Any = None,
    **kwargs: Any,
) -> Any:
    """Call ``method`` on an object, or on each value of a dict (with per-key arguments)."""
    if isinstance(object_or_dict, dict):
        return type(object_or_dict)(
            (
                key,
                maybe_recursive_call(
                    value,
                    method,
                    recursive_args=None if recursive_args is None else recursive_args[key],
                    recursive_kwargs=None if recursive_kwargs is None else recursive_kwargs[key],
                    **kwargs,
                ),
            )
            for key, value in object_or_dict.items()
        )
    args = recursive_args or []
    if not isinstance(args, list | tuple):
        args = [args]
    call = getattr(object_or_dict, method) if isinstance(method, str) else None
    if call is not None:
        return call(*args, **(recursive_kwargs or {}), **kwargs)
    return method(object_or_dict, *args, **(recursive_kwargs or {}), **kwargs)


def get_utcnow_time(format: str | None = None) -> str:
    """The UTC time now, as ``%y%m%d.%H%M%S`` unless ``format`` says otherwise."""
    return datetime.datetime.now(datetime.timezone.utc).strftime(format or "%y%m%d.%H%M%S")
