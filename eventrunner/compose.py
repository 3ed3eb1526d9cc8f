"""The default subscribers ``runner.train(...)`` composes from its arguments, by registry name.

A user subscriber whose ``kind`` (its registry name; subclasses inherit it) matches a
default replaces that default.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from eventrunner import registry
from eventrunner.events import Callback

if TYPE_CHECKING:
    from eventrunner.runner import Runner


def _user_callbacks(callbacks: Sequence[Callback] | Mapping[str, Callback] | None) -> list[Callback]:
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


def default_kinds(runner: Runner, *, overfit: bool, verbose: bool, console: bool) -> list[str]:
    """Registry names of the defaults for this run, in registration order."""
    kinds = ["loss_capture", "metrics", "finite_check"]
    if runner.optimizer is not None:
        kinds += ["backward", "optimizer"]
    if runner.scheduler is not None:
        kinds.append("scheduler")
    kinds.append("checkpoint")
    if overfit:
        kinds.append("overfit")
    if console:
        kinds.append("console")
    if verbose:
        kinds.append("progress")
    return kinds


def compose_callbacks(
    runner: Runner,
    callbacks: Sequence[Callback] | Mapping[str, Callback] | None,
    *,
    overfit: bool = False,
    verbose: bool = False,
    console: bool = True,
) -> list[Callback]:
    """Defaults first (so ties in order run them first), then the user's subscribers."""
    user = _user_callbacks(callbacks)
    replaced = {callback.kind for callback in user if callback.kind}
    defaults: list[Any] = [
        registry.create(kind)
        for kind in default_kinds(runner, overfit=overfit, verbose=verbose, console=console)
        if kind not in replaced
    ]
    return defaults + user
