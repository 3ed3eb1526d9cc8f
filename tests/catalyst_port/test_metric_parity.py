"""Parity with Catalyst 22.4 (accuracy, means, precision/recall/F1).

Every expected value below was computed by catalyst 22.4 (``catalyst.metrics``, torch
2.13) from the inputs built in ``_inputs.py``; the tests compute them with
``eventrunner.metrics`` from the same inputs and compare at 1e-6.
"""

from __future__ import annotations

import hashlib
import math

import pytest
import torch

pytest.importorskip("torchmetrics")

from eventrunner import metrics

from . import _inputs as I
from ._compare import close

# the same tensors here, so the values below apply.
INPUT_SHA = {
    "logits_missing_class": "b98ac1b7d74859e2",
    "tied_logits": "27bae456b5d647b9",
    "all_correct": "73eb580a902d44c7",
    "binary_scores_with_ties": "e7613252107c8d82",
    "multilabel": "4f3a3a2b4e43a678",
    "binary_labels": "ffb6b163c5aa0092",
}


@pytest.mark.parametrize("name", sorted(INPUT_SHA))
def test_inputs_are_those_catalyst_saw(name):
    a, b = getattr(I, name)()
    assert (
        hashlib.sha256(a.numpy().tobytes() + b.numpy().tobytes()).hexdigest()[:16]
        == (INPUT_SHA[name])
    )


# computed by catalyst 22.4 (catalyst.metrics.accuracy), inputs: each of logits_missing_class,
# tied_logits (tied maxima), all_correct; topk=(1, 3) and the default topk=(1,)
ACCURACY = {
    "logits_missing_class": ([[0.1875], [0.5208333730697632]], [[0.1875]]),
    "tied_logits": ([[0.10000000149011612], [0.375]], [[0.10000000149011612]]),
    "all_correct": ([[1.0], [1.0]], [[1.0]]),
}


@pytest.mark.parametrize("name", sorted(ACCURACY))
def test_functional_accuracy(name):
    logits, targets = getattr(I, name)()
    top13, top1 = ACCURACY[name]
    close(metrics.accuracy(logits, targets, topk=(1, 3)), top13)
    close(metrics.accuracy(logits, targets), top1)


def test_accuracy_of_all_tied_rows_is_topks():
    # Not from catalyst's run: all-equal logits, where argmax and topk disagree.
    logits, targets = torch.zeros(6, 5), torch.arange(6) % 5
    expected = (logits.topk(1, dim=-1).indices.view(-1) == targets).float().mean()
    close(metrics.accuracy(logits, targets)[0], expected.item())


# computed by catalyst 22.4 (catalyst.metrics.AccuracyMetric(topk=(1, 3), prefix="valid_",
# suffix="_x")), inputs: logits_missing_class in batches of 10, 7, 31 (update_key_value each)
ACCURACY_METRIC_BATCHES = [
    {"valid_accuracy01_x": 0.10000000149011612, "valid_accuracy03_x": 0.30000001192092896},
    {"valid_accuracy01_x": 0.1428571492433548, "valid_accuracy03_x": 0.7142857313156128},
    {"valid_accuracy01_x": 0.22580644488334656, "valid_accuracy03_x": 0.5483870506286621},
]
ACCURACY_METRIC = {
    "valid_accuracy01_x": 0.1874999968955914,
    "valid_accuracy03_x": 0.5208333084980646,
    "valid_accuracy01_x/std": 0.053792802169317394,
    "valid_accuracy03_x/std": 0.1282596931674745,
}
# computed by catalyst 22.4 (catalyst.metrics.AccuracyMetric(num_classes=6), default topk),
# inputs: tied_logits in batches of 16, 3, 21
ACCURACY_METRIC_DEFAULT = {
    "accuracy01": 0.10000000093132257,
    "accuracy03": 0.3500000011175871,
    "accuracy05": 0.7750000074505806,
    "accuracy01/std": 0.03221569537902093,
    "accuracy03/std": 0.1264717987700442,
    "accuracy05/std": 0.06513815351114582,
}


