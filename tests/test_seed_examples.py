"""Every example of the seed page (Catalyst's "Dataflow"), completed into runnable code.

Each example keeps the page's code with only the imports changed; the pseudo-code parts are
completed with a real map-style dataset (sklearn's digits, dicts of numpy arrays) in a
DataLoader, dict literals and ``MyRunner(eventrunner.Runner)``. A recorder subscriber checks what
the page promises: which batches ran on which loader, that ``train*`` trained and ``valid*`` did
not, and which epoch was selected.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader

import eventrunner
import plugins as dl
from eventrunner import BatchLimitLoaderWrapper, accuracy, concat_datasets
from eventrunner.events import Order
from eventrunner.state import RunState

_X, _Y = load_digits(return_X_y=True)
_X = (_X / 16.0).astype(np.float32)
BATCH = 32


class MyDataset:
    """Digits samples as dicts of numpy arrays; ``shift`` relabels them (a loader the model
    gets worse on as it trains, so its best epoch differs from ``valid``'s)."""

    def __init__(self, start: int, size: int, extra: bool = False, shift: int = 0) -> None:
        self.indices = list(range(start, start + size))
        self.extra = extra
        self.shift = shift

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        j = self.indices[index]
        sample = {
            "features": _X[j],
            "targets": np.array((_Y[j] + self.shift) % 10, dtype=np.int64),
        }
        if self.extra:
            # a second feature block: row sums of the 8x8 image
            sample["extra_features"] = _X[j].reshape(8, 8).sum(axis=1).astype(np.float32)
        return sample


def loader(start: int, size: int, *, shuffle: bool = False, **kw: Any) -> DataLoader:
    generator = torch.Generator().manual_seed(start) if shuffle else None
    return DataLoader(
        MyDataset(start, size, **kw), batch_size=BATCH, shuffle=shuffle, generator=generator
    )


def train_loader(**kw: Any) -> DataLoader:
    return loader(0, 256, shuffle=True, **kw)


def train2_loader(**kw: Any) -> DataLoader:
    return loader(400, 128, shuffle=True, **kw)


def valid_loader(**kw: Any) -> DataLoader:
    return loader(1000, 128, **kw)


def valid2_loader(**kw: Any) -> DataLoader:
    return loader(1200, 128, shift=1, **kw)


class MyModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Linear(64, 10)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features)


class MyExtraModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Linear(64, 10)
        self.extra = nn.Linear(8, 10)

    def forward(self, features: torch.Tensor, extra_features: torch.Tensor) -> torch.Tensor:
        return self.net(features) + self.extra(extra_features)


# ----------------------------------------------------------------- the page's runners


class MyRunner(eventrunner.Runner):
    def handle_batch(self, batch):
        # on this step we also have self.input = batch = {"features": ..., "targets": ...}
        logits = self.model(batch["features"])
        loss = self.criterion(logits, batch["targets"])  # noqa: F841 - the page does not store it
        self.output = {"logits": logits}
        # this is useful for other components of the pipiline


class MyExtraRunner(eventrunner.Runner):
    def handle_batch(self, batch):
        # on this step we also have self.input = batch =
        # {"features": ..., "extra_features": ...,"targets": ...}
        logits = self.model(batch["features"], batch["extra_features"])
        loss = self.criterion(logits, batch["targets"])  # noqa: F841
        self.output = {"logits": logits}
        # this is useful for other components of the pipiline


class MyMetricRunner(eventrunner.Runner):
    def handle_batch(self, batch):
        # on this step we also have self.input = batch = {"features": ..., "targets": ...}
        logits = self.model(batch["features"])
        loss = self.criterion(logits, batch["targets"])
        accuracy01, accuracy03 = accuracy(logits, batch["targets"], topk=(1, 3))
        self.batch_metrics.update(
            **{
                "loss": loss,
                "accuracy01": accuracy01,
                "accuracy03": accuracy03,
            }
        )
        self.output = {"logits": logits}
        # this is useful for other components of the pipiline


# ----------------------------------------------------------------- the recorder


def _fingerprint(batch: dict[str, Any]) -> bytes:
    return batch["features"].numpy().tobytes() + batch["targets"].numpy().tobytes()


