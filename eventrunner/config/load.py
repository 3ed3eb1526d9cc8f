"""Reading a config: YAML (``yaml.safe_load``), ``--set`` overrides, the sections check, the
shipped examples, and the import path a config's own modules are found on.

Nothing is imported or built here: a loaded config is plain data.
"""

from __future__ import annotations

import contextlib
import copy
import os
import re
import sys
from collections.abc import Iterable, Iterator, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from eventrunner.config.errors import ConfigError, close_matches, found, join

#: Keys with a meaning of their own: the object to build, its positional arguments, whether to
#: return a ``functools.partial``, and a subscriber's registered name in ``callbacks``.
TARGET = "_target_"
ARGS = "_args_"
PARTIAL = "_partial_"
SUBSCRIBER = "subscriber"

#: Top-level sections of a config, in the order they are built.
SECTIONS = (
    "runner",
    "model",
    "criterion",
    "optimizer",
    "scheduler",
    "loaders",
    "callbacks",
    "train",
)
#: ``train()`` arguments that come from their own sections instead of ``train:``.
FROM_SECTIONS = ("loaders", "model", "criterion", "optimizer", "scheduler", "callbacks")


def load_config(
    source: str | Path | Mapping[str, Any], overrides: Iterable[str] = ()
) -> dict[str, Any]:
    """Read a YAML file (``yaml.safe_load``), or copy a mapping, and apply ``--set`` overrides."""
    if isinstance(source, Mapping):
        config: Any = copy.deepcopy(dict(source))
        origin = "config"
    else:
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"config file {str(path)!r} not found")
        try:
            config = yaml.safe_load(path.read_text())
        except yaml.YAMLError as error:
            raise ConfigError(str(path), "valid YAML", f"a syntax error: {error}") from error
        origin = str(path)
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise ConfigError("<config>", f"a mapping of sections in {origin}", found(config))
    for override in overrides:
        apply_override(config, override)
    check_sections(config)
    return config


def parse_override(text: str) -> tuple[str, Any]:
    """``"a.b=value"`` -> ``("a.b", value)``, the value typed by ``yaml.safe_load``."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError("--set", "key.path=value", repr(text))
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        value = raw  # not YAML: keep the text as a string
    if isinstance(value, str) and _EXPONENT_FLOAT.match(value):
        value = float(value)  # YAML 1.1 leaves 1e-3 a string; on a command line it is a number
    return key, value


_EXPONENT_FLOAT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")


def _list_index(items: list[Any], key: str, path: str) -> int:
    if key.lstrip("-").isdigit():
        index = int(key)
        if index == len(items):  # one past the end appends: --set callbacks.2.subscriber=...
            items.append({})
        if not -len(items) <= index < len(items):
            raise ConfigError(path, f"an index up to {len(items)} ({len(items)} appends)", key)
        return index
    # A subscriber in the callbacks list can be addressed by its name.
    named = [
        i
        for i, item in enumerate(items)
        if item == key or (isinstance(item, Mapping) and item.get(SUBSCRIBER) == key)
    ]
    if len(named) != 1:
        expected = "a list index or the name of a subscriber listed once"
        raise ConfigError(path, expected, repr(key))
    return named[0]


def apply_override(config: dict[str, Any], override: str) -> None:
    """Set ``key.path=value`` in ``config``.

    List items are addressed by index (one past the end appends) or, for subscribers, by
    name; missing mappings on the way are created.
    """
    dotted, value = parse_override(override)
    keys = dotted.split(".")
    node: Any = config
    path = ""
    for i, key in enumerate(keys):
        last = i == len(keys) - 1
        path = join(path, key)
        if isinstance(node, list):
            index = _list_index(node, key, path)
            if last:
                node[index] = value
                return
            if isinstance(node[index], str):  # "- early_stopping" grows into a mapping
                node[index] = {SUBSCRIBER: node[index]}
            node = node[index]
        elif isinstance(node, dict):
            if last:
                node[key] = value
                return
            if node.get(key) is None:
                node[key] = {}
            node = node[key]
        else:
            parent = path.rpartition(".")[0]
            raise ConfigError(parent, f"a mapping or list to set {dotted!r} in", found(node))


def check_sections(config: Mapping[str, Any]) -> None:
    """Unknown top-level sections are refused, with close matches."""
    for key in config:
        if key not in SECTIONS:
            raise ConfigError(
                str(key),
                f"a section among {', '.join(SECTIONS)}",
                "an unknown key",
                hint=close_matches(str(key), SECTIONS),
            )


def example_names() -> list[str]:
    """Names of the example configs shipped in ``eventrunner/examples``."""
    folder = resources.files("eventrunner.examples")
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def example_path(name: str) -> Path:
    """The path of a shipped example config (``digits``)."""
    names = example_names()
    if name not in names:
        hint = close_matches(name, names)
        raise ValueError(
            f"unknown example {name!r}; available: {', '.join(names)}"
            + (f"; {hint}" if hint else "")
        )
    return Path(str(resources.files("eventrunner.examples") / f"{name}.yaml"))


@contextlib.contextmanager
def import_paths(source: str | Path | Mapping[str, Any] | None = None) -> Iterator[None]:
    """The config file's folder, then the working directory, first on ``sys.path`` meanwhile.

    ``python -m eventrunner`` has the working directory on ``sys.path`` and the console script
    does not; with this, both import a ``my_model.py`` that sits beside the config or in the
    working directory. Only the entries added here are removed afterwards.
    """
    folders = [Path.cwd()]
    if source is not None and not isinstance(source, Mapping):
        folders.insert(0, Path(source).resolve().parent)
    present = {os.path.abspath(entry or os.curdir) for entry in sys.path}
    added = []
    for folder in map(str, folders):
        if folder not in present and folder not in added:
            added.append(folder)
    sys.path[:0] = added
    try:
        yield
    finally:
        for entry in added:
            with contextlib.suppress(ValueError):
                sys.path.remove(entry)
