"""Metric helpers: ``accuracy`` and the batch-size-weighted means of a loader pass.

Means are kept without a host-device sync per batch: values on the CPU become Python floats
at once (cheap there), values on an accelerator are summed on the device and read once, at
loader end.

Catalyst 22.04's ``catalyst.metrics`` names (``AccuracyMetric``, ``AUCMetric``,
``precision_recall_fbeta_support``, ...) are here too, loaded from
:mod:`eventrunner.catalyst.metrics` on first use (they need ``eventrunner[catalyst]``).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

# Catalyst's names, imported on first access so that ``import eventrunner`` stays light and
# works without torchmetrics. Kept in step with eventrunner.catalyst.metrics.__all__.
_CATALYST_NAMES = frozenset(
    {
        "AUCMetric",
        "AccumulativeMetric",
        "AccuracyMetric",
        "AdditiveMetric",
        "AdditiveValueMetric",
        "BinaryPrecisionRecallF1Metric",
        "CMCMetric",
        "ConfusionMatrixMetric",
        "DiceMetric",
        "FunctionalBatchMetric",
        "FunctionalLoaderMetric",
        "HitrateMetric",
        "ICallbackBatchMetric",
        "ICallbackLoaderMetric",
        "IMetric",
        "IOUMetric",
        "MAPMetric",
        "MRRMetric",
        "MulticlassPrecisionRecallF1SupportMetric",
        "MultilabelAccuracyMetric",
        "MultilabelPrecisionRecallF1SupportMetric",
        "NDCGMetric",
        "R2Squared",
        "RegionBasedMetric",
        "ReidCMCMetric",
        "TopKMetric",
        "TrevskyMetric",
        "auc",
        "average_precision",
        "binary_auc",
        "check_consistent_length",
        "cmc_score",
        "cmc_score_count",
        "dcg",
        "dice",
        "f1_score",
        "fbeta_score",
        "get_binary_statistics",
        "get_default_topk",
        "get_multiclass_statistics",
        "get_multilabel_statistics",
        "get_segmentation_statistics",
        "hitrate",
        "iou",
        "masked_cmc_score",
        "mean_average_precision",
        "mrr",
        "multilabel_accuracy",
        "ndcg",
        "precision",
        "precision_recall_fbeta_support",
        "process_recsys_components",
        "r2_squared",
        "recall",
        "reciprocal_rank",
        "trevsky",
    }
)
__all__ = ["WeightedMeans", "accuracy", "as_number", *sorted(_CATALYST_NAMES)]


def __getattr__(name: str) -> Any:
    if name not in _CATALYST_NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from eventrunner.catalyst import metrics as catalyst_metrics  # ImportError names the extra

    value = getattr(catalyst_metrics, name)
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | _CATALYST_NAMES)


def accuracy(
    logits: torch.Tensor, targets: torch.Tensor, topk: Sequence[int] = (1,)
) -> list[torch.Tensor]:
    """Top-k accuracy, one 0-d tensor per k, as in Catalyst.

    ``targets`` holds class indices of shape ``(N,)`` or one-hot rows shaped like ``logits``.

    Example::

        accuracy01, accuracy03 = accuracy(logits, targets, topk=(1, 3))
    """
    if logits.ndim < 2:
        raise ValueError(f"accuracy: logits must be (N, C), got shape {tuple(logits.shape)}")
    if targets.shape == logits.shape:
        targets = targets.argmax(dim=-1)
    if topk == (1,) or topk == [1]:  # the common case (per batch): fewest ops, same value
        # topk, not argmax: on tied scores they pick different classes, and Catalyst's value
        # is topk's (all-equal logits, as from a zero-initialised head: argmax says class 0).
        hits = logits.topk(1, dim=-1).indices.view(-1).eq(targets.reshape(-1))
        return [hits.sum(dtype=torch.float32).div_(hits.shape[0])]
    num_classes = logits.shape[-1]
    topk = tuple(topk)
    if not topk or any(not 1 <= k <= num_classes for k in topk):
        raise ValueError(f"accuracy: topk must be in [1, {num_classes}], got {topk}")
    targets = targets.reshape(-1, 1)
    hits = logits.topk(max(topk), dim=-1).indices.eq(targets)
    # One reduction for every k: the hit rate at each rank, accumulated over the ranks.
    rates = hits.sum(dim=0, dtype=torch.float32).cumsum_(0).div_(targets.shape[0])
    return [rates[k - 1] for k in topk]


def as_number(value: Any) -> float | int | None:
    """The one rule for "a scalar metric": a Python or NumPy number (not a bool), or a
    one-element tensor or array of a non-bool dtype, as a Python number; None for the rest.

    Reading a tensor on an accelerator syncs: callers do it at loader or epoch end, or every
    N batches, never per batch.
    """
    if isinstance(value, torch.Tensor):
        if value.numel() != 1 or value.dtype == torch.bool:
            return None
        return value.item()  # works with grad and any one-element shape
    if isinstance(value, np.ndarray):
        if value.size != 1 or value.dtype == np.bool_:
            return None
        value = value.reshape(()).item()
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        return None
    return value if isinstance(value, int | float) else float(value)


class WeightedMeans:
    """Means of scalar metrics weighted by batch size: ``Σ vᵢ·nᵢ / Σ nᵢ`` per name.

    Scalars are what :func:`as_number` accepts (with or without grad); anything else is
    skipped. Skipped tensors and arrays of several values are noted in ``non_scalar`` (name ->
    the first shape seen), so that callers can say why a metric is missing.
    """

    __slots__ = ("counts", "non_scalar", "sums")

    def __init__(self) -> None:
        self.sums: dict[str, Any] = {}
        self.counts: dict[str, int] = {}
        self.non_scalar: dict[str, tuple[int, ...]] = {}

    def update(self, metrics: Mapping[str, Any], weight: int) -> None:
        sums, counts = self.sums, self.counts
        for name, value in metrics.items():
            if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.is_cpu:
                # On an accelerator: summed on the device, read once at compute().
                total = sums.get(name)
                if total is None:
                    sums[name] = value.detach().double().reshape(()) * weight
                else:
                    total.add_(value.detach().reshape(()), alpha=weight)
                counts[name] = counts.get(name, 0) + weight
                continue
            number = as_number(value)
            if number is None:
                shape = getattr(value, "shape", None)  # a tensor or array of several values
                if shape is not None and math.prod(shape) != 1 and name not in self.non_scalar:
                    self.non_scalar[name] = tuple(shape)
                continue
            sums[name] = sums.get(name, 0.0) + number * weight
            counts[name] = counts.get(name, 0) + weight

    def compute(self) -> dict[str, float]:
        """The means as Python floats (one device read per accelerator metric)."""
        return {name: float(total) / self.counts[name] for name, total in self.sums.items()}

    def names(self) -> Iterable[str]:
        return self.sums.keys()

    def reset(self) -> None:
        self.sums = {}
        self.counts = {}
        self.non_scalar = {}
