"""Exact resume: 4 epochs in one run and 2 epochs + ``resume=`` to 4 reach the same weights,
optimizer, scheduler and early-stopping state and the same best epoch (CPU, shuffled loaders
drawing from the global RNG, from ``DataLoader(generator=...)``, or from a sampler's own
generator behind ``BatchLimitLoaderWrapper``; dropout, ``random`` and NumPy draws in the step).
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, RandomSampler, TensorDataset

import plugins
from eventrunner import BatchLimitLoaderWrapper, Callback, Order, Runner
from eventrunner import checkpoint as ckpt
from eventrunner.checkpoint import resume as restoring
from eventrunner.rng import loader_generators, rng_state, set_rng_state


class NoisyRunner(Runner):
    """A step that draws from every global RNG: dropout (torch), ``random`` and NumPy."""

    def handle_batch(self, batch: dict[str, Any]) -> None:
        x, y = batch["features"], batch["targets"]
        logits = self.model(x)
        loss = nn.functional.cross_entropy(logits, y)
        noise = 1.0 + 0.01 * random.random() + 0.01 * float(np.random.rand())
        self.batch_metrics["loss"] = loss * noise


def _to_dict(batch: Any) -> dict[str, torch.Tensor]:
    return {"features": batch[0], "targets": batch[1]}


class DictLoader:
    """A DataLoader yielding dicts; reaches its generators through ``.loader``."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        return map(_to_dict, self.loader)


def _loaders(how: str) -> dict[str, Any]:
    data = torch.Generator().manual_seed(123)
    x = torch.randn(48, 6, generator=data)
    y = (x[:, 0] > 0).long()
    train, valid = TensorDataset(x[:32], y[:32]), TensorDataset(x[32:], y[32:])
    if how == "global":
        loader: Any = DataLoader(train, batch_size=8, shuffle=True)
    elif how == "loader_generator":
        loader = DataLoader(
            train, batch_size=8, shuffle=True, generator=torch.Generator().manual_seed(7)
        )
    else:  # sampler_generator, behind a pass-through BatchLimitLoaderWrapper
        sampler = RandomSampler(train, generator=torch.Generator().manual_seed(9))
        loader = BatchLimitLoaderWrapper(DataLoader(train, batch_size=8, sampler=sampler), 1.0)
    return {
        "train": DictLoader(loader),
        "valid": DictLoader(DataLoader(valid, batch_size=16)),
    }


class EpochLog(Callback):
    def __init__(self) -> None:
        super().__init__(order=Order.USER)
        self.epochs: list[int] = []

    def on_epoch_start(self, runner: Any) -> None:
        self.epochs.append(runner.epoch_step)


def _run(
    how: str,
    logdir: Path,
    num_epochs: int,
    resume: Path | None = None,
    background: bool | None = None,
) -> dict[str, Any]:
    torch.manual_seed(0)  # the same initial weights in every run (overwritten on resume)
    model = nn.Sequential(nn.Linear(6, 32), nn.Dropout(0.3), nn.ReLU(), nn.Linear(32, 2))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.7)
    stopper = plugins.EarlyStoppingCallback(patience=10)
    epochs = EpochLog()
    runner = NoisyRunner()
    runner.train(
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        loaders=_loaders(how),
        num_epochs=num_epochs,
        logdir=logdir,
        resume=resume,
        callbacks=[stopper, epochs, plugins.CheckpointCallback(topk=2, background_save=background)],
        console=False,
    )
    return {
        "runner": runner,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "stopper": stopper.state_dict(),
        "epochs": epochs.epochs,
    }


