"""Collectives the subscribers run: rank 0's value to all, loader means and gradients over ranks.

Each one returns at once in a single process (no group, or a world of one).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist

from eventrunner.distributed.ranks import get_world_size, is_dist_ready

if TYPE_CHECKING:
    from eventrunner.metrics import WeightedMeans


def _single() -> bool:
    return not is_dist_ready() or get_world_size() == 1


def _collective_device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def broadcast_value(value: int) -> int:
    """Rank 0's ``value`` on every rank (one broadcast; the value itself without a group)."""
    if _single():
        return value
    tensor = torch.tensor([value], dtype=torch.int64, device=_collective_device())
    dist.broadcast(tensor, src=0)
    return int(tensor.item())


def any_rank(flag: bool) -> bool:
    """Whether ``flag`` is set on any rank (one small all-reduce; ``flag`` without a group)."""
    if _single():
        return flag
    tensor = torch.tensor([int(flag)], dtype=torch.int64, device=_collective_device())
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return bool(tensor.item())


def gather_objects(value: Any) -> list[Any]:
    """Every rank's ``value``, by rank, on every rank (``[value]`` without a group). Tensors
    travel as the CPU copies ``all_gather_object`` pickles; for rare, small values only."""
    if _single():
        return [value]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered


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


def _as_float64(total: Any, device: torch.device) -> torch.Tensor:
    if isinstance(total, torch.Tensor):
        return total.detach().reshape(1).to(device=device, dtype=torch.float64)
    return torch.tensor([total], dtype=torch.float64, device=device)


def all_reduce_means(means: WeightedMeans, loader: str | None = None) -> dict[str, float]:
    """Loader means over all ranks: ``Σ sums / Σ counts`` per name.

    Every rank must have produced the same metric names (they do when all ranks run the same
    code): a small all-reduce checks that first, and a ``ValueError`` naming the metrics and
    the ranks that lack them is raised on every rank (``loader`` names the loader there).
    Then ONE all-reduce of sums and counts; the means equal the single-process ones over the
    union of the ranks' data.
    """
    if _single():
        return means.compute()
    names = sorted(means.sums)
    device = _collective_device()
    _check_same_names(names, loader, device)
    parts = [_as_float64(means.sums[name], device) for name in names]
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
    if _single():
        return
    world = get_world_size()
    for param in params:
        if param.grad is not None:
            dist.all_reduce(param.grad)
            param.grad.div_(world)
