"""Where each name of Catalyst 22.04's ``catalyst.dl`` lives in eventrunner.

One table for ``eventrunner.dl`` and for the Catalyst names ``plugins`` gives (callbacks,
loggers, engines). Names are imported when first used, so ``from eventrunner import dl`` does
not import torchmetrics or TensorBoard until a name that needs them is taken.
"""

from __future__ import annotations

import importlib
from typing import Any

_CALLBACKS = "eventrunner.catalyst.callbacks"
_METRIC_CALLBACKS = "eventrunner.catalyst.metric_callbacks"
_CONTROL = "eventrunner.catalyst.control"
_TRANSFORMS = "eventrunner.catalyst.transforms"
_LOGGERS = "eventrunner.catalyst.loggers"
_ENGINES = "eventrunner.catalyst.engines"

#: Catalyst's core and runner names -> "module:attribute".
CORE: dict[str, str] = {
    "Callback": "eventrunner.events:Callback",
    "CallbackOrder": "eventrunner.catalyst.order:CallbackOrder",
    "ICallback": "eventrunner.events:Callback",
    "IMetricCallback": "eventrunner.events:Callback",
    "IBackwardCallback": "plugins.backward:BackwardCallback",
    "ICheckpointCallback": "plugins.checkpoint:CheckpointCallback",
    "ICriterionCallback": "eventrunner.catalyst.criterion:CriterionCallback",
    "IOptimizerCallback": "plugins.backward:OptimizerCallback",
    "ISchedulerCallback": "plugins.scheduler:SchedulerCallback",
    "CallbackWrapper": f"{_CONTROL}:CallbackWrapper",
    "ILogger": f"{_LOGGERS}:ILogger",
    "IRunner": "eventrunner.catalyst.irunner:IRunner",
    "IRunnerError": "eventrunner.catalyst.irunner:IRunnerError",
    "Runner": "eventrunner.runner:Runner",
    "SupervisedRunner": "eventrunner.supervised:SupervisedRunner",
    "ISupervisedRunner": "eventrunner.supervised:SupervisedRunner",
    "SETTINGS": "eventrunner.catalyst.settings:SETTINGS",
}

#: Catalyst's callbacks, loggers and engines -> "module:attribute" (also ``plugins``' names).
COMPONENTS: dict[str, str] = {
    # the training step
    "CriterionCallback": "eventrunner.catalyst.criterion:CriterionCallback",
    "BackwardCallback": "plugins.backward:BackwardCallback",
    "OptimizerCallback": "plugins.backward:OptimizerCallback",
    "SchedulerCallback": "plugins.scheduler:SchedulerCallback",
    # the run
    "CheckpointCallback": "plugins.checkpoint:CheckpointCallback",
    "EarlyStoppingCallback": "plugins.early_stopping:EarlyStoppingCallback",
    "BatchOverfitCallback": "plugins.overfit:BatchOverfitCallback",
    "ProfilerCallback": "plugins.profiler:ProfilerCallback",
    "TqdmCallback": "plugins.progress:ProgressBarCallback",
    "CheckRunCallback": f"{_CONTROL}:CheckRunCallback",
    "ControlFlowCallbackWrapper": f"{_CONTROL}:ControlFlowCallbackWrapper",
    "PeriodicLoaderCallback": f"{_CONTROL}:PeriodicLoaderCallback",
    "TimerCallback": "eventrunner.catalyst.timer:TimerCallback",
    "BatchTransformCallback": f"{_TRANSFORMS}:BatchTransformCallback",
    "MetricAggregationCallback": f"{_TRANSFORMS}:MetricAggregationCallback",
    "FunctionalMetricCallback": f"{_TRANSFORMS}:FunctionalMetricCallback",
    "FunctionalBatchMetricCallback": f"{_TRANSFORMS}:FunctionalBatchMetricCallback",
    # metrics
    "BatchMetricCallback": f"{_CALLBACKS}:BatchMetricCallback",
    "LoaderMetricCallback": f"{_CALLBACKS}:LoaderMetricCallback",
    "AccuracyCallback": f"{_CALLBACKS}:AccuracyCallback",
    "MultilabelAccuracyCallback": f"{_CALLBACKS}:MultilabelAccuracyCallback",
    "PrecisionRecallF1SupportCallback": f"{_CALLBACKS}:PrecisionRecallF1SupportCallback",
    "MultilabelPrecisionRecallF1SupportCallback": (
        f"{_CALLBACKS}:MultilabelPrecisionRecallF1SupportCallback"
    ),
    "AUCCallback": f"{_CALLBACKS}:AUCCallback",
    "R2SquaredCallback": f"{_METRIC_CALLBACKS}:R2SquaredCallback",
    "IOUCallback": f"{_METRIC_CALLBACKS}:IOUCallback",
    "DiceCallback": f"{_METRIC_CALLBACKS}:DiceCallback",
    "TrevskyCallback": f"{_METRIC_CALLBACKS}:TrevskyCallback",
    "CMCScoreCallback": f"{_METRIC_CALLBACKS}:CMCScoreCallback",
    "ReidCMCScoreCallback": f"{_METRIC_CALLBACKS}:ReidCMCScoreCallback",
    "HitrateCallback": f"{_METRIC_CALLBACKS}:HitrateCallback",
    "MRRCallback": f"{_METRIC_CALLBACKS}:MRRCallback",
    "MAPCallback": f"{_METRIC_CALLBACKS}:MAPCallback",
    "NDCGCallback": f"{_METRIC_CALLBACKS}:NDCGCallback",
    "ConfusionMatrixCallback": f"{_METRIC_CALLBACKS}:ConfusionMatrixCallback",
    # loggers
    "ConsoleLogger": f"{_LOGGERS}:ConsoleLogger",
    "CSVLogger": f"{_LOGGERS}:CSVLogger",
    "TensorboardLogger": f"{_LOGGERS}:TensorboardLogger",
    # engines
    "Engine": f"{_ENGINES}:Engine",
    "CPUEngine": f"{_ENGINES}:CPUEngine",
    "GPUEngine": f"{_ENGINES}:GPUEngine",
    "DataParallelEngine": f"{_ENGINES}:DataParallelEngine",
    "DistributedDataParallelEngine": f"{_ENGINES}:DistributedDataParallelEngine",
}

#: ``catalyst.dl`` names not ported, with what to use instead.
NOT_PORTED: dict[str, str] = {
    "LRFinder": "not ported; sweep the learning rate with a SchedulerCallback of your own",
    "ILRUpdater": "not ported; write a SchedulerCallback or a Callback that sets the lr",
    "MixupCallback": "not ported; mix the batch in handle_batch",
    "SoftUpdateCallaback": "not ported; update the target network in a Callback's on_batch_end",
}

ALL: dict[str, str] = {**CORE, **COMPONENTS}


def resolve(name: str, table: dict[str, str], module: str) -> Any:
    """The object ``name`` maps to in ``table``; an ``AttributeError`` that says why otherwise."""
    target = table.get(name)
    if target is None:
        if name in NOT_PORTED:
            raise AttributeError(f"{module}.{name}: Catalyst's {name} is {NOT_PORTED[name]}")
        raise AttributeError(f"module {module!r} has no attribute {name!r}")
    module_name, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module_name), attribute)
