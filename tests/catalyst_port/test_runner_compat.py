"""Catalyst 22.04 runner programs: tuple batches, the runner's own hooks, a handle_batch that
steps the optimizer itself (Catalyst's README ``CustomRunner``)."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from eventrunner import Callback, Order, Runner
from eventrunner.runner_hooks import RUNNER_FIRST, RUNNER_LAST
from eventrunner.testing import EventRecorder, fake_runner, fire, same_weights
from plugins.metrics import AccuracyCallback


def _pairs(sizes: list[int], seed: int = 0, classes: int = 3) -> list[tuple[torch.Tensor, ...]]:
    generator = torch.Generator().manual_seed(seed)
    return [
        (
            torch.randn(n, 4, generator=generator),
            torch.randint(0, classes, (n,), generator=generator),
        )
        for n in sizes
    ]


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Linear(4, 3)


def _train(runner: Runner, loaders: dict[str, Any], model: nn.Module, **kwargs: Any) -> Runner:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    kwargs = {"console": False, "num_epochs": 2, **kwargs}
    runner.train(model=model, optimizer=optimizer, loaders=loaders, **kwargs)
    return runner


def _plain_loop(model: nn.Module, loaders: dict[str, Any], epochs: int = 2) -> nn.Module:
    """What the Catalyst README's CustomRunner does, in plain PyTorch."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for _ in range(epochs):
        for name, loader in loaders.items():
            model.train(name.startswith("train"))
            with torch.set_grad_enabled(name.startswith("train")):
                for x, y in loader:
                    loss = F.cross_entropy(model(x), y)
                    if name.startswith("train"):
                        loss.backward()
                        optimizer.step()
                        optimizer.zero_grad()
    return model


# ------------------------------------------------------------------ tuple batches


class TupleRunner(Runner):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[type, float, int]] = []

    def handle_batch(self, batch: Any) -> None:
        x, y = batch
        loss = F.cross_entropy(self.model(x), y)
        self.batch_metrics["loss"] = loss
        self.seen.append((type(batch), loss.item(), self.batch_size))


@pytest.mark.parametrize("kind", [tuple, list])
def test_a_plain_runner_hands_tuple_and_list_batches_as_they_come(kind):
    loaders = {
        "train": [kind(pair) for pair in _pairs([4, 4, 2])],
        "valid": [kind(pair) for pair in _pairs([5, 3], seed=1)],
    }
    sizes = EventRecorder(events=["batch_end"], fields=["batch_size", "loader_sample_step"])
    runner = _train(TupleRunner(), loaders, _model(), callbacks=[sizes], num_epochs=1)
    assert [seen[0] for seen in runner.seen] == [kind] * 5
    assert sizes.column("batch_size") == [4, 4, 2, 5, 3]
    assert sizes.column("loader_sample_step") == [4, 8, 10, 5, 8]
    for loader, rows in (("train", runner.seen[:3]), ("valid", runner.seen[3:])):
        mean = sum(loss * n for _, loss, n in rows) / sum(n for *_, n in rows)
        assert runner.epoch_metrics[loader]["loss"] == pytest.approx(mean, rel=1e-6)


def test_predict_batch_with_a_tuple():
    class Predict(Runner):
        def handle_batch(self, batch: Any) -> None:
            self.output = self.model(batch[0])

    model = _model()
    (pair,) = _pairs([3])
    assert torch.equal(Predict(model).predict_batch(pair), model(pair[0]).detach())


def test_keyed_metrics_on_tuple_batches_say_what_is_missing():
    logits, targets = torch.randn(4, 3), torch.randint(0, 3, (4,))
    with pytest.raises(KeyError, match=r"'targets'.*a tuple, which has no keys.*SupervisedRunner"):
        fire(AccuracyCallback(), "batch_end", batch=(logits, targets), output={"logits": logits})


def test_keyed_metrics_find_what_handle_batch_names():
    logits, targets = torch.randn(4, 3), torch.randint(0, 3, (4,))
    runner = fire(
        AccuracyCallback(),
        "batch_end",
        batch=(logits, targets),
        output={"logits": logits, "targets": targets},
    )
    assert "accuracy01" in runner.batch_metrics


