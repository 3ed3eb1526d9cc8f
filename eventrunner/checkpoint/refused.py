"""What ``torch.load(weights_only=True)`` refused in a file, read from its error or its pickle.

torch's message names the global, call or class it stopped at; for the pickles its reader
stops at before their first global (protocol 4+ frames), the pickle's opcodes are read with
``pickletools`` (nothing in them is run) to find the first global torch does not allow.
"""

from __future__ import annotations

import contextlib
import pickle
import pickletools
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


def core(error: BaseException) -> BaseException:
    """The weights-only unpickler's own error inside torch's wrapper, else ``error``."""
    # torch wraps the weights-only unpickler's error in advice (including retrying with the
    # unsafe loader) and raises the wrapper "from None": the original is its __context__.
    inner = error.__context__
    if isinstance(error, pickle.UnpicklingError) and isinstance(inner, pickle.UnpicklingError):
        return inner
    return error


def reason(error: BaseException) -> str:
    """``Type: message`` of the error (its core, see :func:`core`), on one line, shortened."""
    error = core(error)
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:300]}" if text else type(error).__name__


# How torch's weights-only unpickler names what it refused to import, call or build.
_REFUSED = (
    re.compile(r"GLOBAL (?P<what>\S+) (?:was not an allowed global|whose module)"),
    re.compile(r"reduce for unrecognized function (?P<what>.+?)(?: which belongs to .*)?$", re.S),
    re.compile(r"(?:create new object|build).* but got (?P<what>.+)$", re.S),
)
_STRING_OPS = {"STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "BINUNICODE",
               "SHORT_BINUNICODE", "BINUNICODE8"}  # fmt: skip
_GET_OPS = {"GET", "BINGET", "LONG_BINGET"}
_PUT_OPS = {"PUT", "BINPUT", "LONG_BINPUT"}


def _allowed_globals() -> set[str]:
    try:  # torch's own allow-list is private: without it every global counts as refused
        from torch._weights_only_unpickler import _get_allowed_globals

        return set(_get_allowed_globals())
    except (ImportError, AttributeError):
        return set()


def _pickle_globals(handle: IO[bytes]) -> Iterator[str]:
    """The globals a pickle would import, read with ``pickletools`` (nothing is run)."""
    strings: list[str] = []  # STACK_GLOBAL takes its module and name from the last two
    memo: dict[int, Any] = {}
    top: Any = None  # the value last pushed, when it is a string (for MEMOIZE/PUT)
    for opcode, arg, _ in pickletools.genops(handle):
        name = opcode.name
        if name in ("GLOBAL", "INST"):
            yield str(arg).replace(" ", ".")
        elif name == "STACK_GLOBAL" and len(strings) >= 2:
            yield f"{strings[-2]}.{strings[-1]}"
        if name in _STRING_OPS:
            top = arg
            strings.append(arg)
        elif name in _GET_OPS:
            top = memo.get(arg)
            if isinstance(top, str):
                strings.append(top)
        elif name == "MEMOIZE":
            memo[len(memo)] = top
        elif name in _PUT_OPS:
            memo[arg] = top
        else:
            top = None


def _first_refused_global(path: Path) -> str | None:
    """The first global of the file's pickle that torch does not allow; None if none is found."""
    allowed = _allowed_globals()
    try:
        with contextlib.ExitStack() as stack:
            handle: IO[bytes] = stack.enter_context(open(path, "rb"))
            if zipfile.is_zipfile(handle):
                archive = stack.enter_context(zipfile.ZipFile(handle))
                pickles = [n for n in archive.namelist() if n.endswith("data.pkl")]
                if not pickles:
                    return None
                handle = stack.enter_context(archive.open(pickles[0]))
            handle.seek(0)
            return next((g for g in _pickle_globals(handle) if g not in allowed), None)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        return None


def refused_global(error: BaseException, path: Path) -> str | None:
    """What a weights-only refusal of ``path`` names (a global, a call, a class), if it is one."""
    text = str(core(error))
    for pattern in _REFUSED:
        match = pattern.search(text)
        if match:
            return match.group("what").strip()
    if "Unsupported operand" in text:
        return _first_refused_global(path)
    return None
