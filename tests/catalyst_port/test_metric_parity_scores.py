"""Parity with Catalyst 22.4 (ROC-AUC, functional scores, multilabel accuracy).

Every expected value below was computed by catalyst 22.4 (``catalyst.metrics``, torch
2.13) from the inputs built in ``_inputs.py``; the tests compute them with
``eventrunner.metrics`` from the same inputs and compare at 1e-6.
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("torchmetrics")

from eventrunner import metrics

from . import _inputs as I
from ._compare import close

# computed by catalyst 22.4 (catalyst.metrics.AUCMetric(compute_per_class_metrics=True,
# prefix="p_")), inputs: binary_scores_with_ties (0.1 grid) in batches of 25, 35
AUC_BINARY = {
    "p_auc/class_00": 0.6832579374313354,
    "p_auc/_micro": 0.6832579185520361,
    "p_auc": 0.6832579374313354,
    "p_auc/_macro": 0.6832579374313354,
    "p_auc/_weighted": 0.38717949390411377,
}
# computed by catalyst 22.4 (catalyst.metrics.AUCMetric(compute_per_class_metrics=True)),
# inputs: softmax of all_correct's logits with rows 0-4 flipped, class labels, batches 8, 12
AUC_MULTICLASS = {
    "auc/class_00": 0.78125,
    "auc/class_01": 0.7254902124404907,
    "auc/class_02": 0.78125,
    "auc/class_03": 0.939393937587738,
    "auc/_micro": 0.8541666666666667,
    "auc": 0.806846022605896,
    "auc/_macro": 0.806846022605896,
    "auc/_weighted": 0.8440507650375366,
}
# computed by catalyst 22.4 (catalyst.metrics.AUCMetric()), inputs: multilabel's first three
# columns (scores, 0/1 targets), one update
AUC_MULTILABEL = {
    "auc/_micro": 0.5804459691252144,
    "auc": 0.5930555462837219,
    "auc/_macro": 0.5930555462837219,
    "auc/_weighted": 0.8833333253860474,
}


def test_auc_metric():
    metric = metrics.AUCMetric(compute_per_class_metrics=True, prefix="p_")
    for x, y in I.batches(I.binary_scores_with_ties(), (25, 35)):
        metric.update(x, y)
    close(metric.compute_key_value(), AUC_BINARY)

    metric = metrics.AUCMetric(compute_per_class_metrics=True)
    logits, targets = I.all_correct()
    logits = logits.clone()
    logits[:5] = logits[:5].flip(-1)
    for x, y in I.batches((torch.softmax(logits, -1), targets), (8, 12)):
        metric.update(x, y)
    close(metric.compute_key_value(), AUC_MULTICLASS)

    metric = metrics.AUCMetric()
    scores, targets = I.multilabel()
    metric.update(scores[:, :3], targets[:, :3])
    close(metric.compute_key_value(), AUC_MULTILABEL)
    metric.reset(0, 0)
    assert metric.scores == [] and metric.targets == []


# computed by catalyst 22.4 (catalyst.metrics.binary_auc), inputs: binary_scores_with_ties;
# the area and the first 12 points of tpr and fpr
BINARY_AUC = [
    0.6832579185520361,
    [
        0.0,
        0.029411764705882353,
        0.058823529411764705,
        0.08823529411764706,
        0.08823529411764706,
        0.11764705882352941,
        0.14705882352941177,
        0.17647058823529413,
        0.17647058823529413,
        0.20588235294117646,
        0.23529411764705882,
        0.2647058823529412,
    ],
    [
        0.0,
        0.0,
        0.0,
        0.0,
        0.038461538461538464,
        0.038461538461538464,
        0.038461538461538464,
        0.038461538461538464,
        0.07692307692307693,
        0.07692307692307693,
        0.07692307692307693,
        0.07692307692307693,
    ],
]
# computed by catalyst 22.4 (catalyst.metrics.auc), inputs: multilabel's first three columns
AUC = [0.559374988079071, 0.5531250238418579, 0.6666666865348816]


def test_functional_auc():
    scores, targets = I.binary_scores_with_ties()
    area, tpr, fpr = metrics.binary_auc(scores, targets)
    close([area, tpr[:12], fpr[:12]], BINARY_AUC)
    scores, targets = I.multilabel()
    columns = scores[:, :3], targets[:, :3]
    close(metrics.auc(*columns), AUC)
    assert columns[0].shape == (36, 3)  # inputs left as they were
    assert metrics.auc(torch.zeros(0), torch.zeros(0)) == 0.5


# computed by catalyst 22.4 (catalyst.metrics.precision_recall_fbeta_support), inputs:
# logits_missing_class with defaults; with beta=2, num_classes=3 (scores: Catalyst takes the
# class count from them); tied_logits' argmax labels with defaults
PRFS = [
    [
        0.14285725355148315,
        0.12500010430812836,
        0.30000007152557373,
        0.40000006556510925,
        7.692307235629414e-08,
    ],
    [0.09090916812419891, 0.08333340287208557, 0.2727273404598236, 0.285714328289032, 1.0],
    [
        0.11111120134592056,
        0.10000008344650269,
        0.28571435809135437,
        0.33333340287208557,
        1.5384613050173357e-07,
    ],
    [11.0, 12.0, 11.0, 14.0, 0.0],
]
PRFS_BETA2 = [
    [
        0.14285725355148315,
        0.12500010430812836,
        0.30000007152557373,
        0.40000006556510925,
        7.692307235629414e-08,
    ],
    [0.09090916812419891, 0.08333340287208557, 0.2727273404598236, 0.285714328289032, 1.0],
    [
        0.09803929179906845,
        0.08928578346967697,
        0.27777785062789917,
        0.3030303418636322,
        3.8461521967292356e-07,
    ],
    [11.0, 12.0, 11.0, 14.0, 0.0],
]
PRFS_LABELS = [
    [
        0.21428576111793518,
        0.2307692915201187,
        3.3333321880490985e-07,
        2.499999425253918e-07,
        3.3333321880490985e-07,
        3.3333321880490985e-07,
    ],
    [
        0.5000000596046448,
        0.33333340287208557,
        1.9999995970465534e-07,
        1.9999995970465534e-07,
        1.4285711813499802e-07,
        1.2499998547355062e-07,
    ],
    [
        0.30000004172325134,
        0.2727273106575012,
        2.499999425253918e-07,
        2.2222216955469776e-07,
        1.9999995970465534e-07,
        1.8181815164552972e-07,
    ],
    [6.0, 9.0, 5.0, 5.0, 7.0, 8.0],
]
# computed by catalyst 22.4 (catalyst.metrics.precision, recall, f1_score,
# fbeta_score(beta=0.5)), inputs: logits_missing_class, default eps=1e-7
PRECISION = [
    0.142857164144516,
    0.1250000149011612,
    0.30000001192092896,
    0.4000000059604645,
    7.692308123807834e-09,
]
RECALL = [0.09090910106897354, 0.0833333432674408, 0.27272728085517883, 0.2857142984867096, 1.0]
F1 = [
    0.11111113429069519,
    0.10000000894069672,
    0.2857142686843872,
    0.3333333432674408,
    1.5384616247615668e-08,
]
FBETA_HALF = [
    0.12820516526699066,
    0.11363637447357178,
    0.29411765933036804,
    0.37037038803100586,
    9.615384932715187e-09,
]


def test_functional_precision_recall_fbeta():
    logits, targets = I.logits_missing_class()
    close(metrics.precision_recall_fbeta_support(logits, targets), PRFS)
    close(
        metrics.precision_recall_fbeta_support(logits, targets, beta=2, num_classes=3), PRFS_BETA2
    )
    tied, tied_targets = I.tied_logits()
    close(metrics.precision_recall_fbeta_support(tied.argmax(-1), tied_targets), PRFS_LABELS)
    close(metrics.precision(logits, targets), PRECISION)
    close(metrics.recall(logits, targets), RECALL)
    close(metrics.f1_score(logits, targets), F1)
    close(metrics.fbeta_score(logits, targets, beta=0.5), FBETA_HALF)
    with pytest.raises(ValueError, match="non-negative"):
        metrics.fbeta_score(logits, targets, beta=-1)


# computed by catalyst 22.4 (catalyst.metrics.multilabel_accuracy, threshold 0.5 and 0.0),
# inputs: multilabel (logits outside [0, 1], compared with the threshold as they are)
MULTILABEL_ACCURACY = (0.6111111044883728, 0.5763888955116272)
# computed by catalyst 22.4 (catalyst.metrics.MultilabelAccuracyMetric(threshold=0.2,
# prefix="a_")), inputs: multilabel in batches of 10, 26
MULTILABEL_ACCURACY_METRIC = {
    "a_accuracy": 0.5833333432674408,
    "a_accuracy/std": 0.020744609916239963,
}
# computed by catalyst 22.4 (catalyst.metrics.get_default_topk), inputs: None, 2, 4, 6, 10
DEFAULT_TOPK = [[1], [1], [1, 3], [1, 3, 5], [1, 3, 5]]


def test_multilabel_accuracy_and_default_topk():
    scores, targets = I.multilabel()
    close(metrics.multilabel_accuracy(scores, targets, threshold=0.5), MULTILABEL_ACCURACY[0])
    close(metrics.multilabel_accuracy(scores, targets, threshold=0.0), MULTILABEL_ACCURACY[1])
    metric = metrics.MultilabelAccuracyMetric(threshold=0.2, prefix="a_")
    for x, y in I.batches((scores, targets), (10, 26)):
        metric.update(x, y)
    close(metric.compute_key_value(), MULTILABEL_ACCURACY_METRIC)
    assert [metrics.get_default_topk(n) for n in (None, 2, 4, 6, 10)] == DEFAULT_TOPK
