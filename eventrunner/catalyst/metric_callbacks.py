"""More of Catalyst 22.04's metric callbacks: segmentation (IoU, Dice, Trevsky), R², CMC,
the recsys metrics (hitrate, MRR, MAP, NDCG) and the confusion matrix.

They are :class:`~eventrunner.catalyst.callbacks.BatchMetricCallback` or
:class:`~eventrunner.catalyst.callbacks.LoaderMetricCallback` with Catalyst's metric and
arguments, so batch values go to ``runner.batch_metrics`` at ``Order.METRIC`` and the metric's
loader values replace the batch means in ``runner.loader_metrics`` after the aggregation.

``ConfusionMatrixCallback`` differs from Catalyst's, which plots the matrix and logs the image:
eventrunner's loggers take no images, so the matrix of each loader's last epoch is kept on the
callback, ``callback.matrices[loader_key]`` (a NumPy array, rows the true classes), and nothing
goes to ``loader_metrics`` (the loggers there expect scalars).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from eventrunner.catalyst.callbacks import (
    BatchMetricCallback,
    LoaderMetricCallback,
    _LoaderValues,
    _read,
)
from eventrunner.catalyst.metrics import (
    CMCMetric,
    ConfusionMatrixMetric,
    DiceMetric,
    HitrateMetric,
    IOUMetric,
    MAPMetric,
    MRRMetric,
    NDCGMetric,
    R2Squared,
    ReidCMCMetric,
    TrevskyMetric,
)
from eventrunner.catalyst.metrics._accuracy import TopKMetric
from eventrunner.catalyst.metrics._segmentation import RegionBasedMetric
from eventrunner.events import Callback, Order

if TYPE_CHECKING:
    from eventrunner.state import RunState


def _declare_loader_writes(parts: tuple[Callback, ...], keys: Iterable[str]) -> None:
    """Declares the loader keys on the loader-values part (the base class knows only its own
    metrics' keys)."""
    parts[1].writes = {"loader_end": tuple(f"loader_metrics.{key}" for key in keys)}


# ----------------------------------------------------------------------------- segmentation


class _RegionBasedCallback(BatchMetricCallback):
    """Declares the keys a region-based metric writes: per class only when the class names
    are given (otherwise their number is known at the first batch only)."""

    metric: RegionBasedMetric

    def __init__(
        self, metric: RegionBasedMetric, input_key: str, target_key: str, log_on_batch: bool
    ):
        super().__init__(metric, input_key, target_key, log_on_batch=log_on_batch)
        name, names = metric._name, metric.class_names or []
        weighted = [f"{name}/_weighted"] if metric.weights is not None else []
        per_class = [f"{name}/{class_name}" for class_name in names]
        batch = [*per_class, name, *weighted] if log_on_batch else []
        self.writes = {"batch_end": tuple(f"batch_metrics.{key}" for key in batch)}
        loader_per_class = per_class if metric.compute_per_class_metrics else []
        self._loader_keys = (*loader_per_class, f"{name}/_micro", name, f"{name}/_macro", *weighted)

    def parts(self) -> tuple[Callback, ...]:
        parts = (self, _RegionBasedLoaderValues(self))
        _declare_loader_writes(parts, self._loader_keys)
        return parts


class _RegionBasedLoaderValues(_LoaderValues):
    """Writes the loader values and drops the batch means of the per-class keys that the
    aggregation made: Catalyst logs those per batch only, its loader has them only with
    ``compute_per_class_metrics`` (then as loader values)."""

    owner: _RegionBasedCallback

    def on_loader_end(self, runner: RunState) -> None:
        super().on_loader_end(runner)
        metric = self.owner.metric
        if not metric.compute_per_class_metrics:
            for class_name in metric.class_names or ():
                runner.loader_metrics.pop(f"{metric._name}/{class_name}", None)


class _OverlapCallback(_RegionBasedCallback):
    """A region-based metric without parameters of its own (``metric_class``), with
    Catalyst's arguments."""

    metric_class: ClassVar[type[RegionBasedMetric]]

    def __init__(
        self,
        input_key: str,
        target_key: str,
        class_dim: int = 1,
        weights: Sequence[float] | None = None,
        class_names: Sequence[str] | None = None,
        threshold: float | None = None,
        log_on_batch: bool = True,
        compute_per_class_metrics: bool = False,
        prefix: str | None = None,
        suffix: str | None = None,
    ) -> None:
        metric = self.metric_class(
            class_dim=class_dim,
            weights=weights,
            class_names=class_names,
            threshold=threshold,
            compute_per_class_metrics=compute_per_class_metrics,
            prefix=prefix,
            suffix=suffix,
        )
        super().__init__(metric, input_key, target_key, log_on_batch)


class IOUCallback(_OverlapCallback):
    """IoU over the loader's per-class sums: ``iou`` (macro), ``iou/_micro``, ``iou/_macro``,
    ``iou/_weighted`` with ``weights``, per class with ``compute_per_class_metrics``; each
    batch logs its ``iou`` and per-class values."""

    metric_class = IOUMetric


class DiceCallback(_OverlapCallback):
    """Dice over the loader's per-class sums; keys as :class:`IOUCallback` with ``dice``."""

    metric_class = DiceMetric


class TrevskyCallback(_RegionBasedCallback):
    """Trevsky over the loader's per-class sums; keys as :class:`IOUCallback` with
    ``trevsky``; ``beta`` defaults to ``1 - alpha``."""

    def __init__(
        self,
        input_key: str,
        target_key: str,
        alpha: float,
        beta: float | None = None,
        class_dim: int = 1,
        weights: Sequence[float] | None = None,
        class_names: Sequence[str] | None = None,
        threshold: float | None = None,
        log_on_batch: bool = True,
        compute_per_class_metrics: bool = False,
        prefix: str | None = None,
        suffix: str | None = None,
    ) -> None:
        metric = TrevskyMetric(
            alpha=alpha,
            beta=beta,
            class_dim=class_dim,
            weights=weights,
            class_names=class_names,
            threshold=threshold,
            compute_per_class_metrics=compute_per_class_metrics,
            prefix=prefix,
            suffix=suffix,
        )
        super().__init__(metric, input_key, target_key, log_on_batch)


# ----------------------------------------------------------------------------- regression


class R2SquaredCallback(LoaderMetricCallback):
    """R² over the whole loader: ``{prefix}r2squared{suffix}``."""

    def __init__(
        self, input_key: str, target_key: str, prefix: str | None = None, suffix: str | None = None
    ) -> None:
        super().__init__(R2Squared(prefix=prefix, suffix=suffix), input_key, target_key)

    def parts(self) -> tuple[Callback, ...]:
        parts = super().parts()
        _declare_loader_writes(parts, (self.metric.metric_name,))
        return parts


# ----------------------------------------------------------------------------- retrieval


class _SingleProcessCallback(LoaderMetricCallback):
    """Refuses a DDP run, as Catalyst does: the gallery would be split over the processes."""

    def on_experiment_start(self, runner: RunState) -> None:
        if getattr(runner, "ddp", False):
            raise RuntimeError(f"{type(self).__name__} does not work under DDP training")

    def parts(self) -> tuple[Callback, ...]:
        parts = super().parts()
        metric = self.metric
        keys = [f"{metric.prefix}cmc{k:02d}{metric.suffix}" for k in metric.topk]
        _declare_loader_writes(parts, keys)
        return parts


class CMCScoreCallback(_SingleProcessCallback):
    """CMC@k over the loader (``cmc01``, ...): rows with ``is_query_key == 1`` are queries,
    the others the gallery; all three keys are read from the output or the batch."""

    def __init__(
        self,
        embeddings_key: str,
        labels_key: str,
        is_query_key: str,
        topk: Iterable[int] | None = None,
        prefix: str | None = None,
        suffix: str | None = None,
    ) -> None:
        metric = CMCMetric(
            embeddings_key=embeddings_key,
            labels_key=labels_key,
            is_query_key=is_query_key,
            topk=topk,
            prefix=prefix,
            suffix=suffix,
        )
        super().__init__(metric, [embeddings_key, is_query_key], [labels_key])


class ReidCMCScoreCallback(_SingleProcessCallback):
    """Re-identification CMC@k: person ids conform, same person and camera left out."""

    def __init__(
        self,
        embeddings_key: str,
        pids_key: str,
        cids_key: str,
        is_query_key: str,
        topk: Iterable[int] | None = None,
        prefix: str | None = None,
        suffix: str | None = None,
    ) -> None:
        metric = ReidCMCMetric(
            embeddings_key=embeddings_key,
            pids_key=pids_key,
            cids_key=cids_key,
            is_query_key=is_query_key,
            topk=topk,
            prefix=prefix,
            suffix=suffix,
        )
        super().__init__(metric, [embeddings_key, is_query_key], [pids_key, cids_key])


class _TopKCallback(BatchMetricCallback):
    """A top-k retrieval metric per batch (``metric_class``), with Catalyst's arguments."""

    metric_class: ClassVar[type[TopKMetric]]

    def __init__(
        self,
        input_key: str,
        target_key: str,
        topk: Iterable[int] | None = None,
        log_on_batch: bool = True,
        prefix: str | None = None,
        suffix: str | None = None,
    ) -> None:
        metric = self.metric_class(topk=topk, prefix=prefix, suffix=suffix)
        super().__init__(metric, input_key, target_key, log_on_batch=log_on_batch)


class HitrateCallback(_TopKCallback):
    """Hitrate (recall@k) per batch, averaged by batch size: ``hitrate01``, ``/std``, ..."""

    metric_class = HitrateMetric


class MAPCallback(_TopKCallback):
    """Mean average precision per batch, averaged by batch size: ``map01``, ``/std``, ..."""

    metric_class = MAPMetric


class MRRCallback(_TopKCallback):
    """Mean reciprocal rank per batch, averaged by batch size: ``mrr01``, ``/std``, ..."""

    metric_class = MRRMetric


class NDCGCallback(_TopKCallback):
    """NDCG per batch, averaged by batch size: ``ndcg01``, ``/std``, ..."""

    metric_class = NDCGMetric


# ----------------------------------------------------------------------------- confusion


class ConfusionMatrixCallback(Callback):
    """The confusion matrix of each loader, kept in ``matrices[loader_key]`` at loader end.

    Arguments are Catalyst's: ``num_classes`` or ``class_names`` (which then sets it),
    ``normalize`` (rows sum to 1), ``prefix`` (the tag, ``"confusion_matrix"`` by default).
    ``plot_params`` is accepted and kept for a plotting subscriber: nothing is drawn here.
    """

    def __init__(
        self,
        input_key: str,
        target_key: str,
        prefix: str | None = None,
        class_names: Sequence[str] | None = None,
        num_classes: int | None = None,
        normalize: bool = False,
        plot_params: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(order=Order.METRIC)
        if class_names is not None:
            num_classes = len(class_names)
        elif num_classes is None:
            raise ValueError("ConfusionMatrixCallback: give num_classes or class_names")
        self.prefix = prefix or "confusion_matrix"
        self.input_key = input_key
        self.target_key = target_key
        self.plot_params = dict(plot_params or {})
        self.num_classes = num_classes
        self.class_names = list(class_names or (f"class_{i:02d}" for i in range(self.num_classes)))
        self.normalize = normalize
        self.confusion_matrix = ConfusionMatrixMetric(self.num_classes, normalize=normalize)
        #: loader key -> the matrix of that loader's last epoch (rows true, columns predicted)
        self.matrices: dict[str, np.ndarray] = {}

    def on_loader_start(self, runner: RunState) -> None:
        self.confusion_matrix.reset()

    def on_batch_end(self, runner: RunState) -> None:
        self.confusion_matrix.update(_read(runner, self.input_key), _read(runner, self.target_key))

    def on_loader_end(self, runner: RunState) -> None:
        self.matrices[runner.loader_key] = self.confusion_matrix.compute().copy()


__all__ = [
    "CMCScoreCallback",
    "ConfusionMatrixCallback",
    "DiceCallback",
    "HitrateCallback",
    "IOUCallback",
    "MAPCallback",
    "MRRCallback",
    "NDCGCallback",
    "R2SquaredCallback",
    "ReidCMCScoreCallback",
    "TrevskyCallback",
]
