"""Checkpoints on disk: best.pth is a snapshot of the best epoch, top-k files and index.json,
load_best_on_end with and without a logdir, and what a failed run leaves behind.

A scripted runner trains for real on ``train`` (the weights change every epoch) and reports a
chosen ``valid`` loss per epoch, so the best epoch is known in advance.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import plugins
from eventrunner import Callback, Order, Runner
from eventrunner import checkpoint as ckpt


class ScriptedRunner(Runner):
    """``train`` minimises a real loss; ``valid`` reports ``scores[epoch - 1]``."""

    def __init__(self, scores: list[float], fail_at_epoch: int | None = None) -> None:
        super().__init__()
        self.scores = scores
        self.fail_at_epoch = fail_at_epoch

    def handle_batch(self, batch: dict[str, Any]) -> None:
        if self.epoch_step == self.fail_at_epoch and self.is_train_loader:
            raise RuntimeError(f"boom in epoch {self.epoch_step}")
        out = self.model(batch["x"])
        if self.is_train_loader:
            self.batch_metrics["loss"] = ((out - batch["y"]) ** 2).mean()
        else:
            self.batch_metrics["loss"] = float(self.scores[self.epoch_step - 1])


class WeightsRecorder(Callback):
    """The model's weights at the end of every epoch."""

    def __init__(self) -> None:
        super().__init__(order=Order.USER)
        self.weights: dict[int, dict[str, torch.Tensor]] = {}

    def on_epoch_end(self, runner: Any) -> None:
        self.weights[runner.epoch_step] = {
            k: v.detach().clone() for k, v in runner.model.state_dict().items()
        }


def _loaders() -> dict[str, list[dict[str, torch.Tensor]]]:
    gen = torch.Generator().manual_seed(0)
    data = [
        {"x": torch.randn(8, 3, generator=gen), "y": torch.randn(8, 1, generator=gen)}
        for _ in range(3)
    ]
    return {"train": data, "valid": data[:1]}


def _train(
    tmp: Path | None,
    scores: list[float],
    callbacks: list[Callback] | None = None,
    **kwargs: Any,
) -> tuple[ScriptedRunner, WeightsRecorder]:
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    runner = ScriptedRunner(scores, kwargs.pop("fail_at_epoch", None))
    recorder = WeightsRecorder()
    runner.train(
        model=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        loaders=_loaders(),
        num_epochs=len(scores),
        logdir=tmp,
        callbacks=[recorder, *(callbacks or [])],
        console=False,
        **kwargs,
    )
    return runner, recorder


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


SCORES = [3.0, 1.0, 2.0, 5.0]  # minimised: epoch 2 is the best, epoch 4 the last


@pytest.mark.parametrize("background", [True, False])
def test_best_pth_is_a_snapshot_of_the_best_epoch(tmp_path, background):
    runner, recorder = _train(
        tmp_path, SCORES, [plugins.CheckpointCallback(background_save=background)]
    )
    assert runner.best_epoch == 2 and runner.best_valid_metric == 1.0
    folder = tmp_path / "checkpoints"
    best = ckpt.load_checkpoint(folder / "best.pth")
    last = ckpt.load_checkpoint(folder / "last.pth")
    assert best["epoch"] == 2 and last["epoch"] == 4
    assert _same(best["model"], recorder.weights[2])
    assert not _same(best["model"], recorder.weights[4])
    assert _same(last["model"], recorder.weights[4])
    assert best["selection"]["best_epoch"] == 2
    assert [h["metric"] for h in last["selection"]["history"]] == SCORES
    # No temp files are left behind.
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]


def test_topk_files_and_index(tmp_path):
    _train(tmp_path, SCORES, [plugins.CheckpointCallback(topk=2)])
    folder = tmp_path / "checkpoints"
    names = sorted(p.name for p in folder.iterdir())
    # Epochs 2 (1.0) and 3 (2.0) are the two best; epochs 1 and 4 were displaced/never kept.
    assert names == ["best.pth", "epoch_0002.pth", "epoch_0003.pth", "index.json", "last.pth"]
    index = json.loads((folder / "index.json").read_text())
    assert index["best_epoch"] == 2 and index["last_epoch"] == 4
    assert index["topk"] == ["epoch_0002.pth", "epoch_0003.pth"]
    assert index["selection"] == {"loader": "valid", "metric": "loss", "minimize": True}
    assert index["files"] == {
        "last.pth": {"epoch": 4, "metric": 5.0, "best": False},
        "best.pth": {"epoch": 2, "metric": 1.0, "best": True},
        "epoch_0002.pth": {"epoch": 2, "metric": 1.0, "best": True},
        "epoch_0003.pth": {"epoch": 3, "metric": 2.0, "best": False},
    }
    for name, entry in index["files"].items():
        assert ckpt.load_checkpoint(folder / name)["epoch"] == entry["epoch"]


