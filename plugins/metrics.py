"""Metric subscribers: batch -> loader -> epoch means, accuracy, torchmetrics-style metrics."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from eventrunner.distributed import all_reduce_means
from eventrunner.events import Callback, Order
from eventrunner.metrics import WeightedMeans, accuracy, as_number
from plugins._run_info import is_main_process

if TYPE_CHECKING:
    from eventrunner.state import RunState

log = logging.getLogger("eventrunner")


class MetricMeansCallback(Callback):
    """Aggregates every scalar in ``batch_metrics`` into the pass's ``runner.running_metrics``
    (batch-size-weighted means, public: the progress bar reads them) and, at loader end, into
    ``loader_metrics``, filed in ``epoch_metrics[loader_key]``.

    Non-scalar tensors stay in ``batch_metrics`` only: their shapes go to
    ``runner.non_scalar_metrics[loader_key]``, with a warning once per loader and key.
    """

    kind = "metrics"
    writes = {
        "batch_end": ("running_metrics",),
        "loader_end": ("loader_metrics", "epoch_metrics", "non_scalar_metrics"),
    }

    def __init__(self) -> None:
        super().__init__(order=Order.METRIC_AGGREGATION)
        self._warned: set[tuple[str, str]] = set()

    def on_experiment_start(self, runner: RunState) -> None:
        self._warned = set()

    def on_batch_end(self, runner: RunState) -> None:
        runner.running_metrics.update(runner.batch_metrics, runner.batch_size)

    def on_loader_end(self, runner: RunState) -> None:
        means = runner.running_metrics
        runner.loader_metrics.update(self.reduce(runner, means))
        runner.epoch_metrics[runner.loader_key] = runner.loader_metrics
        runner.non_scalar_metrics[runner.loader_key] = dict(means.non_scalar)
        if means.non_scalar:
            self._warn_non_scalar(runner, means)

    def reduce(self, runner: RunState, means: WeightedMeans) -> dict[str, float]:
        """The loader's means (across processes when the run is distributed: one all-reduce of
        the sums and counts, so ranks agree and match the single-process numbers)."""
        return all_reduce_means(means, runner.loader_key)

    def _warn_non_scalar(self, runner: RunState, means: WeightedMeans) -> None:
        loader = runner.loader_key
        for name, shape in means.non_scalar.items():
            if (loader, name) in self._warned:
                continue
            self._warned.add((loader, name))
            if is_main_process(runner):
                log.warning(
                    "eventrunner: loader %r: batch_metrics[%r] is a tensor of shape %s, not a "
                    "scalar: it stays in batch_metrics but is not aggregated into "
                    "loader_metrics; reduce it (e.g. .mean()) to have it aggregated",
                    loader,
                    name,
                    shape,
                )


def _lookup(runner: Any, key: str) -> Any:
    output, batch = runner.output, runner.batch
    if isinstance(output, Mapping) and key in output:
        return output[key]
    if isinstance(batch, Mapping) and key in batch:
        return batch[key]
    outputs = sorted(output) if isinstance(output, Mapping) else repr(output)
    if isinstance(batch, Mapping):
        where = f"the batch ({sorted(batch)})"
    else:  # a plain Runner hands tuple/list batches to handle_batch as they are: no keys
        where = (
            f"the batch (a {type(batch).__name__}, which has no keys: name the values in "
            "handle_batch, e.g. self.output = {'logits': ..., 'targets': y}, or use dict "
            "batches or SupervisedRunner)"
        )
    raise KeyError(
        f"key {key!r} is in neither runner.output ({outputs}) "
        f"nor {where} of loader {runner.loader_key!r}"
    )


class AccuracyCallback(Callback):
    """Top-k accuracy of ``input_key`` logits against ``target_key``, as ``accuracy01``, ...

    Example: ``AccuracyCallback(input_key="logits", target_key="targets", topk=(1, 3))``.
    """

    kind = "accuracy"

    def __init__(
        self,
        input_key: str = "logits",
        target_key: str = "targets",
        topk: Sequence[int] = (1,),
        prefix: str = "accuracy",
        loaders: str | Sequence[str] | None = None,
    ) -> None:
        super().__init__(order=Order.METRIC, loaders=loaders)
        self.input_key = input_key
        self.target_key = target_key
        self.topk = tuple(topk)
        self.names = tuple(f"{prefix}{k:02d}" for k in self.topk)
        self.writes = {"batch_end": tuple(f"batch_metrics.{name}" for name in self.names)}

    def on_batch_end(self, runner: Any) -> None:
        values = accuracy(
            _lookup(runner, self.input_key), _lookup(runner, self.target_key), self.topk
        )
        runner.batch_metrics.update(zip(self.names, values, strict=True))


class LoaderMetricCallback(Callback):
    """Plugs in any loader-level metric with ``update(preds, targets)``, ``compute()``,
    ``reset()`` (the torchmetrics protocol); its value lands in ``loader_metrics[name]``."""

    kind = "loader_metric"

    def __init__(
        self,
        metric: Any,
        name: str,
        input_key: str = "logits",
        target_key: str = "targets",
        loaders: str | Sequence[str] | None = None,
    ) -> None:
        super().__init__(order=Order.METRIC, loaders=loaders)
        for method in ("update", "compute", "reset"):
            if not callable(getattr(metric, method, None)):
                raise TypeError(f"LoaderMetricCallback({name!r}): metric has no {method}()")
        self.metric = metric
        self.name = name
        self.input_key = input_key
        self.target_key = target_key
        self.writes = {"loader_end": (f"loader_metrics.{name}",)}

    def on_loader_start(self, runner: Any) -> None:
        self.metric.reset()

    def on_batch_end(self, runner: Any) -> None:
        self.metric.update(
            _lookup(runner, self.input_key).detach(), _lookup(runner, self.target_key)
        )

    def on_loader_end(self, runner: Any) -> None:
        value = self.metric.compute()
        number = as_number(value)
        runner.loader_metrics[self.name] = value if number is None else float(number)