def _assert_equal(a: Any, b: Any, where: str = "") -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            _assert_equal(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_equal(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


@pytest.mark.parametrize(
    ("how", "background"),
    [("global", False), ("loader_generator", True), ("sampler_generator", False)],
)
def test_resume_reaches_the_same_state_as_an_uninterrupted_run(tmp_path, how, background):
    whole = _run(how, tmp_path / "whole", 4)
    first = _run(how, tmp_path / "split", 2, background=background)
    assert first["epochs"] == [1, 2]
    last = tmp_path / "split/checkpoints/last.pth"
    rest = _run(how, tmp_path / "split", 4, resume=last, background=background)
    assert rest["epochs"] == [3, 4]

    _assert_equal(whole["model"], rest["model"], "model")
    _assert_equal(whole["optimizer"], rest["optimizer"], "optimizer")
    _assert_equal(whole["scheduler"], rest["scheduler"], "scheduler")
    _assert_equal(whole["stopper"], rest["stopper"], "early stopping")
    a, b = whole["runner"], rest["runner"]
    assert (a.best_epoch, a.best_valid_metric) == (b.best_epoch, b.best_valid_metric)
    assert (a.epoch_step, a.batch_step, a.sample_step) == (
        b.epoch_step,
        b.batch_step,
        b.sample_step,
    )
    index_a = json.loads((tmp_path / "whole/checkpoints/index.json").read_text())
    index_b = json.loads((tmp_path / "split/checkpoints/index.json").read_text())
    assert index_a == index_b
    best_a = ckpt.load_checkpoint(tmp_path / "whole/checkpoints/best.pth")
    best_b = ckpt.load_checkpoint(tmp_path / "split/checkpoints/best.pth")
    _assert_equal(best_a["model"], best_b["model"], "best.pth")


def test_without_restoring_rng_the_runs_differ(tmp_path, monkeypatch):
    # The test above could pass by luck if nothing were random: show that it is not so.
    whole = _run("loader_generator", tmp_path / "whole", 4)
    _run("loader_generator", tmp_path / "split", 2)
    monkeypatch.setattr(restoring, "set_rng_state", lambda *args, **kwargs: None)
    rest = _run("loader_generator", tmp_path / "split", 4, tmp_path / "split/checkpoints/last.pth")
    assert not all(torch.equal(whole["model"][k], rest["model"][k]) for k in whole["model"])


def test_resume_into_another_logdir_carries_best_and_topk(tmp_path):
    _run("global", tmp_path / "a", 2)
    rest = _run("global", tmp_path / "b", 3, resume=tmp_path / "a/checkpoints/last.pth")
    assert rest["epochs"] == [3]
    folder = tmp_path / "b" / "checkpoints"
    index = json.loads((folder / "index.json").read_text())
    assert index["last_epoch"] == 3
    for name, entry in index["files"].items():
        assert ckpt.peek_epoch(folder / name) == entry["epoch"], name
    assert ckpt.peek_epoch(folder / "best.pth") == rest["runner"].best_epoch


def test_resume_from_an_earlier_epoch_file_drops_the_later_ones(tmp_path):
    _run("global", tmp_path, 4)
    folder = tmp_path / "checkpoints"
    kept = json.loads((folder / "index.json").read_text())["topk"]
    start = folder / kept[-1]  # some kept epoch
    epoch = ckpt.peek_epoch(start)
    copy = tmp_path / "start.pth"
    copy.write_bytes(start.read_bytes())
    rest = _run("global", tmp_path, epoch + 1, resume=copy)
    assert rest["epochs"] == [epoch + 1]
    index = json.loads((folder / "index.json").read_text())
    assert index["last_epoch"] == epoch + 1
    on_disk = {p.name for p in folder.glob("epoch_*.pth")}
    assert on_disk == set(index["topk"])
    assert all(int(name[6:10]) <= epoch + 1 for name in on_disk)


def test_rng_state_round_trip_restores_every_generator(tmp_path):
    loaders = _loaders("loader_generator")
    loaders["extra"] = BatchLimitLoaderWrapper(
        DataLoader(
            range(10), sampler=RandomSampler(range(10), generator=torch.Generator()), batch_size=2
        ),
        1.0,
    )
    paths = sorted(loader_generators(loaders))
    assert paths == ["extra.loader.sampler.generator", "train.loader.generator"]
    state = rng_state(loaders)

    def draws() -> list[Any]:
        gens = loader_generators(loaders)
        return [
            random.random(),
            float(np.random.rand()),
            float(torch.rand(1)),
            *(float(torch.rand(1, generator=g)) for g in gens.values()),
        ]

    before = draws()
    set_rng_state(state, loaders)
    assert draws() == before
    # The state is made of types that torch.load(weights_only=True) accepts.
    path = tmp_path / "rng.pth"
    torch.save(state, path)
    set_rng_state(torch.load(path, weights_only=True), loaders)
    assert draws() == before


def _with_workers(persistent: bool) -> dict[str, Any]:
    loaders = _loaders("loader_generator")
    train = loaders["train"].loader
    loaders["train"] = DictLoader(
        DataLoader(
            train.dataset,
            batch_size=8,
            shuffle=True,
            generator=train.generator,
            num_workers=1,
            persistent_workers=persistent,
        )
    )
    return loaders


@pytest.mark.parametrize("persistent", [True, False])
def test_resume_warns_that_persistent_workers_are_not_restored(tmp_path, caplog, persistent):
    # persistent_workers=True keeps its workers (and their random streams) for the whole
    # run: a resumed run's fresh workers give the same batches but other random numbers,
    # unless each batch is seeded (a DataLoader given directly; this one is wrapped).
    _run("loader_generator", tmp_path, 1)
    runner = NoisyRunner()
    model = nn.Sequential(nn.Linear(6, 32), nn.Dropout(0.3), nn.ReLU(), nn.Linear(32, 2))
    runner.compose(
        model=model,
        optimizer=torch.optim.Adam(model.parameters(), lr=0.01),
        loaders=_with_workers(persistent),
        num_epochs=3,
        console=False,
    )
    with caplog.at_level("WARNING", logger="eventrunner"):
        ckpt.restore_run(runner, tmp_path / "checkpoints/last.pth")  # no worker is started
    warned = [r.getMessage() for r in caplog.records if "persistent_workers" in r.getMessage()]
    if not persistent:
        assert warned == []
        return
    assert len(warned) == 1
    assert "loader 'train'" in warned[0] and "not exact" in warned[0]
    assert "batches are the same" in warned[0]
    assert "has each batch seeded instead" in warned[0]  # what to do for an exact resume
