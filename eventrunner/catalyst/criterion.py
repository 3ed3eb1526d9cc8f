"""Catalyst's ``CriterionCallback``: the loss as a batch metric, from keys of the output or batch.

``CriterionCallback(input_key="logits", target_key="targets", metric_key="loss")`` sets
``batch_metrics["loss"] = criterion(output["logits"], batch["targets"])`` on every batch at
``Order.METRIC``, before the means (20) and the backward pass (30). ``criterion_key`` picks one
of a dict of criteria; several callbacks give several losses (``loss_ce``, ``loss_kl``), which
Catalyst's ``MetricAggregationCallback`` can sum into the one the backward pass uses.
A ``SupervisedRunner`` with a ``CriterionCallback`` leaves the loss to it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from eventrunner import components
from eventrunner.events import Callback, Order

if TYPE_CHECKING:
    from eventrunner.state import RunState


def read_key(runner: RunState, key: str, owner: str) -> Any:
    """``runner.output[key]``, else ``runner.batch[key]`` (Catalyst merges the two)."""
    output, batch = runner.output, runner.batch
    if isinstance(output, Mapping) and key in output:
        return output[key]
    if isinstance(batch, Mapping) and key in batch:
        return batch[key]
    outputs = sorted(output) if isinstance(output, Mapping) else type(output).__name__
    keys = sorted(batch) if isinstance(batch, Mapping) else type(batch).__name__
    raise KeyError(
        f"{owner}: key {key!r} is in neither runner.output ({outputs}) nor the batch ({keys}) "
        f"of loader {runner.loader_key!r}"
    )


class CriterionCallback(Callback):
    """``batch_metrics[metric_key] = criterion(input, target)`` on every batch."""

    kind = "criterion"

    def __init__(
        self,
        input_key: str,
        target_key: str,
        metric_key: str,
        criterion_key: str | None = None,
        prefix: str | None = None,
        suffix: str | None = None,
    ) -> None:
        super().__init__(order=Order.METRIC)
        self.input_key = input_key
        self.target_key = target_key
        self.metric_key = f"{prefix or ''}{metric_key}{suffix or ''}"
        self.criterion_key = criterion_key
        self.criterion: Any = None
        self.writes = (f"batch_metrics.{self.metric_key}",)
        self._name = f"CriterionCallback({self.metric_key!r})"

    def describe_name(self) -> str:
        return self._name

    def on_experiment_start(self, runner: RunState) -> None:
        self.criterion = components.pick(runner, "criterion", self.criterion_key, self._name)

    def on_batch_end(self, runner: RunState) -> None:
        runner.batch_metrics[self.metric_key] = self.criterion(
            read_key(runner, self.input_key, self._name),
            read_key(runner, self.target_key, self._name),
        )
