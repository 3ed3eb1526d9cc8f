"""eventrunner: Catalyst's key-value dataflow on an event-driven, prefetching training loop.

``import eventrunner`` gives the loop side; ``import plugins`` gives the built-in subscribers.
"""

from eventrunner.catalyst.irunner import IRunner
from eventrunner.catalyst.order import CallbackOrder
from eventrunner.data.loaders import BatchLimitLoaderWrapper, concat_datasets
from eventrunner.events import (
    EVENTS,
    Callback,
    EventBus,
    FunctionCallback,
    Order,
)
from eventrunner.metrics import accuracy
from eventrunner.rng import seed_everything
from eventrunner.runner import Runner, Selection
from eventrunner.supervised import SupervisedRunner

__version__ = "0.1.0"

__all__ = [
    "EVENTS",
    "BatchLimitLoaderWrapper",
    "Callback",
    "CallbackOrder",
    "EventBus",
    "FunctionCallback",
    "IRunner",
    "Order",
    "Runner",
    "Selection",
    "SupervisedRunner",
    "accuracy",
    "concat_datasets",
    "seed_everything",
]
