"""Batches onto the runner's device: a plain copy, and CUDA's pinned copy on a side stream."""

from __future__ import annotations

import functools
from typing import Any

import torch

from eventrunner.data.tensors import iter_tensors, map_tensors


def move_to_device(obj: Any, device: torch.device, non_blocking: bool = False) -> Any:
    """Every tensor in a (nested) dict/list/tuple moved to ``device``; other values untouched."""
    return map_tensors(lambda tensor: tensor.to(device, non_blocking=non_blocking), obj)


def _pin_and_copy(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    # A copy from pageable memory is synchronous whatever non_blocking says: pin first.
    if tensor.device.type == "cpu" and not tensor.is_pinned():
        tensor = tensor.pin_memory()
    return tensor.to(device, non_blocking=True)


def pinned_to_device(obj: Any, device: torch.device) -> Any:
    """Like :func:`move_to_device`, pinning host tensors first so the copy is truly async."""
    return map_tensors(functools.partial(_pin_and_copy, device=device), obj)


def record_stream(obj: Any, stream: Any) -> None:
    """Tell the caching allocator that ``stream`` uses every CUDA tensor of ``obj``."""
    for tensor in iter_tensors(obj):
        if tensor.is_cuda:
            tensor.record_stream(stream)


class CudaMover:
    """Copies batches on a side stream; the compute stream waits for each copy.

    ``put`` (producer thread) issues the copy on the side stream and records an event after
    it. ``take`` (loop thread) makes the compute stream wait on that event, a device-side wait
    with no host sync, and records the compute stream on every tensor so that the allocator
    does not reuse a batch's memory while kernels that read it are still queued. ``mark``
    records the compute stream's progress when a batch is handed out; the producer waits for
    it before copying the batch that takes that slot, so the host never runs more than
    ``prefetch`` batches ahead of the GPU and at most ``prefetch + 1`` batches are on it.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.stream = torch.cuda.Stream(device)

    def put(self, batch: Any, after: Any = None) -> tuple[Any, Any]:
        """Start ``batch``'s copy once ``after`` (an event of :meth:`mark`) has happened."""
        if after is not None:
            after.synchronize()  # on the producer thread: the loop itself never waits here
        with torch.cuda.stream(self.stream):
            moved = pinned_to_device(batch, self.device)
            copied = torch.cuda.Event()
            copied.record(self.stream)
        return moved, copied

    def take(self, item: tuple[Any, Any]) -> Any:
        """The batch of a :meth:`put`, for the compute stream (which waits for its copy)."""
        moved, copied = item
        stream = torch.cuda.current_stream(self.device)
        stream.wait_event(copied)
        record_stream(moved, stream)
        return moved

    def mark(self) -> Any:
        """An event at the compute stream's present point."""
        event = torch.cuda.Event()
        event.record(torch.cuda.current_stream(self.device))
        return event