class Recorder(eventrunner.Callback):
    """Records, per loader pass, the batches it saw, the mode they ran in and whether the
    model's weights changed during the pass; per epoch, the metrics and the selection."""

    def __init__(self) -> None:
        super().__init__(order=Order.EXTERNAL)
        self.passes: list[dict[str, Any]] = []
        self.epochs: list[dict[str, Any]] = []

    def on_loader_start(self, runner: RunState) -> None:
        self.before = [p.detach().clone() for p in runner.model.parameters()]
        self.passes.append(
            {"epoch": runner.epoch_step, "loader": runner.loader_key, "batches": [], "modes": set()}
        )

    def on_batch_end(self, runner: RunState) -> None:
        current = self.passes[-1]
        current["batches"].append(_fingerprint(runner.batch))
        current["keys"] = sorted(runner.batch)
        current["modes"].add(
            (
                torch.is_grad_enabled(),
                runner.model.training,
                runner.output["logits"].requires_grad,
                runner.is_train_loader,
            )
        )

    def on_loader_end(self, runner: RunState) -> None:
        after = list(runner.model.parameters())
        self.passes[-1]["changed"] = any(
            not torch.equal(a, b) for a, b in zip(self.before, after, strict=True)
        )
        self.passes[-1]["metrics"] = dict(runner.loader_metrics)

    def on_epoch_end(self, runner: RunState) -> None:
        self.epochs.append(
            {
                "metrics": {k: dict(v) for k, v in runner.epoch_metrics.items()},
                "best_epoch": runner.best_epoch,
                "best_valid_metric": runner.best_valid_metric,
            }
        )

    def loader_order(self, epoch: int) -> list[str]:
        return [p["loader"] for p in self.passes if p["epoch"] == epoch]

    def batches(self, loader_key: str) -> list[list[bytes]]:
        """The batches of each pass of ``loader_key``, epoch by epoch."""
        return [p["batches"] for p in self.passes if p["loader"] == loader_key]


def check_modes(recorder: Recorder) -> None:
    """``train*`` passes trained (grad on, train mode, weights changed); the others did not."""
    for p in recorder.passes:
        trains = p["loader"].startswith("train")
        assert p["modes"] == {(trains, trains, trains, trains)}, p["loader"]
        assert p["changed"] is trains, (p["loader"], p["epoch"])


def train_args(model: nn.Module, lr: float = 0.5) -> dict[str, Any]:
    """What the page leaves to ``...``: a criterion and an optimizer."""
    return {
        "criterion": nn.CrossEntropyLoss(),
        "optimizer": torch.optim.SGD(model.parameters(), lr=lr),
        "console": False,
    }


@pytest.fixture(autouse=True)
def _seeded() -> None:
    torch.manual_seed(0)


# ----------------------------------------------------------------- base dataflow


