"""Built-in subscribers: each one does one thing to a run, under Catalyst's name where it has one.

They are registered in the ``eventrunner.plugins`` entry-point group (see ``pyproject.toml``)
and can be replaced by any subscriber that declares the same ``kind``.
"""

from plugins.backward import BackwardCallback, OptimizerCallback
from plugins.checkpoint import CheckpointCallback
from plugins.csv_logger import CSVLogger
from plugins.distributed import DistributedCallback
from plugins.early_stopping import EarlyStoppingCallback
from plugins.finite_check import FiniteCheckCallback, NonFiniteLossError
from plugins.json_logger import JSONLogger
from plugins.loggers import ConsoleLogger
from plugins.loss_capture import LossCaptureCallback
from plugins.metrics import AccuracyCallback, LoaderMetricCallback, MetricAggregationCallback
from plugins.overfit import BatchOverfitCallback
from plugins.profiler import ProfilerCallback
from plugins.progress import ProgressBarCallback
from plugins.scheduler import SchedulerCallback
from plugins.selection import ModelSelectionCallback
from plugins.tensorboard_logger import TensorBoardLogger

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
    "MetricAggregationCallback",
    "ModelSelectionCallback",
    "NonFiniteLossError",
    "OptimizerCallback",
    "ProfilerCallback",
    "ProgressBarCallback",
    "SchedulerCallback",
    "TensorBoardLogger",
]
