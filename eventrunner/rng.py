"""Seeding, and capturing/restoring, every random number generator a training run touches.

``rng_state(loaders)`` captures Python's ``random``, NumPy's global state, torch's CPU and CUDA
generators and every ``torch.Generator`` the loaders hold (a DataLoader's ``generator=``, its
sampler's, through wrappers such as ``BatchLimitLoaderWrapper``); ``set_rng_state`` puts them
back; ``check_rng_state`` tells beforehand whether it can (a state read from a file is data).
The captured state holds only tensors, ints, floats, lists and plain dicts, so a checkpoint
that contains it loads with ``torch.load(weights_only=True)``.

Not here: the random streams inside DataLoader workers, which seed themselves when they start
(a resumed run's workers are new ones). Where a run may checkpoint inside a pass, each batch
they load is seeded instead (:mod:`eventrunner.data.worker_seeds`); elsewhere
:func:`persistent_worker_loaders` finds the loaders whose workers outlive a pass, so that
resuming can say so.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from eventrunner.checks import is_int

log = logging.getLogger("eventrunner")

# Attributes through which a loader reaches its generators: DataLoader (generator, sampler,
# batch_sampler), samplers (generator, sampler), wrappers (loader, loaders).
_CHILDREN = ("generator", "sampler", "batch_sampler", "loader", "loaders")
_MAX_DEPTH = 8


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy and torch (CPU and every CUDA device)."""
    if not is_int(seed):
        raise TypeError(f"seed must be an int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _own_attr(obj: Any, name: str) -> Any:
    # vars() and not getattr(): wrappers forward unknown names to the wrapped loader
    # (BatchLimitLoaderWrapper.__getattr__), which would report one generator twice.
    try:
        return vars(obj).get(name)
    except TypeError:  # no __dict__ (slots, builtins)
        return None


def _walk(
    obj: Any, path: str, depth: int, seen: set[int], items: bool = False
) -> Iterator[tuple[str, Any]]:
    """``(path, object)`` for every object a loader reaches through :data:`_CHILDREN`.

    The items of a list or tuple are walked only where it holds loaders (a wrapper's
    ``loaders``): a loader that is a list holds batches, and walking them costs per batch.
    """
    if obj is None or depth > _MAX_DEPTH or id(obj) in seen:
        return
    seen.add(id(obj))
    yield path, obj
    if isinstance(obj, (torch.Generator, str, bytes, int, float, Mapping, torch.Tensor)):
        return
    if isinstance(obj, (list, tuple)):
        for i, item in enumerate(obj if items else ()):
            yield from _walk(item, f"{path}[{i}]", depth + 1, seen)
        return
    for name in _CHILDREN:
        child = _own_attr(obj, name)
        yield from _walk(child, f"{path}.{name}", depth + 1, seen, items=name == "loaders")


def loader_generators(loaders: Mapping[str, Any]) -> dict[str, torch.Generator]:
    """Every distinct ``torch.Generator`` the loaders hold, by path (``"train.generator"``).

    A generator shared by a DataLoader and its sampler (``DataLoader(generator=g)`` hands ``g``
    to the ``RandomSampler`` it makes) is listed once, under the first path that reaches it.
    """
    found: dict[str, torch.Generator] = {}
    seen: set[int] = set()
    for key, loader in loaders.items():
        for path, obj in _walk(loader, str(key), 0, seen):
            if isinstance(obj, torch.Generator):
                found[path] = obj
    return found


def persistent_worker_loaders(loaders: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(loader key, path)`` of every DataLoader with ``persistent_workers=True`` (and
    workers) that the loaders reach: their workers' random state is not restored on resume."""
    found = []
    seen: set[int] = set()
    for key, loader in loaders.items():
        for path, obj in _walk(loader, str(key), 0, seen):
            if isinstance(obj, DataLoader) and obj.persistent_workers and obj.num_workers > 0:
                found.append((str(key), path))
    return found


def rng_state(loaders: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The state of every generator: python, numpy, torch CPU/CUDA and the loaders' own."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": {
            "version": version,
            "state": torch.tensor(internal, dtype=torch.int64),
            "gauss": gauss,
        },
        "numpy": {
            "name": str(name),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
        # Only when CUDA is already in use: asking would initialise it in a CPU-only run.
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
        "loaders": {},
    }
    if loaders:
        state["loaders"] = {
            path: generator.get_state() for path, generator in loader_generators(loaders).items()
        }
    return state


def _set_python(state: Mapping[str, Any], target: Any = random) -> None:
    target.setstate(
        (int(state["version"]), tuple(int(v) for v in state["state"].tolist()), state["gauss"])
    )


def _set_numpy(state: Mapping[str, Any], target: Any = np.random) -> None:
    target.set_state(
        (
            state["name"],
            state["keys"].numpy().astype(np.uint32),
            int(state["pos"]),
            int(state["has_gauss"]),
            float(state["cached_gaussian"]),
        )
    )


# The tensors of a state, by key path: checked first, so that a list where a tensor belongs
# gets an error naming it rather than "'list' object has no attribute 'numpy'".
_TENSORS = (("python", "state"), ("numpy", "keys"), ("torch",))


def _check_tensors(state: Mapping[str, Any]) -> None:
    for keys in _TENSORS:
        value: Any = state
        for i, key in enumerate(keys):
            if not isinstance(value, Mapping) or key not in value:
                raise ValueError(f"rng.{'.'.join(keys[: i + 1])} is missing")
            value = value[key]
        if not isinstance(value, torch.Tensor):
            raise ValueError(
                f"rng.{'.'.join(keys)}: expected a tensor, found {type(value).__name__}"
            )


def check_rng_state(state: Any, loaders: Mapping[str, Any] | None = None) -> None:
    """Raise ``ValueError`` naming the part (``rng.numpy``) that :func:`set_rng_state` could not
    restore; nothing is changed. Each part is tried on a fresh generator of its kind."""
    if not isinstance(state, Mapping):
        raise ValueError(f"rng: expected a dict, found {type(state).__name__}")
    _check_tensors(state)
    tries: list[tuple[str, Any]] = [
        ("rng.python", lambda: _set_python(state["python"], random.Random())),
        ("rng.numpy", lambda: _set_numpy(state["numpy"], np.random.RandomState())),
        ("rng.torch", lambda: torch.Generator().set_state(state["torch"])),
    ]
    cuda = state.get("cuda") or []
    if not isinstance(cuda, list) or not all(isinstance(t, torch.Tensor) for t in cuda):
        raise ValueError("rng.cuda: expected a list of tensors")
    saved = state.get("loaders") or {}
    if not isinstance(saved, Mapping):
        raise ValueError(f"rng.loaders: expected a dict, found {type(saved).__name__}")
    for path, generator in loader_generators(loaders or {}).items():
        if path in saved:
            tries.append(
                (
                    f"rng.loaders.{path}",
                    lambda g=generator, s=saved[path]: torch.Generator(g.device).set_state(s),
                )
            )
    for where, attempt in tries:
        try:
            attempt()
        except (KeyError, TypeError, ValueError, AttributeError, RuntimeError, IndexError) as error:
            raise ValueError(f"{where}: {type(error).__name__}: {error}") from error


def set_rng_state(
    state: Mapping[str, Any], loaders: Mapping[str, Any] | None = None, *, source: str = "state"
) -> None:
    """Restore what :func:`rng_state` captured; ``source`` names it in warnings (a file)."""
    _set_python(state["python"])
    _set_numpy(state["numpy"])
    torch.set_rng_state(state["torch"])
    cuda = list(state.get("cuda") or [])
    if cuda:
        if torch.cuda.is_available() and torch.cuda.device_count() == len(cuda):
            torch.cuda.set_rng_state_all(cuda)
        else:
            log.warning(
                "eventrunner: %s holds the RNG states of %d CUDA devices; this process has %d: "
                "CUDA RNG states not restored",
                source,
                len(cuda),
                torch.cuda.device_count() if torch.cuda.is_available() else 0,
            )
    saved = dict(state.get("loaders") or {})
    if loaders is None:
        return
    current = loader_generators(loaders)
    for path, generator in current.items():
        if path in saved:
            generator.set_state(saved.pop(path))
        else:
            log.warning(
                "eventrunner: %s has no state for the loader generator %s; it keeps its seed",
                source,
                path,
            )
    if saved:
        log.warning(
            "eventrunner: %s holds loader generator states that no loader has now: %s",
            source,
            ", ".join(sorted(saved)),
        )
