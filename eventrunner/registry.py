"""Subscribers by name: the ``eventrunner.plugins`` entry-point group, or an import path.

A third-party package registers its subscribers in its ``pyproject.toml``::

    [project.entry-points."eventrunner.plugins"]
    my_logger = "mypkg.callbacks:MyLogger"

This project registers its built-ins the same way; a source checkout that is not installed
has no entry points, so the built-ins are also found by their ``kind`` in the ``plugins``
package (:func:`eventrunner.compose.builtin_plugins`).
"""

from __future__ import annotations

import difflib
import functools
import importlib
import inspect
import re
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from eventrunner.compose import builtin_plugins
from eventrunner.events import Callback

ENTRY_POINT_GROUP = "eventrunner.plugins"


@functools.cache
def available() -> dict[str, EntryPoint]:
    """Registered subscriber names and their entry points, sorted by name.

    When two installed distributions register the same name, the first one found on
    ``sys.path`` wins (as Python's own import does); a built-in fills in a name that no
    installed distribution registers.
    """
    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(ep.name, ep)
    for name, ep in _builtins().items():
        found.setdefault(name, ep)
    return dict(sorted(found.items()))


def _builtins() -> dict[str, EntryPoint]:
    """The built-in subscribers by ``kind``, as entry points of no distribution."""
    package = builtin_plugins()
    classes = [getattr(package, name) for name in package.__all__]
    return {
        cls.kind: EntryPoint(cls.kind, f"{cls.__module__}:{cls.__qualname__}", ENTRY_POINT_GROUP)
        for cls in classes
        if inspect.isclass(cls) and issubclass(cls, Callback) and cls.kind
    }


def refresh() -> None:
    """Forget the cached entry points (after installing a plugin package in-process)."""
    importlib.invalidate_caches()
    available.cache_clear()


def import_object(path: str) -> Any:
    """The object at ``pkg.mod:Name`` (or ``pkg.mod.Name``; ``Outer.Inner`` after a colon).

    Raises ``ImportError`` naming the path and what is missing, with close matches.
    """
    if not isinstance(path, str) or not path.strip():
        raise TypeError(f"import path must be a non-empty string, got {path!r}")
    path = path.strip()
    if ":" in path:
        module_name, _, attrs = path.partition(":")
        candidates = [(module_name, attrs.split("."))]
    else:
        parts = path.split(".")
        # Longest importable module prefix first: "torch.optim.lr_scheduler.StepLR".
        candidates = [(".".join(parts[:i]), parts[i:]) for i in range(len(parts) - 1, 0, -1)]
        if not candidates:
            raise ImportError(
                f"{path!r} is not an import path: write 'package.module:Name' or "
                "'package.module.Name'"
            )
    error: ImportError | None = None
    for module_name, attrs in candidates:
        try:
            obj: Any = importlib.import_module(module_name)
        except ModuleNotFoundError as missing:
            # Only "this very module is missing" means: try a shorter prefix.
            gone = missing.name or ""
            if module_name != gone and not module_name.startswith(gone + "."):
                raise
            error = error or ImportError(f"cannot import {path!r}: no module named {gone!r}")
            continue
        for attr in attrs:
            if not hasattr(obj, attr):
                public = [n for n in dir(obj) if not n.startswith("_")]
                close = difflib.get_close_matches(attr, public, n=3, cutoff=0.6)
                hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
                raise ImportError(
                    f"cannot import {path!r}: {getattr(obj, '__name__', obj)!r} has no "
                    f"attribute {attr!r}{hint}"
                )
            obj = getattr(obj, attr)
        return obj
    assert error is not None
    raise error


def looks_like_import_path(name: str) -> bool:
    return ":" in name or "." in name


