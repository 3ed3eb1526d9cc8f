"""Epoch e's checkpoint holds exactly e's state: what ``epoch_end`` subscribers before the
checkpoint subscriber (order 90) changed is in it, and nothing the next ``epoch_start`` does.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import torch

import plugins
from eventrunner import Callback, Order
from eventrunner import checkpoint as ckpt
from eventrunner.testing import tiny_run

if TYPE_CHECKING:
    from eventrunner.state import RunState

EPOCHS = 4


class Marks(Callback):
    """A user subscriber (order 70) that changes a saved parameter and its own saved state at
    ``epoch_end`` (the values epoch e's file must hold) and again at the next ``epoch_start``."""

    kind = "marks"

    def __init__(self) -> None:
        super().__init__(order=Order.USER)
        self.value = 0

    def _mark(self, runner: RunState, value: float) -> None:
        self.value = int(value * 10)
        with torch.no_grad():
            runner.model.bias.fill_(value)

    def on_epoch_end(self, runner: RunState) -> None:
        self._mark(runner, runner.epoch_step + 0.5)

    def on_epoch_start(self, runner: RunState) -> None:
        self._mark(runner, -runner.epoch_step)

    def state_dict(self) -> dict[str, Any]:
        return {"value": self.value}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.value = int(state["value"])


def _saved_marks(logdir: Path, checkpoint: Callback) -> dict[int, tuple[list[float], int]]:
    tiny_run([Marks(), checkpoint], num_epochs=EPOCHS, logdir=logdir)
    saved = {}
    for epoch in range(1, EPOCHS + 1):
        state = ckpt.load_checkpoint(logdir / "checkpoints" / ckpt.epoch_file(epoch))
        assert state["epoch"] == epoch
        saved[epoch] = (state["model"]["bias"].tolist(), state["callbacks"]["marks"]["value"])
    return saved


def _expected() -> dict[int, tuple[list[float], int]]:
    return {epoch: ([epoch + 0.5] * 2, epoch * 10 + 5) for epoch in range(1, EPOCHS + 1)}


@pytest.mark.parametrize("background", [False, True])
def test_epoch_files_hold_the_state_at_the_end_of_their_epoch(tmp_path, background):
    checkpoint = plugins.CheckpointCallback(topk=EPOCHS + 1, background_save=background)
    assert _saved_marks(tmp_path, checkpoint) == _expected()


def test_each_file_holds_every_checkpoint_callback_of_its_epoch(tmp_path):
    # Two CheckpointCallbacks share order 90: whichever saves first, its file holds the
    # other's state of the same epoch (a resume from either folder continues both).
    first = plugins.CheckpointCallback(logdir=tmp_path / "min", topk=EPOCHS, minimize=True)
    second = plugins.CheckpointCallback(logdir=tmp_path / "max", topk=EPOCHS, minimize=False)
    tiny_run([first, second], num_epochs=EPOCHS)
    for folder in ("min", "max"):
        for epoch in range(1, EPOCHS + 1):
            path = tmp_path / folder / "checkpoints" / ckpt.epoch_file(epoch)
            states = ckpt.load_checkpoint(path)["callbacks"]
            for key in ("checkpoint", "checkpoint#2"):
                assert states[key]["history"][-1]["epoch"] == epoch, (path, key)
                kept = [entry["epoch"] for entry in states[key]["topk"]]
                assert sorted(kept) == list(range(1, epoch + 1)), (path, key)


class BatchMarks(Callback):
    """Sets the bias to the batch's number at ``batch_end`` (before the checkpoint subscriber)
    and to -1 at the next ``batch_start``, while a slow background write may still run."""

    def __init__(self) -> None:
        super().__init__(order=Order.USER)

    def _fill(self, runner: RunState, value: float) -> None:
        with torch.no_grad():
            runner.model.bias.fill_(value)

    def on_batch_end(self, runner: RunState) -> None:
        self._fill(runner, runner.loader_batch_step)

    def on_batch_start(self, runner: RunState) -> None:
        self._fill(runner, -1)


@pytest.mark.parametrize("background", [False, True])
def test_a_mid_epoch_file_holds_the_state_at_its_batch(tmp_path, background, monkeypatch):
    from eventrunner import signals
    from eventrunner.checkpoint import files

    fsync_folder = files.fsync_folder

    def slow_fsync_folder(folder: Path) -> None:  # the loop goes on meanwhile
        import time

        time.sleep(0.02)
        fsync_folder(folder)

    monkeypatch.setattr(files, "fsync_folder", slow_fsync_folder)
    saved: list[tuple[list[float], int]] = []

    def record(runner: Any, path: Path, position: dict[str, Any] | None, **_: Any) -> None:
        if position is not None:  # at most one write in flight: this file is that write's
            state = ckpt.load_checkpoint(path)
            saved.append((state["model"]["bias"].tolist(), position["batches"]))

    checkpoint = plugins.CheckpointCallback(every_n_batches=2, background_save=background)
    with signals.checkpoint_saved.connected_to(record):
        tiny_run([BatchMarks(), checkpoint], num_epochs=2, logdir=tmp_path, loaders={"train": 6})
    assert [batches for _, batches in saved] == [2, 4, 6] * 2
    assert saved == [([float(batches)] * 2, batches) for _, batches in saved]