def test_accuracy_metric():
    metric = metrics.AccuracyMetric(topk=(1, 3), prefix="valid_", suffix="_x")
    metric.reset()
    batches = I.batches(I.logits_missing_class(), (10, 7, 31))
    close([metric.update_key_value(x, y) for x, y in batches], ACCURACY_METRIC_BATCHES)
    close(metric.compute_key_value(), ACCURACY_METRIC)

    metric = metrics.AccuracyMetric(num_classes=6)
    for x, y in I.batches(I.tied_logits(), (16, 3, 21)):
        metric.update(x, y)
    close(metric.compute_key_value(), ACCURACY_METRIC_DEFAULT)


# computed by catalyst 22.4 (catalyst.metrics.AdditiveMetric), inputs: values
# ADDITIVE_VALUES with num_samples ADDITIVE_SAMPLES (uneven); (mean, std) after each update
ADDITIVE_STEPS = [
    [0.25, 0.0],
    [0.625, 0.75],
    [-0.09090909090909094, 0.7006490497453707],
    [0.24999999999999994, 1.0495534764841665],
    [0.18055555555555552, 0.8892972917998876],
]
# computed by catalyst 22.4 (catalyst.metrics.AdditiveMetric(mode="torch")), inputs: the same
# values as 0-d float32 tensors
ADDITIVE_TORCH = [0.1805555522441864, 0.8892973065376282]


def test_additive_metric():
    metric = metrics.AdditiveMetric()
    assert all(math.isnan(v) for v in metric.compute())
    steps = []
    for value, n in zip(I.ADDITIVE_VALUES, I.ADDITIVE_SAMPLES, strict=True):
        assert metric.update(value, n) == value
        steps.append(list(metric.compute()))
    close(steps, ADDITIVE_STEPS)
    metric.reset()
    assert metric.n == 0 and metric.num_samples == 0 and math.isnan(metric.compute()[0])

    metric = metrics.AdditiveMetric(mode="torch")
    for value, n in zip(I.ADDITIVE_VALUES, I.ADDITIVE_SAMPLES, strict=True):
        metric.update(torch.tensor(value), n)
    close(list(metric.compute()), ADDITIVE_TORCH)


