"""Catalyst 22.04's control-flow callbacks against catalyst 22.4's behaviour.

The expected values were computed by catalyst 22.4 (``dl.SupervisedRunner`` on the same data,
model and settings as :func:`_train` below) and are recorded here as literals.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from eventrunner.catalyst.callbacks import AccuracyCallback
from eventrunner.catalyst.control import (
    CallbackWrapper,
    CheckRunCallback,
    ControlFlowCallbackWrapper,
    PeriodicLoaderCallback,
)
from eventrunner.events import Callback, EventBus, Order
from eventrunner.supervised import SupervisedRunner
from eventrunner.testing import fire
from tests.catalyst_port._compare import close


class _Dicts(Dataset):
    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"features": self.x[i], "targets": self.y[i]}


def _batches(n: int, bs: int = 4, seed: int = 0, last: int | None = None) -> DataLoader:
    """``n`` batches of ``bs`` (the last of ``last``) samples, as the reference script made."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn((n - 1) * bs + (last or bs), 3, generator=generator)
    return DataLoader(_Dicts(x, (x[:, 0] > 0).long()), batch_size=bs, shuffle=False)


class _Recorder(Callback):
    """Which loader passes (epoch, loader, batches) and epochs a callback saw."""

    def __init__(self) -> None:
        super().__init__(order=Order.EXTERNAL)
        self.passes: list[list[Any]] = []
        self.epochs: list[int] = []
        self._open: list[Any] | None = None

    def on_epoch_start(self, runner: Any) -> None:
        self.epochs.append(runner.epoch_step)

    def on_loader_start(self, runner: Any) -> None:
        self._open = [runner.epoch_step, runner.loader_key, 0]

    def on_batch_end(self, runner: Any) -> None:
        assert self._open is not None and self._open[1] == runner.loader_key
        self._open[2] += 1

    def on_loader_end(self, runner: Any) -> None:
        assert self._open is not None
        self.passes.append(tuple(self._open))
        self._open = None

    def on_epoch_end(self, runner: Any) -> None:
        assert self.epochs[-1] == runner.epoch_step


def _train(callbacks: list[Callback], loaders: dict[str, Any], num_epochs: int, **kwargs: Any):
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    runner = SupervisedRunner(input_key="features", output_key="logits", target_key="targets")
    runner.train(
        model=model,
        criterion=nn.CrossEntropyLoss(),
        optimizer=torch.optim.SGD(model.parameters(), lr=0.0),
        loaders=loaders,
        num_epochs=num_epochs,
        callbacks=callbacks,
        console=False,
        **kwargs,
    )
    return runner


# ------------------------------------------------------------------ ControlFlowCallbackWrapper

# computed by catalyst 22.4: the loader passes (epoch, loader, batches) a wrapped callback saw in
# 3 epochs of train/valid loaders of 2 batches; it saw epoch_start/epoch_end of every epoch.
CONTROL_FLOW = {
    "epochs=2": (dict(epochs=2), [(2, "train", 2), (2, "valid", 2)]),
    "epochs=[1,3]": (
        dict(epochs=[1, 3]),
        [(1, "train", 2), (1, "valid", 2), (3, "train", 2), (3, "valid", 2)],
    ),
    "ignore_epochs=2": (
        dict(ignore_epochs=2),
        [(1, "train", 2), (1, "valid", 2), (3, "train", 2), (3, "valid", 2)],
    ),
    "loaders=valid": (dict(loaders="valid"), [(1, "valid", 2), (2, "valid", 2), (3, "valid", 2)]),
    "ignore_loaders=[train]": (
        dict(ignore_loaders=["train"]),
        [(1, "valid", 2), (2, "valid", 2), (3, "valid", 2)],
    ),
    "loaders={train:[2,3]}": (dict(loaders={"train": [2, 3]}), [(2, "train", 2), (3, "train", 2)]),
    "ignore_loaders={valid:1}": (
        dict(ignore_loaders={"valid": 1}),
        [(1, "train", 2), (2, "train", 2), (2, "valid", 2), (3, "train", 2), (3, "valid", 2)],
    ),
    "filter_fn=str": (
        dict(filter_fn="lambda e, l: l != 'train' and e % 2 == 0"),
        [(2, "valid", 2)],
    ),
}


@pytest.mark.parametrize("case", list(CONTROL_FLOW))
def test_control_flow_wrapper_runs_the_wrapped_callback_where_catalyst_does(case: str) -> None:
    kwargs, expected = CONTROL_FLOW[case]
    recorder = _Recorder()
    loaders = {"train": _batches(2), "valid": _batches(2, seed=1)}
    _train([ControlFlowCallbackWrapper(recorder, **kwargs)], loaders, 3)
    assert recorder.passes == expected
    assert recorder.epochs == [1, 2, 3]


def test_control_flow_filter_fn_callable_equals_its_string_form() -> None:
    recorder = _Recorder()
    wrapper = ControlFlowCallbackWrapper(
        recorder, filter_fn=lambda epoch, loader: loader != "train" and epoch % 2 == 0
    )
    _train([wrapper], {"train": _batches(2), "valid": _batches(2, seed=1)}, 3)
    assert recorder.passes == CONTROL_FLOW["filter_fn=str"][1]


