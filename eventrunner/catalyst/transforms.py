"""Catalyst 22.04's batch transforms, functional metric callbacks and metric aggregation.

- :class:`BatchTransformCallback`: a function applied to batch values before ``handle_batch``
  (``scope="on_batch_start"``) or to its outputs after it (``"on_batch_end"``).
- :class:`FunctionalBatchMetricCallback` / :class:`FunctionalMetricCallback`: a plain function
  ``metric_fn(input, target)`` as a batch metric with loader mean and std.
- :class:`MetricAggregationCallback`: Catalyst's ``loss = loss_ce + 0.1 * loss_kl`` on the batch
  metrics before the backward pass, and the same on the loader metrics at loader end (just
  after the batch-means subscriber, ``plugins.MetricMeansCallback``, has computed them).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping, MutableMapping, MutableSequence
from typing import TYPE_CHECKING, Any

import torch

from eventrunner.catalyst.callbacks import LOADER_VALUES_ORDER, BatchMetricCallback, Keys, _read
from eventrunner.catalyst.metrics._functional_metric import FunctionalBatchMetric
from eventrunner.events import Callback, Order
from eventrunner.registry import import_object

if TYPE_CHECKING:
    from eventrunner.state import RunState

_SCOPES = ("on_batch_start", "on_batch_end")
_FUNCTIONAL_PREFIX = "F."

#: Catalyst aggregates after the metrics (10) and before the backward pass (30); eventrunner's
#: batch means (order 20, registered first) must see the aggregated key, so one step earlier.
BATCH_AGGREGATION_ORDER = Order.METRIC_AGGREGATION - 1
#: At loader end, after the metric callbacks' loader values (21), as Catalyst's 20 after 10.
LOADER_AGGREGATION_ORDER = LOADER_VALUES_ORDER + 1


def resolve_callable(spec: Callable[..., Any] | str, owner: str) -> Callable[..., Any]:
    """``spec`` itself, or the object at the dotted import path ``spec`` names.

    ``"torch.sigmoid"``, ``"torch.nn.functional.softmax"``; ``"F.softmax"`` is read as
    ``torch.nn.functional.softmax``. The name is imported, never evaluated. Anything not
    callable is refused.
    """
    if isinstance(spec, str):
        path = spec.strip()
        if path.startswith(_FUNCTIONAL_PREFIX):
            path = "torch.nn.functional." + path[len(_FUNCTIONAL_PREFIX) :]
        try:
            resolved = import_object(path)
        except ImportError as error:
            raise LookupError(
                f"{owner}: cannot resolve {spec!r} to a function: {error}; pass a callable "
                "or an import path such as 'torch.sigmoid'"
            ) from error
        if not callable(resolved):
            raise TypeError(f"{owner}: {spec!r} names a {type(resolved).__name__}, not a callable")
        return resolved
    if not callable(spec):
        raise TypeError(
            f"{owner}: expected a callable or an import path (str), got "
            f"{type(spec).__name__} ({spec!r})"
        )
    return spec


def _key_list(keys: str | Iterable[str] | None, what: str) -> list[str] | None:
    if keys is None:
        return None
    if isinstance(keys, str):
        return [keys]
    if isinstance(keys, list | tuple) and all(isinstance(key, str) for key in keys):
        return list(keys)
    raise TypeError(f"BatchTransformCallback: {what} should be str or a list of str, got {keys!r}")


class BatchTransformCallback(Callback):
    """Applies ``transform`` to batch values, at batch start or at batch end.

    ``input_key`` names the values passed to ``transform`` (positionally); ``output_key`` names
    where its result goes (one name: the result; a list: one element of the returned sequence
    each); without ``output_key`` the inputs are replaced in place. Without ``input_key`` the
    whole batch is passed and replaced by the result. ``transform`` is a callable or an import
    path (``"torch.sigmoid"``, ``"F.softmax"``); ``transform_kwargs`` are bound to it.

    At batch start the values are the batch's, which ``handle_batch`` then gets. At batch end
    a value is read from ``runner.output`` first, then from the batch (Catalyst keeps both in
    one dict), and the results go to ``runner.output`` (to the batch when ``handle_batch`` set
    no dict output): where the metric callbacks read them.

    Example::

        BatchTransformCallback(transform="torch.sigmoid", scope="on_batch_end",
                               input_key="logits", output_key="scores")
    """

    def __init__(
        self,
        transform: Callable[..., Any] | str,
        scope: str,
        input_key: str | list[str] | None = None,
        output_key: str | list[str] | None = None,
        transform_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(order=Order.INTERNAL)
        if scope not in _SCOPES:
            raise TypeError(
                f"BatchTransformCallback: expected scope to be one of {list(_SCOPES)}, "
                f"got {scope!r}"
            )
        fn = resolve_callable(transform, "BatchTransformCallback: transform")
        if transform_kwargs is not None:
            fn = functools.partial(fn, **transform_kwargs)
        inputs = _key_list(input_key, "input_key")
        if output_key is not None and inputs is None:
            raise TypeError(
                "BatchTransformCallback: output_key needs input_key (the values to transform)"
            )
        outputs = _key_list(output_key, "output_key") if output_key is not None else inputs
        self.scope = scope
        self.transform = fn
        self.input_key = inputs
        self.output_key = outputs
        # One output name takes the whole result; several take one element of it each.
        self._single_output = isinstance(output_key, str) or (
            output_key is None and inputs is not None and len(inputs) == 1
        )

    def handlers(self) -> dict[str, Callable[[RunState], Any]]:
        return {self.scope[len("on_") :]: self._apply}

    def describe_name(self) -> str:
        return f"BatchTransformCallback({self.scope})"

    def _apply(self, runner: RunState) -> None:
        at_end = self.scope == "on_batch_end"
        if self.input_key is None:
            self._replace_batch(runner, self.transform(runner.batch))
            return
        values = [self._get(runner, key, at_end) for key in self.input_key]
        result = self.transform(*values)
        assert self.output_key is not None
        if self._single_output:
            results = [result]
        elif isinstance(result, list | tuple) and len(result) == len(self.output_key):
            results = list(result)
        else:
            raise TypeError(
                f"BatchTransformCallback: output_key={self.output_key} needs the transform to "
                f"return a tuple/list of {len(self.output_key)} values, got "
                f"{type(result).__name__}"
            )
        target = (
            runner.output if at_end and isinstance(runner.output, MutableMapping) else runner.batch
        )
        if not isinstance(target, MutableMapping):
            raise TypeError(
                f"BatchTransformCallback: loader {runner.loader_key!r} has a "
                f"{type(target).__name__} batch; writing {self.output_key} needs dict batches "
                "(SupervisedRunner, or a loader of dicts)"
            )
        target.update(zip(self.output_key, results, strict=True))

    @staticmethod
    def _get(runner: RunState, key: str, at_end: bool) -> Any:
        output, batch = runner.output, runner.batch
        if at_end and isinstance(output, Mapping) and key in output:
            return output[key]
        if isinstance(batch, Mapping) and key in batch:
            return batch[key]
        where = "runner.output or the batch" if at_end else "the batch"
        have = sorted(batch) if isinstance(batch, Mapping) else f"a {type(batch).__name__}"
        if at_end and isinstance(output, Mapping):
            have = f"output {sorted(output)}, batch {have}"
        raise KeyError(
            f"BatchTransformCallback: key {key!r} is not in {where} of loader "
            f"{runner.loader_key!r} ({have})"
        )

    @staticmethod
    def _replace_batch(runner: RunState, new: Any) -> None:
        batch = runner.batch
        # handle_batch gets the loop's batch object: change it in place where it can change.
        if new is batch:
            return
        if isinstance(batch, MutableMapping) and isinstance(new, Mapping):
            batch.clear()
            batch.update(new)
        elif isinstance(batch, MutableSequence) and isinstance(new, list | tuple):
            batch[:] = new
        else:
            runner.batch = new


class FunctionalBatchMetricCallback(BatchMetricCallback):
    """A :class:`~eventrunner.catalyst.metrics.FunctionalBatchMetric` per batch: the batch's
    size goes to the metric with its inputs, so the loader value is the size-weighted mean."""

    def __init__(
        self,
        metric: FunctionalBatchMetric,
        input_key: Keys,
        target_key: Keys,
        log_on_batch: bool = True,
    ) -> None:
        if not isinstance(metric, FunctionalBatchMetric):
            raise TypeError(
                f"FunctionalBatchMetricCallback: expected a FunctionalBatchMetric, got {metric!r}"
            )
        super().__init__(metric, input_key, target_key, log_on_batch=log_on_batch)
        name = metric.metric_name
        self.writes = {"batch_end": (f"batch_metrics.{name}",) if log_on_batch else ()}
        self._loader_keys = (name, f"{name}/mean", f"{name}/std")

    def parts(self) -> tuple[Callback, ...]:
        own, loader_values = super().parts()
        loader_values.writes = {
            "loader_end": tuple(f"loader_metrics.{k}" for k in self._loader_keys)
        }
        return (own, loader_values)

    def _update(self, runner: RunState, update: Any) -> Any:
        size = runner.batch_size
        if isinstance(self.input_key, str):
            return update(size, _read(runner, self.input_key), _read(runner, str(self.target_key)))
        values = {name: _read(runner, key) for key, name in self._keys.items()}
        return update(batch_size=size, **values)


class FunctionalMetricCallback(FunctionalBatchMetricCallback):
    """``metric_fn(input, target)`` per batch as ``batch_metrics[metric_key]``; the loader gets
    its size-weighted mean as ``metric_key`` and ``metric_key/mean``, and ``metric_key/std``.

    Example::

        FunctionalMetricCallback(input_key="scores", target_key="targets",
                                 metric_fn=mean_absolute_error, metric_key="mae")
    """

    def __init__(
        self,
        input_key: Keys,
        target_key: Keys,
        metric_fn: Callable[..., Any],
        metric_key: str,
        compute_on_call: bool = True,
        log_on_batch: bool = True,
        prefix: str | None = None,
        suffix: str | None = None,
    ) -> None:
        metric = FunctionalBatchMetric(
            metric_fn=metric_fn,
            metric_key=metric_key,
            compute_on_call=compute_on_call,
            prefix=prefix,
            suffix=suffix,
        )
        super().__init__(metric, input_key, target_key, log_on_batch=log_on_batch)


_MODES = ("sum", "mean", "weighted_sum", "weighted_mean")


class _LoaderAggregation(Callback):
    """The loader-end part of :class:`MetricAggregationCallback`, after the loader values."""

    def __init__(self, owner: MetricAggregationCallback) -> None:
        super().__init__(order=LOADER_AGGREGATION_ORDER)
        self.owner = owner
        self.writes = {"loader_end": (f"loader_metrics.{owner.metric_key}",)}

    def describe_name(self) -> str:
        return f"{self.owner.describe_name()}.loader"

    def on_loader_end(self, runner: RunState) -> None:
        metrics = runner.loader_metrics
        value = self.owner.aggregate(metrics, runner, exclude_own_key=True)
        metrics[self.owner.metric_key] = float(value)


class MetricAggregationCallback(Callback):
    """Catalyst's aggregation of several metrics into one, e.g. a weighted sum of losses.

    ``mode``: ``"sum"`` or ``"mean"`` of ``metrics`` (a name or list; all metrics when None),
    ``"weighted_sum"`` / ``"weighted_mean"`` of ``metrics`` given as ``{name: weight}``
    (``weighted_mean`` divides the weights by their sum), or a function
    ``mode(metrics, runner)``; the result is times ``multiplier``. With ``scope="batch"`` it
    writes ``batch_metrics[metric_key]`` before the backward pass (which then uses it when
    ``metric_key`` is the loss); with either scope it writes ``loader_metrics[metric_key]``
    from the loader values at loader end, as Catalyst does.

    Example::

        MetricAggregationCallback("loss", {"loss_ce": 1.0, "loss_kl": 0.1}, mode="weighted_sum")
    """

    def __init__(
        self,
        metric_key: str,
        metrics: str | list[str] | Mapping[str, float] | None = None,
        mode: str | Callable[[dict[str, Any], RunState], Any] = "mean",
        scope: str = "batch",
        multiplier: float = 1.0,
    ) -> None:
        super().__init__(order=BATCH_AGGREGATION_ORDER)
        if not isinstance(metric_key, str) or not metric_key:
            raise ValueError(
                f"MetricAggregationCallback: metric_key must be a name, got {metric_key!r}"
            )
        if isinstance(metrics, str):
            metrics = [metrics]
        if mode in ("sum", "mean"):
            if metrics is not None and not isinstance(metrics, list | tuple):
                raise ValueError(
                    f"MetricAggregationCallback: for mode {mode!r} metrics must be None, a name "
                    f"or a list of names (not a dict), got {metrics!r}"
                )
        elif mode in ("weighted_sum", "weighted_mean"):
            if not isinstance(metrics, Mapping) or not metrics:
                raise ValueError(
                    f"MetricAggregationCallback: mode {mode!r} needs metrics as a dict "
                    f"{{name: weight}}, got {metrics!r}"
                )
        elif not callable(mode):
            raise NotImplementedError(
                f"MetricAggregationCallback: mode must be one of {list(_MODES)} or a callable "
                f"(metrics, runner) -> value, got {mode!r}"
            )
        if scope not in ("batch", "loader"):
            raise ValueError(
                f"MetricAggregationCallback: scope must be 'batch' or 'loader', got {scope!r}"
            )
        self.metric_key = metric_key
        self.mode = mode
        self.scope = scope
        self.multiplier = multiplier
        self.metrics: list[str] | dict[str, float] | None
        if isinstance(metrics, Mapping):
            weights = {str(key): float(weight) for key, weight in metrics.items()}
            if mode == "weighted_mean":
                total = sum(weights.values())
                if total == 0:
                    raise ValueError("MetricAggregationCallback: weighted_mean weights sum to 0")
                weights = {key: weight / total for key, weight in weights.items()}
            self.metrics = weights
        else:
            self.metrics = list(metrics) if metrics is not None else None
        written = (f"batch_metrics.{metric_key}",) if scope == "batch" else ()
        self.writes = {"batch_end": written}

    def parts(self) -> tuple[Callback, ...]:
        return (self, _LoaderAggregation(self))

    def describe_name(self) -> str:
        return f"MetricAggregationCallback({self.metric_key})"

    def on_batch_end(self, runner: RunState) -> None:
        if self.scope == "batch":
            metrics = runner.batch_metrics
            metrics[self.metric_key] = self.aggregate(metrics, runner)

    def aggregate(
        self, metrics: dict[str, Any], runner: RunState, exclude_own_key: bool = False
    ) -> Any:
        """The aggregated value of ``metrics`` (a float32 tensor for the built-in modes)."""
        if callable(self.mode):
            return self.mode(metrics, runner) * self.multiplier
        if self.metrics is None:
            # At loader end eventrunner's loader metrics already hold the batch means of
            # metric_key, which Catalyst's do not: it is not aggregated into itself.
            values = [
                v for k, v in metrics.items() if not (exclude_own_key and k == self.metric_key)
            ]
        else:
            missing = [key for key in self.metrics if key not in metrics]
            if missing:
                raise KeyError(
                    f"MetricAggregationCallback({self.metric_key!r}): no {missing} among the "
                    f"metrics of loader {runner.loader_key!r} ({sorted(metrics)})"
                )
            if isinstance(self.metrics, dict):
                values = [metrics[key] * weight for key, weight in self.metrics.items()]
            else:
                values = [metrics[key] for key in self.metrics]
        if not values:
            raise KeyError(
                f"MetricAggregationCallback({self.metric_key!r}): no metrics to aggregate in "
                f"loader {runner.loader_key!r}"
            )
        device = next((v.device for v in values if isinstance(v, torch.Tensor)), runner.device)
        # As Catalyst: every value as a float32 tensor (tensors keep their graph).
        tensors = [
            v.float()
            if isinstance(v, torch.Tensor)
            else torch.tensor(v, device=device, dtype=torch.float32)
            for v in values
        ]
        stacked = torch.stack(tensors)
        total = stacked.mean() if self.mode == "mean" else stacked.sum()
        return total * self.multiplier


__all__ = [
    "BatchTransformCallback",
    "FunctionalBatchMetricCallback",
    "FunctionalMetricCallback",
    "MetricAggregationCallback",
    "resolve_callable",
]
