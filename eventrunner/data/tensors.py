"""The one walker over nested tensors (dicts, lists, tuples): batches, outputs, saved states."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch


def map_tensors(
    fn: Callable[[torch.Tensor], Any], obj: Any, *, memo: dict[int, Any] | None = None
) -> Any:
    """``obj`` with every tensor replaced by ``fn(tensor)``; other values are kept as they are.

    Containers are rebuilt: mappings as ``dict`` (an ``OrderedDict`` stays one and keeps the
    ``_metadata`` that ``load_state_dict`` reads), lists as lists, tuples and namedtuples as
    their type. With a ``memo`` a tensor reached twice (tied weights) is mapped once.
    """
    if isinstance(obj, torch.Tensor):
        if memo is None:
            return fn(obj)
        mapped = memo.get(id(obj))
        if mapped is None:
            mapped = memo[id(obj)] = fn(obj)
        return mapped
    if isinstance(obj, Mapping):
        out = OrderedDict() if isinstance(obj, OrderedDict) else {}
        for key, value in obj.items():
            out[key] = map_tensors(fn, value, memo=memo)
        metadata = getattr(obj, "_metadata", None)
        if metadata is not None:
            out._metadata = map_tensors(fn, metadata, memo=memo)  # type: ignore[attr-defined]
        return out
    if isinstance(obj, list):
        return [map_tensors(fn, value, memo=memo) for value in obj]
    if isinstance(obj, tuple):
        mapped_items = [map_tensors(fn, value, memo=memo) for value in obj]
        return type(obj)(*mapped_items) if hasattr(obj, "_fields") else tuple(mapped_items)
    return obj


def iter_tensors(obj: Any) -> Iterator[torch.Tensor]:
    """The tensors of a nested dict/list/tuple, depth first, in insertion order."""
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, Mapping):
        for value in obj.values():
            yield from iter_tensors(value)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            yield from iter_tensors(value)


def leading_dim(batch: Any) -> int:
    """A batch's size: the leading dimension of its first tensor (1 for a scalar or none)."""
    if isinstance(batch, Mapping):  # the loop's case: look at the top level first (fast)
        for value in batch.values():
            if isinstance(value, torch.Tensor):
                return value.shape[0] if value.ndim else 1
    for tensor in iter_tensors(batch):
        return tensor.shape[0] if tensor.ndim else 1
    return 1
