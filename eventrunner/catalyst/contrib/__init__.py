"""``catalyst.contrib`` pieces that Catalyst 22.04 programs import.

- :mod:`eventrunner.catalyst.contrib.layers`: ``Flatten``, ``Lambda``, ``Normalize``,
  ``GlobalAvgPool2d``, ``GlobalMaxPool2d``.
- :mod:`eventrunner.catalyst.contrib.losses`: ``IoULoss``, ``TripletMarginLossWithSampler``.
- :mod:`eventrunner.catalyst.contrib.models`: ``MnistSimpleNet``.
- :mod:`eventrunner.catalyst.contrib.data`: in-batch triplet samplers (``HardTripletsSampler``).
"""
