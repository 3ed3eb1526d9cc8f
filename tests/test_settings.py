"""``TrainSettings``: train()'s arguments as one frozen, validated dataclass."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from eventrunner import Runner
from eventrunner.settings import TrainSettings, field_names
from eventrunner.testing import tiny_loader, tiny_run


def test_bool_aliases_that_disagree_are_refused():
    # The old string sentinel could not tell minimize_metric=True from its default.
    with pytest.raises(ValueError, match=r"minimize_metric=True.*minimize_valid_metric=False"):
        TrainSettings(
            loaders={"train": tiny_loader()}, minimize_metric=True, minimize_valid_metric=False
        )
    with pytest.raises(ValueError, match="minimize_valid_metric"):
        tiny_run(minimize_metric=True, minimize_valid_metric=False)


def test_aliases_that_agree_or_stand_alone_select_the_same():
    alone = TrainSettings(loaders={"valid": tiny_loader()}, minimize_valid_metric=False)
    both = TrainSettings(
        loaders={"valid": tiny_loader()}, minimize_metric=False, minimize_valid_metric=False
    )
    assert alone.selection == both.selection
    assert alone.selection.minimize is False
    assert TrainSettings(loaders={"valid": tiny_loader()}).selection.minimize is True


def test_settings_are_frozen_and_replace_revalidates():
    settings = TrainSettings(loaders={"train": tiny_loader()}, num_epochs=2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.num_epochs = 3  # type: ignore[misc]
    assert settings.replace(num_epochs=3).num_epochs == 3
    with pytest.raises(ValueError, match="num_epochs"):
        settings.replace(num_epochs=0)


def test_train_shows_the_settings_fields_as_its_signature():
    parameters = inspect.signature(Runner.train).parameters
    assert tuple(parameters) == field_names()
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in parameters.values())
    assert (
        parameters["num_epochs"].default == TrainSettings.__dataclass_fields__["num_epochs"].default
    )


def test_an_unknown_argument_is_named_with_a_suggestion():
    with pytest.raises(TypeError, match="unknown argument 'num_epoch'; did you mean 'num_epochs'"):
        tiny_run(num_epoch=2)


def test_train_takes_one_settings_object_too():
    settings = TrainSettings(loaders={"train": tiny_loader()}, num_epochs=1, console=False)
    runner = tiny_run(loaders=("train",), num_epochs=1)
    again = type(runner)()
    again.train(
        settings, model=runner.model, criterion=runner.criterion, optimizer=runner.optimizer
    )
    assert again.epoch_step == 1
    assert again.settings.num_epochs == 1
