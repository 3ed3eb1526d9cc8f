"""Region-based segmentation metrics of Catalyst 22.04: IoU, Dice, Trevsky (objects and
functional forms), from per-class true-positive, false-positive and false-negative sums.

The sums are soft, as in Catalyst: without a ``threshold`` the outputs are multiplied with the
targets as they are (probabilities, even logits), so torchmetrics' stat scores (which want
0/1 or thresholded predictions) do not give them; plain tensor sums do. A class with an empty
union (no target, no prediction) scores 1 (``eps / eps``), not 0 or NaN.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, ClassVar

import torch

from eventrunner.catalyst.metrics._base import ICallbackBatchMetric

_MODES = ("per-class", "micro", "macro", "weighted")


def get_segmentation_statistics(
    outputs: torch.Tensor,
    targets: torch.Tensor,
    class_dim: int = 1,
    threshold: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-class ``(tp, fp, fn)`` summed over every dimension but ``class_dim``.

    With ``threshold``, outputs become ``outputs > threshold``; without, they count as given.
    """
    if outputs.shape != targets.shape:
        raise ValueError(
            f"get_segmentation_statistics: outputs {tuple(outputs.shape)} and targets "
            f"{tuple(targets.shape)} must have the same shape"
        )
    if threshold is not None:
        outputs = (outputs > threshold).float()
    dims = list(range(outputs.dim()))
    dims.pop(class_dim if class_dim >= 0 else outputs.dim() + class_dim)
    tp = torch.sum(outputs * targets, dim=dims)
    fp = torch.sum(outputs * (1 - targets), dim=dims)
    fn = torch.sum(targets * (1 - outputs), dim=dims)
    return tp, fp, fn


def _empty(tp: Any, fp: Any, fn: Any) -> Any:
    """1.0 where the union is empty: the ``eps`` that makes such a class score ``eps / eps``."""
    return ((tp + fp + fn) == 0).float()


def _iou(tp: Any, fp: Any, fn: Any, eps: float = 1e-7) -> Any:
    return (tp + eps * _empty(tp, fp, fn)) / (tp + fp + fn + eps)


def _dice(tp: Any, fp: Any, fn: Any, eps: float = 1e-7) -> Any:
    return (2 * tp + eps * _empty(tp, fp, fn)) / (2 * tp + fp + fn + eps)


def _trevsky(tp: Any, fp: Any, fn: Any, alpha: float, beta: float, eps: float = 1e-7) -> Any:
    return (tp + eps * _empty(tp, fp, fn)) / (tp + fp * beta + fn * alpha + eps)


def _trevsky_beta(alpha: float, beta: float | None) -> float:
    if beta is None:
        if not 0 < alpha < 1:
            raise ValueError(f"trevsky: with beta=None, alpha must be in (0, 1), got {alpha}")
        return 1 - alpha
    return beta


def _region_based(
    outputs: torch.Tensor,
    targets: torch.Tensor,
    metric_fn: Callable[..., torch.Tensor],
    class_dim: int,
    threshold: float | None,
    mode: str,
    weights: Sequence[float] | None,
) -> torch.Tensor:
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
    tp, fp, fn = get_segmentation_statistics(outputs, targets, class_dim, threshold)
    if mode == "micro":  # all classes as one
        return metric_fn(tp.sum(), fp.sum(), fn.sum())
    per_class = metric_fn(tp, fp, fn)
    if mode == "macro":
        return per_class.mean()
    if mode == "weighted":
        if weights is None or len(weights) != len(per_class):
            raise ValueError(
                f"mode='weighted' needs one weight per class ({len(per_class)}), got {weights!r}"
            )
        return torch.sum(torch.tensor(weights).to(per_class.device) * per_class)
    return per_class


def iou(
    outputs: torch.Tensor,
    targets: torch.Tensor,
    class_dim: int = 1,
    threshold: float | None = None,
    mode: str = "per-class",
    weights: Sequence[float] | None = None,
    eps: float = 1e-7,
) -> torch.Tensor:
    """IoU (Jaccard) ``tp / (tp + fp + fn)`` per class, or ``micro``/``macro``/``weighted``."""
    metric_fn = partial(_iou, eps=eps)
    return _region_based(outputs, targets, metric_fn, class_dim, threshold, mode, weights)


