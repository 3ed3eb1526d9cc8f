"""Catalyst 22.04's metric callbacks as eventrunner subscribers, with Catalyst's keys and values.

Each callback updates its metric per batch at ``Order.METRIC`` (batch values go to
``runner.batch_metrics``, which the aggregation at order 20 averages) and, at ``loader_end``,
writes the metric's loader values into ``runner.loader_metrics`` from a part at order 21:
after the aggregation, so that a loader-level value (precision over the whole loader, AUC)
replaces the batch mean of the same key, as in Catalyst. Inputs are read by key from
``runner.output`` first, then from the batch (Catalyst merges the two).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import torch

from eventrunner.catalyst.metrics import (
    AccuracyMetric,
    AUCMetric,
    ICallbackBatchMetric,
    ICallbackLoaderMetric,
    MulticlassPrecisionRecallF1SupportMetric,
    MultilabelAccuracyMetric,
    MultilabelPrecisionRecallF1SupportMetric,
    TopKMetric,
)
from eventrunner.catalyst.metrics._classification import _PrecisionRecallF1SupportMetric
from eventrunner.events import Callback, Order
from eventrunner.metrics import as_number

if TYPE_CHECKING:
    from eventrunner.state import RunState

Keys = str | Iterable[str] | Mapping[str, str]

#: After the batch-mean aggregation (order 20): loader values replace batch means.
LOADER_VALUES_ORDER = Order.METRIC_AGGREGATION + 1


def _as_mapping(keys: Keys) -> dict[str, str]:
    """Catalyst's key forms as ``{run key: metric argument name}``."""
    if isinstance(keys, str):
        return {keys: keys}
    if isinstance(keys, Mapping):
        return dict(keys)
    return {key: key for key in keys}


def _read(runner: RunState, key: str) -> Any:
    output = runner.output
    if isinstance(output, Mapping) and key in output:
        value = output[key]
    elif isinstance(runner.batch, Mapping) and key in runner.batch:
        value = runner.batch[key]
    else:
        outputs = sorted(output) if isinstance(output, Mapping) else type(output).__name__
        batch = sorted(runner.batch) if isinstance(runner.batch, Mapping) else "not a dict"
        raise KeyError(
            f"key {key!r} is in neither runner.output ({outputs}) nor the batch ({batch}) "
            f"of loader {runner.loader_key!r}"
        )
    # The metrics keep no graph: accumulating outputs with grad would keep every batch alive.
    return value.detach() if isinstance(value, torch.Tensor) else value


def _number(value: Any) -> Any:
    number = as_number(value)
    return value if number is None else number


def _known_keys(metric: Any) -> tuple[str, ...]:
    """The keys a built-in metric writes, for ``writes``; () for a metric of the user's."""
    if isinstance(metric, TopKMetric):
        names = [metric._key(k) for k in metric.topk]
        return (*names, *(f"{name}/std" for name in names))
    if isinstance(metric, MultilabelAccuracyMetric):
        return (metric.metric_name_mean, metric.metric_name_std)
    if isinstance(metric, _PrecisionRecallF1SupportMetric):
        keys = [
            f"{name}/{aggregation}"
            for aggregation in ("_micro", "_macro", "_weighted")
            for name in ("precision", "recall", "f1")
        ]
        if metric.compute_per_class_metrics and metric.num_classes:
            keys += [
                f"{name}/class_{i:02d}"
                for name in ("precision", "recall", "f1", "support")
                for i in range(metric.num_classes)
            ]
        return tuple(keys)
    if isinstance(metric, AUCMetric):  # per-class keys: the number of classes is not known yet
        name = metric.metric_name
        return (name, f"{name}/_micro", f"{name}/_macro", f"{name}/_weighted")
    return ()


class _LoaderValues(Callback):
    """The part of a metric callback that writes the loader values, after the aggregation."""

    def __init__(self, owner: _MetricCallback) -> None:
        super().__init__(order=LOADER_VALUES_ORDER)
        self.owner = owner
        keys = _known_keys(owner.metric)
        self.writes = {"loader_end": tuple(f"loader_metrics.{key}" for key in keys)}

    def describe_name(self) -> str:
        return f"{self.owner.describe_name()}.loader_values"

    def on_loader_end(self, runner: RunState) -> None:
        values = self.owner.metric.compute_key_value()
        runner.loader_metrics.update({key: _number(value) for key, value in values.items()})


class _MetricCallback(Callback):
    """Reads the metric's inputs by key: two names (positional ``update(input, target)``) or
    two lists/dicts of names (``update(**{argument: value})``), as Catalyst does."""

    def __init__(self, metric: Any, input_key: Keys, target_key: Keys) -> None:
        super().__init__(order=Order.METRIC)
        if isinstance(input_key, str) != isinstance(target_key, str):
            raise TypeError(
                f"{type(self).__name__}: input_key and target_key must both be names or both "
                f"lists/dicts of names, got {input_key!r} and {target_key!r}"
            )
        self.metric = metric
        self.input_key = input_key
        self.target_key = target_key
        self._keys = {**_as_mapping(input_key), **_as_mapping(target_key)}

    def parts(self) -> tuple[Callback, ...]:
        return (self, _LoaderValues(self))

    def _update(self, runner: RunState, update: Any) -> Any:
        if isinstance(self.input_key, str):
            return update(_read(runner, self.input_key), _read(runner, self.target_key))
        return update(**{name: _read(runner, key) for key, name in self._keys.items()})


