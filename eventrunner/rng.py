"""Seeding, and capturing/restoring, every random number generator a training run touches.

``rng_state(loaders)`` captures Python's ``random``, NumPy's global state, torch's CPU and CUDA
generators and every ``torch.Generator`` the loaders hold (a DataLoader's ``generator=``, its
sampler's, through wrappers such as ``BatchLimitLoaderWrapper``); ``set_rng_state`` puts them
back. The captured state holds only tensors, ints, floats, lists and plain dicts, so a
checkpoint that contains it loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch

log = logging.getLogger("eventrunner")

# Attributes through which a loader reaches its generators: DataLoader (generator, sampler,
# batch_sampler), samplers (generator, sampler), wrappers (loader, loaders).
_CHILDREN = ("generator", "sampler", "batch_sampler", "loader", "loaders")
_MAX_DEPTH = 8


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy and torch (CPU and every CUDA device)."""
    if isinstance(seed, bool) or not isinstance(seed, int):
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


def _walk(obj: Any, path: str, depth: int, seen: set[int]) -> Iterator[tuple[str, torch.Generator]]:
    if obj is None or depth > _MAX_DEPTH or id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, torch.Generator):
        yield path, obj
        return
    if isinstance(obj, (list, tuple)):
        for i, item in enumerate(obj):
            yield from _walk(item, f"{path}[{i}]", depth + 1, seen)
        return
    if isinstance(obj, (str, bytes, int, float, Mapping, torch.Tensor)):
        return
    for name in _CHILDREN:
        yield from _walk(_own_attr(obj, name), f"{path}.{name}", depth + 1, seen)


def loader_generators(loaders: Mapping[str, Any]) -> dict[str, torch.Generator]:
    """Every distinct ``torch.Generator`` the loaders hold, by path (``"train.generator"``).

    A generator shared by a DataLoader and its sampler (``DataLoader(generator=g)`` hands ``g``
    to the ``RandomSampler`` it makes) is listed once, under the first path that reaches it.
    """
    found: dict[str, torch.Generator] = {}
    seen: set[int] = set()
    for key, loader in loaders.items():
        for path, generator in _walk(loader, str(key), 0, seen):
            found[path] = generator
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


def set_rng_state(
    state: Mapping[str, Any], loaders: Mapping[str, Any] | None = None, *, source: str = "state"
) -> None:
    """Restore what :func:`rng_state` captured; ``source`` names it in warnings (a file)."""
    py = state["python"]
    random.setstate((int(py["version"]), tuple(int(v) for v in py["state"].tolist()), py["gauss"]))
    npy = state["numpy"]
    np.random.set_state(
        (
            npy["name"],
            npy["keys"].numpy().astype(np.uint32),
            int(npy["pos"]),
            int(npy["has_gauss"]),
            float(npy["cached_gaussian"]),
        )
    )
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
