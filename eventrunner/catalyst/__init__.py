"""Catalyst 22.04 compatibility: names Catalyst programs import, with Catalyst's numbers.

Everything here maps Catalyst's names onto the core; the core's own names stay as they are.
``eventrunner.dl`` gives all of ``catalyst.dl`` (the table: :mod:`eventrunner.catalyst.names`).

- :mod:`~eventrunner.catalyst.metrics`: ``catalyst.metrics``' objects and functions (the
  ``catalyst`` extra: ``pip install "eventrunner[catalyst]"``), also as ``eventrunner.metrics``.
- :mod:`~eventrunner.catalyst.callbacks`, :mod:`~eventrunner.catalyst.metric_callbacks`:
  Catalyst's metric callbacks with Catalyst's keys.
- :mod:`~eventrunner.catalyst.criterion`, :mod:`~eventrunner.catalyst.transforms`,
  :mod:`~eventrunner.catalyst.control`, :mod:`~eventrunner.catalyst.timer`: the criterion,
  batch-transform, aggregation, control-flow and timer callbacks.
- :mod:`~eventrunner.catalyst.engines`, :mod:`~eventrunner.catalyst.loggers`,
  :mod:`~eventrunner.catalyst.irunner`, :mod:`~eventrunner.catalyst.order`: engines,
  ``ILogger`` and its loggers, ``IRunner``, ``CallbackOrder``.
- :mod:`~eventrunner.catalyst.utils` (as ``eventrunner.utils``) with
  :mod:`~eventrunner.catalyst.model_tools`; :mod:`~eventrunner.catalyst.settings`;
  :mod:`~eventrunner.catalyst.contrib` and :mod:`~eventrunner.catalyst.data`: the layers,
  losses, models, datasets and samplers of ``catalyst.contrib`` and ``catalyst.data`` that the
  examples use.
"""
