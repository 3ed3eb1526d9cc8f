"""No-download stand-ins for the datasets the ported Catalyst 22.04 programs download.

Same constructor arguments and item layout as ``catalyst.contrib.datasets``' classes, but the
data is generated in memory: a few hundred 28x28 "digits", each class a fixed random blob
pattern plus pixel noise, so a linear model learns it within an epoch (the loss decreases).
The root folder is accepted and ignored: nothing is read or written.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset

_TRAIN_SIZE = 320
_TEST_SIZE = 160
_NUM_CLASSES = 10


def _prototypes() -> torch.Tensor:
    """One fixed 28x28 on/off pattern per class (the learnable signal)."""
    gen = torch.Generator().manual_seed(1234)
    coarse = (torch.rand(_NUM_CLASSES, 1, 7, 7, generator=gen) > 0.6).float()
    return torch.nn.functional.interpolate(coarse, scale_factor=4).squeeze(1)


def _digits(train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images (N, 28, 28) and long labels (N,), like MNIST's processed tensors."""
    size = _TRAIN_SIZE if train else _TEST_SIZE
    # Different seeds per split, fixed across runs: every program sees the same data.
    gen = torch.Generator().manual_seed(0 if train else 1)
    targets = torch.arange(size) % _NUM_CLASSES
    targets = targets[torch.randperm(size, generator=gen)]
    noise = torch.rand(size, 28, 28, generator=gen)
    images = 0.7 * _prototypes()[targets] + 0.3 * noise
    return (images * 255).round().to(torch.uint8), targets.long()


class MNIST(Dataset):
    """Stand-in for ``catalyst.contrib.datasets.MNIST``: items ``(1x28x28 float, int label)``."""

    classes = [
        f"{i} - {name}"
        for i, name in enumerate(
            ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
        )
    ]

    def __init__(
        self,
        root: str,
        train: bool = True,
        download: bool = True,
        normalize: tuple | None = (0.1307, 0.3081),
        numpy: bool = False,
    ) -> None:
        self.root = root
        self.train = train
        self.normalize = normalize
        self.numpy = numpy
        self.data, self.targets = _digits(train)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        img, target = self.data[index].float().unsqueeze(0), int(self.targets[index])
        if self.normalize is not None:
            mean, std = self.normalize
            img = img.sub(mean).div(std)
        if self.numpy:
            img = img.cpu().numpy()[0]
        return img, target

    def __len__(self) -> int:
        return len(self.data)


class MnistMLDataset(MNIST):
    """Stand-in for ``catalyst.contrib.datasets.MnistMLDataset``: train split, digits 0-4."""

    _split = 5

    def __init__(self, **kwargs: Any) -> None:
        if kwargs.get("train", True) is False:
            raise ValueError("MnistMLDataset can be used only for training stage.")
        kwargs["train"] = True
        super().__init__(**kwargs)
        mask = self.targets < self._split
        self.data, self.targets = self.data[mask], self.targets[mask]

    def get_labels(self) -> list[int]:
        return self.targets.tolist()


class MnistQGDataset(Dataset):
    """Stand-in for ``catalyst.contrib.datasets.MnistQGDataset``: test split, digits 5-9.

    Items are ``{"features", "targets", "is_query"}``; the first ``1 - gallery_fraq`` of the
    items are queries, as in Catalyst.
    """

    _split = 5

    def __init__(self, gallery_fraq: float | None = 0.2, **kwargs: Any) -> None:
        self._mnist = MNIST(train=False, **kwargs)
        mask = self._mnist.targets >= self._split
        self._mnist.data = self._mnist.data[mask]
        self._mnist.targets = self._mnist.targets[mask]
        self._gallery_size = int(gallery_fraq * len(self._mnist))
        self._query_size = len(self._mnist) - self._gallery_size
        self._is_query = torch.zeros(len(self._mnist)).type(torch.bool)
        self._is_query[: self._query_size] = True

    def __getitem__(self, idx: int) -> dict[str, Any]:
        image, label = self._mnist[idx]
        return {"features": image, "targets": label, "is_query": self._is_query[idx]}

    def __len__(self) -> int:
        return len(self._mnist)

    @property
    def gallery_size(self) -> int:
        return self._gallery_size

    @property
    def query_size(self) -> int:
        return self._query_size

    @property
    def data(self) -> torch.Tensor:
        return self._mnist.data

    @property
    def targets(self) -> torch.Tensor:
        return self._mnist.targets
