"""Building objects from config nodes: ``_target_``/``_args_``/``_partial_``, each call checked
against its signature first (unknown keys, missing arguments, simple types), every failure
reported at its key path.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Iterable, Mapping
from typing import Any

from eventrunner import registry
from eventrunner.config.errors import ConfigError, close_matches, found, join
from eventrunner.config.hints import check_value, type_hints
from eventrunner.config.load import ARGS, PARTIAL, TARGET


def _target_name(target: Any) -> str:
    return (
        getattr(target, "__qualname__", None) or getattr(target, "__name__", None) or repr(target)
    )


def import_target(path: str, spec: Any) -> Any:
    """The callable an import path (``pkg.mod.Name`` or ``pkg.mod:Name``) names."""
    if not isinstance(spec, str) or not spec:
        raise ConfigError(
            path, "an import path like 'torch.nn.Linear' or 'pkg.mod:Name'", found(spec)
        )
    try:
        target = registry.import_object(spec)
    except ImportError as error:
        raise ConfigError(path, "an importable object", repr(spec), hint=str(error)) from error
    if not callable(target):
        raise ConfigError(path, "a class or function", f"{spec!r} ({type(target).__name__})")
    return target


def check_call(
    path: str,
    target: Any,
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    *,
    injected: Iterable[str] = (),
    partial: bool = False,
) -> None:
    """Refuse unknown keys, missing required arguments and values of the wrong simple type.

    ``injected`` are the leading arguments the builder fills in itself (an optimizer's
    ``params``); they are named in the message when given in the config. With ``partial``,
    required arguments may be left for later.
    """
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):
        return  # builtins without a signature: the call itself will tell
    name = _target_name(target)
    params = signature.parameters
    accepts_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    for key in kwargs:
        if key in injected:
            raise ConfigError(
                join(path, key), f"no {key!r} key ({key} is filled in for you)", repr(kwargs[key])
            )
        if key not in params and not accepts_any:
            named = [
                p
                for p in params
                if params[p].kind
                not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
            ]
            raise ConfigError(
                join(path, key),
                f"a parameter of {name} ({', '.join(named) or 'none'})",
                f"unknown key {key!r}",
                hint=close_matches(key, named),
            )
    try:
        (signature.bind_partial if partial else signature.bind)(*args, **kwargs)
    except TypeError as error:
        raise ConfigError(path, f"arguments that {name}{signature} accepts", str(error)) from None
    hints = type_hints(target)
    for key, value in kwargs.items():
        if key in hints and key in params:
            check_value(join(path, key), value, hints[key])


def call(path: str, target: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``target(*args, **kwargs)``; an exception it raises is reported at ``path``."""
    try:
        return target(*args, **kwargs)
    except ConfigError:
        raise
    except Exception as error:
        name = _target_name(target)
        raise ConfigError(
            path,
            f"arguments that {name} accepts",
            f"{type(error).__name__}: {error}",
            message=f"{name}(...) failed: {type(error).__name__}: {error}",
        ) from error


def instantiate(
    node: Any, path: str = "", *, args: tuple[Any, ...] = (), injected: Iterable[str] = ()
) -> Any:
    """Build the objects a config node describes, depth first.

    A mapping with ``_target_`` (``pkg.mod.Name`` or ``pkg.mod:Name``) is called with its other
    keys as keyword arguments, after ``args`` (what the builder injects) and the optional
    ``_args_`` list; ``_partial_: true`` returns a ``functools.partial`` instead of calling.
    Other mappings and lists are walked; scalars are returned as they are.
    """
    if isinstance(node, list):
        return [instantiate(item, join(path, i)) for i, item in enumerate(node)]
    if not isinstance(node, Mapping):
        return node
    if TARGET not in node:
        return {key: instantiate(value, join(path, key)) for key, value in node.items()}
    target = import_target(join(path, TARGET), node[TARGET])
    extra = node.get(ARGS, [])
    if not isinstance(extra, list):
        raise ConfigError(join(path, ARGS), "a list of positional arguments", found(extra))
    partial = node.get(PARTIAL, False)
    if not isinstance(partial, bool):
        raise ConfigError(join(path, PARTIAL), "true or false", found(partial))
    positional = (*args, *instantiate(extra, join(path, ARGS)))
    kwargs = {
        key: instantiate(value, join(path, key))
        for key, value in node.items()
        if key not in (TARGET, ARGS, PARTIAL)
    }
    for key in kwargs:
        if not isinstance(key, str):
            raise ConfigError(join(path, key), "a string key", found(key))
    check_call(path, target, positional, kwargs, injected=injected, partial=partial)
    if partial:
        return functools.partial(target, *positional, **kwargs)
    return call(path, target, positional, kwargs)