def resolve(name: str) -> Any:
    """The class (or factory) registered as ``name``, or found at import path ``pkg.mod:Name``."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"subscriber name must be a non-empty string, got {name!r}")
    registered = available()
    if name in registered:
        return registered[name].load()
    if looks_like_import_path(name):
        try:
            return import_object(name)
        except ImportError as error:
            raise ValueError(f"subscriber {name!r}: {error}") from error
    close = difflib.get_close_matches(name, registered, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
    raise ValueError(
        f"unknown subscriber {name!r}{hint} (registered: {', '.join(registered) or 'none'}; "
        "or give an import path like 'mypkg.callbacks:MyCallback')"
    )


def create(name: str, **kwargs: Any) -> Any:
    """An instance of the subscriber registered as ``name``."""
    return resolve(name)(**kwargs)


# ------------------------------------------------------------------ descriptions


@dataclass(frozen=True)
class Parameter:
    """One constructor parameter of a subscriber, for listings."""

    name: str
    annotation: str | None
    default: str | None  # repr of the default; None when the parameter is required
    doc: str | None = None
    variadic: str = ""  # "*" or "**" for *args / **kwargs

    def __str__(self) -> str:
        text = f"{self.variadic}{self.name}"
        if self.annotation:
            text += f": {self.annotation}"
        if self.default is not None:
            text += f" = {self.default}"
        elif not self.variadic:
            text += "  (required)"
        return text


@dataclass(frozen=True)
class PluginInfo:
    """What ``eventrunner plugins`` shows about one registered subscriber."""

    name: str
    target: str
    distribution: str | None
    summary: str
    parameters: tuple[Parameter, ...]
    error: str | None = None


_ARG_LINE = re.compile(r"^\s*\**(\w+)\s*(?:\([^)]*\))?\s*:\s*(.+)$")


def _param_docs(doc: str) -> dict[str, str]:
    """``name: text`` lines of a Google-style ``Args:`` section, or ``:param name: text``."""
    found = {m.group(1): m.group(2).strip() for m in re.finditer(r":param\s+(\w+):\s*(.+)", doc)}
    in_args = False
    for line in doc.splitlines():
        stripped = line.strip()
        if stripped in ("Args:", "Arguments:", "Parameters:"):
            in_args = True
            continue
        if in_args:
            if not stripped:
                continue
            if stripped.endswith(":") and not line.startswith((" ", "\t")):
                break
            match = _ARG_LINE.match(line)
            if match and line.startswith(("    ", "\t")):
                found.setdefault(match.group(1), match.group(2).strip())
    return found


def _own_doc(obj: Any) -> str:
    # A class's own docstring, not one inherited from Callback; else its module's.
    doc = obj.__dict__.get("__doc__") if inspect.isclass(obj) else getattr(obj, "__doc__", None)
    if not doc:
        doc = getattr(inspect.getmodule(obj), "__doc__", None)
    return inspect.cleandoc(doc) if doc else ""


def _summary(obj: Any) -> str:
    doc = _own_doc(obj)
    paragraph = doc.split("\n\n", 1)[0]
    return " ".join(paragraph.split())


def parameters(obj: Any) -> tuple[Parameter, ...]:
    """Constructor parameters of a subscriber class (or factory), with defaults and docs."""
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):
        return ()
    docs = _param_docs(_own_doc(obj))
    init_doc = inspect.getdoc(getattr(obj, "__init__", None))
    if inspect.isclass(obj) and init_doc and init_doc != inspect.getdoc(object.__init__):
        docs = {**_param_docs(init_doc), **docs}
    found = []
    for param in signature.parameters.values():
        annotation = None
        if param.annotation is not inspect.Parameter.empty:
            annotation = (
                param.annotation
                if isinstance(param.annotation, str)
                else inspect.formatannotation(param.annotation)
            )
        default = None if param.default is inspect.Parameter.empty else repr(param.default)
        variadic = {param.VAR_POSITIONAL: "*", param.VAR_KEYWORD: "**"}.get(param.kind, "")
        found.append(Parameter(param.name, annotation, default, docs.get(param.name), variadic))
    return tuple(found)


def describe(name: str) -> PluginInfo:
    """Summary and parameters of the subscriber registered as ``name`` (or at an import path).

    A plugin that fails to import is described with its error instead of raising, so one
    broken package does not hide the others.
    """
    ep = available().get(name)
    target = ep.value if ep is not None else name
    dist = getattr(ep, "dist", None) if ep is not None else None
    dist_name = f"{dist.name} {dist.version}" if dist is not None else None
    try:
        obj = resolve(name)
    except Exception as error:  # a broken third-party plugin must not break the listing
        return PluginInfo(name, target, dist_name, "", (), error=f"{type(error).__name__}: {error}")
    return PluginInfo(name, target, dist_name, _summary(obj), parameters(obj))
