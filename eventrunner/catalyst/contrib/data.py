"""In-batch triplet samplers of ``catalyst.contrib.data`` (22.04).

A sampler turns a batch of features and labels into ``(anchor, positive, negative)`` feature
tensors; ``TripletMarginLossWithSampler`` feeds them to ``torch.nn.TripletMarginLoss``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from typing import TypeAlias

import torch
from torch.nn import functional as F

TTriplets: TypeAlias = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
TTripletsIds: TypeAlias = tuple[list[int], list[int], list[int]]
TLabels: TypeAlias = list[int] | torch.Tensor

_INT_DTYPES = (torch.int16, torch.int32, torch.int64)


def labels_to_list(labels: TLabels) -> list[int]:
    """Batch labels as a list of ints, from a list or an integer tensor of shape ``(batch,)``."""
    if isinstance(labels, torch.Tensor):
        flat = labels.squeeze()
        if flat.dim() != 1 or flat.dtype not in _INT_DTYPES:
            raise ValueError(
                "labels: expected a 1-d integer (int16/int32/int64) tensor, got shape "
                f"{tuple(labels.shape)} and dtype {labels.dtype}"
            )
        return flat.tolist()
    if isinstance(labels, list):
        return list(labels)
    raise TypeError(f"labels: expected a list or a tensor, got {type(labels).__name__}")


class IInbatchTripletSampler(ABC):
    """Forms triplets inside a batch: ``sample(features, labels) -> (anchor, pos, neg)``."""

    @abstractmethod
    def _check_input_labels(self, labels: list[int]) -> None:
        """Raises if the batch's labels cannot give triplets for this sampler."""

    @abstractmethod
    def sample(self, features: torch.Tensor, labels: TLabels) -> TTriplets:
        """The batch's triplets as three feature tensors: anchors, positives, negatives."""


class InBatchTripletsSampler(IInbatchTripletSampler):
    """Base of the samplers that pick triplets by index among the batch's own samples.

    A batch needs at least two classes and at least two samples of each class (what
    ``BatchBalanceClassSampler`` gives with ``num_classes > 1`` and ``num_samples > 1``).
    Subclasses implement ``_sample``, returning the anchor, positive and negative indices.
    """

    def _check_input_labels(self, labels: list[int]) -> None:
        counts = Counter(labels)
        if len(counts) < 2:
            raise ValueError(f"{type(self).__name__}: a batch needs at least 2 classes: {counts}")
        lonely = sorted(label for label, n in counts.items() if n < 2)
        if lonely:
            raise ValueError(
                f"{type(self).__name__}: every class in a batch needs at least 2 samples; "
                f"classes {lonely} have 1"
            )

    @abstractmethod
    def _sample(self, features: torch.Tensor, labels: list[int]) -> TTripletsIds:
        """Indices ``(anchors, positives, negatives)`` into the batch."""

    def sample(self, features: torch.Tensor, labels: TLabels) -> TTriplets:
        """``features[anchors], features[positives], features[negatives]``."""
        labels_list = labels_to_list(labels)
        self._check_input_labels(labels_list)
        ids_anchor, ids_pos, ids_neg = self._sample(features, labels_list)
        return features[ids_anchor], features[ids_pos], features[ids_neg]


class HardTripletsSampler(InBatchTripletsSampler):
    """Every sample is an anchor once, with its hardest positive and hardest negative.

    The hardest positive is the same-class sample farthest from the anchor, the hardest
    negative the other-class sample nearest to it (Euclidean distances; on ties the lowest
    index). With ``norm_required`` the distances are taken between L2-normalized features
    (the triplets still hold the features as given).
    """

    def __init__(self, norm_required: bool = False) -> None:
        self._norm_required = norm_required

    def _sample(self, features: torch.Tensor, labels: list[int]) -> TTripletsIds:
        if features.shape[0] != len(labels):
            raise ValueError(
                f"HardTripletsSampler: {features.shape[0]} feature rows but {len(labels)} labels"
            )
        if self._norm_required:
            features = F.normalize(features.detach(), p=2, dim=1)
        distances = torch.cdist(features, features, p=2)
        return self._sample_from_distmat(distances, labels)

    @staticmethod
    def _sample_from_distmat(distmat: torch.Tensor, labels: list[int]) -> TTripletsIds:
        """Each anchor's hardest positive and negative from a ``(batch, batch)`` distance matrix."""
        distmat = distmat.detach()
        label_t = torch.tensor(labels, device=distmat.device)
        same = label_t[:, None] == label_t[None, :]
        itself = torch.eye(len(labels), dtype=torch.bool, device=distmat.device)
        # argmax/argmin return the first extreme index, hence the lowest index on ties
        ids_pos = distmat.masked_fill(~same | itself, -torch.inf).argmax(dim=1)
        ids_neg = distmat.masked_fill(same, torch.inf).argmin(dim=1)
        return list(range(len(labels))), ids_pos.tolist(), ids_neg.tolist()


__all__ = [
    "HardTripletsSampler",
    "IInbatchTripletSampler",
    "InBatchTripletsSampler",
    "labels_to_list",
]
