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
from eventrunner.catalyst.metrics._confusion import ConfusionMatrixMetric
from eventrunner.catalyst.metrics._functional_metric import (
    FunctionalBatchMetric,
    FunctionalLoaderMetric,
)
from eventrunner.catalyst.metrics._regression import R2Squared
from eventrunner.catalyst.metrics._retrieval import (
    AccumulativeMetric,
    CMCMetric,
    HitrateMetric,
    MAPMetric,
    MRRMetric,
    NDCGMetric,
    ReidCMCMetric,
    average_precision,
    check_consistent_length,
    cmc_score,
    cmc_score_count,
    dcg,
    hitrate,
    masked_cmc_score,
    mean_average_precision,
    mrr,
    ndcg,
    process_recsys_components,
    reciprocal_rank,
)
from eventrunner.catalyst.metrics._segmentation import (
    DiceMetric,
    IOUMetric,
    RegionBasedMetric,
    TrevskyMetric,
)
from eventrunner.catalyst.metrics.functional import (
    accuracy,
    auc,
    binary_auc,
    dice,
    f1_score,
    fbeta_score,
    get_binary_statistics,
    get_default_topk,
    get_multiclass_statistics,
    get_multilabel_statistics,
    get_segmentation_statistics,
    iou,
    multilabel_accuracy,
    precision,
    precision_recall_fbeta_support,
    r2_squared,
    recall,
    trevsky,
)

__all__ = [
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
    "accuracy",
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
]