class BatchMetricCallback(_MetricCallback):
    """A batch metric (``update_key_value`` per batch, ``compute_key_value`` per loader).

    Example: ``BatchMetricCallback(AccuracyMetric(topk=(1, 3)), "logits", "targets")``;
    ``log_on_batch=False`` keeps the batch values out of ``runner.batch_metrics``.
    """

    def __init__(
        self,
        metric: ICallbackBatchMetric,
        input_key: Keys,
        target_key: Keys,
        log_on_batch: bool = True,
    ) -> None:
        if not isinstance(metric, ICallbackBatchMetric):
            raise TypeError(
                f"BatchMetricCallback: expected an ICallbackBatchMetric, got {metric!r}"
            )
        super().__init__(metric, input_key, target_key)
        self.log_on_batch = log_on_batch
        keys = _known_keys(metric) if log_on_batch else ()
        self.writes = {"batch_end": tuple(f"batch_metrics.{key}" for key in keys)}

    def on_loader_start(self, runner: RunState) -> None:
        self.metric.reset()

    def on_batch_end(self, runner: RunState) -> None:
        values = self._update(runner, self.metric.update_key_value)
        if self.log_on_batch:
            runner.batch_metrics.update(values)


class LoaderMetricCallback(_MetricCallback):
    """A loader metric: accumulates the whole loader, computes at loader end.

    Example: ``LoaderMetricCallback(AUCMetric(), "scores", "targets")``.
    """

    def __init__(self, metric: ICallbackLoaderMetric, input_key: Keys, target_key: Keys) -> None:
        if not isinstance(metric, ICallbackLoaderMetric):
            raise TypeError(
                f"LoaderMetricCallback: expected an ICallbackLoaderMetric, got {metric!r}"
            )
        super().__init__(metric, input_key, target_key)

    def on_loader_start(self, runner: RunState) -> None:
        dataset = getattr(runner.loader, "dataset", None)
        samples = len(dataset) if hasattr(dataset, "__len__") else None
        self.metric.reset(num_batches=runner.loader_batch_len, num_samples=samples)

    def on_batch_end(self, runner: RunState) -> None:
        self._update(runner, self.metric.update)


class AccuracyCallback(BatchMetricCallback):
    """Top-k accuracy: ``accuracy01``, ``accuracy01/std``, ... (``{prefix}accuracy01{suffix}``)."""

    def __init__(
        self,
        input_key: str,
        target_key: str,
        topk: Iterable[int] | None = None,
        num_classes: int | None = None,
        log_on_batch: bool = True,
        prefix: str | None = None,
        suffix: str | None = None,
    ) -> None:
        metric = AccuracyMetric(topk=topk, num_classes=num_classes, prefix=prefix, suffix=suffix)
        super().__init__(metric, input_key, target_key, log_on_batch=log_on_batch)


class MultilabelAccuracyCallback(BatchMetricCallback):
    """Multilabel accuracy at ``threshold``: ``accuracy``, ``accuracy/std``."""

    def __init__(
        self,
        input_key: str,
        target_key: str,
        threshold: float | torch.Tensor = 0.5,
        log_on_batch: bool = True,
        prefix: str | None = None,
        suffix: str | None = None,
    ) -> None:
        metric = MultilabelAccuracyMetric(threshold=threshold, prefix=prefix, suffix=suffix)
        super().__init__(metric, input_key, target_key, log_on_batch=log_on_batch)


class PrecisionRecallF1SupportCallback(BatchMetricCallback):
    """Multiclass precision, recall, F1 (``precision/_micro``, ...; per class on request),
    the loader values from counts over the whole loader."""

    metric_class: type[_PrecisionRecallF1SupportMetric] = MulticlassPrecisionRecallF1SupportMetric

    def __init__(
        self,
        input_key: str,
        target_key: str,
        num_classes: int | None = None,
        zero_division: int = 0,
        log_on_batch: bool = True,
        compute_per_class_metrics: bool = False,
        prefix: str | None = None,
        suffix: str | None = None,
    ) -> None:
        metric = self.metric_class(
            zero_division=zero_division,
            prefix=prefix,
            suffix=suffix,
            compute_per_class_metrics=compute_per_class_metrics,
            num_classes=num_classes,
        )
        super().__init__(metric, input_key, target_key, log_on_batch=log_on_batch)


class MultilabelPrecisionRecallF1SupportCallback(PrecisionRecallF1SupportCallback):
    """Multilabel precision, recall, F1 of 0/1 predictions, keys as the multiclass one."""

    metric_class = MultilabelPrecisionRecallF1SupportMetric


class AUCCallback(LoaderMetricCallback):
    """ROC-AUC over the whole loader: ``auc`` (macro), ``auc/_micro``, ``auc/_macro``, ...

    Catalyst refuses it under fp16 AMP; scores are accumulated as given.
    """

    def __init__(
        self,
        input_key: str,
        target_key: str,
        compute_per_class_metrics: bool = False,
        prefix: str | None = None,
        suffix: str | None = None,
    ) -> None:
        metric = AUCMetric(
            compute_per_class_metrics=compute_per_class_metrics, prefix=prefix, suffix=suffix
        )
        super().__init__(metric, input_key, target_key)


__all__ = [
    "AUCCallback",
    "AccuracyCallback",
    "BatchMetricCallback",
    "LoaderMetricCallback",
    "MultilabelAccuracyCallback",
    "MultilabelPrecisionRecallF1SupportCallback",
    "PrecisionRecallF1SupportCallback",
]
