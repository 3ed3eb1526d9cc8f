"""The digits example: scikit-learn's 8x8 handwritten digits (shipped with it, no download).

Used by ``digits.yaml``: ``eventrunner run --example digits``. Samples are dicts
``{"features": (64,) float tensor in [0, 1], "targets": class index}``, so batches are dicts too.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

_SPLIT_SEED = 0  # the train/valid split is fixed, independent of the training seed


@functools.cache
def _load() -> tuple[torch.Tensor, torch.Tensor]:
    try:
        from sklearn.datasets import load_digits
    except ImportError as error:
        raise ImportError(
            "the digits example needs scikit-learn, which ships the data: "
            "pip install 'eventrunner[examples]'"
        ) from error
    data = load_digits()
    features = torch.as_tensor(data.data, dtype=torch.float32) / 16.0
    targets = torch.as_tensor(data.target, dtype=torch.long)
    return features, targets


class DigitsDataset(Dataset):
    """One split of the digits data as dict samples ``{"features": x, "targets": y}``.

    Args:
        split: ``"train"`` or ``"valid"``.
        valid_fraction: share of the 1,797 images kept for validation (a fixed shuffle).
    """

    def __init__(self, split: str = "train", valid_fraction: float = 0.2) -> None:
        if split not in ("train", "valid"):
            raise ValueError(f"DigitsDataset: split must be 'train' or 'valid', got {split!r}")
        if not 0.0 < valid_fraction < 1.0:
            raise ValueError(
                f"DigitsDataset: valid_fraction must be in (0, 1), got {valid_fraction!r}"
            )
        features, targets = _load()
        order = torch.randperm(len(targets), generator=torch.Generator().manual_seed(_SPLIT_SEED))
        n_valid = int(len(targets) * valid_fraction)
        index = order[n_valid:] if split == "train" else order[:n_valid]
        self.features = features[index]
        self.targets = targets[index]

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"features": self.features[i], "targets": self.targets[i]}


class DigitsMLP(nn.Sequential):
    """A small classifier for 8x8 digit images: 64 -> hidden -> hidden -> 10.

    Args:
        hidden: width of the hidden layers.
        dropout: dropout after each hidden layer.
    """

    def __init__(self, hidden: int = 128, dropout: float = 0.1) -> None:
        super().__init__(
            nn.Linear(64, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, 10),
        )
