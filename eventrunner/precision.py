"""Mixed precision: the ``amp=`` argument of ``train()``, its autocast context and grad scaler.

Autocast covers one batch's forward and loss (``handle_batch``), never the backward or an
optimizer step: autocast caches the low-precision copies of the weights until its context
exits, so a context held across an optimizer step would feed every later forward stale
weights. fp16 gets a ``GradScaler`` (``runner.scaler``, saved in checkpoints); bf16 has fp32's
exponent range and needs none.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, TypeVar

import torch

_NAMES: dict[str, torch.dtype | None] = {
    "fp16": torch.float16,
    "float16": torch.float16,
    "16": torch.float16,
    "16-mixed": torch.float16,
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "bf16-mixed": torch.bfloat16,
    "fp32": None,
    "float32": None,
    "32": None,
    "32-true": None,
}


def resolve_amp(amp: bool | str | torch.dtype | None, device: torch.device) -> torch.dtype | None:
    """The autocast dtype ``amp`` asks for on ``device``; None for full precision.

    ``True`` is bf16 on the CPU and fp16 on CUDA; ``"fp16"``/``"bf16"`` (also Lightning's
    ``"16-mixed"``/``"bf16-mixed"``) or a torch dtype choose explicitly.
    """
    if amp is None or amp is False:
        return None
    if amp is True:
        return torch.bfloat16 if device.type == "cpu" else torch.float16
    if isinstance(amp, torch.dtype):
        dtype: torch.dtype | None = amp
    elif isinstance(amp, str) and amp.lower() in _NAMES:
        dtype = _NAMES[amp.lower()]
    else:
        raise ValueError(
            f"amp={amp!r}: expected True/False, 'fp16', 'bf16' (or '16-mixed', 'bf16-mixed', "
            "'32'), torch.float16 or torch.bfloat16"
        )
    if dtype not in (None, torch.float16, torch.bfloat16):
        raise ValueError(f"amp={amp!r}: autocast supports torch.float16 and torch.bfloat16")
    if dtype is torch.bfloat16 and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError(f"amp={amp!r}: this GPU has no bfloat16 support; use amp='fp16'")
    return dtype


def grad_scaler(dtype: torch.dtype | None, device: torch.device) -> torch.amp.GradScaler | None:
    """A ``GradScaler`` for fp16 (its small range underflows small gradients), else None."""
    if dtype is not torch.float16:
        return None
    return torch.amp.GradScaler(device.type)


_Result = TypeVar("_Result")


def autocast(runner: Any) -> contextlib.AbstractContextManager[Any]:
    """The autocast context of one forward (a no-op without ``amp``); enter it per batch."""
    dtype = runner.amp_dtype
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(runner.device.type, dtype=dtype)


def autocast_each_call(
    fn: Callable[[Any], _Result], device_type: str, dtype: torch.dtype | None
) -> Callable[[Any], _Result]:
    """``fn`` run inside a fresh ``torch.autocast`` per call; ``fn`` itself without ``amp``.

    A fresh context per call is what keeps autocast's weight cache from outliving a step.
    """
    if dtype is None:
        return fn

    def autocast_call(batch: Any) -> _Result:
        with torch.autocast(device_type, dtype=dtype):
            return fn(batch)

    return autocast_call
