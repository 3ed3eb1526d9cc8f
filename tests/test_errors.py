"""Bad input gets a clear error that names the thing (SPEC 12), and a failing run publishes
``exception`` then ``experiment_end`` and re-raises the original exception unchanged."""

from __future__ import annotations

import logging
import math
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

import eventrunner
import plugins
from eventrunner import Callback, FunctionCallback, Runner
from eventrunner.testing import RegressionRunner, regression_batches, regression_run


def batch(size: int = 2) -> dict[str, torch.Tensor]:
    return regression_batches([size])[0]


class SampleDataset(Dataset):
    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"x": torch.randn(3), "y": torch.randn(1)}


class PlainDataset:
    """The seed page's ``MyDataset``: ``__getitem__`` and ``__len__``, no torch base class."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"x": torch.randn(3), "y": torch.randn(1)}


class Empty:
    """An iterable without ``len()`` that yields nothing."""

    def __iter__(self):
        return iter(())


# ----------------------------------------------------------------- loaders


@pytest.mark.parametrize(
    "loaders",
    [[batch()], (("train", [batch()]),), DataLoader(SampleDataset(), batch_size=2), None, "train"],
    ids=["list", "tuple-of-pairs", "dataloader", "none", "string"],
)
def test_loaders_must_be_a_mapping(loaders):
    runner = RegressionRunner()
    model = nn.Linear(3, 1)
    with pytest.raises(TypeError, match="mapping"):  # train() itself: None is no default here
        runner.train(
            model=model,
            optimizer=torch.optim.SGD(model.parameters(), lr=0.01),
            loaders=loaders,
            console=False,
        )
    assert runner.handled == []


def test_empty_mapping():
    with pytest.raises(ValueError, match="loaders is empty"):
        regression_run(runner=RegressionRunner(), loaders={})


@pytest.mark.parametrize("name", ["test", "Train", "eval", "my_valid"])
def test_unknown_prefix_is_refused_before_the_first_batch(name):
    runner = RegressionRunner()
    loaders = {"train": [batch()], name: [batch()]}
    with pytest.raises(ValueError) as info:
        regression_run(runner=runner, loaders=loaders)
    message = str(info.value)
    assert repr(name) in message
    for prefix in ("train", "valid", "infer"):
        assert prefix in message
    assert runner.handled == []


@pytest.mark.parametrize(
    "empty",
    [[], DataLoader(SampleDataset(), batch_size=2, sampler=[])],
    ids=["list", "dataloader"],
)
def test_loader_of_len_zero_is_refused_before_the_first_batch(empty):
    runner = RegressionRunner()
    with pytest.raises(ValueError, match=r"'valid2'.*empty"):
        regression_run(runner=runner, loaders={"train": [batch()], "valid2": empty})
    assert runner.handled == []


def test_empty_iterable_without_len_is_refused_when_its_turn_comes():
    runner = RegressionRunner()
    recorder: list[str] = []
    with pytest.raises(ValueError, match=r"'valid'.*no batches"):
        regression_run(
            [FunctionCallback("exception", lambda r: recorder.append(r.loader_key))],
            runner=runner,
            loaders={"train": [batch()], "valid": Empty()},
        )
    assert runner.handled == [(1, "train", 1)]  # train ran first
    assert recorder == ["valid"]


@pytest.mark.parametrize("dataset", [SampleDataset(), PlainDataset()], ids=["torch", "plain"])
def test_dataset_given_as_a_loader(dataset):
    with pytest.raises(TypeError, match=r"'train'.*DataLoader"):
        regression_run(runner=RegressionRunner(), loaders={"train": dataset})


def test_not_iterable_loader():
    with pytest.raises(TypeError, match=r"'train'.*iterable"):
        regression_run(runner=RegressionRunner(), loaders={"train": 3})


@pytest.mark.parametrize("bad", [torch.randn(2, 3), "x"], ids=["tensor", "string"])
def test_non_dict_batch_in_a_plain_runner(bad):
    with pytest.raises(TypeError, match=r"'valid'.*dict batches.*or tuple/list batches"):
        regression_run(runner=RegressionRunner(), loaders={"valid": [bad]})


@pytest.mark.parametrize("kind", [tuple, list])
def test_tuple_batch_reaches_a_plain_runners_handle_batch(kind):
    # SPEC: a plain Runner hands handle_batch whatever the loader yields; a handle_batch
    # written for dicts fails on it with Python's own error.
    bad = kind((torch.randn(2, 3), torch.randn(2, 1)))
    with pytest.raises(TypeError, match="indices must be integers"):
        regression_run(runner=RegressionRunner(), loaders={"valid": [bad]})


def test_loader_errors_keep_their_type():
    class Broken(Dataset):
        def __len__(self) -> int:
            return 4

        def __getitem__(self, i: int) -> Any:
            if i == 2:
                raise KeyError(f"sample {i} is missing")
            return {"x": torch.randn(3), "y": torch.randn(1)}

    runner = RegressionRunner()
    with pytest.raises(KeyError, match="sample 2 is missing"):
        regression_run(runner=runner, loaders={"train": DataLoader(Broken(), batch_size=2)})
    assert runner.handled == [(1, "train", 1)]


# ----------------------------------------------------------------- arguments


@pytest.mark.parametrize("valid_loader", ["valid", "valid_b"])
def test_missing_valid_loader(valid_loader):
    runner = RegressionRunner()
    with pytest.raises(ValueError, match=rf"valid_loader '{valid_loader}'"):
        regression_run(
            runner=runner,
            loaders={"train": [batch()], "valid_a": [batch()]},
            valid_loader=valid_loader,
        )
    assert runner.handled == []


def test_unknown_main_metric_lists_the_produced_metrics():
    runner = RegressionRunner()
    with pytest.raises(ValueError, match=r"'auc'.*'valid'.*loss"):
        regression_run(
            runner=runner,
            loaders={"train": [batch()], "valid": [batch()]},
            main_metric="auc",
            num_epochs=2,
        )
    assert runner.handled == [(1, "train", 1), (1, "valid", 1)]


@pytest.mark.parametrize("num_epochs", [0, -1, 1.5, "2"])
def test_bad_num_epochs(num_epochs):
    with pytest.raises(ValueError, match="num_epochs"):
        regression_run(
            runner=RegressionRunner(), loaders={"train": [batch()]}, num_epochs=num_epochs
        )


def test_missing_model():
    with pytest.raises(ValueError, match="model"):
        RegressionRunner().train(loaders={"train": [batch()]}, console=False)


def test_callbacks_must_be_callbacks():
    with pytest.raises(TypeError, match="FunctionCallback"):
        regression_run(
            [lambda runner: None], runner=RegressionRunner(), loaders={"train": [batch()]}
        )


def test_train_loader_without_a_loss():
    class NoLoss(Runner):
        def handle_batch(self, batch):
            self.batch_metrics["mae"] = (self.model(batch["x"]) - batch["y"]).abs().mean()

    with pytest.raises(ValueError, match=r"'train'.*'loss'"):
        regression_run(runner=NoLoss(), loaders={"train": [batch()]})


@pytest.mark.parametrize("bad", [0, -1, 1.5, "x"])
def test_bad_overfit_counts(bad):
    error = TypeError if isinstance(bad, str) else ValueError
    with pytest.raises(error, match=r"train"):
        plugins.BatchOverfitCallback(train=bad)
    with pytest.raises(error, match=r"valid2"):
        plugins.BatchOverfitCallback(train=1, valid2=bad)


def test_overfit_count_for_an_unknown_loader():
    runner = RegressionRunner()
    with pytest.raises(ValueError, match=r"'valid'.*not among the loaders"):
        regression_run(
            [plugins.BatchOverfitCallback(valid=2)], runner=runner, loaders={"train": [batch()]}
        )
    assert runner.handled == []


# ----------------------------------------------------------------- non-finite loss


@pytest.mark.parametrize("bad_value", [math.nan, math.inf, -math.inf])
def test_non_finite_loss_stops_naming_where(bad_value):
    class Poisoned(RegressionRunner):
        def handle_batch(self, batch):
            super().handle_batch(batch)
            if (self.epoch_step, self.loader_key, self.loader_batch_step) == (2, "train2", 3):
                self.batch_metrics["loss"] = self.batch_metrics["loss"] * bad_value

    model = nn.Linear(3, 1)
    runner = Poisoned()
    loaders = {"train": [batch()] * 2, "train2": [batch()] * 4, "valid": [batch()]}
    with pytest.raises(ValueError) as info:
        regression_run(runner=runner, loaders=loaders, num_epochs=3, model=model)
    assert isinstance(info.value, plugins.NonFiniteLossError)
    message = str(info.value)
    assert "epoch 2" in message and "'train2'" in message and "batch 3" in message
    assert runner.handled[-1] == (2, "train2", 3)  # it stopped at that batch
    # the bad loss was never stepped into the weights
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_non_finite_valid_loss_is_caught_too():
    class Poisoned(RegressionRunner):
        def handle_batch(self, batch):
            super().handle_batch(batch)
            if self.loader_key == "valid":
                self.batch_metrics["loss"] = torch.tensor(math.nan)

    with pytest.raises(ValueError, match=r"epoch 1, loader 'valid', batch 1"):
        regression_run(runner=Poisoned(), loaders={"train": [batch()], "valid": [batch()]})


# ----------------------------------------------------------------- exceptions


class Boom(RuntimeError):
    pass


class EventLog(Callback):
    def __init__(self, log: list[str], tag: str = "", order: int = 70) -> None:
        super().__init__(order=order)
        self.log = log
        self.tag = tag

    def on_batch_end(self, runner):
        self.log.append(f"batch_end{self.tag}")

    def on_loader_end(self, runner):
        self.log.append(f"loader_end{self.tag}")

    def on_epoch_end(self, runner):
        self.log.append(f"epoch_end{self.tag}")

    def on_exception(self, runner):
        self.log.append(f"exception{self.tag}")

    def on_experiment_end(self, runner):
        self.log.append(f"experiment_end{self.tag}")


class FailingRunner(RegressionRunner):
    def __init__(self, error: BaseException) -> None:
        super().__init__()
        self.error = error

    def handle_batch(self, batch):
        super().handle_batch(batch)
        if self.loader_batch_step == 2:
            raise self.error


def test_exception_then_experiment_end_then_the_original_propagates():
    error = Boom("in handle_batch")
    log: list[str] = []
    seen: list[BaseException | None] = []
    runner = FailingRunner(error)
    with pytest.raises(Boom) as info:
        regression_run(
            [
                EventLog(log),
                FunctionCallback("exception", lambda r: seen.append(r.exception)),
            ],
            runner=runner,
            loaders={"train": [batch()] * 3},
        )
    assert info.value is error  # unchanged: same object, no wrapping
    assert getattr(error, "__notes__", []) == []
    assert log == ["batch_end", "exception", "experiment_end"]
    assert seen == [error]
    assert runner.exception is error


def test_exception_in_a_subscriber_takes_the_same_path():
    def fail(runner: Runner) -> None:
        if runner.epoch_step == 2:
            raise Boom("in a subscriber")

    log: list[str] = []
    with pytest.raises(Boom, match="in a subscriber"):
        regression_run(
            [EventLog(log), FunctionCallback("epoch_end", fail)],
            runner=RegressionRunner(),
            loaders={"train": [batch()]},
            num_epochs=3,
        )
    assert log == [
        "batch_end",
        "loader_end",
        "epoch_end",
        "batch_end",
        "loader_end",
        "epoch_end",  # EventLog (order 70) was registered before the failing handler
        "exception",
        "experiment_end",
    ]


@pytest.mark.parametrize("failing_event", ["exception", "experiment_end"])
def test_failing_handler_does_not_mask_the_original(failing_event, caplog):
    error = Boom("original")

    def secondary(runner: Runner) -> None:
        raise KeyError("secondary failure")

    log: list[str] = []
    callbacks = [
        EventLog(log, "-first", order=10),
        FunctionCallback(failing_event, secondary, order=50),
        EventLog(log, "-last", order=90),  # still gets its turn after the failing handler
    ]
    with caplog.at_level(logging.ERROR), pytest.raises(Boom) as info:
        regression_run(callbacks, runner=FailingRunner(error), loaders={"train": [batch()] * 3})
    assert info.value is error
    notes = getattr(error, "__notes__", [])
    assert len(notes) == 1 and "secondary failure" in notes[0] and failing_event in notes[0]
    assert any(
        "secondary failure" in r.getMessage() or (r.exc_info and "secondary" in str(r.exc_info[1]))
        for r in caplog.records
    )
    assert log == [
        "batch_end-first",
        "batch_end-last",
        "exception-first",
        "exception-last",
        "experiment_end-first",
        "experiment_end-last",
    ]


def test_keyboard_interrupt_takes_the_same_path():
    log: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        regression_run(
            [EventLog(log)],
            runner=FailingRunner(KeyboardInterrupt()),
            loaders={"train": [batch()] * 3},
        )
    assert log[-2:] == ["exception", "experiment_end"]


def test_best_weights_are_not_loaded_after_a_failure():
    class FailsInEpoch3(RegressionRunner):
        def handle_batch(self, batch):
            super().handle_batch(batch)
            if self.loader_key == "valid":
                self.batch_metrics["loss"] = float(self.epoch_step)  # best: epoch 1
            if self.epoch_step == 3:
                raise Boom("epoch 3")

    model = nn.Linear(3, 1)
    at_failure: dict[str, torch.Tensor] = {}

    def keep(runner: Runner) -> None:
        at_failure.update({k: v.clone() for k, v in runner.model.state_dict().items()})

    runner = FailsInEpoch3()
    with pytest.raises(Boom):
        regression_run(
            [FunctionCallback("exception", keep)],
            runner=runner,
            loaders={"train": [batch()], "valid": [batch()]},
            num_epochs=4,
            model=model,
            load_best_on_end=True,
        )
    assert runner.best_epoch == 1
    # the model is the live one of the failed run; the best weights were not swapped in
    for key, value in model.state_dict().items():
        assert torch.equal(value, at_failure[key])


def test_reduce_on_plateau_without_its_loader_fails_before_training():
    model = torch.nn.Linear(4, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    batches = [{"features": torch.randn(4, 4), "targets": torch.randint(0, 2, (4,))}]
    recorder = []
    with pytest.raises(ValueError, match=r"ReduceLROnPlateau.*'valid'.*\(train\)"):
        eventrunner.SupervisedRunner().train(
            model=model,
            criterion=torch.nn.CrossEntropyLoss(),
            optimizer=optimizer,
            scheduler=torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer),
            loaders={"train": batches},
            callbacks=[eventrunner.FunctionCallback("batch_start", recorder.append)],
            console=False,
        )
    assert recorder == []


def test_a_used_up_iterator_says_so():
    batches = iter([{"features": torch.randn(2, 4)}])

    class Forward(eventrunner.Runner):
        def handle_batch(self, batch):
            self.output = {"logits": self.model(batch["features"])}

    with pytest.raises(ValueError, match=r"'valid' yielded no batches \(an iterator is used up"):
        Forward().train(model=torch.nn.Linear(4, 2), loaders={"valid": batches}, num_epochs=2)


@pytest.mark.parametrize("order", [0, 65, 95])  # before the checkpoint, between, after loggers
def test_a_failure_in_experiment_end_still_runs_every_handler(tmp_path, order):
    import threading

    from plugins.json_logger import read_events

    error = Boom("disk full at the final save")

    def fail(runner: Runner) -> None:
        raise error

    log: list[str] = []
    threads_before = set(threading.enumerate())
    runner = RegressionRunner()
    with pytest.raises(Boom) as info:
        regression_run(
            [
                EventLog(log, "-first", order=0),
                FunctionCallback("experiment_end", fail, order=order),
                EventLog(log, "-last", order=99),
            ],
            runner=runner,
            loaders={"train": [batch()] * 2, "valid": [batch()]},
            logdir=tmp_path,
        )
    assert info.value is error
    assert runner.exception is error
    # The exception event is published and every experiment_end handler gets its turn.
    assert "exception-first" in log and "exception-last" in log
    assert log[-1] == "experiment_end-last"
    records = read_events(tmp_path / "events.jsonl")
    assert any(r["event"] == "exception" and r["error"] == "Boom" for r in records)
    assert records[-1]["event"] == "experiment_end" and records[-1]["status"] == "failed"
    # TensorBoard's writer threads and the loggers' files are closed.
    left = [t for t in set(threading.enumerate()) - threads_before if t.is_alive()]
    assert left == [], left


@pytest.mark.parametrize(
    ("min_delta", "error"),
    [
        ("x", TypeError),
        (None, TypeError),
        (True, TypeError),
        (-0.1, ValueError),
        (math.nan, ValueError),
    ],
)
def test_early_stopping_min_delta_is_checked(min_delta, error):
    with pytest.raises(error, match=r"EarlyStoppingCallback: min_delta must be .*>= 0, got"):
        plugins.EarlyStoppingCallback(patience=2, min_delta=min_delta)
