"""A new run never silently replaces a previous run in the same logdir."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from eventrunner import SupervisedRunner
from eventrunner.logdir import LogdirInUseError


def _train(logdir: Path, **kwargs: Any) -> SupervisedRunner:
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    gen = torch.Generator().manual_seed(0)
    batches = [(torch.randn(8, 4, generator=gen), torch.randint(0, 2, (8,), generator=gen))] * 2
    runner = SupervisedRunner()
    runner.train(
        model=model,
        criterion=nn.CrossEntropyLoss(),
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        loaders={"train": batches, "valid": batches[:1]},
        num_epochs=kwargs.pop("num_epochs", 2),
        logdir=logdir,
        console=False,
        **kwargs,
    )
    return runner


def _files(logdir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(logdir)): p.read_bytes() for p in logdir.rglob("*") if p.is_file()}


def test_a_new_run_over_a_previous_one_is_refused_and_nothing_is_touched(tmp_path):
    _train(tmp_path)
    before = _files(tmp_path)
    assert "checkpoints/best.pth" in before and "metrics.csv" in before
    with pytest.raises(LogdirInUseError) as info:
        _train(tmp_path, num_epochs=3)
    message = str(info.value)
    assert str(tmp_path) in message and "already holds a run" in message
    assert "resume=" in message and "overwrite=True" in message and "--overwrite" in message
    assert isinstance(info.value, ValueError)
    assert _files(tmp_path) == before


def test_overwrite_replaces_the_previous_run(tmp_path):
    _train(tmp_path, num_epochs=3)
    runner = _train(tmp_path, overwrite=True)
    assert runner.epoch_step == 2
    rows = (tmp_path / "metrics.csv").read_text().splitlines()
    assert len(rows) == 1 + 2 * 2  # header + (train, valid) for 2 epochs: the new run only


def test_resume_continues_the_run_that_is_there(tmp_path):
    _train(tmp_path)
    runner = _train(tmp_path, num_epochs=3, resume=tmp_path / "checkpoints" / "last.pth")
    assert runner.epoch_step == 3


def test_an_empty_or_unrelated_logdir_is_fine(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "notes.txt").write_text("mine\n")
    _train(tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine\n"


def test_overwrite_must_be_a_bool(tmp_path):
    with pytest.raises(TypeError, match="overwrite must be True or False"):
        _train(tmp_path, overwrite="yes")


def test_a_logdir_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "file").write_text("mine\n")
    with pytest.raises(NotADirectoryError, match="is a file, expected a folder"):
        _train(tmp_path / "file")
    assert (tmp_path / "file").read_text() == "mine\n"
