"""The default subscribers ``runner.train(...)`` composes from its settings.

The defaults are imported by class from the built-in ``plugins`` package, so a source checkout
trains without being installed (entry points are for third-party subscribers). A user
subscriber whose ``kind`` matches a default's replaces that default (Keras adds its defaults
only when absent, the same way).

The built-ins are the top-level package ``plugins``, next to ``eventrunner``. A folder of your
own called ``plugins`` earlier on ``sys.path`` (the script's folder comes first) hides it: that
is refused with a :class:`HiddenPluginsError` naming both folders; call yours something else
(``my_plugins``).
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from eventrunner import components
from eventrunner.events import Callback

if TYPE_CHECKING:
    from eventrunner.runner import Runner
    from eventrunner.settings import TrainSettings

_BUILTINS_FOLDER = Path(__file__).resolve().parent.parent / "plugins"


class HiddenPluginsError(ImportError):
    """``import plugins`` found a package or module of the user's, not the built-ins."""


def builtin_plugins() -> ModuleType:
    """The built-in ``plugins`` package; a :class:`HiddenPluginsError` when another hides it."""
    module = importlib.import_module("plugins")
    found = getattr(module, "__file__", None)
    if found is None or Path(found).resolve().parent != _BUILTINS_FOLDER:
        where = found or ", ".join(getattr(module, "__path__", [])) or repr(module)
        raise HiddenPluginsError(
            f"'import plugins' found {where}, not eventrunner's built-in subscribers in "
            f"{_BUILTINS_FOLDER}: a package or module of yours called 'plugins' comes first "
            "on sys.path; rename it (e.g. my_plugins)"
        )
    return module


def default_classes() -> dict[str, type[Callback]]:
    """Registry name -> class of every built-in default subscriber."""
    p = builtin_plugins()
    classes: tuple[type[Callback], ...] = (
        p.DistributedCallback,
        p.LossCaptureCallback,
        p.MetricMeansCallback,
        p.FiniteCheckCallback,
        p.BackwardCallback,
        p.OptimizerCallback,
        p.SchedulerCallback,
        p.ModelSelectionCallback,
        p.EarlyStoppingCallback,
        p.CheckpointCallback,
        p.BatchOverfitCallback,
        p.ConsoleLogger,
        p.ProgressBarCallback,
        p.CSVLogger,
        p.JSONLogger,
        p.TensorBoardLogger,
        p.ProfilerCallback,
    )
    return {cls.kind: cls for cls in classes if cls.kind}


def _user_callbacks(
    callbacks: Sequence[Callback] | Mapping[str, Callback] | None,
) -> list[Callback]:
    if callbacks is None:
        return []
    items = list(callbacks.values()) if isinstance(callbacks, Mapping) else list(callbacks)
    for item in items:
        if not isinstance(item, Callback):
            raise TypeError(
                f"callbacks: expected Callback objects, got {type(item).__name__} ({item!r}); "
                "wrap a plain function in FunctionCallback(event, fn)"
            )
    return items


def default_kinds(runner: Runner, settings: TrainSettings) -> list[str]:
    """Registry names of the defaults for this run, in registration order."""
    # DDP set-up comes first: it wraps the model and shards the loaders before anyone looks.
    kinds = ["distributed"] if runner.ddp else []
    kinds += ["loss_capture", "metrics", "finite_check"]
    # A dict of optimizers (or schedulers) is stepped by the user's subscribers, each with
    # its optimizer_key (scheduler_key), as in Catalyst.
    if runner.optimizer is not None and not components.is_dict(runner.optimizer):
        kinds += ["backward", "optimizer"]
    if runner.scheduler is not None and not components.is_dict(runner.scheduler):
        kinds.append("scheduler")
    kinds += ["selection", "checkpoint"]
    if settings.overfit:
        kinds.append("overfit")
    if settings.console:
        kinds.append("console")
    if settings.verbose:
        kinds.append("progress")
    if runner.logdir is not None:
        kinds += ["csv", "jsonl"]
        if importlib.util.find_spec("tensorboard") is not None:  # the optional extra
            kinds.append("tensorboard")
    if settings.profile:
        kinds.append("profiler")
    return kinds


def compose_callbacks(runner: Runner, settings: TrainSettings) -> list[Callback]:
    """Defaults first (so ties in order run them first), then the user's subscribers."""
    user = _user_callbacks(settings.callbacks)
    if settings.loggers is not None:
        from eventrunner.catalyst.loggers import logger_subscribers

        # Catalyst's loggers: one of the console/CSV/TensorBoard kind replaces that default.
        user += logger_subscribers(settings.loggers, settings.hparams)
    replaced = {callback.kind for callback in user if callback.kind}
    extras = [*runner.default_callbacks(settings), *catalyst_defaults(settings)]
    extras = [callback for callback in extras if callback.kind not in replaced]
    if any(callback.kind == "criterion" for callback in (*user, *extras)):
        # The loss has its producer; capturing it would keep a forward hook on the
        # criterion for the whole run (nn.Module's slow call path on every batch).
        replaced.add("loss_capture")
    classes = default_classes()
    defaults: list[Callback] = [
        classes[kind]() for kind in default_kinds(runner, settings) if kind not in replaced
    ]
    return defaults + extras + user


def catalyst_defaults(settings: TrainSettings) -> list[Callback]:
    """The subscribers of Catalyst's ``train()`` flags: ``check=True``, ``timeit=True``."""
    extras: list[Callback] = []
    if settings.check:
        from eventrunner.catalyst.control import CheckRunCallback

        extras.append(CheckRunCallback())
    if settings.timeit:
        from eventrunner.catalyst.timer import TimerCallback

        extras.append(TimerCallback())
    return extras