def test_topk_maximised_and_default_one(tmp_path):
    _train(tmp_path / "max", SCORES, [plugins.CheckpointCallback(topk=2)], minimize_metric=False)
    folder = tmp_path / "max" / "checkpoints"
    index = json.loads((folder / "index.json").read_text())
    assert index["best_epoch"] == 4 and index["topk"] == ["epoch_0004.pth", "epoch_0001.pth"]
    assert ckpt.load_checkpoint(folder / "best.pth")["epoch"] == 4

    _train(tmp_path / "one", SCORES)  # the default subscriber: topk=1
    folder = tmp_path / "one" / "checkpoints"
    assert sorted(p.name for p in folder.glob("epoch_*.pth")) == ["epoch_0002.pth"]


def test_without_selection_best_is_the_last_epoch(tmp_path):
    class NoValid(ScriptedRunner):
        pass

    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    runner = NoValid(SCORES)
    runner.train(
        model=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        loaders={"train": _loaders()["train"]},
        num_epochs=3,
        logdir=tmp_path,
        callbacks=[plugins.CheckpointCallback(topk=2)],
        console=False,
    )
    index = json.loads((tmp_path / "checkpoints" / "index.json").read_text())
    assert index["selection"] is None and index["best_epoch"] == 3
    assert index["topk"] == ["epoch_0003.pth", "epoch_0002.pth"]  # the latest ones


@pytest.mark.parametrize("with_logdir", [True, False])
def test_load_best_on_end(tmp_path, with_logdir):
    runner, recorder = _train(tmp_path if with_logdir else None, SCORES, load_best_on_end=True)
    assert _same(runner.model.state_dict(), recorder.weights[2])
    assert not (tmp_path / "checkpoints").exists() or with_logdir


def test_without_load_best_on_end_the_model_keeps_its_last_weights(tmp_path):
    runner, recorder = _train(tmp_path, SCORES)
    assert _same(runner.model.state_dict(), recorder.weights[4])


def test_a_failed_run_keeps_last_pth_of_the_last_finished_epoch(tmp_path):
    with pytest.raises(RuntimeError, match="boom in epoch 3"):
        _train(tmp_path, SCORES, fail_at_epoch=3)
    folder = tmp_path / "checkpoints"
    assert ckpt.load_checkpoint(folder / "last.pth")["epoch"] == 2
    assert ckpt.load_checkpoint(folder / "best.pth")["epoch"] == 2
    assert not (folder / "interrupted.pth").exists()
    index = json.loads((folder / "index.json").read_text())
    assert index["last_epoch"] == 2


class FailingEpochStart(Callback):
    """Fails at the start of an epoch, before the checkpoint subscriber's turn."""

    def __init__(self, epoch: int) -> None:
        super().__init__(order=Order.INTERNAL)
        self.epoch = epoch

    def on_epoch_start(self, runner: Any) -> None:
        if runner.epoch_step == self.epoch:
            raise KeyError("epoch start failed")


def test_an_epoch_finished_before_an_epoch_start_failure_is_saved(tmp_path):
    with pytest.raises(KeyError):
        _train(tmp_path, SCORES, [FailingEpochStart(3)])
    assert ckpt.load_checkpoint(tmp_path / "checkpoints" / "last.pth")["epoch"] == 2


class FailingEpochEnd(Callback):
    """Fails in epoch_end before the checkpoint subscriber (order 70 < 90): not saved."""

    def __init__(self, epoch: int) -> None:
        super().__init__(order=Order.USER)
        self.epoch = epoch

    def on_epoch_end(self, runner: Any) -> None:
        if runner.epoch_step == self.epoch:
            raise KeyError("epoch end failed")


