"""YAML configs: a training run described as data, built into a runner and its train() arguments.

Objects are written as ``{_target_: pkg.mod.Name, key: value, ...}`` (see :func:`instantiate`);
subscribers by registered name or import path. Every error names the key path (the same path
``--set`` takes), what was expected and what was found, before any training starts.

A config is code: building it imports and calls what it names (``--dry-run`` too), so only
build configs you trust.

Modules: :mod:`~eventrunner.config.load` (YAML, ``--set``, examples),
:mod:`~eventrunner.config.instantiate` (``_target_`` objects, call checks),
:mod:`~eventrunner.config.hints` (value types), :mod:`~eventrunner.config.sections` and
:mod:`~eventrunner.config.train` (the sections), :mod:`~eventrunner.config.experiment`
(:class:`Experiment`), :mod:`~eventrunner.config.summary`.

Example::

    experiment = build(load_config("digits.yaml", overrides=["train.num_epochs=3"]))
    print(experiment.summary())        # what will run; nothing composed yet
    runner = experiment.run()          # composes (and seeds) once, then trains

``experiment.describe()`` composes without training (a dry run), with the pipeline it prints.
"""

from __future__ import annotations

from eventrunner.config.errors import ConfigError
from eventrunner.config.experiment import Experiment, build, run_config
from eventrunner.config.instantiate import check_call, instantiate
from eventrunner.config.load import (
    ARGS,
    FROM_SECTIONS,
    PARTIAL,
    SECTIONS,
    SUBSCRIBER,
    TARGET,
    apply_override,
    check_sections,
    example_names,
    example_path,
    import_paths,
    load_config,
    parse_override,
)
from eventrunner.config.sections import (
    FILTER_KEYS,
    build_callbacks,
    build_criterion,
    build_loaders,
    build_model,
    build_optimizer,
    build_runner,
    build_scheduler,
)
from eventrunner.config.train import TRAIN_KEYS, check_train, train_settings

__all__ = [
    "ARGS",
    "FILTER_KEYS",
    "FROM_SECTIONS",
    "PARTIAL",
    "SECTIONS",
    "SUBSCRIBER",
    "TARGET",
    "TRAIN_KEYS",
    "ConfigError",
    "Experiment",
    "apply_override",
    "build",
    "build_callbacks",
    "build_criterion",
    "build_loaders",
    "build_model",
    "build_optimizer",
    "build_runner",
    "build_scheduler",
    "check_call",
    "check_sections",
    "check_train",
    "example_names",
    "example_path",
    "import_paths",
    "instantiate",
    "load_config",
    "parse_override",
    "run_config",
    "train_settings",
]
