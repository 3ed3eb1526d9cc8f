"""Which process this is: rank and world size, from the process group or torchrun's environment.

Every function works in a single process (no process group): the rank is then the one
torchrun set in the environment, else 0 of 1.
"""

from __future__ import annotations

import os

import torch.distributed as dist

_TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


def is_dist_ready() -> bool:
    """True when torch.distributed is available and a process group is initialised."""
    return dist.is_available() and dist.is_initialized()


def env_int(name: str) -> int:
    """The integer in environment variable ``name``; a ValueError that names it otherwise."""
    text = os.environ[name]
    try:
        return int(text)
    except ValueError:
        raise ValueError(
            f"environment variable {name} must be an integer (as torchrun sets it), got {text!r}"
        ) from None


def launched_by_torchrun() -> bool:
    """True when ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` are set (torchrun, or by hand)."""
    return all(name in os.environ for name in _TORCHRUN_ENV)


def get_rank() -> int:
    """Global rank of this process: the default group's; without one, ``RANK`` as torchrun set
    it (so it stays right after ``train()`` destroyed its group), else 0."""
    if is_dist_ready():
        return dist.get_rank()
    return env_int("RANK") if launched_by_torchrun() else 0


def get_world_size() -> int:
    """Number of processes: the default group's; without one, torchrun's ``WORLD_SIZE``, else 1."""
    if is_dist_ready():
        return dist.get_world_size()
    return env_int("WORLD_SIZE") if launched_by_torchrun() else 1


def get_local_rank() -> int:
    """Rank on this machine: ``LOCAL_RANK`` as torchrun sets it (0 when unset)."""
    return env_int("LOCAL_RANK") if "LOCAL_RANK" in os.environ else 0


def is_main_process() -> bool:
    """True on rank 0 (and in a single process): the rank that writes files, logs, progress bars."""
    return get_rank() == 0


def barrier() -> None:
    """Wait for every rank (no-op without a process group)."""
    if is_dist_ready():
        dist.barrier()
