"""``ConfigError`` and the wording helpers every config module uses to report a key path.

An error names the path (the same one ``--set`` takes), what was expected and what was found.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any


class ConfigError(ValueError):
    """A config that cannot be built: ``path`` is the key path (``loaders.valid.batch_size``)."""

    def __init__(
        self, path: str, expected: str, found: str, *, hint: str = "", message: str = ""
    ) -> None:
        self.path = path or "<config>"
        self.expected = expected
        self.found = found
        message = f"{self.path}: {message or f'expected {expected}, found {found}'}"
        super().__init__(f"{message}; {hint}" if hint else message)


def found(value: Any) -> str:
    """A config value as an error shows it: its repr (shortened) and its type."""
    if value is None:
        return "null"
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__name__})"


def join(path: str, key: Any) -> str:
    """``join("loaders", "train")`` -> ``"loaders.train"``; the root path is empty."""
    return f"{path}.{key}" if path else str(key)


def close_matches(word: str, choices: Iterable[str]) -> str:
    """``"did you mean 'x'?"`` for the choices close to ``word``, else ``""``."""
    close = difflib.get_close_matches(word, list(choices), n=3, cutoff=0.6)
    return f"did you mean {', '.join(map(repr, close))}?" if close else ""
