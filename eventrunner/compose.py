"""The default subscribers ``runner.train(...)`` composes from its arguments, by registry name.

A user subscriber whose ``kind`` (its registry name; subclasses inherit it) matches a
default replaces that default.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from eventrunner import registry
from eventrunner.events import Callback

if TYPE_CHECKING:
    from eventrunner.runner import Runner


def _user_callbacks(
    callbacks: Sequence[Callback] | Mapping[str, Callback] | None,
) -> list[Callback]:
    if callbacks is None:
        return []
    items = list(callbacks.values()) if isinstance(callbacks, Mapping) else list(callbacks)
    for item in items:
        if not isinstance(item, Callback):
            raise TypeError(
                f"callbacks: expected Callback objects, got {type(item).__name__} ({item!r}); "
                "wrap a plain function in FunctionCallback(event, fn)"
            )
    return items


def default_kinds(
    runner: Runner, *, overfit: bool, verbose: bool, console: bool, profile: bool = False
) -> list[str]:
    """Registry names of the defaults for this run, in registration order."""
    # DDP set-up comes first: it wraps the model and shards the loaders before anyone looks.
    kinds = ["distributed"] if runner.ddp else []
    kinds += ["loss_capture", "metrics", "finite_check"]
    if runner.optimizer is not None:
        kinds += ["backward", "optimizer"]
    if runner.scheduler is not None:
        kinds.append("scheduler")
    kinds += ["selection", "checkpoint"]
    if overfit:
        kinds.append("overfit")
    if console:
        kinds.append("console")
    if verbose:
        kinds.append("progress")
    if runner.logdir is not None:
        kinds += ["csv", "jsonl"]
        if importlib.util.find_spec("tensorboard") is not None:  # the optional extra
            kinds.append("tensorboard")
    if profile:
        kinds.append("profiler")
    return kinds


def compose_callbacks(
    runner: Runner,
    callbacks: Sequence[Callback] | Mapping[str, Callback] | None,
    *,
    overfit: bool = False,
    verbose: bool = False,
    console: bool = True,
    profile: bool = False,
) -> list[Callback]:
    """Defaults first (so ties in order run them first), then the user's subscribers."""
    user = _user_callbacks(callbacks)
    replaced = {callback.kind for callback in user if callback.kind}
    defaults: list[Any] = [
        registry.create(kind)
        for kind in default_kinds(
            runner, overfit=overfit, verbose=verbose, console=console, profile=profile
        )
        if kind not in replaced
    ]
    return defaults + user