def test_base_dataflow_trains_with_an_unstored_loss():
    loader = OrderedDict(train=train_loader(), valid=valid_loader())
    model = MyModel()
    runner = MyRunner()
    recorder = Recorder()
    runner.train(
        model=model, loaders=loader, num_epochs=2, callbacks=[recorder], **train_args(model)
    )

    check_modes(recorder)
    assert [len(b) for b in recorder.batches("train")] == [256 // BATCH] * 2
    assert [len(b) for b in recorder.batches("valid")] == [128 // BATCH] * 2
    # the loss the page computes without storing is captured, aggregated and trained on
    losses = [e["metrics"]["train"]["loss"] for e in recorder.epochs]
    assert losses[1] < losses[0]
    assert set(runner.epoch_metrics) == {"train", "valid"}
    assert isinstance(runner.epoch_metrics["valid"]["loss"], float)
    # the train loader reshuffles every epoch; the valid loader does not
    assert recorder.batches("train")[0] != recorder.batches("train")[1]
    assert recorder.batches("valid")[0] == recorder.batches("valid")[1]


def test_extra_features_reach_the_model():
    loaders = {"train": train_loader(extra=True), "valid": valid_loader(extra=True)}
    model = MyExtraModel()
    initial = {name: p.detach().clone() for name, p in model.named_parameters()}
    recorder = Recorder()
    MyExtraRunner().train(model=model, loaders=loaders, callbacks=[recorder], **train_args(model))

    check_modes(recorder)
    assert recorder.passes[0]["keys"] == ["extra_features", "features", "targets"]
    # both feature blocks were trained on
    for name, p in model.named_parameters():
        assert not torch.equal(p, initial[name]), name


def test_unused_keys_are_carried_along():
    loaders = {"train": train_loader(extra=True), "valid": valid_loader(extra=True)}
    model = MyModel()  # forward(features) only
    recorder = Recorder()
    runner = MyRunner()  # the page's first runner, unchanged
    runner.train(model=model, loaders=loaders, callbacks=[recorder], **train_args(model))

    check_modes(recorder)
    for p in recorder.passes:
        assert p["keys"] == ["extra_features", "features", "targets"]
    assert "extra_features" in runner.batch


# ----------------------------------------------------------------- multiple loaders


@pytest.mark.parametrize(
    "order",
    [("train", "train2", "valid", "valid2"), ("train", "valid", "train2", "valid2")],
    ids=["train-train2-valid-valid2", "train-valid-train2-valid2"],
)
def test_multiple_loaders_run_in_mapping_order(order):
    made = {
        "train": train_loader,
        "train2": train2_loader,
        "valid": valid_loader,
        "valid2": valid2_loader,
    }
    loaders = OrderedDict((key, made[key]()) for key in order)
    model = MyModel()
    runner = MyRunner()
    recorder = Recorder()
    runner.train(
        model=model, loaders=loaders, num_epochs=2, callbacks=[recorder], **train_args(model)
    )

    assert recorder.loader_order(1) == list(order)
    assert recorder.loader_order(2) == list(order)
    check_modes(recorder)  # train2 trains even after valid; valid2 does not
    counts = {key: [len(b) for b in recorder.batches(key)] for key in order}
    assert counts == {"train": [8, 8], "train2": [4, 4], "valid": [4, 4], "valid2": [4, 4]}
    assert list(runner.epoch_metrics) == list(order)
    assert runner.best_epoch is not None


def test_concatenated_loaders():
    train_loader_, train2_loader_ = train_loader(), train2_loader()
    valid_loader_, valid2_loader_ = valid_loader(), valid2_loader()
    loaders = OrderedDict(
        train=concat_datasets(train_loader_, train2_loader_),
        valid=concat_datasets(valid_loader_, valid2_loader_),
    )
    model = MyModel()
    recorder = Recorder()
    MyRunner().train(model=model, loaders=loaders, callbacks=[recorder], **train_args(model))

    check_modes(recorder)
    assert recorder.loader_order(1) == ["train", "valid"]
    assert [len(b) for b in recorder.batches("train")] == [8 + 4]
    assert [len(b) for b in recorder.batches("valid")] == [4 + 4]
    # the valid pass is exactly valid's batches followed by valid2's
    expected = [_fingerprint(b) for b in valid_loader_] + [_fingerprint(b) for b in valid2_loader_]
    assert recorder.batches("valid")[0] == expected


def test_concatenated_datasets_in_one_dataloader():
    loaders = OrderedDict(
        train=DataLoader(
            concat_datasets(MyDataset(0, 256), MyDataset(400, 128)), batch_size=BATCH, shuffle=True
        ),
        valid=DataLoader(
            concat_datasets(MyDataset(1000, 128), MyDataset(1200, 128)), batch_size=BATCH
        ),
    )
    model = MyModel()
    recorder = Recorder()
    MyRunner().train(model=model, loaders=loaders, callbacks=[recorder], **train_args(model))

    check_modes(recorder)
    assert [len(b) for b in recorder.batches("train")] == [(256 + 128) // BATCH]
    assert [len(b) for b in recorder.batches("valid")] == [256 // BATCH]


# ----------------------------------------------------------------- model selection


def _first_best(values: list[float], minimize: bool) -> int:
    best = min(values) if minimize else max(values)
    return values.index(best) + 1


def test_valid_loader_valid2_selects_by_valid2():
    loaders = OrderedDict(
        train=train_loader(), train2=train2_loader(), valid=valid_loader(), valid2=valid2_loader()
    )
    model = MyModel()
    runner = MyRunner()
    recorder = Recorder()
    runner.train(
        model=model,
        loaders=loaders,
        valid_loader="valid2",
        num_epochs=3,
        callbacks=[recorder],
        **train_args(model),
    )

    check_modes(recorder)
    valid2 = [e["metrics"]["valid2"]["loss"] for e in recorder.epochs]
    valid = [e["metrics"]["valid"]["loss"] for e in recorder.epochs]
    assert runner.best_epoch == _first_best(valid2, minimize=True)
    assert runner.best_valid_metric == pytest.approx(min(valid2))
    # valid2's labels are shifted, so it gets worse as the model learns: its best epoch is
    # not valid's, which shows the selection really read valid2
    assert _first_best(valid, minimize=True) != runner.best_epoch
    # the selection followed the epochs as they ran
    running = [_first_best(valid2[:n], minimize=True) for n in range(1, 4)]
    assert [e["best_epoch"] for e in recorder.epochs] == running


def test_main_metric_accuracy01_maximised():
    loaders = OrderedDict(train=train_loader(), valid=valid_loader())
    model = MyModel()
    runner = MyMetricRunner()
    recorder = Recorder()
    # as far as we would like to maximize our model accuracy...
    runner.train(
        model=model,
        loaders=loaders,
        main_metric="accuracy01",
        minimize_metric=False,
        num_epochs=3,
        callbacks=[recorder],
        **train_args(model, lr=0.2),
    )

    check_modes(recorder)
    acc = [e["metrics"]["valid"]["accuracy01"] for e in recorder.epochs]
    assert runner.best_epoch == _first_best(acc, minimize=False)
    assert runner.best_valid_metric == pytest.approx(max(acc))
    assert max(acc) > min(acc)  # so maximising and minimising pick different epochs
    assert set(runner.epoch_metrics["valid"]) == {"loss", "accuracy01", "accuracy03"}
    for epoch in recorder.epochs:
        for values in epoch["metrics"].values():
            assert 0.0 <= values["accuracy01"] <= values["accuracy03"] <= 1.0


def test_metric_runner_default_selection_minimises_loss():
    loaders = OrderedDict(train=train_loader(), valid=valid_loader())
    model = MyModel()
    runner = MyMetricRunner()
    recorder = Recorder()
    runner.train(
        model=model, loaders=loaders, num_epochs=3, callbacks=[recorder], **train_args(model)
    )

    losses = [e["metrics"]["valid"]["loss"] for e in recorder.epochs]
    assert runner.best_epoch == _first_best(losses, minimize=True)
    assert runner.best_valid_metric == pytest.approx(min(losses))


# ----------------------------------------------------------------- part of the data


def test_batch_limit_wrapper_one_batch_replayed():
    train_loader_ = BatchLimitLoaderWrapper(train_loader(), num_batches=1)
    valid_loader_ = valid_loader()
    loaders = OrderedDict(train=train_loader_, valid=valid_loader_)
    model = MyModel()
    recorder = Recorder()
    MyRunner().train(
        model=model, loaders=loaders, num_epochs=3, callbacks=[recorder], **train_args(model)
    )

    check_modes(recorder)
    train = recorder.batches("train")
    assert [len(b) for b in train] == [1, 1, 1]
    assert train[0] == train[1] == train[2]  # the same batch, though the loader shuffles
    assert [len(b) for b in recorder.batches("valid")] == [4, 4, 4]
    # overfitting one batch: its loss falls
    losses = [e["metrics"]["train"]["loss"] for e in recorder.epochs]
    assert losses[2] < losses[0]


def test_overfit_true_one_batch_per_loader():
    loaders = OrderedDict(train=train_loader(), valid=valid_loader())
    model = MyModel()
    runner = MyRunner()
    recorder = Recorder()
    # here we overfit for one batch per loader
    runner.train(
        model=model,
        loaders=loaders,
        overfit=True,
        num_epochs=3,
        callbacks=[recorder],
        **train_args(model),
    )

    check_modes(recorder)
    for key in ("train", "valid"):
        batches = recorder.batches(key)
        assert [len(b) for b in batches] == [1, 1, 1], key
        assert batches[0] == batches[1] == batches[2], key
    assert runner.loader_batch_len == 1
    # the user's mapping is left as it was given
    assert all(isinstance(value, DataLoader) for value in loaders.values())


def test_batch_overfit_callback_counts_and_fractions():
    loaders = OrderedDict(train=loader(0, 512, shuffle=True), valid=valid_loader())
    model = MyModel()
    recorder = Recorder()
    # here we overfit for 10 batches in `train` loader
    # and half of the `valid` loader
    MyRunner().train(
        model=model,
        loaders=loaders,
        callbacks=[dl.BatchOverfitCallback(train=10, valid=0.5), recorder],
        num_epochs=2,
        **train_args(model),
    )

    check_modes(recorder)
    train, valid = recorder.batches("train"), recorder.batches("valid")
    assert [len(b) for b in train] == [10, 10]  # of 16
    assert [len(b) for b in valid] == [2, 2]  # half of 4
    assert train[0] == train[1]
    assert valid[0] == valid[1]
    assert valid[0] == [_fingerprint(b) for b in valid_loader()][:2]
