"""The ``train:`` section, checked against :class:`~eventrunner.settings.TrainSettings`.

Its keys are TrainSettings' fields (less those with a section of their own) and their values
are type-checked against the fields' annotations; TrainSettings itself, built with the other
sections' objects, checks the rest. Its errors are reported at ``train.<field>``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

import torch

from eventrunner import precision
from eventrunner.config.errors import ConfigError, close_matches, found
from eventrunner.config.hints import check_value, type_hints
from eventrunner.config.load import FROM_SECTIONS
from eventrunner.data.prefetch import MAX_PREFETCH
from eventrunner.runner import Runner
from eventrunner.settings import TrainSettings, field_names

#: The keys a ``train:`` section may hold.
TRAIN_KEYS = tuple(name for name in field_names() if name not in FROM_SECTIONS)
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(TrainSettings)}
#: ``train.seed`` when the config gives none, as in ``train()``.
DEFAULT_SEED: int | None = _DEFAULTS["seed"]

# What a key must be, in a config's words, where TrainSettings asks more than its annotation.
_EXPECTED = {
    "num_epochs": "a positive int",
    "accumulation_steps": "a positive int",
    "prefetch": f"an int from 0 to {MAX_PREFETCH} (batches fetched ahead)",
}


def check_train(node: Any) -> dict[str, Any]:
    """``train:`` — the keyword arguments of ``runner.train()`` other than the built objects."""
    node = {} if node is None else node
    if not isinstance(node, Mapping):
        raise ConfigError("train", "a mapping of runner.train() arguments", found(node))
    for key in node:
        if key in FROM_SECTIONS:
            raise ConfigError(
                f"train.{key}", f"no {key!r} here (it has its own top-level section)", repr(key)
            )
        if key not in TRAIN_KEYS:
            raise ConfigError(
                f"train.{key}",
                f"an argument of train() ({', '.join(TRAIN_KEYS)})",
                f"unknown key {key!r}",
                hint=close_matches(str(key), TRAIN_KEYS),
            )
    hints = type_hints(TrainSettings)
    for key, value in node.items():
        if key in hints:
            check_value(f"train.{key}", value, hints[key])
    return dict(node)


def train_settings(
    train: Mapping[str, Any], built: Mapping[str, Any], runner: Runner
) -> TrainSettings:
    """``TrainSettings`` of a checked ``train:`` section and the built sections' objects.

    Its refusals become :class:`ConfigError` at the key path of the field they name; so do
    those the runner would only meet when composing (``amp``, ``device``), so that a run that
    builds also starts.
    """
    try:
        settings = TrainSettings(**train, **built)
    except (TypeError, ValueError) as error:
        raise _settings_error(str(error), {**train, **built}) from error
    try:
        device = runner.device if settings.device is None else torch.device(settings.device)
    except (RuntimeError, TypeError) as error:
        expected = "a torch device such as 'cpu', 'cuda' or 'cuda:1'"
        raise ConfigError("train.device", expected, found(settings.device)) from error
    try:
        precision.resolve_amp(settings.amp, device)
    except ValueError as error:
        expected = "false, true, 'fp16' or 'bf16'"
        raise ConfigError("train.amp", expected, found(settings.amp), hint=str(error)) from error
    return settings


def _settings_error(text: str, values: Mapping[str, Any]) -> ConfigError:
    name = _named_field(text)
    if name is None:
        return ConfigError("train", "arguments that train() accepts", text, message=text)
    if name == "loaders":
        loader = re.search(r"loader '([^']+)'", text)
        path = f"loaders.{loader.group(1)}" if loader else "loaders"
        hint = "give dataset: and batch_size: to make a DataLoader"
        return ConfigError(path, "a loader train() accepts", text, message=text, hint=hint)
    if name in FROM_SECTIONS:
        return ConfigError(name, f"a {name} train() accepts", text, message=text)
    path = f"train.{name}"
    value = found(values.get(name, _DEFAULTS[name]))
    if name == "valid_loader":
        loaders = ", ".join(values.get("loaders") or ())
        return ConfigError(path, f"one of the loaders ({loaders})", value)
    if name in _EXPECTED:
        return ConfigError(path, _EXPECTED[name], value)
    return ConfigError(path, "a value train() accepts", value, message=text)


def _named_field(text: str) -> str | None:
    """The field an error of TrainSettings is about: the first one its message names."""
    words = re.findall(r"\w+", text)
    if words[:1] == ["loader"]:  # "loader 'valid' is empty ..."
        return "loaders"
    names = field_names()
    return next((word for word in words if word in names), None)