def test_control_flow_wrapper_keeps_each_part_order_and_writes() -> None:
    accuracy = AccuracyCallback("logits", "targets")
    wrapper = ControlFlowCallbackWrapper(accuracy, loaders="valid")
    bus = EventBus()
    bus.subscribe(wrapper)
    (batch_end,) = bus.subscriptions("batch_end")
    (loader_end,) = bus.subscriptions("loader_end")
    own = EventBus()
    own.subscribe(accuracy)
    assert batch_end.order == own.subscriptions("batch_end")[0].order == Order.METRIC
    assert loader_end.order == own.subscriptions("loader_end")[0].order
    assert batch_end.writes == own.subscriptions("batch_end")[0].writes
    assert "ControlFlowCallbackWrapper[" in batch_end.name


def test_control_flow_wrapped_metric_writes_only_on_its_loaders() -> None:
    runner = _train(
        [ControlFlowCallbackWrapper(AccuracyCallback("logits", "targets"), loaders="valid")],
        {"train": _batches(2), "valid": _batches(2, seed=1)},
        1,
    )
    assert "accuracy01" not in runner.epoch_metrics["train"]
    assert "accuracy01" in runner.epoch_metrics["valid"]


def test_control_flow_wrapper_gates_async_handlers() -> None:
    seen = []

    class Async(Callback):
        async def on_batch_end(self, runner: Any) -> None:
            seen.append(runner.loader_key)

    wrapper = ControlFlowCallbackWrapper(Async(), ignore_loaders="train")
    fire(wrapper, "batch_end", loader_key="train")
    fire(wrapper, "batch_end", loader_key="valid")
    assert seen == ["valid"]


def test_control_flow_wrapper_state_and_kind_are_the_wrapped_ones() -> None:
    class Counting(Callback):
        kind = "counting"

        def __init__(self) -> None:
            super().__init__()
            self.n = 0

        def state_dict(self) -> dict[str, Any]:
            return {"n": self.n}

        def load_state_dict(self, state: dict[str, Any]) -> None:
            self.n = state["n"]

    base = Counting()
    wrapper = ControlFlowCallbackWrapper(base, epochs=2)
    assert wrapper.kind == "counting"
    wrapper.load_state_dict({"n": 5})
    assert base.n == 5 and wrapper.state_dict() == {"n": 5}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "expected one of 'epochs'"),
        (dict(epochs="2"), "epochs should be int/float/Sequence"),
        (dict(loaders=3), "loaders should be a loader name"),
        (dict(ignore_loaders={"valid": "x"}), "ignore_loaders['valid']"),
        (dict(filter_fn="print('hi')"), "must be a lambda"),
        (dict(filter_fn="lambda e: e > 1"), "two arguments"),
        (dict(filter_fn=3), "should be a callable"),
    ],
)
def test_control_flow_wrapper_refuses_bad_filters(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("(", r"\(")):
        ControlFlowCallbackWrapper(_Recorder(), **kwargs)


def test_callback_wrapper_runs_every_handler_only_while_enabled() -> None:
    recorder = _Recorder()
    wrapper = CallbackWrapper(recorder, enable_callback=False)
    loaders = {"train": _batches(2), "valid": _batches(2, seed=1)}
    _train([wrapper], loaders, 1)
    assert recorder.passes == [] and recorder.epochs == []
    wrapper.enabled = True
    _train([wrapper], loaders, 1)
    assert recorder.passes == [(1, "train", 2), (1, "valid", 2)] and recorder.epochs == [1]


def test_control_flow_wrapper_refuses_a_non_callback() -> None:
    with pytest.raises(ValueError, match="expected a Callback"):
        ControlFlowCallbackWrapper(lambda runner: None, epochs=1)  # type: ignore[arg-type]


def test_control_flow_filter_string_has_no_builtins_beyond_a_few() -> None:
    wrapper = ControlFlowCallbackWrapper(_Recorder(), filter_fn="lambda e, l: __import__('os')")
    with pytest.raises(NameError):
        wrapper.filter_fn(1, "train")


# ---------------------------------------------------------------------- PeriodicLoaderCallback

# computed by catalyst 22.4: 6 epochs, PeriodicLoaderCallback(valid_loader_key="valid",
# valid_metric_key="loss", minimize=True, train_additional=2, valid=3, valid_additional=0).
PERIODIC_PASSES = [
    (1, "train", 2),
    (2, "train", 2),
    (2, "train_additional", 1),
    (3, "train", 2),
    (3, "valid", 2),
    (4, "train", 2),
    (4, "train_additional", 1),
    (5, "train", 2),
    (6, "train", 2),
    (6, "train_additional", 1),
    (6, "valid", 2),
]
# computed by catalyst 22.4: epoch_metrics["valid"]["loss"] at each epoch's end (lr=0: the valid
# loss is the untrained model's); the epochs without "valid" hold only {"loss": inf}.
PERIODIC_VALID_LOSS = [
    math.inf,
    math.inf,
    1.1171934604644775,
    math.inf,
    math.inf,
    1.1171934604644775,
]


