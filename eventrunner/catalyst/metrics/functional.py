"""Catalyst 22.04's functional classification metrics: statistics, precision/recall/F-beta,
ROC-AUC and multilabel accuracy.

Per-class counts come from torchmetrics' ``*_stat_scores`` (same counts, one pass instead of a
loop over classes). The scores built on them follow Catalyst, which differs from torchmetrics:
``precision_recall_fbeta_support`` smooths every ratio with ``eps`` (torchmetrics divides exactly
and maps 0/0 to 0), and ROC-AUC walks the score-sorted samples one at a time, so tied scores
give a staircase (torchmetrics' ``binary_auroc`` puts one threshold per distinct score).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.nn import functional as F
from torchmetrics.functional.classification import (
    binary_stat_scores,
    multiclass_stat_scores,
    multilabel_stat_scores,
)

from eventrunner.catalyst.metrics._regression import r2_squared
from eventrunner.catalyst.metrics._segmentation import (
    dice,
    get_segmentation_statistics,
    iou,
    trevsky,
)
from eventrunner.metrics import accuracy

Stats = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def _as_tensor(value: Any) -> torch.Tensor:
    return value if isinstance(value, torch.Tensor) else torch.as_tensor(np.asarray(value))


def _unpack(scores: torch.Tensor) -> tuple[torch.Tensor, ...]:
    # torchmetrics orders the columns tp, fp, tn, fn, support; Catalyst returns tn, fp, fn, tp,
    # support, as float32 (its counts live in float32 tensors).
    tp, fp, tn, fn, support = scores.to(torch.float32).unbind(-1)
    return tn, fp, fn, tp, support


def get_binary_statistics(outputs: torch.Tensor, targets: torch.Tensor, label: int = 1) -> Stats:
    """``(tn, fp, fn, tp, support)`` of the elements equal to ``label``, as 0-d int64 tensors."""
    predicted, actual = outputs == label, targets == label
    tp = (predicted & actual).sum()
    fp = (predicted & ~actual).sum()
    fn = (~predicted & actual).sum()
    tn = (~predicted & ~actual).sum()
    return tn, fp, fn, tp, actual.sum()


def _multiclass_components(
    outputs: Any, targets: Any, argmax_dim: int, num_classes: int | None
) -> tuple[torch.Tensor, torch.Tensor, int]:
    outputs, targets = _as_tensor(outputs), _as_tensor(targets)
    if outputs.dim() == targets.dim() + 1:  # scores: Catalyst takes the argmax, and the class
        # count from the scores and the labels, whatever ``num_classes`` says
        num_classes = max(outputs.shape[argmax_dim], int(targets.max().item()) + 1)
        outputs = outputs.argmax(dim=argmax_dim)
    if num_classes is None:
        num_classes = max(int(outputs.max().item()) + 1, int(targets.max().item()) + 1)
    if outputs.numel() != targets.numel():
        raise ValueError(
            f"outputs {tuple(outputs.shape)} and targets {tuple(targets.shape)} differ in size"
        )
    return outputs.reshape(-1).long(), targets.reshape(-1).long(), num_classes


def get_multiclass_statistics(
    outputs: torch.Tensor,
    targets: torch.Tensor,
    argmax_dim: int = -1,
    num_classes: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """Per-class ``(tn, fp, fn, tp, support, num_classes)`` from labels or class scores."""
    preds, target, num_classes = _multiclass_components(outputs, targets, argmax_dim, num_classes)
    if num_classes == 1:  # torchmetrics wants two classes or more; one class has no negatives
        n = float(preds.numel())
        zeros = torch.zeros(1)
        return zeros, zeros.clone(), zeros.clone(), torch.full((1,), n), torch.full((1,), n), 1
    # multiclass_stat_scores(average=None): the one-vs-rest counts per class, as Catalyst's.
    scores = multiclass_stat_scores(preds, target, num_classes=num_classes, average=None)
    return (*_unpack(scores), num_classes)


def _multilabel_components(outputs: Any, targets: Any) -> tuple[torch.Tensor, torch.Tensor]:
    outputs, targets = _as_tensor(outputs), _as_tensor(targets)
    if outputs.dim() == 1:
        outputs = outputs.view(-1, 1)
    elif outputs.dim() != 2:
        raise ValueError(f"outputs must be 1D or 2D (one column per class), got {outputs.dim()}D")
    if targets.dim() == 1:
        # Labels of a multiclass problem become one-hot rows; a single column stays one.
        columns = outputs.shape[1]
        targets = F.one_hot(targets.long(), columns).float() if columns > 1 else targets.view(-1, 1)
    elif targets.dim() != 2:
        raise ValueError(f"targets must be 1D or 2D (one column per class), got {targets.dim()}D")
    if not torch.equal(targets**2, targets):
        raise ValueError("targets should be binary (0 or 1)")
    return outputs, targets


def get_multilabel_statistics(
    outputs: torch.Tensor, targets: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """Per-column ``(tn, fp, fn, tp, support, num_classes)``; an output counts as positive
    only when it equals 1 (Catalyst compares, it does not threshold)."""
    outputs, targets = _multilabel_components(outputs, targets)
    if outputs.shape != targets.shape:
        raise ValueError(f"outputs {tuple(outputs.shape)} != targets {tuple(targets.shape)}")
    num_classes = outputs.shape[-1]
    # Integer 0/1 inputs: torchmetrics counts them as given (no sigmoid, no threshold).
    preds, target = (outputs == 1).long(), (targets == 1).long()
    if num_classes == 1:
        scores = binary_stat_scores(preds.view(-1), target.view(-1)).unsqueeze(0)
    else:
        scores = multilabel_stat_scores(preds, target, num_labels=num_classes, average=None)
    return (*_unpack(scores), num_classes)


def precision_recall_fbeta_support(
    outputs: torch.Tensor,
    targets: torch.Tensor,
    beta: float = 1,
    eps: float = 1e-6,
    argmax_dim: int = -1,
    num_classes: int | None = None,
    zero_division: int = 0,  # accepted as in Catalyst, which does not use it here
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-class ``(precision, recall, fbeta, support)``, each ratio smoothed by ``eps``:
    ``(tp + eps) / (tp + fp + eps)``, so a class never predicted nor present scores 1."""
    _, fp, fn, tp, support, _ = get_multiclass_statistics(
        outputs, targets, argmax_dim=argmax_dim, num_classes=num_classes
    )
    precision_value = (tp + eps) / (fp + tp + eps)
    recall_value = (tp + eps) / (fn + tp + eps)
    fbeta = (
        (1 + beta**2) * precision_value * recall_value / (beta**2 * precision_value + recall_value)
    )
    return precision_value, recall_value, fbeta, support