def dice(
    outputs: torch.Tensor,
    targets: torch.Tensor,
    class_dim: int = 1,
    threshold: float | None = None,
    mode: str = "per-class",
    weights: Sequence[float] | None = None,
    eps: float = 1e-7,
) -> torch.Tensor:
    """Dice ``2tp / (2tp + fp + fn)`` per class, or ``micro``/``macro``/``weighted``."""
    metric_fn = partial(_dice, eps=eps)
    return _region_based(outputs, targets, metric_fn, class_dim, threshold, mode, weights)


def trevsky(
    outputs: torch.Tensor,
    targets: torch.Tensor,
    alpha: float,
    beta: float | None = None,
    class_dim: int = 1,
    threshold: float | None = None,
    mode: str = "per-class",
    weights: Sequence[float] | None = None,
    eps: float = 1e-7,
) -> torch.Tensor:
    """Trevsky ``tp / (tp + beta fp + alpha fn)``; ``beta`` defaults to ``1 - alpha``."""
    metric_fn = partial(_trevsky, alpha=alpha, beta=_trevsky_beta(alpha, beta), eps=eps)
    return _region_based(outputs, targets, metric_fn, class_dim, threshold, mode, weights)


class RegionBasedMetric(ICallbackBatchMetric):
    """Per-class ``tp``/``fp``/``fn`` sums over batches and a score of them.

    Batch keys: ``{prefix}{name}{suffix}`` (the batch's macro mean), one per class
    (``.../class_00`` or ``.../<class name>``) and ``.../_weighted`` with ``weights``.
    Loader keys: the per-class ones only with ``compute_per_class_metrics``, then
    ``.../_micro``, the macro mean under the bare name and ``.../_macro``, and
    ``.../_weighted`` with ``weights``. The number of classes is fixed by the first update.
    """

    def __init__(
        self,
        metric_fn: Callable[..., torch.Tensor],
        metric_name: str,
        class_dim: int = 1,
        weights: Sequence[float] | None = None,
        class_names: Sequence[str] | None = None,
        threshold: float | None = 0.5,
        compute_on_call: bool = True,
        compute_per_class_metrics: bool = False,
        prefix: str | None = None,
        suffix: str | None = None,
    ) -> None:
        super().__init__(compute_on_call=compute_on_call, prefix=prefix, suffix=suffix)
        self.metric_fn = metric_fn
        self.metric_name = metric_name
        self.class_dim = class_dim
        self.threshold = threshold
        self.compute_per_class_metrics = compute_per_class_metrics
        self.weights = list(weights) if weights is not None else None
        self.class_names = list(class_names) if class_names is not None else None
        self._checked_params = False
        self.statistics: dict[int, dict[str, torch.Tensor]] = {}

    @property
    def _name(self) -> str:
        return f"{self.prefix}{self.metric_name}{self.suffix}"

    def _check_parameters(self, num_classes: int) -> None:
        if self.class_names is None:
            self.class_names = [f"class_{i:02d}" for i in range(num_classes)]
        elif len(self.class_names) != num_classes:
            raise ValueError(
                f"{type(self).__name__}: {len(self.class_names)} class_names for "
                f"{num_classes} classes (dim {self.class_dim} of the outputs)"
            )
        if self.weights is not None and len(self.weights) != num_classes:
            raise ValueError(
                f"{type(self).__name__}: {len(self.weights)} weights for {num_classes} classes "
                f"(dim {self.class_dim} of the outputs)"
            )
        self._checked_params = True

    def reset(self) -> None:
        self.statistics = {}

    def update(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Adds a batch's sums; returns the batch's score per class."""
        tp, fp, fn = get_segmentation_statistics(
            outputs.detach().cpu(), targets.detach().cpu(), self.class_dim, self.threshold
        )
        for idx, counts in enumerate(zip(tp, fp, fn, strict=True)):
            stats = self.statistics.setdefault(idx, {})
            for name, value in zip(("tp", "fp", "fn"), counts, strict=True):
                stats[name] = stats[name] + value if name in stats else value.clone()
        if not self._checked_params:  # once per metric, as Catalyst: the first batch decides
            self._check_parameters(len(tp))
        return self.metric_fn(tp, fp, fn)

    def update_key_value(
        self, outputs: torch.Tensor, targets: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        per_class = self.update(outputs, targets)
        assert self.class_names is not None  # set by the first update
        output = {f"{self._name}/{self.class_names[i]}": v for i, v in enumerate(per_class)}
        output[self._name] = torch.mean(per_class)
        if self.weights is not None:
            weighted: Any = 0
            for value, weight in zip(per_class, self.weights, strict=True):
                weighted = weighted + value * weight
            output[f"{self._name}/_weighted"] = weighted
        return output

    def compute(self) -> tuple[list[torch.Tensor], Any, Any, Any]:
        """``(per_class, micro, macro, weighted)``; ``per_class`` is ``[]`` unless
        ``compute_per_class_metrics``, ``weighted`` is None without ``weights``."""
        if not self.statistics:
            raise RuntimeError(f"{type(self).__name__}.compute(): no update since reset()")
        per_class, totals = [], {}
        macro: Any = 0
        weighted: Any = 0
        for idx, stats in self.statistics.items():
            value = self.metric_fn(**stats)
            per_class.append(value)
            macro = macro + value
            if self.weights is not None:
                weighted = weighted + value * self.weights[idx]
            for name, count in stats.items():
                totals[name] = totals.get(name, 0) + count
        macro = macro / len(self.statistics)
        micro = self.metric_fn(**totals)
        return (
            per_class if self.compute_per_class_metrics else [],
            micro,
            macro,
            weighted if self.weights is not None else None,
        )

    def compute_key_value(self) -> dict[str, torch.Tensor]:
        per_class, micro, macro, weighted = self.compute()
        assert self.class_names is not None
        output = {f"{self._name}/{self.class_names[i]}": v for i, v in enumerate(per_class)}
        output[f"{self._name}/_micro"] = micro
        output[self._name] = macro
        output[f"{self._name}/_macro"] = macro
        if weighted is not None:
            output[f"{self._name}/_weighted"] = weighted
        return output


class _OverlapMetric(RegionBasedMetric):
    """A region-based score of the per-class counts (``score``, named ``score_name``), with
    Catalyst's arguments."""

    score: ClassVar[Callable[..., Any]]
    score_name: ClassVar[str]

    def __init__(
        self,
        class_dim: int = 1,
        weights: Sequence[float] | None = None,
        class_names: Sequence[str] | None = None,
        threshold: float | None = None,
        eps: float = 1e-7,
        compute_on_call: bool = True,
        compute_per_class_metrics: bool = False,
        prefix: str | None = None,
        suffix: str | None = None,
    ) -> None:
        super().__init__(
            metric_fn=partial(type(self).score, eps=eps),
            metric_name=self.score_name,
            class_dim=class_dim,
            weights=weights,
            class_names=class_names,
            threshold=threshold,
            compute_on_call=compute_on_call,
            compute_per_class_metrics=compute_per_class_metrics,
            prefix=prefix,
            suffix=suffix,
        )


class IOUMetric(_OverlapMetric):
    """IoU ``tp / (tp + fp + fn)`` over batches; keys ``iou``, ``iou/_micro``, ..."""

    score = staticmethod(_iou)
    score_name = "iou"


class DiceMetric(_OverlapMetric):
    """Dice ``2tp / (2tp + fp + fn)`` over batches; keys ``dice``, ``dice/_micro``, ..."""

    score = staticmethod(_dice)
    score_name = "dice"


class TrevskyMetric(RegionBasedMetric):
    """Trevsky ``tp / (tp + beta fp + alpha fn)`` over batches (``beta`` defaults to
    ``1 - alpha``); keys ``trevsky``, ``trevsky/_micro``, ..."""

    def __init__(
        self,
        alpha: float,
        beta: float | None = None,
        class_dim: int = 1,
        weights: Sequence[float] | None = None,
        class_names: Sequence[str] | None = None,
        threshold: float | None = None,
        eps: float = 1e-7,
        compute_on_call: bool = True,
        compute_per_class_metrics: bool = False,
        prefix: str | None = None,
        suffix: str | None = None,
    ) -> None:
        beta = _trevsky_beta(alpha, beta)
        super().__init__(
            metric_fn=partial(_trevsky, alpha=alpha, beta=beta, eps=eps),
            metric_name="trevsky",
            class_dim=class_dim,
            weights=weights,
            class_names=class_names,
            threshold=threshold,
            compute_on_call=compute_on_call,
            compute_per_class_metrics=compute_per_class_metrics,
            prefix=prefix,
            suffix=suffix,
        )


__all__ = [
    "DiceMetric",
    "IOUMetric",
    "RegionBasedMetric",
    "TrevskyMetric",
    "dice",
    "get_segmentation_statistics",
    "iou",
    "trevsky",
]
