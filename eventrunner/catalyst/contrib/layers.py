"""Small layers of ``catalyst.contrib.layers`` (22.04) that programs build models from."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F


class Flatten(nn.Module):
    """``(batch, *) -> (batch, prod(*))``; the batch dimension is kept."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(x.shape[0], -1)


class Lambda(nn.Module):
    """Wraps a function as a module: ``forward(x) = lambda_fn(x)``."""

    def __init__(self, lambda_fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.lambda_fn = lambda_fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lambda_fn(x)


class Normalize(nn.Module):
    """``torch.nn.functional.normalize(x, **normalize_kwargs)`` (L2 over dim 1 by default)."""

    def __init__(self, **normalize_kwargs: Any) -> None:
        super().__init__()
        self.normalize_kwargs = normalize_kwargs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, **self.normalize_kwargs)


def _check_4d(name: str, x: torch.Tensor) -> None:
    if x.dim() != 4:
        raise ValueError(f"{name} expects (batch, channels, h, w), got shape {tuple(x.shape)}")


class GlobalAvgPool2d(nn.Module):
    """Mean over the whole ``h x w`` plane: ``(B, C, H, W) -> (B, C, 1, 1)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_4d("GlobalAvgPool2d", x)
        return F.adaptive_avg_pool2d(x, 1)

    @staticmethod
    def out_features(in_features: int) -> int:
        """Channels out for ``in_features`` channels in: the same."""
        return in_features


class GlobalMaxPool2d(nn.Module):
    """Max over the whole ``h x w`` plane: ``(B, C, H, W) -> (B, C, 1, 1)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_4d("GlobalMaxPool2d", x)
        # max pooling, not amax: on tied maxima the gradient goes to one element, as in Catalyst
        return F.adaptive_max_pool2d(x, 1)

    @staticmethod
    def out_features(in_features: int) -> int:
        """Channels out for ``in_features`` channels in: the same."""
        return in_features


__all__ = ["Flatten", "GlobalAvgPool2d", "GlobalMaxPool2d", "Lambda", "Normalize"]
