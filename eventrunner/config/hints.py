"""Type checks of config values against the annotations of what they are passed to.

Only what a YAML value can be is decided (bool, int, float, str, null, lists, mappings,
``Literal``, unions of those); anything else is left to the call itself.
"""

from __future__ import annotations

import collections.abc
import inspect
import types
import typing
from typing import Any

from eventrunner.config.errors import ConfigError, found

_SIMPLE = (bool, int, float, str, type(None), list, dict)
_CONTAINERS = (
    list,
    tuple,
    dict,
    collections.abc.Sequence,
    collections.abc.Mapping,
    typing.Literal,
)


def type_hints(target: Any) -> dict[str, Any]:
    """Resolved parameter annotations of a callable (a class: its ``__init__``).

    An annotation that cannot be resolved is skipped, not fatal: DataLoader's
    ``"Sampler | Iterable | None"`` names a type its module never imports, and names imported
    only under ``TYPE_CHECKING`` are not there at run time.
    """
    func = target.__init__ if inspect.isclass(target) else target
    try:
        return typing.get_type_hints(func)
    except Exception:
        pass
    try:
        annotations = inspect.get_annotations(func)
    except TypeError:  # builtins and other objects without annotations
        return {}
    namespace = getattr(inspect.unwrap(func), "__globals__", {})
    hints = {}
    for name, annotation in annotations.items():
        holder = _Annotations({name: annotation})
        try:
            hints.update(typing.get_type_hints(holder, globalns=namespace))
        except Exception:
            continue
    return hints


class _Annotations:
    """One annotation on its own, so that resolving the others cannot make it fail."""

    def __init__(self, annotations: dict[str, Any]) -> None:
        self.__annotations__ = annotations


def matches(value: Any, hint: Any) -> bool | None:
    """Whether a config value fits a type hint; None where the hint is beyond simple types."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        results = [matches(value, arg) for arg in typing.get_args(hint)]
        if any(r is True for r in results):
            return True
        return False if all(r is False for r in results) else None
    if hint is typing.Any or not (hint in _SIMPLE or origin in _CONTAINERS):
        # A built object (nested _target_) checked against its class; else: cannot tell.
        try:
            return True if inspect.isclass(hint) and isinstance(value, hint) else None
        except TypeError:  # protocols and other classes that refuse isinstance()
            return None
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    if hint is dict or origin in (dict, collections.abc.Mapping):
        return isinstance(value, collections.abc.Mapping)
    # list, tuple, Sequence: YAML gives lists (a string is a Sequence too, but not meant here)
    return isinstance(value, list | tuple)


def describe_hint(hint: Any) -> str:
    """A type hint in a config's words: ``int | None`` -> ``"an int or null"``."""
    if hint is type(None):
        return "null"
    if inspect.isclass(hint) and typing.get_origin(hint) is None:
        return {
            "int": "an int",
            "float": "a float",
            "bool": "a bool (true/false)",
            "str": "a string",
            "list": "a list",
            "dict": "a mapping",
        }.get(hint.__name__, hint.__name__)
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe_hint(arg) for arg in typing.get_args(hint))
    if origin is typing.Literal:
        return "one of " + ", ".join(map(repr, typing.get_args(hint)))
    if origin in (list, tuple, collections.abc.Sequence):
        return "a list"
    if origin in (dict, collections.abc.Mapping):
        return "a mapping"
    return str(hint).replace("typing.", "")


def check_value(path: str, value: Any, hint: Any) -> None:
    """Refuse a value that cannot fit ``hint``, naming ``path``."""
    if matches(value, hint) is False:
        raise ConfigError(path, describe_hint(hint), found(value))
    _check_number_string(path, value, hint)


def _check_number_string(path: str, value: Any, hint: Any) -> None:
    # YAML 1.1 reads 1e-3 (no dot) as a string; torch hints lr as float | Tensor, which the
    # simple check cannot decide, so a numeric string for a float parameter is caught here.
    if not isinstance(value, str) or matches(1.0, hint) is not True or matches(value, hint):
        return
    try:
        float(value)
    except ValueError:
        return
    raise ConfigError(
        path,
        describe_hint(hint),
        found(value),
        hint=f"YAML reads a number like 1e-3 as a string: write {yaml_float(value)}",
    )


def yaml_float(text: str) -> str:
    """``"1e-3"`` -> ``"1.0e-3"``: the spelling YAML 1.1 reads as a float."""
    mantissa, _, exponent = text.lower().partition("e")
    if "." not in mantissa:
        mantissa += ".0"
    return f"{mantissa}e{exponent}" if exponent else mantissa
