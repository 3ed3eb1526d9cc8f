"""The runner's state during and after a run, stopping, model selection, schedulers, replacing
a default subscriber, and evaluation / prediction."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import torch
from torch import nn

import plugins
from eventrunner import Callback, FunctionCallback, Runner

# ----------------------------------------------------------------- helpers


def batch(size: int, x_dim: int = 3) -> dict[str, torch.Tensor]:
    return {"x": torch.randn(size, x_dim), "y": torch.randn(size, 1)}


def loaders_of(spec: dict[str, list[int]]) -> dict[str, list[dict[str, torch.Tensor]]]:
    """``{"train": [3, 3, 2]}``: a loader of three batches of those sizes."""
    return {key: [batch(n) for n in sizes] for key, sizes in spec.items()}


class TinyRunner(Runner):
    def handle_batch(self, batch):
        out = self.model(batch["x"])
        self.batch_metrics["loss"] = ((out - batch["y"]) ** 2).mean()
        self.output = {"out": out}


class ScriptRunner(Runner):
    """Valid loaders report ``score = scores[epoch - 1]``; train loaders train on MSE."""

    def __init__(self, scores: list[float], **kw: Any) -> None:
        super().__init__(**kw)
        self.scores = scores
        self.handled: list[tuple[int, str]] = []

    def handle_batch(self, batch):
        self.handled.append((self.epoch_step, self.loader_key))
        out = self.model(batch["x"])
        self.batch_metrics["loss"] = ((out - batch["y"]) ** 2).mean()
        if self.is_valid_loader:
            self.batch_metrics["score"] = self.scores[self.epoch_step - 1]
        self.output = {"out": out}


def run(
    runner: Runner,
    loaders: dict[str, Any] | None = None,
    callbacks: list[Any] = (),
    num_epochs: int = 1,
    lr: float = 0.01,
    **kw: Any,
) -> Runner:
    model = kw.pop("model", None) or nn.Linear(3, 1)
    kw.setdefault("optimizer", torch.optim.SGD(model.parameters(), lr=lr))
    runner.train(
        model=model,
        loaders=loaders or loaders_of({"train": [4, 4], "valid": [4]}),
        callbacks=list(callbacks),
        num_epochs=num_epochs,
        console=False,
        **kw,
    )
    return runner


STATE_ATTRS = (
    "epoch_step",
    "loader_key",
    "loader_batch_step",
    "loader_batch_len",
    "batch_step",
    "sample_step",
    "batch_size",
    "is_train_loader",
    "is_valid_loader",
    "is_infer_loader",
)


class StateRecorder(Callback):
    def __init__(self) -> None:
        super().__init__(order=100)
        self.states: list[tuple[str, dict[str, Any]]] = []

    def _record(self, event: str, runner: Runner) -> None:
        self.states.append((event, {name: getattr(runner, name) for name in STATE_ATTRS}))

    def on_epoch_start(self, runner):
        self._record("epoch_start", runner)

    def on_loader_start(self, runner):
        self._record("loader_start", runner)

    def on_batch_start(self, runner):
        self._record("batch_start", runner)

    def on_batch_end(self, runner):
        self._record("batch_end", runner)

    def on_loader_end(self, runner):
        self._record("loader_end", runner)

    def on_epoch_end(self, runner):
        self._record("epoch_end", runner)


# ----------------------------------------------------------------- state


def test_counters_at_every_event():
    recorder = StateRecorder()
    spec = {"train": [3, 3, 2], "valid": [5, 1]}
    runner = run(TinyRunner(), loaders_of(spec), [recorder], num_epochs=2)

    batch_ends = [s for e, s in recorder.states if e == "batch_end"]
    sizes = [3, 3, 2, 5, 1] * 2
    assert [s["batch_size"] for s in batch_ends] == sizes
    assert [s["batch_step"] for s in batch_ends] == list(range(1, 11))
    assert [s["sample_step"] for s in batch_ends] == [sum(sizes[: i + 1]) for i in range(10)]
    assert [s["loader_batch_step"] for s in batch_ends] == [1, 2, 3, 1, 2] * 2
    assert [s["epoch_step"] for s in batch_ends] == [1] * 5 + [2] * 5
    assert [s["loader_key"] for s in batch_ends] == ["train"] * 3 + ["valid"] * 2 + [
        "train"
    ] * 3 + ["valid"] * 2
    assert [s["loader_batch_len"] for s in batch_ends] == [3, 3, 3, 2, 2] * 2
    # batch_start already counts this batch
    batch_starts = [s for e, s in recorder.states if e == "batch_start"]
    assert batch_starts == batch_ends
    loader_starts = [s for e, s in recorder.states if e == "loader_start"]
    assert [
        (s["loader_key"], s["loader_batch_step"], s["loader_batch_len"]) for s in loader_starts
    ] == [("train", 0, 3), ("valid", 0, 2), ("train", 0, 3), ("valid", 0, 2)]
    assert [
        (s["is_train_loader"], s["is_valid_loader"], s["is_infer_loader"]) for s in loader_starts
    ] == [(True, False, False), (False, True, False)] * 2
    loader_ends = [s for e, s in recorder.states if e == "loader_end"]
    assert [s["loader_batch_step"] for s in loader_ends] == [3, 2, 3, 2]
    assert [s["epoch_step"] for e, s in recorder.states if e == "epoch_start"] == [1, 2]

    # after train() the values of the last batch, loader and epoch are kept
    assert runner.epoch_step == 2
    assert runner.loader_key == "valid"
    assert runner.loader_batch_step == 2
    assert runner.batch_step == 10
    assert runner.sample_step == sum(sizes)
    assert runner.batch_size == 1
    assert runner.batch is runner.loaders["valid"][1]
    assert runner.output["out"].shape == (1, 1)
    assert set(runner.epoch_metrics) == {"train", "valid"}
    assert runner.loader_metrics is runner.epoch_metrics["valid"]
    assert runner.best_epoch in (1, 2)
    assert runner.num_epochs == 2


def test_state_attributes_exist_inside_handle_batch():
    seen: dict[str, Any] = {}

    class Probe(TinyRunner):
        def handle_batch(self, batch):
            seen["batch_is_batch"] = self.batch is batch
            seen["metrics_empty"] = self.batch_metrics == {}
            seen["output_reset"] = self.output is None
            for name in (
                "model",
                "criterion",
                "optimizer",
                "scheduler",
                "loaders",
                "device",
                "logdir",
                "num_epochs",
                "best_valid_metric",
                "best_epoch",
                "need_early_stop",
                "loader_metrics",
                "epoch_metrics",
            ):
                seen[name] = getattr(self, name)
            super().handle_batch(batch)

    model = nn.Linear(3, 1)
    criterion = nn.MSELoss()
    loaders = loaders_of({"train": [2, 2]})
    run(Probe(), loaders, model=model, criterion=criterion, num_epochs=3)
    assert seen["batch_is_batch"] and seen["metrics_empty"] and seen["output_reset"]
    assert seen["model"] is model and seen["criterion"] is criterion
    assert isinstance(seen["optimizer"], torch.optim.SGD)
    assert seen["scheduler"] is None
    assert list(seen["loaders"]) == ["train"]
    assert seen["device"] == torch.device("cpu")
    assert seen["logdir"] is None
    assert seen["num_epochs"] == 3
    assert seen["need_early_stop"] is False


def test_handle_batch_may_overwrite_batch_size():
    class Weigh(TinyRunner):
        def handle_batch(self, batch):
            super().handle_batch(batch)
            self.batch_size = 10

    recorder = StateRecorder()
    runner = run(Weigh(), loaders_of({"train": [3, 2]}), [recorder])
    ends = [s for e, s in recorder.states if e == "batch_end"]
    assert [s["batch_size"] for s in ends] == [10, 10]
    assert [s["sample_step"] for s in ends] == [10, 20]
    assert runner.sample_step == 20


def test_counters_restart_with_each_train_call():
    runner = TinyRunner()
    run(runner, loaders_of({"train": [2, 2]}), num_epochs=2)
    assert runner.batch_step == 4
    run(runner, loaders_of({"train": [2]}), num_epochs=1)
    assert (runner.epoch_step, runner.batch_step, runner.sample_step) == (1, 1, 2)


# ----------------------------------------------------------------- stopping


def test_need_early_stop_in_a_batch_finishes_the_epoch():
    def stop(runner: Runner) -> None:
        if runner.epoch_step == 2 and runner.loader_batch_step == 1:
            runner.need_early_stop = True

    runner = ScriptRunner([0.0] * 5)
    run(
        runner,
        loaders_of({"train": [2, 2, 2], "valid": [2, 2]}),
        [FunctionCallback("batch_end", stop, loaders="train")],
        num_epochs=5,
    )
    assert runner.epoch_step == 2
    # the current epoch ran in full: every batch of train and of valid
    assert (
        runner.handled
        == [(1, "train")] * 3 + [(1, "valid")] * 2 + [(2, "train")] * 3 + [(2, "valid")] * 2
    )
    assert runner.need_early_stop is True


def test_need_early_stop_at_epoch_end():
    epochs: list[int] = []

    def stop(runner: Runner) -> None:
        epochs.append(runner.epoch_step)
        runner.need_early_stop = True

    runner = run(TinyRunner(), callbacks=[FunctionCallback("epoch_end", stop)], num_epochs=4)
    assert epochs == [1]
    assert runner.epoch_step == 1


def test_early_stopping_callback_patience():
    # no improvement after epoch 2 (epoch 4 improves by less than min_delta)
    scores = [5.0, 3.0, 3.5, 2.9999, 4.0, 1.0, 1.0]
    runner = ScriptRunner(scores)
    run(
        runner,
        callbacks=[plugins.EarlyStoppingCallback(patience=3, metric_key="score", min_delta=0.01)],
        num_epochs=7,
    )
    assert runner.epoch_step == 5  # epochs 3, 4 and 5 without improvement
    assert runner.need_early_stop


def test_early_stopping_maximises_and_follows_the_selection():
    scores = [1.0, 2.0, 2.0, 1.5, 3.0]
    runner = ScriptRunner(scores)
    run(
        runner,
        callbacks=[plugins.EarlyStoppingCallback(patience=2)],
        num_epochs=5,
        main_metric="score",
        minimize_metric=False,
    )
    assert runner.epoch_step == 4
    assert runner.best_epoch == 2 and runner.best_valid_metric == 2.0


def test_early_stopping_refuses_an_unknown_loader():
    with pytest.raises(ValueError, match="'valid3'"):
        run(ScriptRunner([1.0]), callbacks=[plugins.EarlyStoppingCallback(2, loader_key="valid3")])


# ----------------------------------------------------------------- model selection


class SelectionRecorder(Callback):
    def __init__(self) -> None:
        super().__init__(order=100)
        self.best: list[tuple[int | None, float | None]] = []
        self.weights: list[dict[str, torch.Tensor]] = []

    def on_epoch_end(self, runner):
        self.best.append((runner.best_epoch, runner.best_valid_metric))
        self.weights.append({k: v.detach().clone() for k, v in runner.model.state_dict().items()})


@pytest.mark.parametrize(
    ("scores", "minimize", "best"),
    [
        ([3.0, 1.0, 2.0, 1.0, 5.0], True, [(1, 3.0), (2, 1.0), (2, 1.0), (2, 1.0), (2, 1.0)]),
        ([1.0, 3.0, 3.0, 2.0], False, [(1, 1.0), (2, 3.0), (2, 3.0), (2, 3.0)]),
        ([2.0, 2.0, 2.0], True, [(1, 2.0)] * 3),
    ],
)
def test_selection_follows_the_best_and_ties_keep_the_earlier(scores, minimize, best):
    recorder = SelectionRecorder()
    runner = run(
        ScriptRunner(scores),
        callbacks=[recorder],
        num_epochs=len(scores),
        main_metric="score",
        minimize_metric=minimize,
    )
    assert recorder.best == best
    assert (runner.best_epoch, runner.best_valid_metric) == best[-1]


def test_default_selection_minimises_valid_loss():
    recorder = SelectionRecorder()
    values: list[float] = []
    runner = run(
        TinyRunner(),
        callbacks=[
            recorder,
            FunctionCallback(
                "epoch_end", lambda r: values.append(r.epoch_metrics["valid"]["loss"])
            ),
        ],
        num_epochs=3,
    )
    assert runner.best_valid_metric == min(values)
    assert runner.best_epoch == values.index(min(values)) + 1


@pytest.mark.parametrize(
    ("kwargs", "best"),
    [
        ({"valid_metric": "score", "minimize_valid_metric": False}, (2, 3.0)),
        ({"valid_metric": "score"}, (3, 0.5)),
        ({"main_metric": "score", "minimize_valid_metric": False}, (2, 3.0)),
        ({"valid_metric": "score", "main_metric": "score", "minimize_metric": False}, (2, 3.0)),
    ],
)
def test_catalyst22_aliases(kwargs, best):
    runner = run(ScriptRunner([1.0, 3.0, 0.5]), num_epochs=3, **kwargs)
    assert (runner.best_epoch, runner.best_valid_metric) == best


def test_aliases_that_disagree_are_refused():
    with pytest.raises(ValueError, match="valid_metric"):
        run(ScriptRunner([1.0]), main_metric="loss", valid_metric="score")
    with pytest.raises(ValueError, match="minimize_valid_metric"):
        run(ScriptRunner([1.0]), minimize_metric=False, minimize_valid_metric=True)


def test_no_valid_loader_means_no_selection(caplog):
    recorder = SelectionRecorder()
    with caplog.at_level(logging.INFO):
        runner = run(
            TinyRunner(), loaders_of({"train": [2], "infer": [2]}), [recorder], num_epochs=3
        )
    assert recorder.best == [(1, None), (2, None), (3, None)]
    assert runner.best_epoch == 3 and runner.best_valid_metric is None
    notes = [r for r in caplog.records if "selection" in r.getMessage()]
    assert len(notes) == 1, [r.getMessage() for r in caplog.records]


def test_default_metric_not_produced_means_no_selection(caplog):
    class NoLoss(Runner):
        def handle_batch(self, batch):
            self.batch_metrics["mae"] = (self.model(batch["x"]) - batch["y"]).abs().mean()

    with caplog.at_level(logging.INFO):
        runner = run(NoLoss(), loaders_of({"valid": [2]}), num_epochs=3, optimizer=None)
    assert runner.best_epoch == 3 and runner.best_valid_metric is None
    notes = [r for r in caplog.records if "selection" in r.getMessage()]
    assert len(notes) == 1 and "'loss'" in notes[0].getMessage()


@pytest.mark.parametrize("valid_loader", ["valid", "valid2"])
def test_missing_explicit_valid_loader_fails_before_training(valid_loader):
    runner = ScriptRunner([1.0])
    with pytest.raises(ValueError, match=rf"valid_loader '{valid_loader}'.*train, valid_other"):
        run(runner, loaders_of({"train": [2], "valid_other": [2]}), valid_loader=valid_loader)
    assert runner.handled == []


def test_unknown_explicit_main_metric_fails_after_epoch_one():
    class TwoMetrics(ScriptRunner):
        def handle_batch(self, batch):
            super().handle_batch(batch)
            self.batch_metrics["mae"] = 0.5

    runner = TwoMetrics([1.0] * 3)
    with pytest.raises(ValueError, match="'accuracy01'") as info:
        run(runner, main_metric="accuracy01", num_epochs=3)
    message = str(info.value)
    assert "'valid'" in message
    for produced in ("loss", "mae", "score"):
        assert produced in message
    assert runner.epoch_step == 1
    assert {epoch for epoch, _ in runner.handled} == {1}
    assert (1, "valid") in runner.handled  # the whole first epoch ran


def test_load_best_on_end_restores_a_snapshot_without_logdir():
    recorder = SelectionRecorder()
    model = nn.Linear(3, 1)
    run(
        ScriptRunner([3.0, 1.0, 2.0, 4.0]),
        callbacks=[recorder],
        num_epochs=4,
        model=model,
        main_metric="score",
        load_best_on_end=True,
        lr=0.1,
    )
    assert recorder.best[-1] == (2, 1.0)
    final = model.state_dict()
    for key, value in final.items():
        assert torch.equal(value, recorder.weights[1][key])  # epoch 2's weights
        assert not torch.equal(value, recorder.weights[3][key])  # not the live model's


def test_without_load_best_on_end_the_last_weights_stay():
    recorder = SelectionRecorder()
    model = nn.Linear(3, 1)
    run(
        ScriptRunner([3.0, 1.0, 2.0]),
        callbacks=[recorder],
        num_epochs=3,
        model=model,
        main_metric="score",
        lr=0.1,
    )
    for key, value in model.state_dict().items():
        assert torch.equal(value, recorder.weights[2][key])


# ----------------------------------------------------------------- schedulers


class LrRecorder(Callback):
    def __init__(self) -> None:
        super().__init__(order=100)
        self.lrs: list[tuple[int, str, float]] = []

    def on_batch_start(self, runner):
        self.lrs.append(
            (runner.epoch_step, runner.loader_key, runner.optimizer.param_groups[0]["lr"])
        )


def test_scheduler_steps_once_per_epoch_after_its_loaders():
    model = nn.Linear(3, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    recorder = LrRecorder()
    run(
        TinyRunner(),
        loaders_of({"train": [2, 2], "valid": [2]}),
        [recorder],
        num_epochs=3,
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
    )
    assert recorder.lrs == [
        (epoch, key, lr)
        for epoch, lr in ((1, 1.0), (2, 0.5), (3, 0.25))
        for key in ("train", "train", "valid")
    ]
    assert optimizer.param_groups[0]["lr"] == 0.125


def test_scheduler_per_batch_when_asked():
    model = nn.Linear(3, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    recorder = LrRecorder()
    runner = run(
        TinyRunner(),
        loaders_of({"train": [2, 2], "valid": [2]}),
        [plugins.SchedulerCallback(mode="batch"), recorder],
        num_epochs=2,
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
    )
    assert [lr for _, _, lr in recorder.lrs] == [1.0, 0.5, 0.25, 0.25, 0.125, 0.0625]
    kinds = [type(c).__name__ for c in runner.callbacks]
    assert kinds.count("SchedulerCallback") == 1


def test_reduce_lr_on_plateau_gets_the_selection_metric():
    class Recording(torch.optim.lr_scheduler.ReduceLROnPlateau):
        def __init__(self, *args: Any, **kw: Any) -> None:
            super().__init__(*args, **kw)
            self.seen: list[float] = []

        def step(self, metrics: Any, *args: Any, **kw: Any) -> None:
            self.seen.append(metrics)
            super().step(metrics, *args, **kw)

    model = nn.Linear(3, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    scheduler = Recording(optimizer, mode="max", patience=0, factor=0.5)
    runner = ScriptRunner([1.0, 2.0, 2.0, 1.0])
    run(
        runner,
        num_epochs=4,
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        main_metric="score",
        minimize_metric=False,
    )
    assert scheduler.seen == [1.0, 2.0, 2.0, 1.0]
    assert optimizer.param_groups[0]["lr"] == 0.25  # reduced after epochs 3 and 4


# ----------------------------------------------------------------- replacing defaults


def test_user_subscriber_of_the_same_kind_replaces_the_default():
    class MyCheckpoint(plugins.CheckpointCallback):  # inherits kind "checkpoint"
        pass

    class QuietConsole(Callback):
        kind = "console"

        def __init__(self) -> None:
            super().__init__(order=80)
            self.lines = 0

        def on_loader_end(self, runner):
            self.lines += 1

    console = QuietConsole()
    runner = TinyRunner()
    runner.train(
        model=nn.Linear(3, 1),
        loaders=loaders_of({"valid": [2]}),
        callbacks=[MyCheckpoint(), console],
        num_epochs=2,
    )
    kinds = [c.kind for c in runner.callbacks]
    assert kinds.count("checkpoint") == 1 and kinds.count("console") == 1
    assert any(isinstance(c, MyCheckpoint) for c in runner.callbacks)
    assert not any(isinstance(c, plugins.ConsoleLogger) for c in runner.callbacks)
    assert console.lines == 2


# ----------------------------------------------------------------- evaluation, prediction


class ModeRecorder(Callback):
    def __init__(self) -> None:
        super().__init__(order=100)
        self.modes: set[tuple[bool, bool]] = set()

    def on_batch_end(self, runner):
        self.modes.add((torch.is_grad_enabled(), runner.model.training))


def test_evaluate_loader_returns_metrics_without_training():
    model = nn.Linear(3, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    runner = TinyRunner()
    run(runner, model=model, optimizer=optimizer, scheduler=scheduler, num_epochs=2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    lr = optimizer.param_groups[0]["lr"]

    data = loaders_of({"valid": [3, 1]})["valid"]
    recorder = ModeRecorder()
    metrics = runner.evaluate_loader(data, callbacks=[recorder])
    with torch.no_grad():
        expected = (
            sum(((model(b["x"]) - b["y"]) ** 2).mean().item() * len(b["x"]) for b in data) / 4
        )
    assert metrics["loss"] == pytest.approx(expected)
    assert recorder.modes == {(False, False)}
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key])
    assert optimizer.param_groups[0]["lr"] == lr  # evaluating does not step the scheduler


def test_evaluate_loader_with_another_model():
    runner = TinyRunner()
    other = nn.Linear(3, 1)
    metrics = runner.evaluate_loader(loaders_of({"valid": [2]})["valid"], model=other)
    assert runner.model is other
    assert set(metrics) == {"loss"}


def test_predict_loader_yields_outputs_in_eval_mode_without_grad():
    model = nn.Linear(3, 1)
    model.train()
    seen: list[tuple[bool, bool]] = []

    class Probe(TinyRunner):
        def handle_batch(self, batch):
            seen.append((torch.is_grad_enabled(), self.model.training))
            self.output = {"out": self.model(batch["x"])}

    data = loaders_of({"infer": [3, 2, 1]})["infer"]
    outputs = list(Probe().predict_loader(data, model=model))
    assert [o["out"].shape[0] for o in outputs] == [3, 2, 1]
    assert seen == [(False, False)] * 3
    with torch.no_grad():
        assert torch.allclose(outputs[1]["out"], model(data[1]["x"]))
    assert not outputs[0]["out"].requires_grad


def test_predict_batch():
    model = nn.Linear(3, 1)
    runner = TinyRunner(model=model)
    b = batch(4)
    output = runner.predict_batch(b)
    assert torch.allclose(output["out"], model(b["x"]))
    assert not output["out"].requires_grad
    with pytest.raises(TypeError, match="dict batches"):
        runner.predict_batch([b["x"], b["y"]])


def test_predict_loader_converts_each_batch_once():
    class OneTuple(Runner):
        converted = 0

        def to_dict_batch(self, batch):
            OneTuple.converted += 1
            (x,) = batch  # a second conversion would unpack the dict's key instead
            return {"x": x}

        def handle_batch(self, batch):
            self.output = {"y": self.model(batch["x"])}

    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    loader = [(torch.randn(2, 3),) for _ in range(3)]
    outputs = list(OneTuple().predict_loader(loader, model=model))
    assert OneTuple.converted == 3
    with torch.no_grad():
        expected = [model(x)[0] for (x,) in loader]
    for output, want in zip(outputs, expected, strict=True):
        assert torch.equal(output["y"][0], want)
        assert not output["y"].requires_grad
    single = OneTuple(model).predict_batch(loader[0])["y"]
    assert torch.equal(single, model(loader[0][0]).detach())
