"""A new run never silently replaces a previous run in the same logdir."""

from __future__ import annotations

from pathlib import Path

import pytest

from eventrunner.logdir import LogdirInUseError
from eventrunner.testing import tiny_run


def _files(logdir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(logdir)): p.read_bytes() for p in logdir.rglob("*") if p.is_file()}


def test_a_new_run_over_a_previous_one_is_refused_and_nothing_is_touched(tmp_path):
    tiny_run(logdir=tmp_path)
    before = _files(tmp_path)
    assert "checkpoints/best.pth" in before and "metrics.csv" in before
    with pytest.raises(LogdirInUseError) as info:
        tiny_run(logdir=tmp_path, num_epochs=3)
    message = str(info.value)
    assert str(tmp_path) in message and "already holds a run" in message
    assert "resume=" in message and "overwrite=True" in message and "--overwrite" in message
    assert isinstance(info.value, ValueError)
    assert _files(tmp_path) == before


def test_overwrite_replaces_the_previous_run(tmp_path):
    tiny_run(logdir=tmp_path, num_epochs=3)
    runner = tiny_run(logdir=tmp_path, overwrite=True)
    assert runner.epoch_step == 2
    rows = (tmp_path / "metrics.csv").read_text().splitlines()
    assert len(rows) == 1 + 2 * 2  # header + (train, valid) for 2 epochs: the new run only


def test_resume_continues_the_run_that_is_there(tmp_path):
    tiny_run(logdir=tmp_path)
    runner = tiny_run(logdir=tmp_path, num_epochs=3, resume=tmp_path / "checkpoints" / "last.pth")
    assert runner.epoch_step == 3


def test_an_empty_or_unrelated_logdir_is_fine(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "notes.txt").write_text("mine\n")
    tiny_run(logdir=tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine\n"


def test_overwrite_must_be_a_bool(tmp_path):
    with pytest.raises(TypeError, match="overwrite must be True or False"):
        tiny_run(logdir=tmp_path, overwrite="yes")


def test_a_logdir_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "file").write_text("mine\n")
    with pytest.raises(NotADirectoryError, match="is a file, expected a folder"):
        tiny_run(logdir=tmp_path / "file")
    assert (tmp_path / "file").read_text() == "mine\n"
