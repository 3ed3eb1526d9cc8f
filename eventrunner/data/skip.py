"""A loader pass that starts after its first batches: where a resumed run goes on mid-epoch.

``PassFrom(loader, skip, started)`` is one pass over ``loader`` from batch ``skip + 1``.
A ``DataLoader`` over a map-style dataset skips the first ``skip`` batches of indices before
its workers get any: no sample of a skipped batch is loaded, and torch's samplers (sequential,
random, weighted, distributed) seek to the position instead of producing the skipped indices,
so the skip takes the same time wherever the pass stopped. Batches held in memory (a list,
a tuple, a :class:`~eventrunner.data.loaders.BatchLimitLoaderWrapper`'s kept batches) are
stepped over. Any other iterable is read and its first batches dropped, with a warning.
``started`` runs once the pass's iterator exists (a resumed run restores its RNG states
then: the sampler has drawn its order exactly as the interrupted pass did).
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import logging
import types
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from torch.utils.data import BatchSampler, DataLoader, IterableDataset

from eventrunner.data.loaders import BatchLimitLoaderWrapper, loader_length
from eventrunner.data.worker_seeds import SeedEachBatch, SeededDataset
from eventrunner.rng import rng_state, set_rng_state

log = logging.getLogger("eventrunner")


def _drop(it: Iterator[Any], count: int) -> Iterator[Any]:
    collections.deque(itertools.islice(it, count), maxlen=0)  # consumes at C speed
    return it


_SEEKABLE = (type(iter([])), type(iter(range(0))))
_END = object()


def _seekable(it: Any) -> Any:
    """The list or range iterator ``it`` is, or that the generator ``it`` is delegating to
    with ``yield from`` (torch's random samplers do), else None."""
    inner = it.gi_yieldfrom if isinstance(it, types.GeneratorType) else it
    return inner if type(inner) in _SEEKABLE else None


def advance(it: Iterator[Any], count: int) -> Iterator[Any]:
    """``it`` after its next ``count`` items, which are not produced where it can seek.

    A list or range iterator, also one a generator is delegating to, moves to its new place
    at once (its pickling ``__setstate__``); a generator that has not started yet or has
    used up one delegate gives one item to get to the next. Anything else is read at C speed.
    """
    while count > 0:
        inner = _seekable(it)
        left = inner.__length_hint__() if inner is not None else 0
        if left:
            step = min(count, left)
            inner.__setstate__(inner.__reduce__()[2] + step)
            count -= step
        elif isinstance(it, types.GeneratorType):
            if next(it, _END) is _END:  # to its first (or next) delegate
                return it
            count -= 1
            if _seekable(it) is None:
                return _drop(it, count)
        else:
            return _drop(it, count)
    return it


def _skip_batches(batch_sampler: Any, count: int) -> Iterator[Any]:
    """An iterator over ``batch_sampler`` without its first ``count`` batches. Torch's own
    ``BatchSampler`` has full batches before its last: its sampler skips ``count`` times
    its batch size indices (seeking where it can) and batches the rest as it would."""
    if count and type(batch_sampler) is BatchSampler:
        indices = advance(iter(batch_sampler.sampler), count * batch_sampler.batch_size)
        return iter(BatchSampler(indices, batch_sampler.batch_size, batch_sampler.drop_last))
    return advance(iter(batch_sampler), count)


class _SkipFirst:
    """A sampler (or batch sampler) without its first ``count`` items."""

    def __init__(self, sampler: Any, count: int) -> None:
        self.sampler = sampler
        self.count = count

    def __iter__(self) -> _Skipping:
        return _Skipping(self.sampler, self.count)

    def __len__(self) -> int:
        return max(0, len(self.sampler) - self.count)


class _Skipping:
    """The indices after the first ``count``, drawn when first asked for (or :meth:`ready`).

    A sampler draws its order at its first item, which a DataLoader asks for after drawing
    its workers' base seed: the skip keeps that order of draws.
    """

    __slots__ = ("_count", "_it", "_sampler")

    def __init__(self, sampler: Any, count: int) -> None:
        self._sampler = sampler
        self._count = count
        self._it: Iterator[Any] | None = None

    def ready(self) -> Iterator[Any]:
        if self._it is None:
            self._it = _skip_batches(self._sampler, self._count)
        return self._it

    def __iter__(self) -> _Skipping:
        return self

    def __next__(self) -> Any:
        return next(self._it if self._it is not None else self.ready())


def _skips_indices(loader: Any) -> bool:
    return isinstance(loader, DataLoader) and not isinstance(loader.dataset, IterableDataset)


def seeds_workers(loader: Any) -> bool:
    """Whether :class:`PassFrom` can seed ``loader``'s workers per batch: a DataLoader over
    a map-style dataset, with workers and batches (see :mod:`eventrunner.data.worker_seeds`)."""
    return (
        _skips_indices(loader)
        and loader.num_workers > 0
        and loader._auto_collation
        and not is_stateful(loader)
    )


def has_seedable_workers(loader: Any) -> bool:
    """Whether a pass over ``loader`` (or the DataLoader a pass-through batch limit wraps)
    has workers :class:`PassFrom` would seed per batch."""
    if isinstance(loader, BatchLimitLoaderWrapper):
        return loader.is_passthrough and seeds_workers(loader.loader)
    return seeds_workers(loader)


@contextlib.contextmanager
def _standing_in(loader: DataLoader, name: str, value: Any) -> Iterator[None]:
    # DataLoader refuses new samplers (and datasets) after __init__; its iterator takes them
    # when it is made: a stand-in is set for that moment only.
    own = vars(loader)[name]
    object.__setattr__(loader, name, value)
    try:
        yield
    finally:
        object.__setattr__(loader, name, own)


def _dataloader_iter(loader: DataLoader, count: int, worker_seed: int | None) -> Iterator[Any]:
    # The index sampler a (persistent-workers) iterator was made with is used again when it is
    # reset for the next pass: it gets this pass's one, then the whole sampler back.
    name = "batch_sampler" if loader._auto_collation else "sampler"
    sampler: Any = _SkipFirst(vars(loader)[name], count)
    if worker_seed is not None:
        sampler = SeedEachBatch(sampler, worker_seed, first=count)
    persistent = getattr(loader, "_iterator", None)
    dataset: Any = loader.dataset
    if worker_seed is not None and not isinstance(dataset, SeededDataset):
        dataset = SeededDataset(dataset)  # handed to the workers when they start
    with (
        _standing_in(loader, name, sampler),
        _standing_in(loader, "dataset", dataset),
    ):
        if persistent is not None:
            persistent._index_sampler = loader._index_sampler
        try:
            it = iter(loader)
        finally:
            persistent = getattr(loader, "_iterator", None)  # made now, the first time
    if persistent is not None:  # its later passes start from the whole sampler
        persistent._index_sampler = loader._index_sampler
    indices = getattr(it, "_sampler_iter", None)
    if isinstance(indices, _Skipping):
        indices.ready()  # the order drawn now, before the resumed run's RNG states return
    return it


def is_stateful(loader: Any) -> bool:
    """Whether ``loader`` saves and restores its own position (torchdata's
    ``StatefulDataLoader``: ``state_dict()``/``load_state_dict()``)."""
    if isinstance(loader, BatchLimitLoaderWrapper):
        return False  # its state is the batches it keeps, not a position
    return callable(getattr(loader, "state_dict", None)) and callable(
        getattr(loader, "load_state_dict", None)
    )


def skip_kind(loader: Any) -> str:
    """How :class:`PassFrom` skips ``loader``'s first batches: ``"state"`` (the loader
    restores its own position), ``"indices"`` (nothing is loaded), ``"memory"`` (held batches
    are stepped over) or ``"read"`` (read and dropped)."""
    if isinstance(loader, BatchLimitLoaderWrapper):
        return "memory" if not loader.is_passthrough else skip_kind(loader.loader)
    if isinstance(loader, list | tuple):
        return "memory"
    if is_stateful(loader):
        return "state"
    return "indices" if _skips_indices(loader) else "read"


class PassFrom:
    """One pass over ``loader`` from batch ``skip + 1``; ``started()`` once it is positioned.

    A stateful loader is put back by its own ``load_state_dict(state)`` instead. With a
    ``worker_seed``, a DataLoader's workers seed each batch from it and the batch's number
    in the pass (:mod:`eventrunner.data.worker_seeds`).
    """

    def __init__(
        self,
        loader: Iterable[Any],
        skip: int = 0,
        started: Callable[[], None] | None = None,
        state: Any = None,
        worker_seed: int | None = None,
    ) -> None:
        self.loader = loader
        self.skip = skip
        self.started = started
        self.state = state
        self.worker_seed = worker_seed

    def __len__(self) -> int:
        length = loader_length(self.loader)
        if length is None:
            raise TypeError(f"{type(self.loader).__name__} has no len()")
        return max(0, length - self.skip)

    def __iter__(self) -> Iterator[Any]:
        loader, skip = self.loader, self.skip
        inner = loader.loader if isinstance(loader, BatchLimitLoaderWrapper) else None
        if self.state is not None and is_stateful(loader):
            loader.load_state_dict(self.state)  # type: ignore[attr-defined]
            it = iter(loader)
        elif inner is not None and loader.is_passthrough and _skips_indices(inner):
            it = _dataloader_iter(inner, skip, self._seed_for(inner))
        elif _skips_indices(loader):
            it = _dataloader_iter(loader, skip, self._seed_for(loader))  # type: ignore[arg-type]
        else:
            if skip and skip_kind(loader) == "read":
                log.warning(
                    "eventrunner: resuming inside a pass over %s: its first %d batches are "
                    "read again and dropped (a DataLoader over a map-style dataset skips "
                    "their indices instead)",
                    type(loader).__name__,
                    skip,
                )
            it = advance(iter(loader), skip)
        if self.started is not None:
            self.started()
        return it

    def _seed_for(self, loader: Any) -> int | None:
        return self.worker_seed if seeds_workers(loader) else None


def start_persistent_workers(loader: Any, seeded: bool = False) -> bool:
    """Start a ``persistent_workers`` DataLoader's workers without drawing random numbers.

    Such a loader draws its workers' base seed when its iterator is first made, that is in
    its first pass only. A run resumed after that pass would draw it again, before its
    sampler's order: starting the workers here, with every RNG state put back afterwards,
    keeps the order of the interrupted run. ``seeded``: the workers get the dataset that
    seeds each batch (as they did in the interrupted run). Returns whether they were started.
    """
    if not (
        isinstance(loader, DataLoader)
        and loader.persistent_workers
        and loader.num_workers > 0
        and getattr(loader, "_iterator", None) is None
    ):
        return False
    saved = rng_state({"loader": loader})
    dataset = SeededDataset(loader.dataset) if seeded and seeds_workers(loader) else loader.dataset
    with _standing_in(loader, "dataset", dataset):
        iter(loader)
    set_rng_state(saved, {"loader": loader})
    return True