def test_an_epoch_whose_epoch_end_failed_is_not_saved(tmp_path):
    with pytest.raises(KeyError):
        _train(tmp_path, SCORES, [FailingEpochEnd(3)])
    assert ckpt.load_checkpoint(tmp_path / "checkpoints" / "last.pth")["epoch"] == 2


class Unloadable:
    """A value torch.load(weights_only=True) refuses."""


class BadState(Callback):
    def __init__(self) -> None:
        super().__init__(order=Order.USER)
        self.epochs = 0

    def on_epoch_end(self, runner: Any) -> None:
        self.epochs += 1

    def state_dict(self) -> dict[str, Any]:
        return {"thing": Unloadable()} if self.epochs >= 3 else {"epochs": self.epochs}


@pytest.mark.parametrize("background", [True, False])
def test_a_state_that_would_not_load_is_an_error_and_replaces_nothing(tmp_path, background):
    with pytest.raises(ckpt.CheckpointError, match=r"last\.pth.*weights_only=True") as info:
        _train(
            tmp_path, SCORES, [BadState(), plugins.CheckpointCallback(background_save=background)]
        )
    assert "at callbacks.BadState.thing (test_checkpoint.Unloadable)" in str(info.value)
    folder = tmp_path / "checkpoints"
    assert ckpt.load_checkpoint(folder / "last.pth")["epoch"] == 2
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("background", [True, False])
def test_an_unpicklable_state_is_an_error_naming_the_key(tmp_path, background):
    class Lambda(BadState):
        def state_dict(self) -> dict[str, Any]:
            return {"fn": lambda: None}

    with pytest.raises(ckpt.CheckpointError, match=r"cannot be saved at callbacks\.Lambda\.fn"):
        _train(tmp_path, SCORES, [Lambda(), plugins.CheckpointCallback(background_save=background)])
    assert not (tmp_path / "checkpoints" / "last.pth").exists()


def test_background_write_error_is_raised_not_swallowed(tmp_path, monkeypatch):
    calls = []

    def failing_write(self, state, plan):
        calls.append(plan.epoch)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ckpt.CheckpointFolder, "write", failing_write)
    with pytest.raises(OSError, match="No space left") as info:
        _train(tmp_path, SCORES, [plugins.CheckpointCallback(background_save=True)])
    assert any("background save of epoch 1" in note for note in info.value.__notes__)
    assert calls[0] == 1 and len(calls) <= 3  # raised by epoch 2's save at the latest


def test_background_saves_share_one_worker_that_ends_with_the_run(tmp_path, monkeypatch):
    writers: list[threading.Thread] = []
    write = ckpt.CheckpointFolder.write

    def recording_write(self, state, plan):
        writers.append(threading.current_thread())
        write(self, state, plan)

    monkeypatch.setattr(ckpt.CheckpointFolder, "write", recording_write)
    before = set(threading.enumerate())
    _train(tmp_path, SCORES, [plugins.CheckpointCallback(background_save=True)])
    assert len(writers) == len(SCORES) and len(set(writers)) == 1, writers
    assert writers[0].name.startswith("eventrunner-checkpoint")
    assert [t.name for t in set(threading.enumerate()) - before if t.is_alive()] == []


def test_numpy_scalars_in_a_state_become_python_numbers_that_weights_only_loads(tmp_path):
    weights = nn.Linear(2, 1).state_dict()  # an OrderedDict with _metadata
    state = {
        "weights": weights,
        "metrics": {"loss": np.float64(0.5), np.int64(3): [np.float32(1.5), (np.int64(2), 4)]},
        "counts": Counter({"a": np.int64(2)}),
        "plain": {"steps": [1, 2.5, "x", None, True]},
    }
    plain = ckpt.plain_numbers(state)
    assert plain["plain"] is state["plain"] and plain["weights"] is weights  # nothing to change
    assert plain["metrics"] == {"loss": 0.5, 3: [1.5, (2, 4)]}
    key = next(k for k in plain["metrics"] if k != "loss")
    assert type(key) is int and type(plain["metrics"]["loss"]) is float
    assert type(plain["counts"]) is Counter and type(plain["counts"]["a"]) is int
    torch.save({k: v for k, v in plain.items() if k != "counts"}, tmp_path / "plain.pth")
    loaded = torch.load(tmp_path / "plain.pth", weights_only=True)
    assert loaded["metrics"] == plain["metrics"]
    assert loaded["weights"]._metadata == weights._metadata


