"""Catalyst 22.04 compatibility: names Catalyst programs import, with Catalyst's numbers.

- :mod:`eventrunner.catalyst.metrics`: ``catalyst.metrics``' objects and functions (needs the
  ``catalyst`` extra: ``pip install "eventrunner[catalyst]"``); ``eventrunner.metrics``
  exposes them too.
- :mod:`eventrunner.catalyst.callbacks`: Catalyst's metric callbacks (``AccuracyCallback``,
  ``PrecisionRecallF1SupportCallback``, ``AUCCallback``, ...) with Catalyst's keys.
- :mod:`eventrunner.catalyst.utils`: ``catalyst.utils``' helpers, as ``eventrunner.utils``.
"""