def precision(
    outputs: torch.Tensor,
    targets: torch.Tensor,
    argmax_dim: int = -1,
    eps: float = 1e-7,
    num_classes: int | None = None,
) -> torch.Tensor:
    """Per-class precision, smoothed as in :func:`precision_recall_fbeta_support`."""
    return precision_recall_fbeta_support(
        outputs, targets, argmax_dim=argmax_dim, eps=eps, num_classes=num_classes
    )[0]


def recall(
    outputs: torch.Tensor,
    targets: torch.Tensor,
    argmax_dim: int = -1,
    eps: float = 1e-7,
    num_classes: int | None = None,
) -> torch.Tensor:
    """Per-class recall, smoothed as in :func:`precision_recall_fbeta_support`."""
    return precision_recall_fbeta_support(
        outputs, targets, argmax_dim=argmax_dim, eps=eps, num_classes=num_classes
    )[1]


def fbeta_score(
    outputs: torch.Tensor,
    targets: torch.Tensor,
    beta: float = 1.0,
    eps: float = 1e-7,
    argmax_dim: int = -1,
    num_classes: int | None = None,
) -> torch.Tensor:
    """Per-class F-beta score, smoothed as in :func:`precision_recall_fbeta_support`."""
    if beta < 0:
        raise ValueError("beta parameter should be non-negative")
    return precision_recall_fbeta_support(
        outputs, targets, beta=beta, eps=eps, argmax_dim=argmax_dim, num_classes=num_classes
    )[2]


