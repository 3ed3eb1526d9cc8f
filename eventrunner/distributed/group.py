"""The process group around one ``train()``: when to start it, on which device, and tear-down.

The distributed engine is torch.distributed itself; this module only decides when to start
the default group, which device each rank uses, and how it is destroyed again (also on errors).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import time
from collections.abc import Iterator
from datetime import timedelta

import torch
import torch.distributed as dist

from eventrunner.distributed.ranks import (
    env_int,
    get_local_rank,
    get_world_size,
    is_dist_ready,
    launched_by_torchrun,
)

log = logging.getLogger("eventrunner")

#: ``train(ddp_timeout=)`` default, for gloo and nccl alike: how long a collective waits for a
#: stuck or lost rank before the run fails (torch's own defaults: 30 min gloo, 10 min nccl).
DEFAULT_DDP_TIMEOUT_S = 600.0

_DEFAULT_TIMEOUT = timedelta(seconds=DEFAULT_DDP_TIMEOUT_S)


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


@functools.cache
def _env_store() -> dist.Store:
    """torchrun's ``env://`` store, rendezvoused once per process.

    A process-wide resource, not a group's: rank 0's store binds the master port, so a second
    ``train()`` in the same script must reuse it (a second rendezvous would bind it again).
    """
    store, _, _ = next(dist.rendezvous("env://"))
    return store


def _next_store() -> dist.Store:
    """The ``env://`` store under a fresh prefix for each group this process starts.

    torch names every default group's keys alike (``default_pg/0/...``) and a destroyed group's
    keys stay in the shared store, so a second ``train()`` in the same script could read the
    first group's stale addresses. The count of groups is kept per rank in the store itself:
    every rank runs the same script, so the ranks agree on it.
    """
    base = _env_store()
    generation = base.add(f"eventrunner/groups/rank{env_int('RANK')}", 1)
    return dist.PrefixStore(f"eventrunner/{generation}", base)


def init_process_group(device: torch.device, timeout: timedelta = _DEFAULT_TIMEOUT) -> dist.Store:
    """Start the default group: nccl on CUDA, gloo otherwise; its collectives fail after
    ``timeout`` (a stuck rank ends the run instead of leaving the others waiting).

    Under torchrun the ``env://`` rendezvous is used; without it (``train(ddp=True)`` in a plain
    ``python`` process) a world of one process, which runs the DDP code path on one rank.
    Returns the group's store, which :func:`shutdown_process_group` needs.
    """
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if launched_by_torchrun():
        store = _next_store()
        dist.init_process_group(
            backend,
            store=store,
            rank=env_int("RANK"),
            world_size=env_int("WORLD_SIZE"),
            timeout=timeout,
        )
        return store
    log.warning(
        "eventrunner: ddp=True outside torchrun: one process (world size 1); start the "
        "script with `torchrun --nproc_per_node=N script.py` for N processes"
    )
    store = dist.HashStore()
    dist.init_process_group(backend, store=store, rank=0, world_size=1, timeout=timeout)
    return store


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
    *, wait: bool, timeout: timedelta = _DEFAULT_TIMEOUT, store: dist.Store | None = None
) -> None:
    """Destroy the default group; ``wait`` first lets every rank reach this point through the
    group's ``store``, for at most ``timeout`` (not on errors: a rank that failed would leave
    the others waiting)."""
    if not is_dist_ready():
        return
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
    timeout: timedelta = _DEFAULT_TIMEOUT,
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
    if is_dist_ready():  # the caller's group
        yield chosen
        return
    store = init_process_group(chosen, timeout)
    finished = False
    try:
        yield chosen
        finished = True
    finally:
        shutdown_process_group(wait=finished, timeout=timeout, store=store)


def ddp_active(ddp: bool | None) -> bool:
    """Whether a run with this ``ddp`` argument is data-parallel: a group exists, not refused."""
    return ddp is not False and is_dist_ready()
