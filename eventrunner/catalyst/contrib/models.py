"""``catalyst.contrib.models.MnistSimpleNet`` (22.04): the small MNIST convnet of its examples."""

from __future__ import annotations

import torch
from torch import nn

from eventrunner.catalyst.contrib.layers import Flatten, Normalize


class MnistSimpleNet(nn.Module):
    """Two 3x3 convolutions, 2x2 max pooling, two linear layers; 1x28x28 in, ``out_features`` out.

    With ``normalize`` (the default) the output rows are L2-normalized. The layers sit in
    ``self._net`` in Catalyst's order, so Catalyst's state dicts load as they are.
    """

    def __init__(self, out_features: int, normalize: bool = True) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv2d(1, 32, 3, 1),
            nn.ReLU(),
            nn.Conv2d(32, 64, 3, 1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            Flatten(),
            nn.Linear(64 * 12 * 12, 128),  # 28 -> 26 -> 24 (convs) -> 12 (pool)
            nn.ReLU(),
            nn.Linear(128, out_features),
        ]
        if normalize:
            layers.append(Normalize())
        self._net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``(batch, 1, 28, 28)`` images; returns ``(batch, out_features)`` features."""
        return self._net(x)


__all__ = ["MnistSimpleNet"]
