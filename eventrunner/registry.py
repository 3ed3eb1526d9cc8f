"""Subscribers by name: the ``eventrunner.plugins`` entry-point group, or an import path.

Built-ins are registered by this project's own ``pyproject.toml``, exactly as a third-party
package registers its own::

    [project.entry-points."eventrunner.plugins"]
    my_logger = "mypkg.callbacks:MyLogger"
"""

from __future__ import annotations

import difflib
import functools
import importlib
from importlib.metadata import EntryPoint, entry_points
from typing import Any

ENTRY_POINT_GROUP = "eventrunner.plugins"


@functools.cache
def available() -> dict[str, EntryPoint]:
    """Registered subscriber names and their entry points, sorted by name."""
    found = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
    return dict(sorted(found.items()))


def refresh() -> None:
    """Forget the cached entry points (after installing a plugin package in-process)."""
    available.cache_clear()


def _import_path(path: str) -> Any:
    module_name, _, attr = path.partition(":")
    if not attr:
        module_name, _, attr = path.rpartition(".")
    try:
        module = importlib.import_module(module_name)
        return getattr(module, attr)
    except (ImportError, AttributeError, ValueError) as error:
        raise ValueError(f"subscriber {path!r}: cannot import it ({error})") from error


def resolve(name: str) -> Any:
    """The class (or factory) registered as ``name``, or found at import path ``pkg.mod:Name``."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"subscriber name must be a non-empty string, got {name!r}")
    registered = available()
    if name in registered:
        return registered[name].load()
    if ":" in name or "." in name:
        return _import_path(name)
    close = difflib.get_close_matches(name, registered, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
    raise ValueError(
        f"unknown subscriber {name!r}{hint} (registered: {', '.join(registered) or 'none'}; "
        "or give an import path like 'mypkg.callbacks:MyCallback')"
    )


def create(name: str, **kwargs: Any) -> Any:
    """An instance of the subscriber registered as ``name``."""
    return resolve(name)(**kwargs)