# computed by catalyst 22.4 (catalyst.metrics.MulticlassPrecisionRecallF1SupportMetric(
# num_classes=5, compute_per_class_metrics=True, zero_division=0 and 1)), inputs:
# logits_missing_class (class 4 never a target) in batches of 10, 7, 31; the first batch's
# update_key_value and the final compute_key_value
MULTICLASS = {
    0: (
        {
            "precision/_micro": 0.10000002384185791,
            "recall/_micro": 0.10000002384185791,
            "f1/_micro": 0.09999502450227737,
            "precision/_macro": 0.06666666269302368,
            "recall/_macro": 0.05,
            "f1/_macro": 0.057141876108099156,
            "precision/_weighted": 0.13333332737286874,
            "recall/_weighted": 0.10000000149011612,
            "f1/_weighted": 0.11428375391915892,
            "precision/class_00": 0.3333333134651184,
            "precision/class_01": 0.0,
            "precision/class_02": 0.0,
            "precision/class_03": 0.0,
            "precision/class_04": 0.0,
            "recall/class_00": 0.25,
            "recall/class_01": 0.0,
            "recall/class_02": 0.0,
            "recall/class_03": 0.0,
            "recall/class_04": 0.0,
            "f1/class_00": 0.28570938054049577,
            "f1/class_01": 0.0,
            "f1/class_02": 0.0,
            "f1/class_03": 0.0,
            "f1/class_04": 0.0,
            "support/class_00": 4.0,
            "support/class_01": 4.0,
            "support/class_02": 1.0,
            "support/class_03": 1.0,
            "support/class_04": 0.0,
        },
        {
            "precision/_micro": 0.1875,
            "recall/_micro": 0.1875,
            "f1/_micro": 0.1874950001333298,
            "precision/_macro": 0.1935714285714286,
            "recall/_macro": 0.14653679653679655,
            "f1/_macro": 0.16602786557815336,
            "precision/_weighted": 0.24940476190476196,
            "recall/_weighted": 0.1875,
            "f1/_weighted": 0.2131565254980867,
            "precision/class_00": 0.1428571428571429,
            "precision/class_01": 0.125,
            "precision/class_02": 0.30000000000000004,
            "precision/class_03": 0.4,
            "precision/class_04": 0.0,
            "recall/class_00": 0.09090909090909094,
            "recall/class_01": 0.08333333333333337,
            "recall/class_02": 0.2727272727272727,
            "recall/class_03": 0.2857142857142857,
            "recall/class_04": 0.0,
            "f1/class_00": 0.11110635822800916,
            "f1/class_01": 0.09999520023038896,
            "f1/class_02": 0.2857092971392563,
            "f1/class_03": 0.3333284722931124,
            "f1/class_04": 0.0,
            "support/class_00": 11.0,
            "support/class_01": 12.0,
            "support/class_02": 11.0,
            "support/class_03": 14.0,
            "support/class_04": 0.0,
        },
    ),
    1: (
        {
            "precision/_micro": 0.10000002384185791,
            "recall/_micro": 0.10000002384185791,
            "f1/_micro": 0.09999502450227737,
            "precision/_macro": 0.2666666626930237,
            "recall/_macro": 0.25,
            "f1/_macro": 0.057141876108099156,
            "precision/_weighted": 0.23333332886298486,
            "recall/_weighted": 0.10000000149011612,
            "f1/_weighted": 0.11428375391915892,
            "precision/class_00": 0.3333333134651184,
            "precision/class_01": 0.0,
            "precision/class_02": 1.0,
            "precision/class_03": 0.0,
            "precision/class_04": 0.0,
            "recall/class_00": 0.25,
            "recall/class_01": 0.0,
            "recall/class_02": 0.0,
            "recall/class_03": 0.0,
            "recall/class_04": 1.0,
            "f1/class_00": 0.28570938054049577,
            "f1/class_01": 0.0,
            "f1/class_02": 0.0,
            "f1/class_03": 0.0,
            "f1/class_04": 0.0,
            "support/class_00": 4.0,
            "support/class_01": 4.0,
            "support/class_02": 1.0,
            "support/class_03": 1.0,
            "support/class_04": 0.0,
        },
        {
            "precision/_micro": 0.1875,
            "recall/_micro": 0.1875,
            "f1/_micro": 0.1874950001333298,
            "precision/_macro": 0.1935714285714286,
            "recall/_macro": 0.3465367965367966,
            "f1/_macro": 0.16602786557815336,
            "precision/_weighted": 0.24940476190476196,
            "recall/_weighted": 0.1875,
            "f1/_weighted": 0.2131565254980867,
            "precision/class_00": 0.1428571428571429,
            "precision/class_01": 0.125,
            "precision/class_02": 0.30000000000000004,
            "precision/class_03": 0.4,
            "precision/class_04": 0.0,
            "recall/class_00": 0.09090909090909094,
            "recall/class_01": 0.08333333333333337,
            "recall/class_02": 0.2727272727272727,
            "recall/class_03": 0.2857142857142857,
            "recall/class_04": 1.0,
            "f1/class_00": 0.11110635822800916,
            "f1/class_01": 0.09999520023038896,
            "f1/class_02": 0.2857092971392563,
            "f1/class_03": 0.3333284722931124,
            "f1/class_04": 0.0,
            "support/class_00": 11.0,
            "support/class_01": 12.0,
            "support/class_02": 11.0,
            "support/class_03": 14.0,
            "support/class_04": 0.0,
        },
    ),
}
# computed by catalyst 22.4 (catalyst.metrics.MulticlassPrecisionRecallF1SupportMetric()),
# inputs: tied_logits' argmax (labels, not scores) against its targets, one update
MULTICLASS_LABELS = {
    "precision/_micro": 0.15000000000000002,
    "recall/_micro": 0.15000000000000002,
    "f1/_micro": 0.14999500016666112,
    "precision/_macro": 0.07417582417582418,
    "recall/_macro": 0.1388888888888889,
    "f1/_macro": 0.09545303969350548,
    "precision/_weighted": 0.08406593406593406,
    "recall/_weighted": 0.15000000000000002,
    "f1/_weighted": 0.10636191858182245,
}


