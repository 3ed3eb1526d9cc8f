"""Data read from a checkpoint is data: file names it lists never reach outside the checkpoints
folder, temp files never follow a planted symlink, and a checkpoint that lacks a part or holds
another optimizer's (scheduler's) state is refused before the model or optimizer is touched.

Crafted checkpoints are real ``last.pth`` files edited as plain data and written back with
``torch.save``: ``torch.load(weights_only=True)`` accepts them.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import plugins
from eventrunner import Runner
from eventrunner import checkpoint as ckpt
from eventrunner.checkpoint import files


class TinyRunner(Runner):
    def handle_batch(self, batch: dict[str, Any]) -> None:
        out = self.model(batch["x"])
        self.batch_metrics["loss"] = ((out - batch["y"]) ** 2).mean()


def _data() -> list[dict[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(0)
    return [{"x": torch.randn(4, 3, generator=gen), "y": torch.randn(4, 1, generator=gen)}] * 2


def _parts(optimizer: str = "adam", scheduler: str = "step") -> tuple[nn.Module, Any, Any]:
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    opt: Any = (
        torch.optim.Adam(model.parameters(), lr=0.01)
        if optimizer == "adam"
        else torch.optim.SGD(model.parameters(), lr=0.01)
    )
    sched: Any = (
        torch.optim.lr_scheduler.StepLR(opt, step_size=1)
        if scheduler == "step"
        else torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.9)
    )
    return model, opt, sched


def _train(
    logdir: Path, num_epochs: int, resume: Path | None = None, **parts: str
) -> tuple[TinyRunner, nn.Module, Any]:
    model, optimizer, scheduler = _parts(**parts)
    runner = TinyRunner()
    runner.train(
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        loaders={"train": _data(), "valid": _data()},
        num_epochs=num_epochs,
        logdir=logdir,
        resume=resume,
        callbacks=[plugins.CheckpointCallback(topk=2)],
        console=False,
    )
    return runner, model, optimizer


def _craft(source: Path, target: Path, edit: Any) -> Path:
    state = torch.load(source, weights_only=True)
    edit(state)
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, target)
    return target


def _assert_untouched(model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    fresh, _, _ = _parts()
    assert all(
        torch.equal(a, b)
        for a, b in zip(model.state_dict().values(), fresh.state_dict().values(), strict=True)
    )
    assert optimizer.state_dict()["state"] == {}


# ------------------------------------------------------------- file names from a checkpoint


def _set_topk_file(name: str, metric: float | None = None) -> Any:
    def edit(state: dict[str, Any]) -> None:
        entry = state["callbacks"]["checkpoint"]["topk"][0]
        entry["file"] = name
        if metric is not None:
            entry["metric"] = metric

    return edit


def test_a_relative_name_that_escapes_the_folder_replaces_nothing(tmp_path):
    _train(tmp_path / "first", 1)
    last = tmp_path / "first/checkpoints/last.pth"
    # The crafted file sits two folders deep, with a real checkpoint of its epoch where
    # "../../victim.txt" points from there: resuming would link it over the user's file.
    crafted = _craft(last, tmp_path / "src/deep/crafted.pth", _set_topk_file("../../victim.txt"))
    (tmp_path / "victim.txt").write_bytes(last.read_bytes())
    victim = tmp_path / "x/victim.txt"  # "../../victim.txt" seen from x/run/checkpoints
    victim.parent.mkdir()
    victim.write_text("keep me")

    with pytest.raises(ckpt.CheckpointError) as info:
        _train(tmp_path / "x/run", 2, resume=crafted)
    message = str(info.value)
    assert "crafted.pth" in message and "'../../victim.txt'" in message
    assert "epoch_0001.pth" in message  # what was expected
    assert victim.read_text() == "keep me"
    assert not (tmp_path / "x/run").exists()  # refused before anything was touched


def test_an_absolute_name_is_neither_replaced_nor_deleted(tmp_path):
    _train(tmp_path / "first", 1)
    last = tmp_path / "first/checkpoints/last.pth"
    # Another run's checkpoint of the same epoch, named by its absolute path and ranked worst,
    # so that the next save would displace (delete) it.
    other = tmp_path / "other/best.pth"
    other.parent.mkdir()
    other.write_bytes(last.read_bytes())
    before = other.read_bytes()
    crafted = _craft(last, tmp_path / "crafted.pth", _set_topk_file(str(other), metric=1e30))

    model, optimizer, _ = _parts()
    with pytest.raises(ckpt.CheckpointError, match=r"crafted\.pth") as info:
        runner = TinyRunner()
        runner.train(
            model=model,
            optimizer=optimizer,
            loaders={"train": _data(), "valid": _data()},
            num_epochs=3,
            logdir=tmp_path / "run",
            resume=crafted,
            callbacks=[plugins.CheckpointCallback(topk=1)],
            console=False,
        )
    assert repr(str(other)) in str(info.value)
    assert other.read_bytes() == before
    _assert_untouched(model, optimizer)


@pytest.mark.parametrize("name", ["epoch_0007.pth", "notes.txt", "sub/epoch_0001.pth", ""])
def test_only_the_names_the_project_writes_are_accepted(tmp_path, name):
    _train(tmp_path / "first", 1)
    crafted = _craft(
        tmp_path / "first/checkpoints/last.pth", tmp_path / "crafted.pth", _set_topk_file(name)
    )
    with pytest.raises(ckpt.CheckpointError, match=r"crafted\.pth") as info:
        _train(tmp_path / "run", 2, resume=crafted)
    assert repr(name) in str(info.value)


def test_a_checkpoint_folder_refuses_foreign_names_itself(tmp_path):
    folder = ckpt.CheckpointFolder(tmp_path / "checkpoints", topk=1, minimize=True)
    outside = tmp_path / "outside.txt"
    outside.write_text("keep me")
    with pytest.raises(ckpt.CheckpointError, match=r"'\.\./outside\.txt'"):
        folder.resume(
            tmp_path / "resumed.pth",
            ckpt.Entry(ckpt.LAST, 1),
            [ckpt.Entry("../outside.txt", 1)],
            None,
            1,
            None,
            None,
        )
    assert outside.read_text() == "keep me"


# ------------------------------------------------------------------------------ temp files


def _plant_symlink(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """A symlink at the first temp name the code picks, pointing at a file outside."""
    outside = tmp_path / "outside.txt"
    outside.write_text("keep me")
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    planted = folder / ".eventrunner-planted.tmp"
    planted.symlink_to(outside)
    names = iter([planted.name])
    real = files._temp_name

    def predictable(where: Path) -> Path:
        return where / next(names, real(where).name)

    monkeypatch.setattr(files, "_temp_name", predictable)
    return folder, outside


def test_a_checkpoint_write_does_not_follow_a_planted_symlink(tmp_path, monkeypatch):
    folder, outside = _plant_symlink(tmp_path, monkeypatch)
    ckpt.save_checkpoint({"format": ckpt.FORMAT, "version": 1, "epoch": 1}, [folder / "last.pth"])
    assert outside.read_text() == "keep me"
    assert ckpt.peek_epoch(folder / "last.pth") == 1


def test_a_json_write_does_not_follow_a_planted_symlink(tmp_path, monkeypatch):
    folder, outside = _plant_symlink(tmp_path, monkeypatch)
    ckpt.write_json_atomic(folder / "index.json", {"a": 1})
    assert outside.read_text() == "keep me"
    assert (folder / "index.json").read_text().strip() == '{\n  "a": 1\n}'


def test_the_copy_without_hard_links_does_not_follow_a_planted_symlink(tmp_path, monkeypatch):
    source = tmp_path / "source.pth"
    ckpt.save_checkpoint({"format": ckpt.FORMAT, "version": 1, "epoch": 3}, [source])
    folder, outside = _plant_symlink(tmp_path, monkeypatch)

    def no_links(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.EPERM, "hard links not supported")

    monkeypatch.setattr(os, "link", no_links)
    ckpt.link_into(source, folder / "best.pth")
    assert outside.read_text() == "keep me"
    assert ckpt.peek_epoch(folder / "best.pth") == 3


def test_temp_files_are_created_exclusively_and_left_nowhere(tmp_path):
    ckpt.save_checkpoint({"format": ckpt.FORMAT, "version": 1, "epoch": 1}, [tmp_path / "a.pth"])
    ckpt.write_json_atomic(tmp_path / "b.json", [1])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pth", "b.json"]
    first, second = files._temp_name(tmp_path), files._temp_name(tmp_path)
    assert first != second and first.parent == tmp_path


# ------------------------------------------------------------ the structure, before loading


@pytest.mark.parametrize("part", ["counters", "rng", "selection", "model"])
def test_a_missing_part_is_refused_before_anything_is_loaded(tmp_path, part):
    _train(tmp_path / "first", 1)
    crafted = _craft(
        tmp_path / "first/checkpoints/last.pth", tmp_path / "crafted.pth", lambda s: s.pop(part)
    )
    _assert_resume_refused(crafted, rf"crafted\.pth.*{part}")


def _assert_resume_refused(crafted: Path, match: str) -> str:
    """Resuming from ``crafted`` is refused and leaves the model and optimizer untouched."""
    model, optimizer, _ = _parts()
    with pytest.raises(ckpt.CheckpointError, match=match) as info:
        TinyRunner().train(
            model=model,
            optimizer=optimizer,
            loaders={"train": _data()},
            num_epochs=2,
            resume=crafted,
            console=False,
        )
    _assert_untouched(model, optimizer)
    return str(info.value)


@pytest.mark.parametrize(
    ("edit", "where"),
    [
        (lambda s: s["counters"].update(epoch_step="3"), "counters.epoch_step"),
        (lambda s: s["counters"].pop("batch_step"), "counters.batch_step"),
        (lambda s: s["rng"].pop("torch"), "rng.torch"),
        (lambda s: s["rng"]["numpy"].update(keys=[1, 2]), "rng.numpy.keys"),
        (lambda s: s["selection"].update(best_epoch="one"), "selection.best_epoch"),
        (lambda s: s.update(callbacks=[1]), "callbacks"),
    ],
)
def test_a_malformed_part_is_refused_naming_it(tmp_path, edit, where):
    _train(tmp_path / "first", 1)
    crafted = _craft(tmp_path / "first/checkpoints/last.pth", tmp_path / "crafted.pth", edit)
    message = _assert_resume_refused(crafted, r"crafted\.pth")
    assert where in message


def test_the_optimizer_of_another_class_is_refused_naming_both(tmp_path):
    _train(tmp_path / "first", 1, optimizer="adam")
    model, optimizer, scheduler = _parts(optimizer="sgd")
    with pytest.raises(ckpt.CheckpointError, match=r"last\.pth") as info:
        TinyRunner().train(
            model=model,
            optimizer=optimizer,
            scheduler=scheduler,
            loaders={"train": _data()},
            num_epochs=2,
            resume=tmp_path / "first/checkpoints/last.pth",
            console=False,
        )
    message = str(info.value)
    assert "Adam" in message and "SGD" in message and "optimizer" in message
    _assert_untouched(model, optimizer)


def test_the_scheduler_of_another_class_is_refused_naming_both(tmp_path):
    _train(tmp_path / "first", 1, scheduler="step")
    with pytest.raises(ckpt.CheckpointError, match=r"StepLR.*ExponentialLR|ExponentialLR.*StepLR"):
        _train(
            tmp_path / "first", 2, resume=tmp_path / "first/checkpoints/last.pth", scheduler="exp"
        )


def test_a_checkpoint_without_class_names_still_resumes(tmp_path):
    whole, _, _ = _train(tmp_path / "whole", 2)
    _train(tmp_path / "split", 1)
    old = _craft(
        tmp_path / "split/checkpoints/last.pth",
        tmp_path / "old.pth",
        lambda s: s.pop("classes", None),
    )
    rest, model, _ = _train(tmp_path / "split", 2, resume=old)
    assert rest.epoch_step == 2
    assert all(
        torch.equal(a, b)
        for a, b in zip(whole.model.state_dict().values(), model.state_dict().values(), strict=True)
    )


@pytest.mark.parametrize(
    "history",
    [[{"epoch": 1, "metric": "x"}], [{"metric": 1.0}], [{"epoch": True, "metric": 1.0}], "h"],
)
def test_a_malformed_selection_history_is_refused_before_anything_loads(tmp_path, history):
    _train(tmp_path / "first", 1)

    def edit(state: dict[str, Any]) -> None:
        state["callbacks"]["checkpoint"]["history"] = history

    crafted = _craft(tmp_path / "first/checkpoints/last.pth", tmp_path / "crafted.pth", edit)
    message = _assert_resume_refused(crafted, r"crafted\.pth.*'checkpoint'")
    assert "history" in message


@pytest.mark.parametrize("state", [{"best": "x", "wait": 0}, {"best": 1.0, "wait": "2"}])
def test_a_malformed_early_stopping_state_is_refused(state):
    with pytest.raises(ValueError, match="expected"):
        plugins.EarlyStoppingCallback(patience=2).load_state_dict(state)
