"""Ranking metrics of Catalyst 22.04: CMC (query/gallery retrieval) and the recommender-system
metrics hitrate, MRR, MAP and NDCG (objects and functional forms).

Written on tensors rather than with torchmetrics' retrieval metrics, whose definitions differ:
its hit rate is 1 when any relevant item is in the top k (Catalyst's ``hitrate`` is the share
of the relevant items there, i.e. recall@k), and its NDCG takes linear gains discounted from
the second position and averages tied scores (Catalyst: ``2**rel - 1`` gains, or its own
``linear_rank`` discounts, and one position per item). Its average precision agrees on
distinct scores but takes one query at a time and orders ties its own way. Here items are
ranked with ``torch.argsort(descending=True)`` on whole rows, as Catalyst ranks them, so tied
scores fall the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import torch

from eventrunner.catalyst.metrics._accuracy import TopKMetric
from eventrunner.catalyst.metrics._base import ICallbackLoaderMetric

# ----------------------------------------------------------------------------- functional


def check_consistent_length(*tensors: torch.Tensor) -> None:
    """Raises unless all the 2-D tensors hold as many elements (``size(0) * size(1)``)."""
    lengths = {tensor.size(0) * tensor.size(1) for tensor in tensors}
    if len(lengths) > 1:
        shapes = [tuple(tensor.shape) for tensor in tensors]
        raise ValueError(f"Inconsistent numbers of samples: shapes {shapes}")


def process_recsys_components(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Each row of ``targets`` reordered by its ``outputs``, the highest score first."""
    check_consistent_length(outputs, targets)
    order = torch.argsort(outputs, descending=True, dim=-1)
    return torch.gather(targets, dim=-1, index=order)


def hitrate(
    outputs: torch.Tensor, targets: torch.Tensor, topk: Iterable[int], zero_division: int = 0
) -> list[torch.Tensor]:
    """Per k: the mean over rows of (relevant items in the top k) / (relevant items);
    a row with none scores ``zero_division``."""
    ranked = process_recsys_components(outputs, targets)
    results = []
    for k in topk:
        k = min(outputs.size(1), k)
        score = torch.sum(ranked[:, :k], dim=1) / targets.sum(dim=1)
        results.append(torch.mean(torch.nan_to_num(score, zero_division)))
    return results


def reciprocal_rank(outputs: torch.Tensor, targets: torch.Tensor, k: int) -> torch.Tensor:
    """Per row, ``1 / rank`` of the first relevant item within the top k (0 if none), (N, 1)."""
    k = min(outputs.size(1), k)
    values, indices = torch.max(process_recsys_components(outputs, targets)[:, :k], dim=1)
    score = 1.0 / (indices.type_as(values).view(-1, 1) + 1.0)
    score[values == 0.0] = 0.0
    return score


def mrr(outputs: torch.Tensor, targets: torch.Tensor, topk: Iterable[int]) -> list[torch.Tensor]:
    """Mean reciprocal rank at each k."""
    return [torch.mean(reciprocal_rank(outputs, targets, k)) for k in topk]


def average_precision(outputs: torch.Tensor, targets: torch.Tensor, k: int) -> torch.Tensor:
    """Per row: the mean of precision@i over the relevant positions i within the top k
    (0 for a row with none there)."""
    ranked = process_recsys_components(outputs, targets)[:, :k]
    positions = torch.arange(1, ranked.size(1) + 1, dtype=torch.float)
    # Catalyst writes the precisions into a tensor of the targets' dtype: cast as it does.
    precisions = (torch.cumsum(ranked, dim=1) / positions).to(ranked.dtype)
    relevant = precisions * ranked
    score = relevant.sum(dim=1) / (relevant != 0).sum(dim=1)
    score[torch.isnan(score)] = 0
    return score


def mean_average_precision(
    outputs: torch.Tensor, targets: torch.Tensor, topk: Iterable[int]
) -> list[torch.Tensor]:
    """MAP at each k (k capped at the number of items)."""
    return [torch.mean(average_precision(outputs, targets, min(outputs.size(1), k))) for k in topk]


def dcg(
    outputs: torch.Tensor, targets: torch.Tensor, gain_function: str = "exp_rank"
) -> torch.Tensor:
    """Discounted gains per position, items ranked by ``outputs``: ``exp_rank`` gains
    ``2**rel - 1`` over ``log2(i + 1)``; ``linear_rank`` gains ``rel``, the first undiscounted."""
    ranked = process_recsys_components(outputs, targets)
    positions = torch.arange(ranked.shape[1], dtype=torch.float, device=ranked.device)
    if gain_function == "exp_rank":
        return (torch.pow(2, ranked) - 1) * (1.0 / torch.log2(positions + 2.0))
    if gain_function == "linear_rank":
        discounts = 1.0 / torch.log2(positions + 1.0)
        discounts[0] = 1
        return ranked * discounts
    raise ValueError(f"gain_function must be 'exp_rank' or 'linear_rank', got {gain_function!r}")


