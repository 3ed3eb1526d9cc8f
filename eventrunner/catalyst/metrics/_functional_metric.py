"""Catalyst 22.04's functional metrics: a plain function as a batch or a loader metric.

``FunctionalBatchMetric`` averages a per-batch value over the loader (weighted by batch size,
as ``AdditiveMetric`` does); ``FunctionalLoaderMetric`` stores the loader's inputs
(``AccumulativeMetric``: the batches concatenated, where Catalyst fills ``num_samples``
preallocated rows: the same values when a loader covers its dataset) and calls the function
once on all of them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from eventrunner.catalyst.metrics._additive import AdditiveMetric
from eventrunner.catalyst.metrics._base import ICallbackBatchMetric, ICallbackLoaderMetric
from eventrunner.catalyst.metrics._retrieval import AccumulativeMetric


class FunctionalBatchMetric(ICallbackBatchMetric):
    """``metric_fn(*args, **kwargs)`` per batch, averaged over the loader by batch size.

    ``update(batch_size, *args, **kwargs)`` returns the batch's value; ``compute_key_value()``
    gives ``{name: mean, name/mean: mean, name/std: std}`` with ``name =
    {prefix}{metric_key}{suffix}``.

    Example::

        metric = FunctionalBatchMetric(metric_fn=mae, metric_key="mae")
        metric.reset()
        metric.update(len(preds), preds, targets)
        metric.compute_key_value()  # {"mae": ..., "mae/mean": ..., "mae/std": ...}
    """

    def __init__(
        self,
        metric_fn: Callable[..., Any],
        metric_key: str,
        compute_on_call: bool = True,
        prefix: str | None = None,
        suffix: str | None = None,
    ) -> None:
        super().__init__(compute_on_call=compute_on_call, prefix=prefix, suffix=suffix)
        if not callable(metric_fn):
            raise TypeError(f"FunctionalBatchMetric: metric_fn must be callable, got {metric_fn!r}")
        self.metric_fn = metric_fn
        self.metric_name = f"{self.prefix}{metric_key}{self.suffix}"
        self.additive_metric = AdditiveMetric()

    def reset(self) -> None:
        self.additive_metric.reset()

    def update(self, batch_size: int, *args: Any, **kwargs: Any) -> Any:
        value = self.metric_fn(*args, **kwargs)
        self.additive_metric.update(float(value), batch_size)
        return value

    def update_key_value(self, batch_size: int, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return {self.metric_name: self.update(batch_size, *args, **kwargs)}

    def compute(self) -> tuple[float, float]:
        """``(mean, std)`` of the batch values, weighted by batch size."""
        return self.additive_metric.compute()

    def compute_key_value(self) -> dict[str, float]:
        mean, std = self.compute()
        return {
            self.metric_name: mean,
            f"{self.metric_name}/mean": mean,
            f"{self.metric_name}/std": std,
        }


class FunctionalLoaderMetric(ICallbackLoaderMetric):
    """``metric_fn(**inputs)`` once per loader, on the ``accumulative_fields`` of every batch.

    Example (with ``LoaderMetricCallback(metric, input_key={"logits": "y_score"},
    target_key={"targets": "y_true"})``)::

        FunctionalLoaderMetric(metric_fn=roc_auc, metric_key="auc",
                               accumulative_fields=["y_score", "y_true"])
    """

    def __init__(
        self,
        metric_fn: Callable[..., Any],
        metric_key: str,
        accumulative_fields: Iterable[str] | None = None,
        compute_on_call: bool = True,
        prefix: str | None = None,
        suffix: str | None = None,
    ) -> None:
        super().__init__(compute_on_call=compute_on_call, prefix=prefix, suffix=suffix)
        if not callable(metric_fn):
            raise TypeError(
                f"FunctionalLoaderMetric: metric_fn must be callable, got {metric_fn!r}"
            )
        self.metric_fn = metric_fn
        self.metric_name = f"{self.prefix}{metric_key}{self.suffix}"
        self.accumulative_metric = AccumulativeMetric(
            keys=accumulative_fields, compute_on_call=compute_on_call
        )

    def reset(self, num_batches: int | None = None, num_samples: int | None = None) -> None:
        self.accumulative_metric.reset(num_batches, num_samples)

    def update(self, **kwargs: Any) -> None:
        self.accumulative_metric.update(**kwargs)

    def compute(self) -> Any:
        return self.metric_fn(**self.accumulative_metric.compute())

    def compute_key_value(self) -> dict[str, Any]:
        return {self.metric_name: self.compute()}


__all__ = ["FunctionalBatchMetric", "FunctionalLoaderMetric"]
