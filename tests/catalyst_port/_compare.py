"""The comparison of the Catalyst parity tests."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch


def close(actual: Any, expected: Any, where: str = "value", *, tolerance: float = 1e-6) -> None:
    """Recursive comparison at ``tolerance`` (absolute); a one-element list matches a scalar,
    NaN matches NaN."""
    if isinstance(actual, torch.Tensor | np.ndarray):
        actual = actual.tolist()
    if isinstance(expected, list) and len(expected) == 1 and not isinstance(actual, list | tuple):
        expected = expected[0]  # Catalyst's accuracy is shaped (1,), ours is 0-d
    if isinstance(expected, dict):
        assert list(actual) == list(expected), where
        for key, value in expected.items():
            close(actual[key], value, f"{where}[{key!r}]", tolerance=tolerance)
    elif isinstance(expected, list | tuple):
        assert len(actual) == len(expected), where
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            close(a, e, f"{where}[{i}]", tolerance=tolerance)
    elif expected is None:
        assert actual is None, where
    elif math.isnan(expected):
        assert math.isnan(float(actual)), where
    else:
        assert float(actual) == pytest.approx(expected, abs=tolerance), where


# sha256 (first 16 hex digits) of the inputs' bytes as catalyst's environment built them:
