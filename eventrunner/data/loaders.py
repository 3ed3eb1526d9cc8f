"""Loaders: kinds by name prefix, validation before the first batch, batch limits, concatenation.

A loader is any iterable of batches (a ``DataLoader``, a list, a wrapper). Its name decides
what runs on it: ``train*`` forward and backward, ``valid*`` and ``infer*`` forward only.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from torch.utils.data import ConcatDataset, DataLoader, Dataset

from eventrunner.checks import is_number, positive_int

LOADER_PREFIXES = ("train", "valid", "infer")


def loader_kind(loader_key: str) -> str:
    """``"train"``, ``"valid"`` or ``"infer"`` for a loader name; ValueError for any other."""
    if isinstance(loader_key, str):
        for prefix in LOADER_PREFIXES:
            if loader_key.startswith(prefix):
                return prefix
    raise ValueError(
        f"loader {loader_key!r}: name must start with train, valid or infer "
        "(train* runs backward, valid*/infer* run forward only)"
    )


def loader_length(loader: Any) -> int | None:
    """``len(loader)``, or None for an iterable without a length."""
    try:
        return len(loader)
    except TypeError:
        return None


def _looks_like_dataset(obj: Any) -> bool:
    # A map-style dataset indexes samples; a loader iterates batches. Torch's Dataset and
    # plain classes with __getitem__ but no __iter__ are the former.
    if isinstance(obj, Dataset) and not isinstance(obj, DataLoader):
        return not hasattr(type(obj), "__iter__")
    return hasattr(type(obj), "__getitem__") and not hasattr(type(obj), "__iter__")


def validate_loaders(loaders: Any) -> dict[str, Any]:
    """Check ``loaders`` before the first batch; returns them as an ordered dict."""
    if not isinstance(loaders, Mapping):
        raise TypeError(
            f"loaders must be a mapping of name to loader (dict or OrderedDict), "
            f"got {type(loaders).__name__}"
        )
    if not loaders:
        raise ValueError("loaders is empty: give at least one train*, valid* or infer* loader")
    checked = {}
    for key, loader in loaders.items():
        loader_kind(key)
        if _looks_like_dataset(loader):
            raise TypeError(
                f"loader {key!r} is a {type(loader).__name__}, a dataset of samples: wrap it in "
                "a torch.utils.data.DataLoader (or any iterable of dict batches)"
            )
        if not isinstance(loader, Iterable):
            raise TypeError(
                f"loader {key!r}: expected an iterable of batches, got {type(loader).__name__}"
            )
        if loader_length(loader) == 0:
            raise ValueError(f"loader {key!r} is empty (len 0): it must yield at least one batch")
        checked[key] = loader
    return checked


def check_num_batches(num_batches: int | float, owner: str) -> int | float:
    """Validate a batch count (int >= 1) or fraction (float in (0, 1])."""
    if not is_number(num_batches):
        raise TypeError(f"{owner}: num_batches must be an int or a float, got {num_batches!r}")
    if isinstance(num_batches, float):
        if not 0.0 < num_batches <= 1.0:
            raise ValueError(
                f"{owner}: a float num_batches is a fraction of the loader in (0, 1], "
                f"got {num_batches}"
            )
        return num_batches
    return positive_int(num_batches, f"{owner}: num_batches")


def _batch_limit(num_batches: int | float, length: int | None, owner: str) -> int | None:
    """How many batches a limit keeps; None means the whole loader."""
    check_num_batches(num_batches, owner)
    if isinstance(num_batches, float):
        if num_batches == 1.0:
            return None
        if length is None:
            raise ValueError(
                f"{owner}: a fractional num_batches ({num_batches}) needs a loader with len()"
            )
        return max(1, math.floor(length * num_batches))
    if length is not None and num_batches >= length:
        return None
    return num_batches


class BatchLimitLoaderWrapper:
    """Limits a loader to its first batches, replayed every epoch.

    ``num_batches`` as an int keeps ``min(k, len(loader))`` batches; as a float in (0, 1] keeps
    ``max(1, floor(len * f))``. A limit that covers the whole loader passes it through (so it
    reshuffles as usual); a smaller one takes its batches on the first pass and replays them.

    Example::

        loaders = {"train": BatchLimitLoaderWrapper(train_loader, num_batches=1), ...}
    """

    def __init__(self, loader: Iterable[Any], num_batches: int | float):
        self.loader = loader
        self.num_batches = num_batches
        self._limit = _batch_limit(num_batches, loader_length(loader), "BatchLimitLoaderWrapper")
        self._kept: list[Any] | None = None

    @property
    def is_passthrough(self) -> bool:
        return self._limit is None

    def __len__(self) -> int:
        if self._limit is None:
            return len(self.loader)  # type: ignore[arg-type]
        if self._kept is not None:
            return len(self._kept)
        if loader_length(self.loader) is None:
            # an iterable without len() may hold fewer than k batches: unknown until read
            raise TypeError("BatchLimitLoaderWrapper: length unknown before the first pass")
        return self._limit

    def __iter__(self) -> Iterator[Any]:
        if self._limit is None:
            return iter(self.loader)
        if self._kept is None:
            kept = []
            for batch in self.loader:
                kept.append(batch)
                if len(kept) == self._limit:
                    break
            self._kept = kept
        return iter(self._kept)

    def state_dict(self) -> dict[str, Any]:
        """The kept batches (None before the first pass): a resumed run replays the same."""
        return {"kept": self._kept}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        kept = state.get("kept") if isinstance(state, Mapping) else None
        if kept is not None and not isinstance(kept, list):
            raise ValueError(
                f"BatchLimitLoaderWrapper: kept batches must be a list, got {type(kept).__name__}"
            )
        if kept is not None and self._limit is not None and len(kept) > self._limit:
            raise ValueError(
                f"BatchLimitLoaderWrapper: {len(kept)} kept batches, more than its limit "
                f"{self._limit}"
            )
        self._kept = kept if self._limit is not None else None

    def __getattr__(self, name: str) -> Any:
        # Reached only for names the wrapper lacks: expose the wrapped loader's (dataset,
        # batch_size, sampler, ...). Guard "loader" itself against recursion during unpickling.
        if name == "loader":
            raise AttributeError(name)
        return getattr(self.loader, name)

    def __repr__(self) -> str:
        return f"BatchLimitLoaderWrapper({self.loader!r}, num_batches={self.num_batches!r})"


class ConcatLoader:
    """Iterates several loaders one after another, as one loader."""

    def __init__(self, *loaders: Iterable[Any]):
        self.loaders = loaders

    def __len__(self) -> int:
        lengths = [loader_length(loader) for loader in self.loaders]
        if any(n is None for n in lengths):
            raise TypeError("ConcatLoader: a joined loader has no len()")
        return sum(lengths)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[Any]:
        for loader in self.loaders:
            yield from loader


def concat_datasets(*datasets: Any) -> ConcatDataset | ConcatLoader:
    """Join datasets (a ``ConcatDataset``) or loaders (one loader yielding all their batches)."""
    if not datasets:
        raise ValueError("concat_datasets: give at least one dataset or loader")
    are_datasets = [_looks_like_dataset(d) for d in datasets]
    if all(are_datasets):
        return ConcatDataset(datasets)
    if not any(are_datasets):
        return ConcatLoader(*datasets)
    raise TypeError(
        "concat_datasets: give either datasets (joined into one dataset) or loaders "
        "(joined into one loader), not a mix"
    )
