"""Argument checks shared by the loop and the subscribers, with errors that name the argument."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any


def is_int(value: Any) -> bool:
    """An int that is not a bool (``True`` is an ``int`` in Python)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """An int or a float that is not a bool."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def positive_int(value: Any, what: str, *, optional: bool = False) -> Any:
    """``value`` when it is an int >= 1 (or None, if ``optional``); a ValueError naming ``what``."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        allowed = "a positive int or None" if optional else "a positive int"
        raise ValueError(f"{what} must be {allowed}, got {value!r}")
    return value


def positive_number(value: Any, what: str, *, optional: bool = False) -> float | None:
    """``value`` as a float when it is a finite number > 0 (or None, if ``optional``); a
    ValueError naming ``what`` otherwise."""
    if value is None and optional:
        return None
    if not is_number(value) or not (math.isfinite(value) and value > 0):
        allowed = "a positive number or None" if optional else "a positive number"
        raise ValueError(f"{what} must be {allowed}, got {value!r}")
    return float(value)


def require_loaders(
    names: Iterable[str], loaders: Iterable[str], what: str, hint: str = ""
) -> None:
    """A ValueError ``"<what> 'name' is not among the loaders (...)"`` for unknown loaders."""
    known = list(loaders)
    unknown = [name for name in names if name not in known]
    if unknown:
        which = ", ".join(map(repr, unknown))
        raise ValueError(f"{what} {which} is not among the loaders ({', '.join(known)}){hint}")