def ndcg(
    outputs: torch.Tensor,
    targets: torch.Tensor,
    topk: Iterable[int],
    gain_function: str = "exp_rank",
) -> list[torch.Tensor]:
    """NDCG at each k: DCG@k over the ideal DCG@k, 0 for a row with no relevant item."""
    results = []
    for k in topk:
        ideal = torch.sum(dcg(targets, targets, gain_function)[:, :k], dim=1)
        predicted = torch.sum(dcg(outputs, targets, gain_function)[:, :k], dim=1)
        score = predicted / ideal
        score[ideal == 0] = 0.0
        results.append(torch.mean(score))
    return results


def cmc_score_count(
    distances: torch.Tensor, conformity_matrix: torch.Tensor, topk: int = 1
) -> float:
    """The share of queries (rows) with a conforming gallery item among their ``topk``
    nearest (by ``distances``)."""
    position = torch.argsort(torch.argsort(distances))  # each gallery item's rank per query
    position[~conformity_matrix.bool()] = topk + 1
    closest = position.min(dim=1)[0]
    return (closest < topk).float().mean().item()


def cmc_score(
    query_embeddings: torch.Tensor,
    gallery_embeddings: torch.Tensor,
    conformity_matrix: torch.Tensor,
    topk: int = 1,
) -> float:
    """CMC@k with Euclidean distances; ``conformity_matrix[q, g]`` marks the right answers."""
    distances = torch.cdist(query_embeddings, gallery_embeddings)
    return cmc_score_count(distances, conformity_matrix, topk)


def masked_cmc_score(
    query_embeddings: torch.Tensor,
    gallery_embeddings: torch.Tensor,
    conformity_matrix: torch.Tensor,
    available_samples: torch.Tensor,
    topk: int = 1,
) -> float:
    """CMC@k over the gallery items ``available_samples`` allows per query (every
    non-conforming item must be available)."""
    if not available_samples[conformity_matrix == 0].all():
        raise ValueError(
            "masked_cmc_score: available_samples must allow every gallery item that does not "
            "conform to the query (conformity_matrix == 0)"
        )
    distances = torch.cdist(query_embeddings, gallery_embeddings)
    distances[~available_samples.bool()] = float("inf")
    return cmc_score_count(distances, conformity_matrix, topk)


# ----------------------------------------------------------------------------- objects


class AccumulativeMetric(ICallbackLoaderMetric):
    """Keeps the tensors of ``keys`` over a loader (on the CPU); ``compute()`` returns
    ``{key: all rows}``. Batches are concatenated, so ``num_samples`` may be unknown."""

    def __init__(
        self,
        keys: Iterable[str] | None = None,
        compute_on_call: bool = True,
        prefix: str | None = None,
        suffix: str | None = None,
    ) -> None:
        super().__init__(compute_on_call=compute_on_call, prefix=prefix, suffix=suffix)
        self.keys = tuple(keys or ())
        self.reset(0, 0)

    def reset(self, num_batches: int = 0, num_samples: int | None = 0) -> None:
        self.num_samples = num_samples
        self.collected_batches = 0
        self.collected_samples = 0
        self._parts: dict[str, list[torch.Tensor]] = {key: [] for key in self.keys}

    def update(self, **kwargs: torch.Tensor) -> None:
        missing = [key for key in self.keys if key not in kwargs]
        if missing:
            raise KeyError(f"{type(self).__name__}.update: missing {missing}, got {sorted(kwargs)}")
        size = 0
        for key in self.keys:
            value = kwargs[key].detach().cpu()
            self._parts[key].append(value)
            size = value.shape[0]
        self.collected_samples += size
        self.collected_batches += 1

    @property
    def storage(self) -> dict[str, torch.Tensor]:
        return {key: torch.cat(parts) for key, parts in self._parts.items() if parts}

    def compute(self) -> dict[str, torch.Tensor]:
        return self.storage

    def compute_key_value(self) -> dict[str, torch.Tensor]:
        return self.compute()


def _query_mask(storage: dict[str, torch.Tensor], is_query_key: str) -> torch.Tensor:
    if not storage:
        raise RuntimeError("CMC: compute() before any update")
    return (storage[is_query_key] == 1).to(torch.bool)


class CMCMetric(AccumulativeMetric):
    """CMC@k over a loader: rows with ``is_query == 1`` are queries, the rest the gallery;
    a gallery item conforms when its label equals the query's. Keys ``cmc01``, ``cmc05``, ..."""

    def __init__(
        self,
        embeddings_key: str,
        labels_key: str,
        is_query_key: str,
        topk: Iterable[int] | None = None,
        compute_on_call: bool = True,
        prefix: str | None = None,
        suffix: str | None = None,
    ) -> None:
        super().__init__(
            keys=(embeddings_key, labels_key, is_query_key),
            compute_on_call=compute_on_call,
            prefix=prefix,
            suffix=suffix,
        )
        self.embeddings_key = embeddings_key
        self.labels_key = labels_key
        self.is_query_key = is_query_key
        self.topk = tuple(topk or (1,))

    def compute(self) -> list[float]:  # type: ignore[override]
        storage = self.storage
        query = _query_mask(storage, self.is_query_key)
        embeddings, labels = storage[self.embeddings_key].float(), storage[self.labels_key]
        conformity = (labels[~query] == labels[query].reshape(-1, 1)).to(torch.bool)
        return [
            cmc_score(embeddings[query], embeddings[~query], conformity, topk=k) for k in self.topk
        ]

    def compute_key_value(self) -> dict[str, float]:  # type: ignore[override]
        values = self.compute()
        return {
            f"{self.prefix}cmc{k:02d}{self.suffix}": v
            for k, v in zip(self.topk, values, strict=True)
        }


class ReidCMCMetric(AccumulativeMetric):
    """Re-identification CMC@k: a gallery item of the query's person id conforms, and those
    of the same person and camera id are left out. Keys as :class:`CMCMetric`."""

    def __init__(
        self,
        embeddings_key: str,
        pids_key: str,
        cids_key: str,
        is_query_key: str,
        topk: Iterable[int] | None = None,
        compute_on_call: bool = True,
        prefix: str | None = None,
        suffix: str | None = None,
    ) -> None:
        super().__init__(
            keys=(embeddings_key, pids_key, cids_key, is_query_key),
            compute_on_call=compute_on_call,
            prefix=prefix,
            suffix=suffix,
        )
        self.embeddings_key = embeddings_key
        self.pids_key = pids_key
        self.cids_key = cids_key
        self.is_query_key = is_query_key
        self.topk = tuple(topk or (1,))

    def compute(self) -> list[float]:  # type: ignore[override]
        storage = self.storage
        query = _query_mask(storage, self.is_query_key)
        embeddings = storage[self.embeddings_key].float()
        pids, cids = storage[self.pids_key], storage[self.cids_key]
        same_pid = (pids[~query] == pids[query].reshape(-1, 1)).bool()
        same_cid = (cids[~query] == cids[query].reshape(-1, 1)).bool()
        available = ~(same_pid & same_cid)
        if (available.max(dim=1).values == 0).any():
            raise ValueError("ReidCMCMetric: a query has no available sample in the gallery")
        return [
            masked_cmc_score(embeddings[query], embeddings[~query], same_pid, available, topk=k)
            for k in self.topk
        ]

    def compute_key_value(self) -> dict[str, float]:  # type: ignore[override]
        values = self.compute()
        return {
            f"{self.prefix}cmc{k:02d}{self.suffix}": v
            for k, v in zip(self.topk, values, strict=True)
        }


class _RankingMetric(TopKMetric):
    """A top-k ranking score per batch (``score``, named ``score_name``), averaged by batch
    size, with Catalyst's arguments."""

    score: ClassVar[Callable[..., Any]]
    score_name: ClassVar[str]

    def __init__(
        self,
        topk: Iterable[int] | None = None,
        compute_on_call: bool = True,
        prefix: str | None = None,
        suffix: str | None = None,
    ) -> None:
        score = type(self).score
        super().__init__(self.score_name, score, topk, compute_on_call, prefix, suffix)


class HitrateMetric(_RankingMetric):
    """Hitrate (recall@k) per batch, averaged by batch size: ``hitrate01``, ``/std``, ..."""

    score = staticmethod(hitrate)
    score_name = "hitrate"


class MRRMetric(_RankingMetric):
    """Mean reciprocal rank per batch, averaged by batch size: ``mrr01``, ``/std``, ..."""

    score = staticmethod(mrr)
    score_name = "mrr"


class MAPMetric(_RankingMetric):
    """Mean average precision per batch, averaged by batch size: ``map01``, ``/std``, ..."""

    score = staticmethod(mean_average_precision)
    score_name = "map"


class NDCGMetric(_RankingMetric):
    """NDCG (``exp_rank`` gains) per batch, averaged by batch size: ``ndcg01``, ``/std``, ..."""

    score = staticmethod(ndcg)
    score_name = "ndcg"


__all__ = [
    "AccumulativeMetric",
    "CMCMetric",
    "HitrateMetric",
    "MAPMetric",
    "MRRMetric",
    "NDCGMetric",
    "ReidCMCMetric",
    "average_precision",
    "check_consistent_length",
    "cmc_score",
    "cmc_score_count",
    "dcg",
    "hitrate",
    "masked_cmc_score",
    "mean_average_precision",
    "mrr",
    "ndcg",
    "process_recsys_components",
    "reciprocal_rank",
]
