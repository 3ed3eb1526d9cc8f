"""Catalyst 22.04's ``catalyst.dl``: ``from eventrunner import dl`` for ``from catalyst import dl``.

Every name (runners, ``Callback``, ``CallbackOrder``, callbacks, loggers, engines) maps onto
eventrunner; the table is :mod:`eventrunner.catalyst.names`. Names load when first used.
"""

from __future__ import annotations

from typing import Any

from eventrunner.catalyst.names import ALL, resolve

__all__ = sorted(ALL)


def __getattr__(name: str) -> Any:
    value = resolve(name, ALL, __name__)
    globals()[name] = value  # once: later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return __all__
