"""R² of Catalyst 22.04: ``R2Squared`` (over a loader) and ``r2_squared`` (one tensor pair).

Not torchmetrics' ``r2_score``: it treats a 2-D input as several outputs and averages their
R², refuses fewer than two samples, and maps a constant target to 0; Catalyst pools every
element into one R² and lets a zero variance give ``-inf`` or NaN. So these are plain sums.
"""

from __future__ import annotations

from typing import Any

import torch

from eventrunner.catalyst.metrics._base import ICallbackLoaderMetric


def r2_squared(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``1 - SS_res / SS_tot`` over all elements, as a one-element float tensor."""
    targets, outputs = targets.float(), outputs.float()
    total = torch.sum(torch.pow(targets - torch.mean(targets), 2)).view(-1)
    residual = torch.sum(torch.pow(targets - outputs, 2)).view(-1)
    return 1 - residual / total


class R2Squared(ICallbackLoaderMetric):
    """R² over a loader from running sums; key ``{prefix}r2squared{suffix}``.

    ``SS_tot`` is ``sum(y²) - sum(y)² / n`` with ``n`` the number of rows (``len(y_true)``),
    as in Catalyst: right for ``(N,)`` or ``(N, 1)`` targets.
    """

    def __init__(
        self, compute_on_call: bool = True, prefix: str | None = None, suffix: str | None = None
    ) -> None:
        super().__init__(compute_on_call=compute_on_call, prefix=prefix, suffix=suffix)
        self.metric_name = f"{self.prefix}r2squared{self.suffix}"
        self.reset(0, 0)

    def reset(self, num_batches: int = 0, num_samples: int = 0) -> None:
        self.num_examples = 0
        self.delta_sum: Any = 0
        self.y_sum: Any = 0
        self.y_sq_sum: Any = 0

    def update(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> None:
        y_pred, y_true = y_pred.detach(), y_true.detach()
        self.num_examples += len(y_true)
        self.delta_sum = self.delta_sum + torch.sum(torch.pow(y_pred - y_true, 2))
        self.y_sum = self.y_sum + torch.sum(y_true)
        self.y_sq_sum = self.y_sq_sum + torch.sum(torch.pow(y_true, 2))

    def compute(self) -> torch.Tensor:
        if self.num_examples == 0:
            raise RuntimeError("R2Squared.compute(): no update since reset()")
        return 1 - self.delta_sum / (self.y_sq_sum - self.y_sum**2 / self.num_examples)

    def compute_key_value(self) -> dict[str, torch.Tensor]:
        return {self.metric_name: self.compute()}


__all__ = ["R2Squared", "r2_squared"]
