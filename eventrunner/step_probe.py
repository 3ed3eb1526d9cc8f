"""Whether ``handle_batch`` does its own backward pass or optimizer step (Catalyst's README does).

A Catalyst ``handle_batch`` may call ``loss.backward()``, ``optimizer.step()`` and
``optimizer.zero_grad()`` itself; the default backward and optimizer subscribers would then
backward through a freed graph or step twice. The loop watches the first train batch of each
pass until it sees one of them: any optimizer stepped during ``handle_batch`` (a global step
hook, removed right after) or any trainable parameter's gradient changed (held and compared by
identity and version, so no number is read). What it sees is set on the runner,
``handle_batch_backward`` and ``handle_batch_step``, for the rest of the run; the subscribers
read them and stand aside. Other batches run ``handle_batch`` untouched.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

if TYPE_CHECKING:
    from eventrunner.runner import Runner

log = logging.getLogger("eventrunner")


def _grad_marks(params: list[torch.Tensor]) -> list[tuple[torch.Tensor | None, int]]:
    # The gradient tensor itself is held: its id cannot be reused by a new one meanwhile.
    return [(p.grad, -1 if p.grad is None else p.grad._version) for p in params]


def probe_handle_batch(runner: Runner, handle_batch: Callable[[Any], Any], batch: Any) -> None:
    """Run ``handle_batch(batch)`` and note on ``runner`` whether it did backward or stepped."""
    params = [p for p in runner.model.parameters() if p.requires_grad]
    before = _grad_marks(params)
    steps = 0

    def count(optimizer: Any, args: Any, kwargs: Any) -> None:
        nonlocal steps
        steps += 1

    hook = register_optimizer_step_post_hook(count)
    try:
        handle_batch(batch)
    finally:
        hook.remove()
    stepped = steps > 0
    changed = any(
        grad is not old or (grad is not None and grad._version != version)
        for (old, version), grad in zip(before, (p.grad for p in params), strict=True)
    )
    if stepped or changed:
        _note(runner, stepped)


def _note(runner: Runner, stepped: bool) -> None:
    runner.handle_batch_backward = True
    runner.handle_batch_step = stepped
    name = f"{type(runner).__name__}.handle_batch"
    if stepped:
        log.warning(
            "eventrunner: %s steps the optimizer itself: the default BackwardCallback and "
            "OptimizerCallback stand aside for the rest of the run (train()'s "
            "accumulation_steps, grad_clip_norm, grad_clip_value and fp16 loss scaling do "
            "not apply to its steps)",
            name,
        )
    else:
        log.warning(
            "eventrunner: %s runs the backward pass itself: the default BackwardCallback "
            "stands aside for the rest of the run; OptimizerCallback still steps after it",
            name,
        )
