"""Losses of ``catalyst.contrib.losses`` (22.04) that programs use."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from eventrunner.catalyst.contrib.data import IInbatchTripletSampler, TLabels, labels_to_list
from eventrunner.catalyst.metrics._segmentation import iou

_IOU_MODES = ("micro", "macro", "weighted")


class IoULoss(nn.Module):
    """``1 - IoU`` of soft (unthresholded) outputs against targets, ``tp / (tp + fp + fn)``.

    ``mode``: ``"micro"`` (all classes as one), ``"macro"`` (mean of per-class IoUs) or
    ``"weighted"`` (per-class IoUs summed with ``weights``). Classes lie along ``class_dim``.
    """

    def __init__(
        self,
        class_dim: int = 1,
        mode: str = "macro",
        weights: Sequence[float] | None = None,
        eps: float = 1e-7,
    ) -> None:
        super().__init__()
        if mode not in _IOU_MODES:
            raise ValueError(f"IoULoss: mode must be one of {_IOU_MODES}, got {mode!r}")
        self.class_dim = class_dim
        self.mode = mode
        self.weights = weights
        self.eps = eps

    def forward(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The loss of ``outputs`` against ``targets`` (same shape)."""
        score = iou(
            outputs,
            targets,
            class_dim=self.class_dim,
            threshold=None,
            mode=self.mode,
            weights=self.weights,
            eps=self.eps,
        )
        return 1 - score


class TripletMarginLossWithSampler(nn.Module):
    """``torch.nn.TripletMarginLoss(margin)`` over the triplets ``sampler_inbatch`` forms."""

    def __init__(self, margin: float, sampler_inbatch: IInbatchTripletSampler) -> None:
        super().__init__()
        self._sampler_inbatch = sampler_inbatch
        self._triplet_margin_loss = nn.TripletMarginLoss(margin=margin)

    def forward(self, features: torch.Tensor, labels: TLabels) -> torch.Tensor:
        """``features``: ``(batch, dim)``; ``labels``: ``batch`` class labels (list or tensor)."""
        anchor, positive, negative = self._sampler_inbatch.sample(
            features=features, labels=labels_to_list(labels)
        )
        return self._triplet_margin_loss(anchor=anchor, positive=positive, negative=negative)


__all__ = ["IoULoss", "TripletMarginLossWithSampler"]
