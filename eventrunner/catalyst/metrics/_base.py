"""The metric interfaces of Catalyst 22.04: ``IMetric`` and its batch and loader forms."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any


class IMetric(ABC):
    """A stateful metric: ``reset()``, ``update(...)`` per batch, ``compute()`` at the end.

    Calling the metric updates it and, with ``compute_on_call``, returns ``compute()``
    (otherwise what ``update`` returned).
    """

    def __init__(self, compute_on_call: bool = True) -> None:
        self.compute_on_call = compute_on_call

    @abstractmethod
    def reset(self) -> None:
        """Back to the state before the first update."""

    @abstractmethod
    def update(self, *args: Any, **kwargs: Any) -> Any:
        """Adds one batch to the state."""

    @abstractmethod
    def compute(self) -> Any:
        """The metric over everything seen since ``reset()``."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        value = self.update(*args, **kwargs)
        return self.compute() if self.compute_on_call else value


class ICallbackBatchMetric(IMetric):
    """A metric with a value per batch, reported as ``{name: value}`` with prefix and suffix."""

    def __init__(
        self, compute_on_call: bool = True, prefix: str | None = None, suffix: str | None = None
    ) -> None:
        super().__init__(compute_on_call=compute_on_call)
        self.prefix = prefix or ""
        self.suffix = suffix or ""

    @abstractmethod
    def update_key_value(self, *args: Any, **kwargs: Any) -> dict[str, float]:
        """Updates with one batch and returns that batch's values by name."""

    @abstractmethod
    def compute_key_value(self) -> dict[str, float]:
        """The accumulated values by name."""


class ICallbackLoaderMetric(IMetric):
    """A metric computed once per loader; ``reset`` is told the loader's size."""

    def __init__(
        self, compute_on_call: bool = True, prefix: str | None = None, suffix: str | None = None
    ) -> None:
        super().__init__(compute_on_call=compute_on_call)
        self.prefix = prefix or ""
        self.suffix = suffix or ""

    @abstractmethod
    def reset(self, num_batches: int, num_samples: int) -> None:  # type: ignore[override]
        """Back to the empty state, before a loader of that many batches and samples."""

    @abstractmethod
    def update(self, *args: Any, **kwargs: Any) -> None:
        """Adds one batch to the state."""

    @abstractmethod
    def compute_key_value(self) -> dict[str, float]:
        """The loader's values by name."""


__all__ = ["ICallbackBatchMetric", "ICallbackLoaderMetric", "IMetric"]