@pytest.mark.parametrize("zero_division", [0, 1])
def test_multiclass_precision_recall_f1_support(zero_division):
    metric = metrics.MulticlassPrecisionRecallF1SupportMetric(
        num_classes=5, compute_per_class_metrics=True, zero_division=zero_division
    )
    batches = I.batches(I.logits_missing_class(), (10, 7, 31))
    first, *_ = [metric.update_key_value(x, y) for x, y in batches]
    close(first, MULTICLASS[zero_division][0])
    close(metric.compute_key_value(), MULTICLASS[zero_division][1])


def test_multiclass_from_labels():
    metric = metrics.MulticlassPrecisionRecallF1SupportMetric()
    logits, targets = I.tied_logits()
    metric.update(logits.argmax(-1), targets)
    close(metric.compute_key_value(), MULTICLASS_LABELS)


# computed by catalyst 22.4 (catalyst.metrics.MultilabelPrecisionRecallF1SupportMetric(
# compute_per_class_metrics=True)), inputs: multilabel's (scores > 0) as 0/1 floats against
# its targets (last label never set), batches of 12, 24
MULTILABEL = {
    "precision/_micro": 0.43939393939393945,
    "recall/_micro": 0.5471698113207547,
    "f1/_micro": 0.48739001770419615,
    "precision/_macro": 0.43290441176470584,
    "recall/_macro": 0.40476190476190477,
    "f1/_macro": 0.4167875329754973,
    "precision/_weighted": 0.5948945615982242,
    "recall/_weighted": 0.5471698113207547,
    "f1/_weighted": 0.5678383022490141,
    "precision/class_00": 0.5294117647058824,
    "precision/class_01": 0.4375,
    "precision/class_02": 0.7647058823529411,
    "precision/class_03": 0.0,
    "recall/class_00": 0.5625,
    "recall/class_01": 0.4375,
    "recall/class_02": 0.6190476190476191,
    "recall/class_03": 0.0,
    "f1/class_00": 0.5454495500916625,
    "f1/class_01": 0.4374950000571422,
    "f1/class_02": 0.6842055817531845,
    "f1/class_03": 0.0,
    "support/class_00": 16.0,
    "support/class_01": 16.0,
    "support/class_02": 21.0,
    "support/class_03": 0.0,
}


def test_multilabel_precision_recall_f1_support():
    metric = metrics.MultilabelPrecisionRecallF1SupportMetric(compute_per_class_metrics=True)
    scores, targets = I.multilabel()
    for x, y in I.batches(((scores > 0).float(), targets), (12, 24)):
        metric.update(x, y)
    close(metric.compute_key_value(), MULTILABEL)


# computed by catalyst 22.4 (catalyst.metrics.BinaryPrecisionRecallF1Metric()), inputs:
# binary_labels in batches of 20, 30 (update_key_value each), then compute_key_value
BINARY_BATCHES = [
    {"precision": 0.5555555555555556, "recall": 0.4545454545454546, "f1": 0.49999505004900446},
    {"precision": 0.6, "recall": 0.4736842105263158, "f1": 0.5294068339559582},
]
BINARY = {"precision": 0.5833333333333333, "recall": 0.4666666666666667, "f1": 0.5185135802939443}


def test_binary_precision_recall_f1():
    metric = metrics.BinaryPrecisionRecallF1Metric()
    batches = I.batches(I.binary_labels(), (20, 30))
    close([metric.update_key_value(x, y) for x, y in batches], BINARY_BATCHES)
    close(metric.compute_key_value(), BINARY)