class _ValidMetrics(Callback):
    def __init__(self) -> None:
        super().__init__(order=Order.EXTERNAL)
        self.seen: list[dict[str, Any]] = []

    def on_epoch_end(self, runner: Any) -> None:
        self.seen.append(dict(runner.epoch_metrics.get("valid", {})))


def test_periodic_loader_runs_loaders_and_fills_valid_metrics_as_catalyst() -> None:
    recorder, metrics = _Recorder(), _ValidMetrics()
    loaders = {
        "train": _batches(2),
        "train_additional": _batches(1, seed=2),
        "valid": _batches(2, seed=1),
        "valid_additional": _batches(1, seed=3),
    }
    periodic = PeriodicLoaderCallback(
        valid_loader_key="valid",
        valid_metric_key="loss",
        minimize=True,
        train_additional=2,
        valid=3,
        valid_additional=0,
    )
    runner = _train([periodic, recorder, metrics], loaders, 6)
    assert recorder.passes == PERIODIC_PASSES
    assert recorder.epochs == [1, 2, 3, 4, 5, 6]
    close([m["loss"] for m in metrics.seen], PERIODIC_VALID_LOSS, "valid loss")
    assert [sorted(m) for i, m in enumerate(metrics.seen) if i + 1 not in (3, 6)] == [["loss"]] * 4
    # Model selection sees no improvement on the epochs without the valid loader.
    assert runner.best_epoch == 3
    assert runner.loaders.keys() == loaders.keys()  # the run's loaders again after the run


def test_periodic_loader_maximized_metric_is_minus_inf() -> None:
    periodic = PeriodicLoaderCallback("valid", "accuracy01", minimize=False, valid=2)
    runner = fire(periodic, "epoch_end", loaders={"train": [{}]}, epoch_metrics={})
    assert runner.epoch_metrics["valid"] == {"accuracy01": -math.inf}


# computed by catalyst 22.4: the errors for a zero valid period and for an epoch with no loader.
@pytest.mark.parametrize(
    ("periods", "message"),
    [
        (dict(valid=0), "period for a validation loader ('valid') should be > 0"),
        (dict(train=0, valid=2), "there will be no loaders in epoch 1"),
    ],
)
def test_periodic_loader_errors(periods: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        callback = PeriodicLoaderCallback("valid", "loss", minimize=True, **periods)
        _train([callback], {"train": _batches(1), "valid": _batches(1)}, 3)


def test_periodic_loader_refuses_bad_periods_and_unknown_loaders() -> None:
    with pytest.raises(TypeError, match="int/float"):
        PeriodicLoaderCallback("valid", "loss", True, train="2")
    with pytest.raises(ValueError, match=">= 0"):
        PeriodicLoaderCallback("valid", "loss", True, train=-1)
    with pytest.raises(ValueError, match="'trian' is not among the loaders"):
        _train([PeriodicLoaderCallback("valid", "loss", True, trian=2)], {"train": _batches(1)}, 1)


# ---------------------------------------------------------------------------- CheckRunCallback

# computed by catalyst 22.4: loaders of 5 (train) and 4 (valid) batches, num_epochs=5.
CHECK_RUN = {
    (3, 3): [(e, loader, 3) for e in (1, 2, 3) for loader in ("train", "valid")],
    (2, 1): [(1, "train", 2), (1, "valid", 2)],
    (1, 2): [(1, "train", 1), (1, "valid", 1), (2, "train", 1), (2, "valid", 1)],
}


@pytest.mark.parametrize("steps", list(CHECK_RUN))
def test_check_run_limits_batches_and_epochs_as_catalyst(steps: tuple[int, int]) -> None:
    recorder = _Recorder()
    check = CheckRunCallback(*steps) if steps != (3, 3) else CheckRunCallback()
    _train([check, recorder], {"train": _batches(5), "valid": _batches(4, seed=1)}, 5)
    assert recorder.passes == CHECK_RUN[steps]
    assert recorder.epochs == sorted({p[0] for p in CHECK_RUN[steps]})


def test_check_run_takes_each_pass_first_batches() -> None:
    firsts = []

    class First(Callback):
        def on_batch_end(self, runner: Any) -> None:
            if runner.loader_batch_step == 1:
                firsts.append(runner.batch["features"][0, 0].item())

    data = _batches(3)
    data = DataLoader(data.dataset, batch_size=4, shuffle=True)  # a new order each epoch
    torch.manual_seed(1)
    _train([CheckRunCallback(1, 2), First()], {"train": data}, 2, seed=1)
    assert len(firsts) == 2 and firsts[0] != firsts[1]


def test_check_run_refuses_non_positive_steps() -> None:
    with pytest.raises(ValueError, match="num_batch_steps"):
        CheckRunCallback(num_batch_steps=0)
