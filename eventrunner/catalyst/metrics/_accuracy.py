"""Accuracy metrics of Catalyst 22.04: top-k (``AccuracyMetric``) and multilabel."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import torch

from eventrunner.catalyst.metrics._additive import AdditiveMetric
from eventrunner.catalyst.metrics._base import ICallbackBatchMetric
from eventrunner.catalyst.metrics.functional import get_default_topk, multilabel_accuracy
from eventrunner.metrics import accuracy


class TopKMetric(ICallbackBatchMetric):
    """A metric at several k: one :class:`AdditiveMetric` per k, weighted by batch size.

    Keys are ``{prefix}{metric_name}{k:02d}{suffix}`` and the same with ``/std``; the std is
    that of the per-batch values, not of the per-sample hits.
    """

    def __init__(
        self,
        metric_name: str,
        metric_function: Callable[..., Sequence[torch.Tensor]],
        topk: Iterable[int] | None = None,
        compute_on_call: bool = True,
        prefix: str | None = None,
        suffix: str | None = None,
    ) -> None:
        super().__init__(compute_on_call=compute_on_call, prefix=prefix, suffix=suffix)
        self.metric_name = metric_name
        self.metric_function = metric_function
        self.topk = tuple(topk or (1,))
        self.metrics = [AdditiveMetric() for _ in self.topk]

    def _key(self, k: int) -> str:
        return f"{self.prefix}{self.metric_name}{k:02d}{self.suffix}"

    def reset(self) -> None:
        for metric in self.metrics:
            metric.reset()

    def update(self, logits: torch.Tensor, targets: torch.Tensor) -> list[float]:
        """Adds a batch; returns its value at each k."""
        values = [v.item() for v in self.metric_function(logits, targets, topk=self.topk)]
        for value, metric in zip(values, self.metrics, strict=True):
            metric.update(value, len(targets))
        return values

    def update_key_value(self, logits: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        values = self.update(logits=logits, targets=targets)
        return {self._key(k): value for k, value in zip(self.topk, values, strict=True)}

    def compute(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """``(means, stds)``, one of each per k."""
        means, stds = zip(*(metric.compute() for metric in self.metrics), strict=True)
        return means, stds

    def compute_key_value(self) -> dict[str, float]:
        means, stds = self.compute()
        output = {self._key(k): mean for k, mean in zip(self.topk, means, strict=True)}
        output.update({f"{self._key(k)}/std": std for k, std in zip(self.topk, stds, strict=True)})
        return output


class AccuracyMetric(TopKMetric):
    """Multiclass top-k accuracy: ``accuracy01``, ``accuracy03``, ... (and ``/std``).

    ``topk`` defaults to :func:`get_default_topk` of ``num_classes``.
    """

    def __init__(
        self,
        topk: Iterable[int] | None = None,
        num_classes: int | None = None,
        compute_on_call: bool = True,
        prefix: str | None = None,
        suffix: str | None = None,
    ) -> None:
        super().__init__(
            metric_name="accuracy",
            metric_function=accuracy,
            topk=topk or get_default_topk(num_classes),
            compute_on_call=compute_on_call,
            prefix=prefix,
            suffix=suffix,
        )


class MultilabelAccuracyMetric(AdditiveMetric, ICallbackBatchMetric):
    """Multilabel accuracy at ``threshold``, each batch weighted by its number of labels."""

    def __init__(
        self,
        threshold: float | torch.Tensor = 0.5,
        compute_on_call: bool = True,
        prefix: str | None = None,
        suffix: str | None = None,
    ) -> None:
        super().__init__(compute_on_call=compute_on_call)
        self.prefix = prefix or ""
        self.suffix = suffix or ""
        self.metric_name_mean = f"{self.prefix}accuracy{self.suffix}"
        self.metric_name_std = f"{self.prefix}accuracy{self.suffix}/std"
        self.threshold = threshold

    def update(self, outputs: torch.Tensor, targets: torch.Tensor) -> Any:  # type: ignore[override]
        """Adds a batch; returns its accuracy."""
        value = multilabel_accuracy(outputs, targets, threshold=self.threshold).item()
        super().update(value=value, num_samples=int(np.prod(targets.shape)))
        return value

    def update_key_value(self, outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        return {self.metric_name_mean: self.update(outputs=outputs, targets=targets)}

    def compute_key_value(self) -> dict[str, float]:
        mean, std = self.compute()
        return {self.metric_name_mean: mean, self.metric_name_std: std}


__all__ = ["AccuracyMetric", "MultilabelAccuracyMetric", "TopKMetric"]
