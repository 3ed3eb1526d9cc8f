"""The model in and out of ``DistributedDataParallel`` (and the other wrappers torch puts on)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

DDP = nn.parallel.DistributedDataParallel


def unwrap_model(model: nn.Module) -> nn.Module:
    """The user's module inside DDP/DataParallel/``torch.compile`` wrappers (or the module itself).

    Checkpoints save and load ``unwrap_model(runner.model).state_dict()``, so their keys are the
    same with and without those wrappers (no ``module.`` or ``_orig_mod.`` prefix).
    """
    while True:
        if isinstance(model, nn.DataParallel | DDP):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):  # torch.compile
            model = model._orig_mod
        else:
            return model


def without_ddp(model: nn.Module) -> nn.Module:
    """``model`` without a ``DistributedDataParallel`` around it; other wrappers stay (a
    compiled model stays compiled)."""
    return model.module if isinstance(model, DDP) else model


def wrap_ddp(
    model: nn.Module, device: torch.device, ddp_kwargs: Mapping[str, Any] | None = None
) -> DDP:
    """``model`` in ``DistributedDataParallel`` with ``ddp_kwargs``; on CUDA its device and
    output device are this rank's ``device`` unless ``ddp_kwargs`` names others."""
    kwargs = dict(ddp_kwargs or {})
    if device.type == "cuda":
        kwargs.setdefault("device_ids", [device.index])
        kwargs.setdefault("output_device", device.index)
    return DDP(model, **kwargs)
