"""Builders of the sections of a config that make objects: runner, model, criterion,
optimizer, scheduler, loaders and callbacks.

Each returns what ``train()`` takes for its section, or raises a :class:`ConfigError` at the
key path of the first thing that is wrong. What ``TrainSettings`` checks itself (a loader that
is not an iterable of batches, or is empty) is left to it: see :mod:`~eventrunner.config.train`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from eventrunner import registry
from eventrunner.checks import is_int, positive_int
from eventrunner.config.errors import ConfigError, found, join
from eventrunner.config.instantiate import call, check_call, import_target, instantiate
from eventrunner.config.load import FROM_SECTIONS, SUBSCRIBER, TARGET
from eventrunner.data.loaders import LOADER_PREFIXES
from eventrunner.events import Callback, LoaderFilter
from eventrunner.runner import Runner

#: Keys every subscriber takes in ``callbacks:``, set on it when its constructor does not.
FILTER_KEYS = ("order", "loaders", "every")
DEFAULT_RUNNER = "eventrunner.SupervisedRunner"


def build_runner(node: Any) -> Runner:
    """``runner:`` — a :class:`Runner` subclass and its keys (default ``SupervisedRunner``)."""
    node = {} if node is None else node
    if not isinstance(node, Mapping):
        raise ConfigError("runner", "a mapping (_target_ and the runner's keys)", found(node))
    node = {TARGET: DEFAULT_RUNNER, **node}
    for key in FROM_SECTIONS:
        if key in node:
            raise ConfigError(
                f"runner.{key}", f"no {key!r} here (it has its own top-level section)", repr(key)
            )
    target = import_target(f"runner.{TARGET}", node[TARGET])
    if not (inspect.isclass(target) and issubclass(target, Runner)):
        raise ConfigError(
            f"runner.{TARGET}", "a subclass of eventrunner.Runner", repr(node[TARGET])
        )
    return instantiate(node, "runner")


def build_loaders(node: Any) -> dict[str, Any]:
    """``loaders:`` — per loader name (order kept), a ``dataset`` and DataLoader arguments,
    or a whole loader object given by ``_target_``."""
    if not isinstance(node, Mapping) or not node:
        raise ConfigError(
            "loaders", "a mapping of loader name to {dataset: ..., batch_size: ...}", found(node)
        )
    loaders = {}
    for name, spec in node.items():
        path = f"loaders.{name}"
        if not isinstance(name, str) or not name.startswith(LOADER_PREFIXES):
            raise ConfigError(
                path,
                "a loader name starting with train, valid or infer",
                found(name),
                hint="train* runs backward, valid*/infer* run forward only",
            )
        if not isinstance(spec, Mapping):
            raise ConfigError(
                path, "a mapping with a dataset and DataLoader arguments", found(spec)
            )
        if TARGET in spec:  # a whole loader: TrainSettings checks it, as train() would
            loaders[name] = instantiate(spec, path)
            continue
        if "dataset" not in spec:
            raise ConfigError(
                f"{path}.dataset", "the loader's dataset (a mapping with _target_)", "nothing"
            )
        _check_loader_numbers(path, spec)
        dataset = instantiate(spec["dataset"], f"{path}.dataset")
        _require_built(
            f"{path}.dataset",
            spec["dataset"],
            dataset,
            "a dataset of samples (indexable or iterable, e.g. a torch Dataset)",
            _is_dataset,
        )
        kwargs = {
            key: instantiate(value, join(path, key))
            for key, value in spec.items()
            if key != "dataset"
        }
        check_call(path, DataLoader, (dataset,), kwargs)
        loaders[name] = call(path, DataLoader, (dataset,), kwargs)
    return loaders


def _check_loader_numbers(path: str, spec: Mapping[str, Any]) -> None:
    # DataLoader's own errors do not say which loader; these are the usual slips.
    _check_positive_int(f"{path}.batch_size", spec.get("batch_size", 1), optional=True)
    workers = spec.get("num_workers", 0)
    if not is_int(workers) or workers < 0:
        raise ConfigError(f"{path}.num_workers", "an int >= 0", found(workers))


def _check_positive_int(path: str, value: Any, *, optional: bool = False) -> None:
    try:
        positive_int(value, path, optional=optional)
    except ValueError:
        expected = "a positive int (or null)" if optional else "a positive int"
        raise ConfigError(path, expected, found(value)) from None


def build_callbacks(node: Any) -> list[Callback]:
    """``callbacks:`` — subscribers in order: a name, or ``{subscriber: NAME, arg: ...}``."""
    if node is None:
        return []
    if not isinstance(node, list):
        raise ConfigError(
            "callbacks", "a list of subscribers (names or {subscriber: NAME, ...})", found(node)
        )
    return [_build_callback(f"callbacks.{i}", item) for i, item in enumerate(node)]


def _build_callback(path: str, item: Any) -> Callback:
    if isinstance(item, str):
        item = {SUBSCRIBER: item}
    if not isinstance(item, Mapping):
        raise ConfigError(
            path, "a subscriber name or {subscriber: NAME, arg: value, ...}", found(item)
        )
    if SUBSCRIBER in item and TARGET in item:
        raise ConfigError(path, "one of 'subscriber' or '_target_'", "both")
    key = SUBSCRIBER if SUBSCRIBER in item else TARGET
    name = item.get(key)
    if not isinstance(name, str) or not name:
        raise ConfigError(
            join(path, SUBSCRIBER),
            "a registered subscriber name (see `eventrunner plugins`) or an import path",
            found(name) if key in item else "nothing",
        )
    try:
        factory = registry.resolve(name)
    except (ValueError, TypeError) as error:
        raise ConfigError(
            join(path, key),
            "a registered subscriber name or an import path",
            repr(name),
            hint=str(error),
        ) from error
    kwargs = {k: instantiate(v, join(path, k)) for k, v in item.items() if k != key}
    filters = {}
    try:
        accepted = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        accepted = {}
    takes_any = any(p.kind is p.VAR_KEYWORD for p in accepted.values())
    for filter_key in FILTER_KEYS:
        if filter_key in kwargs and filter_key not in accepted and not takes_any:
            filters[filter_key] = kwargs.pop(filter_key)
    check_call(path, factory, (), kwargs)
    callback = call(path, factory, (), kwargs)
    if not isinstance(callback, Callback):
        raise ConfigError(
            path, "an eventrunner Callback", f"{name!r} built a {type(callback).__name__}"
        )
    _apply_filters(path, callback, filters)
    return callback


def _apply_filters(path: str, callback: Callback, filters: Mapping[str, Any]) -> None:
    """Set ``order``/``loaders``/``every`` on subscribers whose constructor does not take them."""
    if "order" in filters:
        order = filters["order"]
        if not is_int(order):
            raise ConfigError(f"{path}.order", "an int (see eventrunner.Order)", found(order))
        callback.order = order
    if "loaders" in filters:
        loaders = filters["loaders"]
        if loaders is not None and not isinstance(loaders, str | list):
            raise ConfigError(
                f"{path}.loaders", "a loader name, a list or 'prefix*'", found(loaders)
            )
        try:
            callback.loader_filter = LoaderFilter(loaders)
        except TypeError as error:
            raise ConfigError(f"{path}.loaders", "loader names", found(loaders)) from error
    if "every" in filters:
        _check_positive_int(f"{path}.every", filters["every"], optional=True)
        callback.every = filters["every"]


def build_model(node: Any) -> nn.Module:
    """``model:`` — the model: a mapping with ``_target_`` that builds a ``torch.nn.Module``."""
    _require_target("model", node, "model")
    model = instantiate(node, "model")
    _require_built("model", node, model, "a torch.nn.Module", _is_module)
    return model


def build_criterion(node: Any) -> Any:
    """``criterion:`` — the loss function (``_target_: torch.nn.CrossEntropyLoss``), or null."""
    criterion = instantiate(node, "criterion")
    _require_built(
        "criterion",
        node,
        criterion,
        "a callable loss such as torch.nn.CrossEntropyLoss (a mapping with _target_), or null",
        lambda built: built is None or callable(built),
    )
    return criterion


def build_optimizer(node: Any, model: nn.Module) -> torch.optim.Optimizer | None:
    """``optimizer:`` — a ``torch.optim`` class and its arguments; the model's trainable
    parameters are passed for you. Null: no backward, no step."""
    if node is None:
        return None
    _require_target("optimizer", node, "optimizer")
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = instantiate(node, "optimizer", args=(params,), injected=("params",))
    _require_built("optimizer", node, optimizer, "a torch.optim.Optimizer", _is_optimizer)
    return optimizer


def build_scheduler(node: Any, optimizer: torch.optim.Optimizer | None) -> Any:
    """``scheduler:`` — a learning-rate scheduler, stepped once per epoch; the optimizer is
    passed for you."""
    if node is None:
        return None
    if optimizer is None:
        raise ConfigError("optimizer", "an optimizer for the scheduler to drive", "nothing")
    _require_target("scheduler", node, "scheduler")
    scheduler = instantiate(node, "scheduler", args=(optimizer,), injected=("optimizer",))
    _require_built(
        "scheduler",
        node,
        scheduler,
        "a learning-rate scheduler (torch.optim.lr_scheduler.*, or anything with step())",
        _is_scheduler,
    )
    return scheduler


# ------------------------------------------------------------------ what a section builds


def _require_target(path: str, node: Any, what: str) -> None:
    """A section that must be an object: a mapping with ``_target_``."""
    if not isinstance(node, Mapping):
        raise ConfigError(
            path, f"a mapping with _target_: the {what}'s class or factory", found(node)
        )
    if TARGET not in node:
        raise ConfigError(
            join(path, TARGET), f"the {what}'s import path (like 'torch.nn.Linear')", "nothing"
        )


def _require_built(
    path: str, node: Any, built: Any, expected: str, accepted: Callable[[Any], bool]
) -> None:
    """A section's object must be of the kind train() takes; else name what it built."""
    if accepted(built):
        return
    if isinstance(node, Mapping) and TARGET in node:
        what = f"{type(built).__name__} (built by {node[TARGET]!r})"
    else:
        what = found(built)
    raise ConfigError(path, expected, what)


def _is_module(obj: Any) -> bool:
    return isinstance(obj, nn.Module)


def _is_optimizer(obj: Any) -> bool:
    return isinstance(obj, torch.optim.Optimizer)


def _is_scheduler(obj: Any) -> bool:
    return callable(getattr(obj, "step", None))


def _is_dataset(obj: Any) -> bool:
    # DataLoader takes anything and fails at the first batch; a dataset indexes or iterates.
    return not isinstance(obj, str | bytes) and (
        hasattr(type(obj), "__getitem__") or hasattr(type(obj), "__iter__")
    )