# ------------------------------------------------------------------ the runner's own hooks


class HookRunner(TupleRunner):
    """Catalyst style: hooks that call super() and keep their own loader state."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def on_loader_start(self, runner: Any) -> None:
        super().on_loader_start(runner)
        self.calls.append(f"loader_start:{self.loader_key}")
        self.samples = 0

    def handle_batch(self, batch: Any) -> None:
        super().handle_batch(batch)
        self.samples += self.batch_size

    def on_loader_end(self, runner: Any) -> None:
        self.calls.append(f"loader_end:{self.loader_key}")
        self.loader_metrics["samples"] = torch.tensor(self.samples)
        self.loader_metrics["loss"] = 123.0  # replaces the aggregated mean, as in Catalyst
        super().on_loader_end(runner)

    def on_exception(self, runner: Any) -> None:
        self.calls.append("exception")


def test_runner_hooks_run_first_on_start_and_last_on_end():
    hook_calls = {"calls": lambda r: list(r.calls), "loader_metrics": lambda r: r.loader_metrics}
    first = EventRecorder(Order.INTERNAL, events=["loader_start", "loader_end"], fields=hook_calls)
    last = EventRecorder(Order.EXTERNAL, events=["loader_start", "loader_end"], fields=hook_calls)
    epoch = EventRecorder(events=["epoch_end"], fields={"epoch": lambda r: dict(r.epoch_metrics)})
    loaders = {"train": _pairs([4, 2]), "valid": _pairs([3], seed=1)}
    runner = _train(HookRunner(), loaders, _model(), callbacks=[first, last, epoch], num_epochs=1)

    assert runner.calls == [
        "loader_start:train",
        "loader_end:train",
        "loader_start:valid",
        "loader_end:valid",
    ]
    # loader_start: the runner's hook has run before the first subscriber already.
    for recorder in (first, last):
        assert recorder.column("calls", event="loader_start") == [
            ["loader_start:train"],
            ["loader_start:train", "loader_end:train", "loader_start:valid"],
        ]
    # loader_end: even the last subscriber runs before the runner's hook.
    assert last.column("calls", event="loader_end") == [
        ["loader_start:train"],
        ["loader_start:train", "loader_end:train", "loader_start:valid"],
    ]
    assert "samples" not in last.states_at("loader_end")[0]["loader_metrics"]
    # super().on_loader_end(runner) filed the hook's metrics, as floats, for the epoch.
    (state,) = epoch.states_at("epoch_end")
    assert state["epoch"]["train"]["samples"] == 6.0
    assert type(state["epoch"]["train"]["samples"]) is float
    assert state["epoch"]["valid"]["loss"] == 123.0
    assert runner.epoch_metrics["valid"] == {"loss": 123.0, "samples": 3.0}


def test_only_overridden_hooks_are_subscribed():
    loaders = {"train": _pairs([2])}
    bus = HookRunner().compose(model=_model(), loaders=loaders, console=False)
    assert bus.subscriptions("loader_start")[0].name == "HookRunner.on_loader_start"
    assert bus.subscriptions("loader_start")[0].order == RUNNER_FIRST
    assert bus.subscriptions("loader_end")[-1].name == "HookRunner.on_loader_end"
    assert bus.subscriptions("exception")[-1].order == RUNNER_LAST
    names = [sub.name for event in ("batch_start", "epoch_end") for sub in bus.subscriptions(event)]
    assert not any(name.startswith("HookRunner.") for name in names)
    plain = TupleRunner().compose(model=_model(), loaders=loaders, console=False)
    assert not any(
        sub.name.startswith("TupleRunner.")
        for event in ("loader_start", "loader_end")
        for sub in plain.subscriptions(event)
    )


def test_runner_on_exception_runs_after_the_subscribers():
    class Boom(Callback):
        def on_batch_end(self, runner: Any) -> None:
            raise RuntimeError("boom")

    seen = EventRecorder(
        Order.EXTERNAL, events=["exception"], fields={"calls": lambda r: list(r.calls)}
    )
    runner = HookRunner()
    with pytest.raises(RuntimeError, match="boom"):
        _train(runner, {"train": _pairs([2])}, _model(), callbacks=[Boom(), seen])
    assert seen.column("calls") == [["loader_start:train"]]
    assert runner.calls[-1] == "exception"


# --------------------------------------------------- handle_batch that steps the optimizer


class CustomRunner(Runner):
    """Catalyst 22.04's README CustomRunner (loss.backward() for its engine.backward)."""

    def __init__(self) -> None:
        super().__init__()
        self.valid_losses: list[float] = []

    def on_loader_start(self, runner: Any) -> None:
        super().on_loader_start(runner)
        self.meters = {"loss": [0.0, 0]}

    def handle_batch(self, batch: Any) -> None:
        x, y = batch
        logits = self.model(x)
        loss = F.cross_entropy(logits, y)
        self.batch_metrics.update({"loss": loss})
        self.meters["loss"][0] += loss.item() * self.batch_size
        self.meters["loss"][1] += self.batch_size
        if self.is_train_loader:
            loss.backward()
            self.optimizer.step()
            self.optimizer.zero_grad()

    def on_loader_end(self, runner: Any) -> None:
        total, count = self.meters["loss"]
        self.loader_metrics["loss"] = total / count
        super().on_loader_end(runner)
        if self.is_valid_loader:
            self.valid_losses.append(self.epoch_metrics["valid"]["loss"])


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_catalyst_readme_custom_runner_trains_like_plain_pytorch(caplog):
    loaders = {"train": _pairs([4, 4, 3]), "valid": _pairs([5], seed=1)}
    with caplog.at_level(logging.WARNING, logger="eventrunner"):
        runner = _train(
            CustomRunner(),
            loaders,
            _model(),
            valid_loader="valid",
            valid_metric="loss",
            minimize_valid_metric=True,
        )
    expected = _plain_loop(_model(), loaders)
    assert same_weights(runner.model.state_dict(), expected.state_dict())
    assert (runner.handle_batch_backward, runner.handle_batch_step) == (True, True)
    stepped = [m for m in _warnings(caplog) if "steps the optimizer itself" in m]
    assert len(stepped) == 1 and "CustomRunner.handle_batch" in stepped[0]
    # The loader metrics the runner's hook computed are the ones the epoch and selection see.
    assert type(runner.epoch_metrics["valid"]["loss"]) is float
    assert runner.best_valid_metric == min(runner.valid_losses)


