"""Catalyst 22.04's ``CallbackOrder``: its names (both spellings) and its values.

The values are Catalyst's, so a callback ported with ``order=CallbackOrder.Metric`` runs where
it ran in Catalyst relative to the built-ins (:class:`eventrunner.Order`): metrics 10, their
aggregation 20, backward 30, optimizer 40, scheduler 50, external 100. One difference:
Catalyst's ``Checkpoint`` is 50; eventrunner's checkpoints are written at ``Order.CHECKPOINT``
(90), after early stopping and the loggers, so that epoch e's file holds e's state.
"""

from __future__ import annotations

from enum import IntEnum


class CallbackOrder(IntEnum):
    """Where a callback runs among the others of one event; lower runs first."""

    Internal = 0
    Metric = 10
    MetricAggregation = 20
    Backward = 30
    Optimizer = 40
    Scheduler = 50
    Checkpoint = 50
    External = 100

    # Catalyst's lowercase spellings of the same members.
    internal = 0
    metric = 10
    metric_aggregation = 20
    backward = 30
    optimizer = 40
    scheduler = 50
    checkpoint = 50
    external = 100
