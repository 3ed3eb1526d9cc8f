"""What model selection and early stopping share: which metric to watch, and comparing it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from eventrunner.checks import is_int, is_number


@dataclass
class Watched:
    """A loader's metric to watch; unset fields follow ``runner.selection``."""

    loader: str | None = None
    metric: str | None = None
    minimize: bool | None = None

    def resolve(self, runner: Any) -> Watched:
        selection = runner.selection
        return Watched(
            loader=self.loader if self.loader is not None else selection.loader,
            metric=self.metric if self.metric is not None else selection.metric,
            minimize=self.minimize if self.minimize is not None else selection.minimize,
        )

    def value(self, runner: Any, owner: str) -> float:
        """This epoch's value; a clear error when the loader did not produce it."""
        produced = runner.epoch_metrics.get(self.loader)
        if produced is None:
            raise ValueError(
                f"{owner}: loader {self.loader!r} did not run this epoch "
                f"(loaders: {', '.join(runner.loaders)})"
            )
        if self.metric not in produced:
            shape = runner.non_scalar_metrics.get(self.loader, {}).get(self.metric)
            if shape is not None:
                raise ValueError(
                    f"{owner}: metric {self.metric!r} of loader {self.loader!r} is a tensor of "
                    f"shape {shape}, not a scalar, so it is not aggregated; reduce it in "
                    "batch_metrics (e.g. .mean()) to select by it"
                )
            raise ValueError(
                f"{owner}: metric {self.metric!r} was not produced by loader {self.loader!r}; "
                f"it produced {', '.join(sorted(produced)) or 'no metrics'}"
            )
        return float(produced[self.metric])

    def improves(self, value: float, best: float | None, min_delta: float = 0.0) -> bool:
        """Strictly better than ``best`` by more than ``min_delta`` (ties keep the earlier)."""
        if math.isnan(value):
            return False
        if best is None:
            return True
        return best - value > min_delta if self.minimize else value - best > min_delta


def checked_history(history: Any) -> list[dict[str, Any]]:
    """A selection history read from a checkpoint (data): ``[{"epoch": int, "metric": float}]``."""
    if not isinstance(history, list):
        raise ValueError(f"history: expected a list, got {type(history).__name__}")
    checked = []
    for index, item in enumerate(history):
        epoch = item.get("epoch") if isinstance(item, dict) else None
        metric = item.get("metric") if isinstance(item, dict) else None
        if not is_int(epoch) or epoch < 1 or not is_number(metric):
            raise ValueError(
                f"history[{index}]: expected {{'epoch': int >= 1, 'metric': number}}, got {item!r}"
            )
        checked.append({"epoch": epoch, "metric": float(metric)})
    return checked