def test_handle_batch_that_only_runs_backward_is_stepped_once(caplog):
    class BackwardOnly(TupleRunner):
        def handle_batch(self, batch: Any) -> None:
            super().handle_batch(batch)
            if self.is_train_loader:
                self.batch_metrics["loss"].backward()

    loaders = {"train": _pairs([4, 4, 3]), "valid": _pairs([5], seed=1)}
    with caplog.at_level(logging.WARNING, logger="eventrunner"):
        runner = _train(BackwardOnly(), loaders, _model())
    expected = _plain_loop(_model(), loaders)
    assert same_weights(runner.model.state_dict(), expected.state_dict())
    assert (runner.handle_batch_backward, runner.handle_batch_step) == (True, False)
    assert len([m for m in _warnings(caplog) if "backward pass itself" in m]) == 1


def test_loss_only_handle_batch_trains_like_plain_pytorch(caplog):
    loaders = {"train": _pairs([4, 4, 3]), "valid": _pairs([5], seed=1)}
    with caplog.at_level(logging.WARNING, logger="eventrunner"):
        runner = _train(TupleRunner(), loaders, _model())
    expected = _plain_loop(_model(), loaders)
    assert same_weights(runner.model.state_dict(), expected.state_dict())
    assert (runner.handle_batch_backward, runner.handle_batch_step) == (False, False)
    assert not [m for m in _warnings(caplog) if "itself" in m]


def test_fake_runner_has_the_flags_off():
    runner = fake_runner()
    assert (runner.handle_batch_backward, runner.handle_batch_step) == (False, False)
