"""``AUCMetric``: ROC-AUC over a whole loader, per class and micro, macro, weighted."""

from __future__ import annotations

from typing import Any

import torch

from eventrunner.catalyst.metrics._base import ICallbackLoaderMetric
from eventrunner.catalyst.metrics.functional import _multilabel_components, auc, binary_auc


class AUCMetric(ICallbackLoaderMetric):
    """Keeps every batch's scores and targets (on the CPU) and computes ROC-AUC at the end.

    Keys: ``{prefix}auc{suffix}`` (the macro mean), ``.../_micro`` (all columns as one),
    ``.../_macro``, ``.../_weighted`` (by each class's share of positives) and, with
    ``compute_per_class_metrics``, ``.../class_00``, ...
    """

    def __init__(
        self,
        compute_on_call: bool = True,
        compute_per_class_metrics: bool = False,
        prefix: str | None = None,
        suffix: str | None = None,
    ) -> None:
        super().__init__(compute_on_call=compute_on_call, prefix=prefix, suffix=suffix)
        self.metric_name = f"{self.prefix}auc{self.suffix}"
        self.compute_per_class_metrics = compute_per_class_metrics
        self.reset(0, 0)

    def reset(self, num_batches: int = 0, num_samples: int = 0) -> None:
        self.scores: list[torch.Tensor] = []
        self.targets: list[torch.Tensor] = []

    def update(self, scores: torch.Tensor, targets: torch.Tensor) -> None:
        self.scores.append(scores.detach().cpu())
        self.targets.append(targets.detach().cpu())

    def compute(self) -> tuple[Any, float, float, float]:
        """``(per_class, micro, macro, weighted)``; ``per_class`` is ``[]`` unless
        ``compute_per_class_metrics``."""
        scores, targets = _multilabel_components(torch.cat(self.scores), torch.cat(self.targets))
        per_class = auc(scores, targets)
        micro = binary_auc(scores.reshape(-1), targets.reshape(-1))[0]
        macro = per_class.mean().item()
        weighted = (per_class * (targets.sum(dim=0) / len(targets))).sum().item()
        return (per_class if self.compute_per_class_metrics else []), micro, macro, weighted

    def compute_key_value(self) -> dict[str, float]:
        per_class, micro, macro, weighted = self.compute()
        output = {f"{self.metric_name}/class_{i:02d}": v.item() for i, v in enumerate(per_class)}
        output[f"{self.metric_name}/_micro"] = micro
        output[self.metric_name] = macro
        output[f"{self.metric_name}/_macro"] = macro
        output[f"{self.metric_name}/_weighted"] = weighted
        return output


__all__ = ["AUCMetric"]
