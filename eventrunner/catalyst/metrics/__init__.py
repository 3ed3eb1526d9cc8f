"""Catalyst 22.04's ``catalyst.metrics`` names, computing Catalyst's numbers.

``from eventrunner.catalyst import metrics`` (or ``from eventrunner import metrics``) stands in
for ``from catalyst import metrics``. Needs torchmetrics: ``pip install "eventrunner[catalyst]"``.
"""

from __future__ import annotations

try:
    import torchmetrics  # noqa: F401  (the per-class counts of the classification metrics)
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(
        "eventrunner's Catalyst-compatible metrics need torchmetrics: "
        'pip install "eventrunner[catalyst]"'
    ) from error

from eventrunner.catalyst.metrics._accuracy import (
    AccuracyMetric,
    MultilabelAccuracyMetric,
    TopKMetric,
)
from eventrunner.catalyst.metrics._additive import AdditiveMetric, AdditiveValueMetric
from eventrunner.catalyst.metrics._auc import AUCMetric
from eventrunner.catalyst.metrics._base import ICallbackBatchMetric, ICallbackLoaderMetric, IMetric
from eventrunner.catalyst.metrics._classification import (
    BinaryPrecisionRecallF1Metric,
    MulticlassPrecisionRecallF1SupportMetric,
    MultilabelPrecisionRecallF1SupportMetric,
)
from eventrunner.catalyst.metrics.functional import (
    accuracy,
    auc,
    binary_auc,
    f1_score,
    fbeta_score,
    get_binary_statistics,
    get_default_topk,
    get_multiclass_statistics,
    get_multilabel_statistics,
    multilabel_accuracy,
    precision,
    precision_recall_fbeta_support,
    recall,
)

__all__ = [
    "AUCMetric",
    "AccuracyMetric",
    "AdditiveMetric",
    "AdditiveValueMetric",
    "BinaryPrecisionRecallF1Metric",
    "ICallbackBatchMetric",
    "ICallbackLoaderMetric",
    "IMetric",
    "MulticlassPrecisionRecallF1SupportMetric",
    "MultilabelAccuracyMetric",
    "MultilabelPrecisionRecallF1SupportMetric",
    "TopKMetric",
    "accuracy",
    "auc",
    "binary_auc",
    "f1_score",
    "fbeta_score",
    "get_binary_statistics",
    "get_default_topk",
    "get_multiclass_statistics",
    "get_multilabel_statistics",
    "multilabel_accuracy",
    "precision",
    "precision_recall_fbeta_support",
    "recall",
]
