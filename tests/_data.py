"""Small, seeded data shared by test modules (tests/ is on sys.path under pytest)."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, TensorDataset


def separable_loaders(num_train: int, num_valid: int = 16, batch_size: int = 8) -> dict:
    """``train``/``valid`` DataLoaders of (x, y) tuples, 4 features, label = sign of x[0]."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(num_train + num_valid, 4, generator=generator)
    y = (x[:, 0] > 0).long()
    return {
        "train": DataLoader(TensorDataset(x[:num_train], y[:num_train]), batch_size=batch_size),
        "valid": DataLoader(TensorDataset(x[num_train:], y[num_train:]), batch_size=batch_size),
    }
