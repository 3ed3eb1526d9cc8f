"""``ConfusionMatrixMetric`` of Catalyst 22.04: a ``(num_classes, num_classes)`` count matrix,
rows the true classes, columns the predicted ones, summed over batches.

The counts come from torchmetrics' ``multiclass_confusion_matrix`` on labels (the same matrix).
Scores are turned into labels here with an argmax and one-hot targets with another (the first
maximum on ties, as NumPy's argmax in Catalyst). The normalised matrix is Catalyst's: each row
over its sum clipped at 1e-12, so an absent class gives a row of zeros, in float32.
"""

from __future__ import annotations

import numpy as np
import torch
from torchmetrics.functional.classification import multiclass_confusion_matrix

from eventrunner.catalyst.metrics._base import IMetric


class ConfusionMatrixMetric(IMetric):
    """Confusion matrix over batches of predicted labels ``(N,)`` or scores ``(N, K)`` and
    target labels ``(N,)`` or one-hot rows ``(N, K)``; ``compute()`` is an int32 array, or the
    row-normalised float32 one with ``normalize``."""

    def __init__(
        self, num_classes: int, normalize: bool = False, compute_on_call: bool = True
    ) -> None:
        super().__init__(compute_on_call=compute_on_call)
        if num_classes < 1:
            raise ValueError(f"ConfusionMatrixMetric: num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.normalize = normalize
        self.conf = np.zeros((num_classes, num_classes), dtype=np.int32)

    def reset(self) -> None:
        self.conf.fill(0)

    def _labels(self, values: torch.Tensor, name: str) -> torch.Tensor:
        k = self.num_classes
        if values.dim() != 1:
            if values.dim() != 2 or values.shape[1] != k:
                raise ValueError(
                    f"ConfusionMatrixMetric: {name} must be labels (N,) or one column per class "
                    f"(N, {k}), got shape {tuple(values.shape)}"
                )
            one_hot = ((values == 0) | (values == 1)).all() and (values.sum(1) == 1).all()
            if name == "targets" and not one_hot:
                raise ValueError(
                    "ConfusionMatrixMetric: one-hot targets must hold one 1 per row "
                    "(multilabel targets are not supported)"
                )
            values = values.argmax(dim=1)
        elif len(values) and (values.min() < 0 or values.max() >= k):
            raise ValueError(
                f"ConfusionMatrixMetric: {name} labels must be in [0, {k - 1}], got "
                f"[{values.min().item()}, {values.max().item()}]"
            )
        return values.long()

    def update(self, predictions: torch.Tensor, targets: torch.Tensor) -> None:
        predictions, targets = predictions.detach().cpu(), targets.detach().cpu()
        if predictions.shape[0] != targets.shape[0]:
            raise ValueError(
                f"ConfusionMatrixMetric: {predictions.shape[0]} predictions for "
                f"{targets.shape[0]} targets"
            )
        preds = self._labels(predictions, "predictions")
        labels = self._labels(targets, "targets")
        if self.num_classes == 1:  # torchmetrics wants two classes or more
            self.conf += np.int32(len(labels))
            return
        counts = multiclass_confusion_matrix(preds, labels, num_classes=self.num_classes)
        self.conf += counts.numpy().astype(np.int32)

    def compute(self) -> np.ndarray:
        """The matrix so far: counts, or rows normalised to sum 1 with ``normalize``."""
        if self.normalize:
            conf = self.conf.astype(np.float32)
            return conf / conf.sum(1).clip(min=1e-12)[:, None]
        return self.conf


__all__ = ["ConfusionMatrixMetric"]