def f1_score(
    outputs: torch.Tensor,
    targets: torch.Tensor,
    eps: float = 1e-7,
    argmax_dim: int = -1,
    num_classes: int | None = None,
) -> torch.Tensor:
    """Per-class F1 score: :func:`fbeta_score` with ``beta=1``."""
    return fbeta_score(
        outputs, targets, beta=1, eps=eps, argmax_dim=argmax_dim, num_classes=num_classes
    )


def binary_auc(scores: torch.Tensor, targets: torch.Tensor) -> tuple[float, np.ndarray, np.ndarray]:
    """``(roc_auc, tpr, fpr)`` of one column, with one ROC step per sample.

    Samples are taken in ``torch.sort(descending=True)`` order, ties included (Catalyst's
    curve; it differs from a per-threshold curve when scores tie).
    """
    targets_np = targets.detach().cpu().numpy()
    order = torch.sort(scores, dim=0, descending=True)[1].numpy()
    positive = targets_np[order] == 1
    tpr = np.concatenate(([0.0], np.cumsum(positive, dtype=np.float64)))
    fpr = np.concatenate(([0.0], np.cumsum(~positive, dtype=np.float64)))
    with np.errstate(divide="ignore", invalid="ignore"):  # one class only: NaN, as in Catalyst
        tpr /= targets_np.sum() * 1.0
        fpr /= (1.0 - targets_np).sum()
    area = float((np.diff(fpr) * (tpr[1:] + tpr[:-1])).sum() / 2.0)  # the trapezoidal rule
    return area, tpr, fpr


def auc(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor | float:
    """Per-class ROC-AUC of ``(N, K)`` scores and binary targets (float32); 0.5 when empty."""
    if len(scores) == 0:
        return 0.5
    scores = scores.unsqueeze(1) if scores.dim() < 2 else scores
    targets = targets.unsqueeze(1) if targets.dim() < 2 else targets
    if scores.shape != targets.shape:
        raise ValueError(f"scores {tuple(scores.shape)} != targets {tuple(targets.shape)}")
    columns = range(scores.shape[1])
    return torch.tensor([binary_auc(scores[:, i], targets[:, i])[0] for i in columns])


def multilabel_accuracy(
    outputs: torch.Tensor, targets: torch.Tensor, threshold: float | torch.Tensor
) -> torch.Tensor:
    """The share of (sample, label) pairs where ``outputs > threshold`` equals the target.

    Outputs are compared with the threshold as given (torchmetrics would first squash values
    outside [0, 1] with a sigmoid).
    """
    outputs, targets = _multilabel_components(outputs, targets)
    hits = (outputs > threshold).long() == targets.long()
    return hits.sum().float() / targets.numel()


def get_default_topk(num_classes: int | None) -> list[int]:
    """The ks Catalyst reports accuracy at: 1, then 3 above 3 classes, 5 above 5."""
    result = [1]
    if num_classes is not None:
        result += [k for k in (3, 5) if num_classes > k]
    return result


__all__ = [
    "accuracy",
    "auc",
    "binary_auc",
    "dice",
    "f1_score",
    "fbeta_score",
    "get_binary_statistics",
    "get_default_topk",
    "get_multiclass_statistics",
    "get_multilabel_statistics",
    "get_segmentation_statistics",
    "iou",
    "multilabel_accuracy",
    "precision",
    "precision_recall_fbeta_support",
    "r2_squared",
    "recall",
    "trevsky",
]
