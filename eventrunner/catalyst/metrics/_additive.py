"""``AdditiveMetric``: the running sample-weighted mean and std of per-batch values."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from eventrunner.catalyst.metrics._base import IMetric


class AdditiveMetric(IMetric):
    """Mean and std of values, each weighted by its ``num_samples``, updated online.

    As in Catalyst 22.04: the std is over the weighted values with Bessel's correction
    (divided by ``total samples - 1``), it is 0.0 after the first update, and mean and std are
    NaN before it. ``mode="torch"`` takes tensors and keeps the state in NumPy.
    """

    def __init__(self, compute_on_call: bool = True, mode: str = "numpy") -> None:
        super().__init__(compute_on_call=compute_on_call)
        if mode not in ("numpy", "torch"):
            raise ValueError(f"mode must be one of {{'numpy', 'torch'}}, but got mode={mode}")
        self.mode = mode
        self.reset()

    def reset(self) -> None:
        self.n = 0  # number of updates
        self.value: Any = 0.0  # the last value
        self.mean: Any = np.nan
        self.std: Any = np.nan
        self.num_samples = 0
        self._squared_deviations: Any = 0.0  # weighted sum of squared deviations from the mean

    def update(self, value: Any, num_samples: int) -> Any:
        """Adds ``value`` (a batch's metric) with weight ``num_samples``; returns ``value``."""
        if self.mode == "torch" and isinstance(value, torch.Tensor):
            value = value.detach().cpu().numpy()
        self.value = value
        self.n += 1
        self.num_samples += num_samples
        if self.n == 1:
            self.mean = 0.0 + value  # a copy: a later in-place change of `value` leaves it be
            self.std = 0.0
            self._squared_deviations = 0.0
            return value
        # West's weighted update: the deviation from the old mean times that from the new one.
        deviation = value - self.mean
        self.mean = self.mean + deviation * num_samples / float(self.num_samples)
        self._squared_deviations += deviation * (value - self.mean) * num_samples
        self.std = np.sqrt(self._squared_deviations / (self.num_samples - 1.0))
        return value

    def compute(self) -> tuple[Any, Any]:
        """``(mean, std)`` of everything since ``reset()``."""
        return self.mean, self.std


AdditiveValueMetric = AdditiveMetric

__all__ = ["AdditiveMetric", "AdditiveValueMetric"]
