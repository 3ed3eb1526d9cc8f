"""Built-in subscribers: each one does one thing to a run, under Catalyst's name where it has one.

They are registered in the ``eventrunner.plugins`` entry-point group (see ``pyproject.toml``)
and can be replaced by any subscriber that declares the same ``kind``. Catalyst 22.04's
callbacks, loggers and engines are here too by their Catalyst names (``plugins.AUCCallback``,
``plugins.CPUEngine``, ...); where eventrunner has a subscriber of the same name
(``CSVLogger``, ``ConsoleLogger``, ``AccuracyCallback``, ``LoaderMetricCallback``) ``plugins``
gives eventrunner's and ``eventrunner.dl`` gives Catalyst's.
"""

from typing import Any

from plugins.backward import BackwardCallback, OptimizerCallback
from plugins.checkpoint import CheckpointCallback
from plugins.csv_logger import CSVLogger
from plugins.distributed import DistributedCallback
from plugins.early_stopping import EarlyStoppingCallback
from plugins.finite_check import FiniteCheckCallback, NonFiniteLossError
from plugins.json_logger import JSONLogger
from plugins.loggers import ConsoleLogger
from plugins.loss_capture import LossCaptureCallback
from plugins.metrics import AccuracyCallback, LoaderMetricCallback, MetricMeansCallback
from plugins.overfit import BatchOverfitCallback
from plugins.profiler import ProfilerCallback
from plugins.progress import ProgressBarCallback
from plugins.scheduler import SchedulerCallback
from plugins.selection import ModelSelectionCallback
from plugins.tensorboard_logger import TensorBoardLogger


def __getattr__(name: str) -> Any:
    # Catalyst 22.04's callbacks, loggers and engines, for ``from plugins import ...`` (loaded
    # when first used: some need the optional torchmetrics or TensorBoard).
    from eventrunner.catalyst.names import COMPONENTS, resolve

    value = resolve(name, COMPONENTS, __name__)
    globals()[name] = value
    return value


__all__ = [
    "AccuracyCallback",
    "BackwardCallback",
    "BatchOverfitCallback",
    "CSVLogger",
    "CheckpointCallback",
    "ConsoleLogger",
    "DistributedCallback",
    "EarlyStoppingCallback",
    "FiniteCheckCallback",
    "JSONLogger",
    "LoaderMetricCallback",
    "LossCaptureCallback",
    "MetricMeansCallback",
    "ModelSelectionCallback",
    "NonFiniteLossError",
    "OptimizerCallback",
    "ProfilerCallback",
    "ProgressBarCallback",
    "SchedulerCallback",
    "TensorBoardLogger",
]
