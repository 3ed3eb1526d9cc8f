"""Precision, recall, F1 and support metrics of Catalyst 22.04 (binary, multiclass,
multilabel), accumulated from per-class counts over a loader.

Scores follow Catalyst, not torchmetrics: a 0/0 precision or recall is ``zero_division``,
F1 is ``2pr / (p + r + 1e-5)`` (torchmetrics: ``2tp / (2tp + fp + fn)``, no epsilon), the
macro mean runs over all classes, absent ones included, and the weighted mean weighs by support.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from eventrunner.catalyst.metrics._base import ICallbackBatchMetric
from eventrunner.catalyst.metrics.functional import (
    get_binary_statistics,
    get_multiclass_statistics,
    get_multilabel_statistics,
)

_F1_EPS = 1e-5  # Catalyst's epsilon in the F1 denominator
_STATISTICS = ("tn", "fp", "fn", "tp", "support")


def _ratio(hits: Any, misses: Any, zero_division: int) -> Any:
    """``hits / (hits + misses)``, or ``zero_division`` when both are 0."""
    if hits == 0 and misses == 0:
        return zero_division
    return 1 - misses / (hits + misses)


def _f1(precision: Any, recall: Any) -> Any:
    return 2 * (precision * recall) / (precision + recall + _F1_EPS)


def _binary_scores(tp: Any, fp: Any, fn: Any, zero_division: int) -> tuple[Any, Any, Any]:
    precision = _ratio(tp, fp, zero_division)
    recall = _ratio(tp, fn, zero_division)
    return precision, recall, _f1(precision, recall)


def _aggregated_scores(
    tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, support: np.ndarray, zero_division: int
) -> tuple[tuple[Any, ...], tuple[Any, ...], tuple[Any, ...], tuple[Any, ...]]:
    """Per-class ``(precision, recall, f1, support)`` and the micro, macro and weighted
    ``(precision, recall, f1, None)``."""
    per_class_scores = [_binary_scores(tp[i], fp[i], fn[i], zero_division) for i in range(len(tp))]
    precision, recall, f1 = (
        np.array(column, dtype=np.float64) for column in zip(*per_class_scores, strict=True)
    )
    weight = support / support.sum()
    micro = (*_binary_scores(tp.sum(), fp.sum(), fn.sum(), zero_division), None)
    macro = (precision.mean(), recall.mean(), f1.mean(), None)
    weighted = ((precision * weight).sum(), (recall * weight).sum(), (f1 * weight).sum(), None)
    return (precision, recall, f1, support), micro, macro, weighted


class BinaryPrecisionRecallF1Metric(ICallbackBatchMetric):
    """Precision, recall and F1 of label 1 over all batches; keys ``precision``, ``recall``,
    ``f1`` (Catalyst adds no prefix or suffix to them)."""

    def __init__(
        self,
        zero_division: int = 0,
        compute_on_call: bool = True,
        prefix: str | None = None,
        suffix: str | None = None,
    ) -> None:
        super().__init__(compute_on_call=compute_on_call, prefix=prefix, suffix=suffix)
        self.zero_division = zero_division
        self.num_classes = 2
        self.reset()

    def reset(self) -> None:
        self.statistics: dict[str, Any] = dict.fromkeys(_STATISTICS, 0)

    def update(self, outputs: torch.Tensor, targets: torch.Tensor) -> tuple[Any, Any, Any]:
        """Adds a batch of predicted and true labels; returns the batch's scores."""
        counts = get_binary_statistics(outputs.detach().cpu(), targets.detach().cpu())
        batch = dict(zip(_STATISTICS, (count.numpy() for count in counts), strict=True))
        for name, value in batch.items():
            self.statistics[name] = self.statistics[name] + value
        return _binary_scores(batch["tp"], batch["fp"], batch["fn"], self.zero_division)

    def update_key_value(self, outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        return dict(zip(("precision", "recall", "f1"), self.update(outputs, targets), strict=True))

    def compute(self) -> tuple[Any, Any, Any]:
        """``(precision, recall, f1)`` over all batches."""
        stats = self.statistics
        return _binary_scores(stats["tp"], stats["fp"], stats["fn"], self.zero_division)

    def compute_key_value(self) -> dict[str, float]:
        return dict(zip(("precision", "recall", "f1"), self.compute(), strict=True))


class _PrecisionRecallF1SupportMetric(ICallbackBatchMetric):
    """Per-class counts summed over batches; keys ``precision/_micro``, ``recall/_macro``,
    ``f1/_weighted``, ... and, with ``compute_per_class_metrics``, ``precision/class_00``,
    ``support/class_00``, ... (Catalyst adds no prefix or suffix to them)."""

    def __init__(
        self,
        zero_division: int = 0,
        compute_on_call: bool = True,
        compute_per_class_metrics: bool = False,
        prefix: str | None = None,
        suffix: str | None = None,
        num_classes: int | None = None,
    ) -> None:
        super().__init__(compute_on_call=compute_on_call, prefix=prefix, suffix=suffix)
        self.zero_division = zero_division
        self.compute_per_class_metrics = compute_per_class_metrics
        self.num_classes = num_classes
        self.reset()

    def _statistics(self, outputs: torch.Tensor, targets: torch.Tensor) -> tuple[Any, ...]:
        raise NotImplementedError

    def reset(self) -> None:
        self.statistics: dict[str, Any] = {}

    def update(self, outputs: torch.Tensor, targets: torch.Tensor) -> tuple[Any, ...]:
        """Adds a batch; returns its per-class, micro, macro and weighted scores."""
        *counts, num_classes = self._statistics(outputs.detach().cpu(), targets.detach().cpu())
        if self.num_classes is None:
            self.num_classes = num_classes
        batch = {
            name: count.numpy().astype(np.float64)
            for name, count in zip(_STATISTICS, counts, strict=True)
        }
        for name, value in batch.items():
            self.statistics[name] = self.statistics.get(name, 0.0) + value
        return _aggregated_scores(
            batch["tp"], batch["fp"], batch["fn"], batch["support"], self.zero_division
        )

    def _key_values(self, per_class: Any, micro: Any, macro: Any, weighted: Any) -> dict[str, Any]:
        output: dict[str, Any] = {}
        for aggregation, scores in (("_micro", micro), ("_macro", macro), ("_weighted", weighted)):
            for name, value in zip(("precision", "recall", "f1"), scores[:-1], strict=True):
                output[f"{name}/{aggregation}"] = value
        if self.compute_per_class_metrics:
            for name, values in zip(
                ("precision", "recall", "f1", "support"), per_class, strict=True
            ):
                for i in range(self.num_classes or 0):
                    output[f"{name}/class_{i:02d}"] = values[i]
        return output

    def update_key_value(self, outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, Any]:
        return self._key_values(*self.update(outputs=outputs, targets=targets))

    def compute(self) -> tuple[Any, ...]:
        """``(per_class, micro, macro, weighted)``; ``per_class`` is ``[]`` unless
        ``compute_per_class_metrics``."""
        stats = self.statistics
        per_class, micro, macro, weighted = _aggregated_scores(
            stats["tp"], stats["fp"], stats["fn"], stats["support"], self.zero_division
        )
        return (per_class if self.compute_per_class_metrics else []), micro, macro, weighted

    def compute_key_value(self) -> dict[str, Any]:
        return self._key_values(*self.compute())


class MulticlassPrecisionRecallF1SupportMetric(_PrecisionRecallF1SupportMetric):
    """Precision, recall, F1 and support of a multiclass problem (labels or class scores)."""

    def _statistics(self, outputs: torch.Tensor, targets: torch.Tensor) -> tuple[Any, ...]:
        return get_multiclass_statistics(outputs, targets, num_classes=self.num_classes)


class MultilabelPrecisionRecallF1SupportMetric(_PrecisionRecallF1SupportMetric):
    """Precision, recall, F1 and support per label of 0/1 predictions."""

    def _statistics(self, outputs: torch.Tensor, targets: torch.Tensor) -> tuple[Any, ...]:
        return get_multilabel_statistics(outputs, targets)


__all__ = [
    "BinaryPrecisionRecallF1Metric",
    "MulticlassPrecisionRecallF1SupportMetric",
    "MultilabelPrecisionRecallF1SupportMetric",
]
