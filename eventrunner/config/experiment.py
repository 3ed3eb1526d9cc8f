"""A loaded config built into an :class:`Experiment`: the runner and its ``TrainSettings``.

Building imports and calls what the config names and checks every section; nothing is
composed or trained until :meth:`Experiment.compose` (a dry run) or :meth:`Experiment.run`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eventrunner.config import sections
from eventrunner.config.errors import ConfigError
from eventrunner.config.load import check_sections, import_paths, load_config
from eventrunner.config.saved import SaveResolvedConfig
from eventrunner.config.summary import summary
from eventrunner.config.train import DEFAULT_SEED, check_train, train_settings
from eventrunner.events import EventBus
from eventrunner.rng import seed_everything
from eventrunner.runner import Runner
from eventrunner.settings import TrainSettings, field_names


@dataclass
class Experiment:
    """A built config: the runner, what it trains with, and the config they came from.

    Each run is composed once: :meth:`run` trains (``runner.train(settings)`` composes and
    seeds), :meth:`compose`/:meth:`describe` compose without training; use one or the other.
    """

    runner: Runner
    settings: TrainSettings
    config: dict[str, Any] = field(default_factory=dict)
    #: The YAML file the config came from: saved with it in the logdir (``eventrunner resume``).
    source: Path | None = None

    @property
    def train_kwargs(self) -> dict[str, Any]:
        """The settings as ``train()`` keyword arguments (``runner.train(**train_kwargs)``)."""
        return {name: getattr(self.settings, name) for name in field_names()}

    @property
    def loaders(self) -> dict[str, Any]:
        return dict(self.settings.loaders)

    def compose(self) -> EventBus:
        """Compose the run as ``train()`` would (seeding too), without training; the bus."""
        try:
            return self.runner.compose(self.settings)
        except ConfigError:
            raise
        except (ValueError, TypeError) as error:
            raise ConfigError("train", "arguments that compose a run", str(error)) from error

    def describe(self) -> str:
        """The summary and the composed pipeline (each event's subscribers, in order)."""
        bus = self.compose()
        return f"{self.summary()}\n\n{bus.describe()}"

    def summary(self) -> str:
        """Runner, model, data and optimisation in a few lines; nothing is composed."""
        return summary(self.runner, self.settings)

    def run(self) -> Runner:
        """Train; returns the runner. Every config error was raised by :func:`build`.

        With a logdir the resolved config is saved there (``config.yaml``) when the run
        starts, so that ``eventrunner resume LOGDIR`` can continue it.
        """
        settings = self.settings
        if settings.logdir is not None and self.config:
            given = settings.callbacks or []
            mine = list(given.values()) if isinstance(given, Mapping) else list(given)
            saver = SaveResolvedConfig(self.config, self.source)
            settings = settings.replace(callbacks=[*mine, saver])
        self.runner.train(settings)
        return self.runner


def build(config: Mapping[str, Any]) -> Experiment:
    """Build every object a (loaded) config describes; nothing trains yet.

    ``train.seed`` (default 42, as in ``train()``) seeds before anything is built, so model
    initialisation is reproducible, and again when training starts.
    """
    check_sections(config)
    train = check_train(config.get("train"))
    seed = train.get("seed", DEFAULT_SEED)
    if seed is not None:
        seed_everything(seed)
    runner = sections.build_runner(config.get("runner"))
    model = sections.build_model(config.get("model"))
    criterion = sections.build_criterion(config.get("criterion"))
    optimizer = sections.build_optimizer(config.get("optimizer"), model)
    scheduler = sections.build_scheduler(config.get("scheduler"), optimizer)
    if "loaders" not in config:
        raise ConfigError(
            "loaders", "a mapping of loader name to dataset and batch_size", "nothing"
        )
    built = {
        "loaders": sections.build_loaders(config["loaders"]),
        "model": model,
        "criterion": criterion,
        "optimizer": optimizer,
        "scheduler": scheduler,
        "callbacks": sections.build_callbacks(config.get("callbacks")),
    }
    settings = train_settings(train, built, runner)
    return Experiment(runner=runner, settings=settings, config=dict(config))


def run_config(source: str | Path | Mapping[str, Any], overrides: Iterable[str] = ()) -> Runner:
    """Load, build and train a config; returns the trained runner.

    Meanwhile the config file's folder and the working directory are on ``sys.path``
    (:func:`import_paths`), as with ``eventrunner run``.
    """
    with import_paths(source):
        return build(load_config(source, overrides)).run()
