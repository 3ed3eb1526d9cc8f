"""torch.distributed helpers: rank checks, process-group set-up and tear-down, samplers, reductions.

Every function is safe in a single process (no process group): the rank is then the one torchrun
set in the environment, else 0 of 1. The distributed engine is torch.distributed itself; this
module only decides when to start it, which device each rank uses, and how loaders and loader
metrics are shared between ranks.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
import time
from collections.abc import Iterator, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    DistributedSampler,
    IterableDataset,
    RandomSampler,
    SequentialSampler,
)

from eventrunner.data.loaders import BatchLimitLoaderWrapper

if TYPE_CHECKING:
    from eventrunner.metrics import WeightedMeans

log = logging.getLogger("eventrunner")

_TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK")

#: ``train(ddp_timeout=)`` default, for gloo and nccl alike: how long a collective waits for a
#: stuck or lost rank before the run fails (torch's own defaults: 30 min gloo, 10 min nccl).
DEFAULT_DDP_TIMEOUT_S = 600.0

# ----------------------------------------------------------------------------- rank checks


def is_dist_ready() -> bool:
    """True when torch.distributed is available and a process group is initialised."""
    return dist.is_available() and dist.is_initialized()


def _env_int(name: str) -> int:
    text = os.environ[name]
    try:
        return int(text)
    except ValueError:
        raise ValueError(
            f"environment variable {name} must be an integer (as torchrun sets it), got {text!r}"
        ) from None


def get_rank() -> int:
    """Global rank of this process: the default group's; without one, ``RANK`` as torchrun set
    it (so it stays right after ``train()`` destroyed its group), else 0."""
    if is_dist_ready():
        return dist.get_rank()
    return _env_int("RANK") if launched_by_torchrun() else 0


def get_world_size() -> int:
    """Number of processes: the default group's; without one, torchrun's ``WORLD_SIZE``, else 1."""
    if is_dist_ready():
        return dist.get_world_size()
    return _env_int("WORLD_SIZE") if launched_by_torchrun() else 1


def get_local_rank() -> int:
    """Rank on this machine: ``LOCAL_RANK`` as torchrun sets it (0 when unset)."""
    return _env_int("LOCAL_RANK") if "LOCAL_RANK" in os.environ else 0


def is_main_process() -> bool:
    """True on rank 0 (and in a single process): the rank that writes files, logs, progress bars."""
    return get_rank() == 0


def launched_by_torchrun() -> bool:
    """True when ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` are set (torchrun, or by hand)."""
    return all(name in os.environ for name in _TORCHRUN_ENV)


def barrier() -> None:
    """Wait for every rank (no-op without a process group)."""
    if is_dist_ready():
        dist.barrier()


def unwrap_model(model: nn.Module) -> nn.Module:
    """The user's module inside DDP/DataParallel/``torch.compile`` wrappers (or the module itself).

    Checkpoints save and load ``unwrap_model(runner.model).state_dict()``, so their keys are the
    same with and without those wrappers (no ``module.`` or ``_orig_mod.`` prefix).
    """
    while True:
        if isinstance(model, nn.DataParallel | nn.parallel.DistributedDataParallel):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):  # torch.compile
            model = model._orig_mod
        else:
            return model


# ------------------------------------------------------------------ process-group lifecycle


_rendezvous: dict[str, Any] = {}


def as_timeout(value: float | timedelta) -> timedelta:
    """``train(ddp_timeout=)`` as a ``timedelta``: seconds (int or float) or a ``timedelta``,
    positive and finite."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise TypeError(
            f"ddp_timeout must be seconds (int or float) or a datetime.timedelta, got {value!r}"
        )
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"ddp_timeout must be a positive, finite duration, got {value!r}")
    try:
        return value if isinstance(value, timedelta) else timedelta(seconds=seconds)
    except OverflowError:
        raise ValueError(f"ddp_timeout is too long for a timedelta: {value!r}") from None


def _next_store() -> dist.Store:
    """The ``env://`` store under a fresh prefix for each group this process starts.

    torch names every default group's keys alike (``default_pg/0/...``) and a destroyed group's
    keys stay in the shared store, so a second ``train()`` in the same script could read the
    first group's stale addresses. The base store is kept for the process and reused: a second
    rendezvous would also try to bind the master port again.
    """
    if "store" not in _rendezvous:
        store, _, _ = next(dist.rendezvous("env://"))
        _rendezvous["store"] = store
        _rendezvous["generation"] = 0
    _rendezvous["generation"] += 1
    store = dist.PrefixStore(f"eventrunner/{_rendezvous['generation']}", _rendezvous["store"])
    _rendezvous["current"] = store
    return store


def init_process_group(
    device: torch.device, timeout: timedelta = timedelta(seconds=DEFAULT_DDP_TIMEOUT_S)
) -> None:
    """Start the default group: nccl on CUDA, gloo otherwise; its collectives fail after
    ``timeout`` (a stuck rank ends the run instead of leaving the others waiting).

    Under torchrun the ``env://`` rendezvous is used; without it (``train(ddp=True)`` in a plain
    ``python`` process) a world of one process, which runs the DDP code path on one rank.
    """
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if launched_by_torchrun():
        dist.init_process_group(
            backend,
            store=_next_store(),
            rank=_env_int("RANK"),
            world_size=_env_int("WORLD_SIZE"),
            timeout=timeout,
        )
    else:
        log.warning(
            "eventrunner: ddp=True outside torchrun: one process (world size 1); start the "
            "script with `torchrun --nproc_per_node=N script.py` for N processes"
        )
        dist.init_process_group(
            backend, store=dist.HashStore(), rank=0, world_size=1, timeout=timeout
        )


def _store_barrier(store: dist.Store, world_size: int, timeout_s: float) -> None:
    # Not dist.barrier(): a gloo barrier work still being freed on gloo's thread (that needs the
    # GIL) while this thread frees the process group (joining that thread, GIL held) deadlocks;
    # seen here in 2 of 18 two-rank runs on a loaded machine (0 of 24 with this). The store
    # needs no gloo work, and the polling sleep lets gloo's thread finish.
    store.add("shutdown", 1)
    deadline = time.monotonic() + timeout_s
    while store.add("shutdown", 0) < world_size:
        if time.monotonic() > deadline:
            raise TimeoutError(f"eventrunner: ranks did not all finish within {timeout_s:.0f} s")
        time.sleep(0.005)


def shutdown_process_group(
    *, wait: bool, timeout: timedelta = timedelta(seconds=DEFAULT_DDP_TIMEOUT_S)
) -> None:
    """Destroy the default group; ``wait`` first lets every rank reach this point, for at most
    ``timeout`` (not on errors: a rank that failed would leave the others waiting)."""
    if not is_dist_ready():
        return
    store = _rendezvous.pop("current", None)
    try:
        if wait and store is not None and get_world_size() > 1:
            _store_barrier(store, get_world_size(), timeout.total_seconds())
    finally:
        time.sleep(0.01)  # release the GIL: gloo's thread may still be freeing finished work
        dist.destroy_process_group()


@contextlib.contextmanager
def process_group_scope(
    ddp: bool | None,
    device: str | torch.device | None,
    default_device: torch.device,
    timeout: timedelta = timedelta(seconds=DEFAULT_DDP_TIMEOUT_S),
) -> Iterator[torch.device]:
    """Around one ``train()``: starts the process group when asked, yields the device this rank
    trains on, and always tears down the group it started, also on errors.

    ``ddp=None`` (default) starts one under torchrun; ``ddp=True`` always (a world of one
    outside torchrun); ``ddp=False`` never. A group the caller started is used, never destroyed
    (``timeout`` applies to groups started here). On CUDA each rank trains on
    ``cuda:LOCAL_RANK`` unless ``device`` names an index.
    """
    chosen = torch.device(device) if device is not None else default_device
    if ddp is False or not (is_dist_ready() or ddp or launched_by_torchrun()):
        yield chosen
        return
    if chosen.type == "cuda" and (device is None or chosen.index is None):
        chosen = torch.device("cuda", get_local_rank())
    created = not is_dist_ready()
    if created:
        init_process_group(chosen, timeout)
    finished = False
    try:
        yield chosen
        finished = True
    finally:
        if created:
            shutdown_process_group(wait=finished, timeout=timeout)


def ddp_active(ddp: bool | None) -> bool:
    """Whether a run with this ``ddp`` argument is data-parallel: a group exists, not refused."""
    return ddp is not False and is_dist_ready()


# --------------------------------------------------------------------------- collectives


def _collective_device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def broadcast_value(value: int) -> int:
    """Rank 0's ``value`` on every rank (one broadcast; the value itself without a group)."""
    if not is_dist_ready() or get_world_size() == 1:
        return value
    tensor = torch.tensor([value], dtype=torch.int64, device=_collective_device())
    dist.broadcast(tensor, src=0)
    return int(tensor.item())


def metric_names_mismatch(loader: str | None, names_by_rank: Sequence[Sequence[str]]) -> str:
    """The error message for ranks that produced different metric names (index: rank)."""
    world = range(len(names_by_rank))
    every = sorted({name for names in names_by_rank for name in names})
    parts = []
    for name in every:
        have = [rank for rank in world if name in names_by_rank[rank]]
        lack = [rank for rank in world if rank not in have]
        if lack:
            parts.append(f"metric {name!r} on {_ranks(have)} ({_ranks(lack)} did not)")
    where = f"loader {loader!r}: " if loader is not None else ""
    return (
        f"{where}the ranks produced different metrics: {'; '.join(parts)}. Every rank must put "
        "the same scalar metrics in batch_metrics (their means are reduced over the ranks "
        "together)"
    )


def _ranks(ranks: list[int]) -> str:
    return f"rank{'s' if len(ranks) > 1 else ''} {', '.join(map(str, ranks))}"


def _names_digest(names: list[str]) -> int:
    # 56 bits: an int64 that can be negated; str hash() differs between processes.
    digest = hashlib.blake2b("\0".join(names).encode(), digest_size=7).digest()
    return int.from_bytes(digest, "big")


def _check_same_names(names: list[str], loader: str | None, device: torch.device) -> None:
    """Raise on every rank when the ranks' metric names differ.

    Needed before the values' all-reduce, whose length is the number of names: with one name
    more on one rank gloo aborts that process (or the collective waits for the timeout), with
    as many but other names it adds unrelated metrics together. One all-reduce of a digest
    (MAX of ``d`` and ``-d``: equal iff every rank has the same ``d``); the names themselves
    travel only when they differ, to name them.
    """
    digest = _names_digest(names)
    check = torch.tensor([digest, -digest], dtype=torch.int64, device=device)
    dist.all_reduce(check, op=dist.ReduceOp.MAX)
    highest, negated_lowest = check.tolist()
    if highest == -negated_lowest:
        return
    names_by_rank: list[Any] = [None] * get_world_size()
    dist.all_gather_object(names_by_rank, names)
    raise ValueError(metric_names_mismatch(loader, names_by_rank))


def all_reduce_means(means: WeightedMeans, loader: str | None = None) -> dict[str, float]:
    """Loader means over all ranks: ``Σ sums / Σ counts`` per name.

    Every rank must have produced the same metric names (they do when all ranks run the same
    code): a small all-reduce checks that first, and a ``ValueError`` naming the metrics and
    the ranks that lack them is raised on every rank (``loader`` names the loader there).
    Then ONE all-reduce of sums and counts; the means equal the single-process ones over the
    union of the ranks' data.
    """
    if not is_dist_ready() or get_world_size() == 1:
        return means.compute()
    names = sorted(means.sums)
    device = _collective_device()
    _check_same_names(names, loader, device)
    parts = []
    for name in names:
        total = means.sums[name]
        if isinstance(total, torch.Tensor):
            parts.append(total.detach().reshape(1).to(device=device, dtype=torch.float64))
        else:
            parts.append(torch.tensor([total], dtype=torch.float64, device=device))
    counts = torch.tensor(
        [means.counts[name] for name in names], dtype=torch.float64, device=device
    )
    packed = torch.cat([*parts, counts]) if parts else counts
    dist.all_reduce(packed)
    values = packed.tolist()
    return {name: values[i] / values[len(names) + i] for i, name in enumerate(names)}


def all_reduce_gradients(params: list[torch.Tensor]) -> None:
    """Average the gradients of ``params`` over the ranks (a fallback for a step whose last
    backward ran under ``no_sync``; DDP does this itself on every other step)."""
    if not is_dist_ready() or get_world_size() == 1:
        return
    world = get_world_size()
    for param in params:
        if param.grad is not None:
            dist.all_reduce(param.grad)
            param.grad.div_(world)


# ------------------------------------------------------------------------------ samplers


class UnpaddedDistributedSampler(DistributedSampler):
    """A ``DistributedSampler`` that neither pads nor drops: every sample is seen exactly once
    over all ranks, so evaluation metrics equal the single-process ones. Ranks may get one
    sample more or less, so use it only where no collective runs per batch (``valid*``/``infer*``).
    """

    def __init__(self, dataset: Any, num_replicas: int, rank: int, shuffle: bool, seed: int = 0):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed)
        self.total_size = len(dataset)
        self.num_samples = len(range(rank, self.total_size, num_replicas))

    def __iter__(self):  # type: ignore[override]
        if self.shuffle:
            generator = torch.Generator()
            generator.manual_seed(self.seed + self.epoch)
            indices = torch.randperm(self.total_size, generator=generator).tolist()
        else:
            indices = list(range(self.total_size))
        return iter(indices[self.rank : self.total_size : self.num_replicas])


_COPIED = (
    "num_workers",
    "collate_fn",
    "pin_memory",
    "drop_last",
    "timeout",
    "worker_init_fn",
    "multiprocessing_context",
    "generator",
    "prefetch_factor",
    "persistent_workers",
    "pin_memory_device",
    "in_order",
)


def _not_sharded(key: str, why: str) -> None:
    if is_main_process():
        log.warning(
            "eventrunner: loader %r is left as it is (%s): every rank iterates all of it; give it "
            "a DistributedSampler yourself",
            key,
            why,
        )


def distributed_loader(key: str, loader: Any, *, seed: int = 0, pad: bool = True) -> Any:
    """``loader`` with a ``DistributedSampler`` for this rank, keeping shuffle and drop_last.

    ``pad=True`` (train loaders) pads to equal per-rank lengths, as DDP needs; ``pad=False``
    (evaluation) uses :class:`UnpaddedDistributedSampler` so metrics cover each sample once. A
    loader that already has a ``DistributedSampler`` is returned as it is; one that cannot be
    rebuilt (not a plain ``DataLoader``, an ``IterableDataset``, a custom sampler) too, with a
    warning. ``BatchLimitLoaderWrapper`` is unwrapped, and wrapped again around the result.
    """
    if isinstance(loader, BatchLimitLoaderWrapper):
        inner = distributed_loader(key, loader.loader, seed=seed, pad=pad)
        if inner is loader.loader:
            return loader
        return BatchLimitLoaderWrapper(inner, loader.num_batches)
    if not isinstance(loader, DataLoader):
        _not_sharded(key, f"a {type(loader).__name__}, not a DataLoader")
        return loader
    if isinstance(loader.sampler, DistributedSampler):
        return loader
    if type(loader) is not DataLoader:
        _not_sharded(key, f"{type(loader).__name__} is a DataLoader subclass")
        return loader
    if isinstance(loader.dataset, IterableDataset):
        _not_sharded(key, "an IterableDataset shards itself")
        return loader
    if loader.batch_sampler is not None and type(loader.batch_sampler) is not BatchSampler:
        _not_sharded(key, f"custom batch_sampler {type(loader.batch_sampler).__name__}")
        return loader
    sampler = loader.sampler
    if isinstance(sampler, RandomSampler) and not sampler.replacement:
        shuffle = True
    elif type(sampler) is SequentialSampler:
        shuffle = False
    else:
        _not_sharded(key, f"custom sampler {type(sampler).__name__}")
        return loader
    world, rank = get_world_size(), get_rank()
    dataset = loader.dataset
    if pad or len(dataset) < world:  # every rank needs a batch: pad tiny evaluation sets
        new_sampler: DistributedSampler = DistributedSampler(
            dataset, num_replicas=world, rank=rank, shuffle=shuffle, seed=seed
        )
    else:
        new_sampler = UnpaddedDistributedSampler(dataset, world, rank, shuffle, seed)
    kwargs = {name: getattr(loader, name) for name in _COPIED if hasattr(loader, name)}
    return DataLoader(dataset, batch_size=loader.batch_size, sampler=new_sampler, **kwargs)


def find_sampler(loader: Any) -> Any:
    """The sampler with ``set_epoch`` a loader iterates with, if any."""
    for sampler in (
        getattr(loader, "sampler", None),
        getattr(getattr(loader, "batch_sampler", None), "sampler", None),
    ):
        if callable(getattr(sampler, "set_epoch", None)):
            return sampler
    return None