def test_checkpoint_holds_the_whole_run(tmp_path):
    scheduler_runner, _ = _train(tmp_path, SCORES[:2], [plugins.EarlyStoppingCallback(patience=5)])
    state = ckpt.load_checkpoint(tmp_path / "checkpoints" / "last.pth")
    assert set(state) >= {
        "model",
        "optimizer",
        "scheduler",
        "scaler",
        "counters",
        "selection",
        "callbacks",
        "rng",
    }
    assert state["counters"] == {
        "epoch_step": 2,
        "batch_step": scheduler_runner.batch_step,
        "sample_step": scheduler_runner.sample_step,
        "need_early_stop": False,
        "worker_seed": 42,  # train(seed=42): what DataLoader workers seed their batches from
    }
    assert state["classes"] == {"optimizer": "SGD", "scheduler": None}
    # Early stopping (order 65, before the checkpoint subscriber) is saved with this epoch's update.
    assert state["callbacks"]["early_stopping"] == {"best": 1.0, "wait": 0}
    assert state["callbacks"]["checkpoint"]["history"] == [
        {"epoch": 1, "metric": 3.0},
        {"epoch": 2, "metric": 1.0},
    ]
    assert set(state["rng"]) >= {"python", "numpy", "torch", "cuda", "loaders"}
    assert state["epoch_metrics"]["valid"]["loss"] == 1.0


def test_topk_must_be_a_non_negative_int():
    with pytest.raises(ValueError, match="topk"):
        plugins.CheckpointCallback(topk=-1)


def test_resuming_with_another_selection_warns(tmp_path, caplog):
    _train(tmp_path, SCORES[:2])
    with caplog.at_level("WARNING", logger="eventrunner"):
        runner, _ = _train(
            tmp_path, SCORES[:3], resume=tmp_path / "checkpoints/last.pth", minimize_metric=False
        )
    assert "chose its best epoch (2)" in caplog.text
    assert runner.best_epoch == 3  # 2.0 > 1.0 when maximising


def test_a_run_that_stopped_early_trains_nothing_more_when_resumed(tmp_path, caplog):
    # Patience 2: epochs 3 and 4 do not improve on epoch 2, so the run stops after epoch 4.
    scores = [3.0, 1.0, 2.0, 5.0, 0.5, 0.4]
    first, _ = _train(tmp_path, scores, [plugins.EarlyStoppingCallback(patience=2)])
    assert first.epoch_step == 4 and first.need_early_stop
    folder = tmp_path / "checkpoints"
    saved = ckpt.load_checkpoint(folder / "last.pth")
    assert saved["counters"]["need_early_stop"] is True
    index = (folder / "index.json").read_text()

    stopper = plugins.EarlyStoppingCallback(patience=2)
    with caplog.at_level("WARNING", logger="eventrunner"):
        runner, recorder = _train(
            tmp_path, [*scores, 0.1, 0.1], [stopper], resume=folder / "last.pth"
        )
    assert recorder.weights == {}  # no epoch ran
    assert _same(runner.model.state_dict(), saved["model"])
    assert (runner.epoch_step, runner.best_epoch, runner.best_valid_metric) == (4, 2, 1.0)
    assert runner.need_early_stop
    assert stopper.state_dict() == {"best": 1.0, "wait": 2}
    assert "early stopping ended" in caplog.text and "no epoch left to train" in caplog.text
    assert ckpt.load_checkpoint(folder / "last.pth")["epoch"] == 4
    assert (folder / "index.json").read_text() == index


def test_a_run_that_did_not_stop_resumes_with_the_stop_request_cleared(tmp_path):
    _train(tmp_path, SCORES[:2])
    assert (
        ckpt.load_checkpoint(tmp_path / "checkpoints/last.pth")["counters"]["need_early_stop"]
        is False
    )
    runner, recorder = _train(tmp_path, SCORES, resume=tmp_path / "checkpoints/last.pth")
    assert sorted(recorder.weights) == [3, 4] and not runner.need_early_stop
