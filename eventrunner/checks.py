"""Argument checks shared by the loop and the subscribers, with errors that name the argument."""

from __future__ import annotations

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
