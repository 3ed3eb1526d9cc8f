"""Catalyst 22.04's batch transforms, functional metrics, metric aggregation and timer, against
catalyst 22.4.

The expected values were computed by catalyst 22.4 on the same data, model and settings as
the runs below and are recorded here as literals.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from eventrunner.catalyst.callbacks import LoaderMetricCallback
from eventrunner.catalyst.criterion import CriterionCallback
from eventrunner.catalyst.metrics import FunctionalBatchMetric, FunctionalLoaderMetric
from eventrunner.catalyst.timer import TimerCallback
from eventrunner.catalyst.transforms import (
    BatchTransformCallback,
    FunctionalBatchMetricCallback,
    FunctionalMetricCallback,
    MetricAggregationCallback,
    resolve_callable,
)
from eventrunner.events import Callback, EventBus, Order
from eventrunner.runner import Runner
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


def _model() -> nn.Linear:
    torch.manual_seed(0)
    return nn.Linear(3, 2)


def _train(callbacks: list[Callback], loaders: dict[str, Any], num_epochs: int = 1):
    model = _model()
    runner = SupervisedRunner(input_key="features", output_key="logits", target_key="targets")
    runner.train(
        model=model,
        criterion=nn.CrossEntropyLoss(),
        optimizer=torch.optim.SGD(model.parameters(), lr=0.0),
        loaders=loaders,
        num_epochs=num_epochs,
        callbacks=callbacks,
        console=False,
    )
    return runner


def _loaders() -> dict[str, DataLoader]:
    return {"train": _batches(3, last=2), "valid": _batches(2, seed=1, last=3)}


# ------------------------------------------------------- BatchTransform + FunctionalMetric run


def _mae(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return (scores[:, 1] - targets.float()).abs().mean()


# computed by catalyst 22.4: BatchTransformCallback("torch.tanh", "on_batch_start", features ->
# features), BatchTransformCallback("torch.softmax", "on_batch_end", logits -> scores, dim=1),
# FunctionalMetricCallback(scores, targets, mae, "mae"); lr=0, one epoch. Per batch: loader,
# batch mae, sum of the scores, max |features| (tanh'ed).
TRANSFORM_BATCHES = [
    ["train", 0.7228109240531921, 4.0, 0.9713250994682312],
    ["train", 0.5929203033447266, 4.0, 0.9807187914848328],
    ["train", 0.40195178985595703, 2.0, 0.9801831245422363],
    ["valid", 0.6741966605186462, 4.0, 0.9433267712593079],
    ["valid", 0.5733625292778015, 3.0, 0.9374162554740906],
]
TRANSFORM_LOADERS = {
    "train": {
        "loss": 0.99728422164917,
        "mae": 0.6066828489303588,
        "mae/mean": 0.6066828489303588,
        "mae/std": 0.12406546796410732,
    },
    "valid": {
        "loss": 1.0363773362977164,
        "mae": 0.6309820328439985,
        "mae/mean": 0.6309820328439985,
        "mae/std": 0.05389811028517708,
    },
}


class _BatchValues(Callback):
    def __init__(self) -> None:
        super().__init__(order=Order.EXTERNAL)
        self.rows: list[list[Any]] = []

    def on_batch_end(self, runner: Any) -> None:
        scores = runner.output["scores"]
        self.rows.append(
            [
                runner.loader_key,
                float(runner.batch_metrics["mae"]),
                float(scores.detach().sum()),
                float(runner.batch["features"].abs().max()),
            ]
        )


# Catalyst 22.4 turns a lone input_key without output_key into a one-element key list and keeps
# only the transform's first row; the in-place transform here equals its output_key form.
@pytest.mark.parametrize("in_place_key", ["features", None])
def test_transforms_and_functional_metric_match_catalyst(in_place_key: str | None) -> None:
    values = _BatchValues()
    callbacks = [
        BatchTransformCallback(
            transform="torch.tanh",
            scope="on_batch_start",
            input_key="features",
            output_key=in_place_key,
        ),
        BatchTransformCallback(
            transform="torch.softmax",
            scope="on_batch_end",
            input_key="logits",
            output_key="scores",
            transform_kwargs={"dim": 1},
        ),
        FunctionalMetricCallback(
            input_key="scores", target_key="targets", metric_fn=_mae, metric_key="mae"
        ),
        values,
    ]
    runner = _train(callbacks, _loaders())
    assert [row[0] for row in values.rows] == [row[0] for row in TRANSFORM_BATCHES]
    close([row[1:] for row in values.rows], [row[1:] for row in TRANSFORM_BATCHES], "batches")
    for loader, expected in TRANSFORM_LOADERS.items():
        got = {key: runner.epoch_metrics[loader][key] for key in expected}
        close(got, expected, loader)


def test_batch_transform_without_input_key_replaces_the_batch_handle_batch_gets() -> None:
    def zero_features(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {**batch, "features": torch.zeros_like(batch["features"])}

    callback = BatchTransformCallback(transform=zero_features, scope="on_batch_start")
    runner = _train([callback], {"train": _batches(2)})
    # Reference, plain PyTorch: zero features leave the bias as the logits.
    model, loader = _model(), _batches(2)
    losses = [
        (F.cross_entropy(model.bias.expand(len(b["targets"]), 2), b["targets"]), len(b["targets"]))
        for b in loader
    ]
    expected = sum(float(loss.detach()) * n for loss, n in losses) / sum(n for _, n in losses)
    close(runner.epoch_metrics["train"]["loss"], expected, "loss")


def test_batch_transform_several_outputs_and_errors() -> None:
    def split(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x[:, :1], x[:, 1:]

    x = torch.arange(6.0).reshape(2, 3)
    callback = BatchTransformCallback(split, "on_batch_start", "features", ["a", "b"])
    runner = fire(callback, "batch_start", batch={"features": x}, output=None)
    close(runner.batch["a"], x[:, :1].tolist(), "a")
    close(runner.batch["b"], x[:, 1:].tolist(), "b")
    bad = BatchTransformCallback(torch.sigmoid, "on_batch_start", "features", ["a", "b"])
    with pytest.raises(TypeError, match="tuple/list of 2 values"):
        fire(bad, "batch_start", batch={"features": x})
    missing = BatchTransformCallback(torch.sigmoid, "on_batch_end", "logits")
    with pytest.raises(KeyError, match=re.escape("'logits' is not in runner.output or the batch")):
        fire(missing, "batch_end", batch={"features": x}, output={"scores": x})


def test_batch_transform_at_batch_end_reads_and_writes_the_output() -> None:
    logits = torch.tensor([[0.0, 1.0]])
    callback = BatchTransformCallback("torch.sigmoid", "on_batch_end", "logits")
    runner = fire(
        callback, "batch_end", batch={"targets": torch.tensor([1])}, output={"logits": logits}
    )
    close(runner.output["logits"], torch.sigmoid(logits).tolist(), "in place")
    assert "logits" not in runner.batch


def test_batch_transform_subscribes_only_its_scope() -> None:
    bus = EventBus()
    bus.subscribe(BatchTransformCallback(torch.sigmoid, "on_batch_end", "logits", "scores"))
    assert not bus.subscriptions("batch_start")
    assert bus.subscriptions("batch_end")[0].order == Order.INTERNAL  # Catalyst's Internal


# computed by catalyst 22.4: its registry resolves import paths and refuses other names
# ("LookupError: No factory with name 'torch.nonexistent_fn' was registered").
def test_transform_names_resolve_by_import() -> None:
    assert resolve_callable("torch.sigmoid", "t") is torch.sigmoid
    assert resolve_callable("torch.nn.functional.softmax", "t") is F.softmax
    # Catalyst's docstrings write "F.sigmoid", which its registry cannot find; here it is
    # torch.nn.functional's.
    assert resolve_callable("F.softmax", "t") is F.softmax
    with pytest.raises(LookupError, match=re.escape("'torch.nonexistent_fn'")):
        BatchTransformCallback("torch.nonexistent_fn", "on_batch_end", "logits")
    with pytest.raises(TypeError, match="not a callable"):
        BatchTransformCallback("torch.pi", "on_batch_end", "logits")
    with pytest.raises(TypeError, match="expected a callable"):
        BatchTransformCallback([torch.sigmoid], "on_batch_end", "logits")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="scope"):
        BatchTransformCallback(torch.sigmoid, "on_loader_end", "logits")
    with pytest.raises(TypeError, match="output_key needs input_key"):
        BatchTransformCallback(torch.sigmoid, "on_batch_end", output_key="scores")


# ------------------------------------------------------------------------ functional metrics

# computed by catalyst 22.4: FunctionalBatchMetric(|a - b|.mean(), "d", prefix="p_",
# suffix="_s"), updates of 3 and 1 samples.
FUNCTIONAL_BATCH = {
    "updates": [{"p_d_s": 2.0}, {"p_d_s": 4.0}],
    "kv": {"p_d_s": 2.5, "p_d_s/mean": 2.5, "p_d_s/std": 1.0},
}


def test_functional_batch_metric_matches_catalyst() -> None:
    metric = FunctionalBatchMetric(
        metric_fn=lambda a, b: (a - b).abs().mean(), metric_key="d", prefix="p_", suffix="_s"
    )
    metric.reset()
    updates = [
        metric.update_key_value(3, torch.tensor([1.0, 2.0, 3.0]), torch.zeros(3)),
        metric.update_key_value(1, torch.tensor([5.0]), torch.tensor([1.0])),
    ]
    close(updates, FUNCTIONAL_BATCH["updates"], "updates")
    close(metric.compute_key_value(), FUNCTIONAL_BATCH["kv"], "kv")


# computed by catalyst 22.4: LoaderMetricCallback(FunctionalLoaderMetric(top-1 accuracy, "lacc",
# ["y_pred", "y_true"]), {"logits": "y_pred"}, {"targets": "y_true"}) on the untrained model.
FUNCTIONAL_LOADER = {"train": 0.20000000298023224, "valid": 0.1428571492433548}


def test_functional_loader_metric_matches_catalyst() -> None:
    metric = FunctionalLoaderMetric(
        metric_fn=lambda y_pred, y_true: (y_pred.argmax(1) == y_true).float().mean(),
        metric_key="lacc",
        accumulative_fields=["y_pred", "y_true"],
    )
    callback = LoaderMetricCallback(metric, {"logits": "y_pred"}, {"targets": "y_true"})
    runner = _train([callback], _loaders())
    close({k: runner.epoch_metrics[k]["lacc"] for k in FUNCTIONAL_LOADER}, FUNCTIONAL_LOADER)


def test_functional_metric_callback_key_value_inputs_get_the_batch_size() -> None:
    got = {}

    def fn(y_pred: torch.Tensor, y_true: torch.Tensor) -> float:
        got["shapes"] = (tuple(y_pred.shape), tuple(y_true.shape))
        return 0.5

    metric = FunctionalBatchMetric(metric_fn=fn, metric_key="m")
    callback = FunctionalBatchMetricCallback(metric, {"logits": "y_pred"}, {"targets": "y_true"})
    output = {"logits": torch.zeros(5, 2)}
    runner = fire(callback, "batch_end", output=output, batch={"targets": torch.zeros(5)})
    assert got["shapes"] == ((5, 2), (5,))
    assert runner.batch_metrics["m"] == 0.5
    with pytest.raises(TypeError, match="expected a FunctionalBatchMetric"):
        FunctionalBatchMetricCallback(object(), "a", "b")  # type: ignore[arg-type]


def test_functional_metric_without_batch_logging_declares_no_batch_write() -> None:
    callback = FunctionalMetricCallback("a", "b", _mae, "mae", log_on_batch=False)
    runner = fire(
        callback, "batch_end", output={"a": torch.zeros(2, 2)}, batch={"b": torch.ones(2)}
    )
    assert "mae" not in runner.batch_metrics
    bus = EventBus()
    bus.subscribe(callback)
    assert bus.subscriptions("loader_end")[0].writes == {
        "loader_metrics.mae",
        "loader_metrics.mae/mean",
        "loader_metrics.mae/std",
    }


# ---------------------------------------------------------------------- MetricAggregationCallback

_BATCH = {"loss_ce": 0.75, "loss_kl": 2.5, "acc": 0.5}
_LOADER = {"loss_ce": 0.7, "loss_kl": 2.0, "acc": 0.625}

# computed by catalyst 22.4: on_batch_end then on_loader_end on batch metrics {loss_ce:
# tensor(0.75), loss_kl: tensor(2.5), acc: 0.5} and loader metrics {0.7, 2.0, 0.625}.
AGGREGATION = {
    "weighted_sum": (
        dict(metrics={"loss_ce": 1.0, "loss_kl": 0.1}, mode="weighted_sum"),
        1.0,
        0.8999999761581421,
    ),
    "sum_list": (dict(metrics=["loss_ce", "loss_kl"], mode="sum"), 3.25, 2.700000047683716),
    "mean_all": (dict(mode="mean"), 1.25, 1.1083333492279053),
    "mean_mult": (
        dict(metrics=["loss_ce", "loss_kl"], mode="mean", multiplier=2.0),
        3.25,
        2.700000047683716,
    ),
    "callable": (dict(mode=lambda m, r: m["loss_ce"] * m["loss_kl"]), 1.875, 1.4),
    "loader_scope": (
        dict(metrics={"loss_ce": 1.0, "loss_kl": 0.1}, mode="weighted_sum", scope="loader"),
        None,
        0.8999999761581421,
    ),
}


def _aggregate(callback: MetricAggregationCallback) -> tuple[Any, Any]:
    batch = {k: torch.tensor(v) if k.startswith("loss") else v for k, v in _BATCH.items()}
    runner = fire(callback, "batch_end", batch_metrics=batch, loader_metrics=dict(_LOADER))
    runner = fire(callback, "loader_end", runner=runner)
    return runner.batch_metrics.get("loss"), runner.loader_metrics["loss"]


@pytest.mark.parametrize("case", list(AGGREGATION))
def test_metric_aggregation_matches_catalyst(case: str) -> None:
    kwargs, batch_value, loader_value = AGGREGATION[case]
    got_batch, got_loader = _aggregate(MetricAggregationCallback("loss", **kwargs))
    close(got_batch, batch_value, "batch")
    close(got_loader, loader_value, "loader")
    assert isinstance(got_loader, float)


def test_metric_aggregation_weighted_mean_divides_the_weights_by_their_sum() -> None:
    # Catalyst 22.4 fails on weighted_mean ("unsupported operand type(s) for +: 'int' and
    # 'tuple'"); the reference is the definition, in plain Python.
    callback = MetricAggregationCallback("loss", {"loss_ce": 3.0, "loss_kl": 1.0}, "weighted_mean")
    got_batch, got_loader = _aggregate(callback)
    close(got_batch, 0.75 * 0.75 + 2.5 * 0.25, "batch")
    close(got_loader, 0.7 * 0.75 + 2.0 * 0.25, "loader")


def test_metric_aggregation_accepts_one_name() -> None:
    # Catalyst 22.4 documents a str but refuses it for sum/mean; a name is a list of one here.
    got_batch, _ = _aggregate(MetricAggregationCallback("loss", "loss_kl", mode="sum"))
    close(got_batch, 2.5, "batch")


# computed by catalyst 22.4: the errors it raises for these arguments.
@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (dict(metrics={"a": 1.0}, mode="mean"), ValueError, "not a dict"),
        (dict(metrics=["a"], mode="weighted_sum"), ValueError, "needs metrics as a dict"),
        (dict(mode="max"), NotImplementedError, "mode must be one of"),
        (dict(scope="epoch"), ValueError, "scope must be"),
    ],
)
def test_metric_aggregation_refuses_bad_arguments(kwargs: dict, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        MetricAggregationCallback("loss", **kwargs)


def test_metric_aggregation_names_missing_metrics() -> None:
    callback = MetricAggregationCallback("loss", ["loss_ce", "nope"], mode="sum")
    with pytest.raises(KeyError, match=r"no \['nope'\] among the metrics"):
        fire(callback, "batch_end", batch_metrics={"loss_ce": torch.tensor(1.0)})


def test_metric_aggregation_runs_between_the_metrics_and_backward() -> None:
    bus = EventBus()
    bus.subscribe(MetricAggregationCallback("loss", ["a", "b"], mode="sum"))
    (batch_end,) = bus.subscriptions("batch_end")
    (loader_end,) = bus.subscriptions("loader_end")
    # Before the batch means (20, which must see the aggregate) and the backward pass (30).
    assert Order.METRIC < batch_end.order < Order.METRIC_AGGREGATION < Order.BACKWARD
    assert loader_end.order > Order.METRIC_AGGREGATION  # after the loader values
    assert batch_end.writes == {"batch_metrics.loss"}


class _TwoLosses(Runner):
    def handle_batch(self, batch: dict[str, torch.Tensor]) -> None:
        logits = self.model(batch["features"])
        onehot = F.one_hot(batch["targets"], 2).float()
        self.batch_metrics.update(
            loss_ce=F.cross_entropy(logits, batch["targets"]), loss_kl=F.mse_loss(logits, onehot)
        )
        self.output = {"logits": logits}


class _TrainLosses(Callback):
    def __init__(self) -> None:
        super().__init__(order=Order.EXTERNAL, loaders="train")
        self.values: list[float] = []

    def on_batch_end(self, runner: Any) -> None:
        self.values.append(float(runner.batch_metrics["loss"].detach()))


# computed by catalyst 22.4: CriterionCallbacks loss_ce (cross entropy) and loss_kl (MSE on
# one-hot targets), MetricAggregationCallback("loss", {"loss_ce": 1.0, "loss_kl": 0.1},
# "weighted_sum"), Backward/OptimizerCallback("loss"), SGD lr=0.1, 2 epochs.
AGGREGATION_RUN = {
    "batch_losses": [
        1.6527408361434937,
        1.0865521430969238,
        0.4806045889854431,
        1.2938865423202515,
        1.0110770463943481,
        0.49655666947364807,
    ],
    "valid": {
        "loss": 0.8631037473678589,
        "loss_ce": 0.8021291196346283,
        "loss_kl": 0.6097458004951477,
    },
    "weight": [
        -0.17007245123386383,
        0.2077978551387787,
        -0.3835749924182892,
        -0.26311662793159485,
        -0.1151650920510292,
        0.09482108801603317,
    ],
    "bias": [0.1889916956424713, 0.28672534227371216],
}


class _Logits(Runner):
    def handle_batch(self, batch: dict[str, torch.Tensor]) -> None:
        self.output = {"logits": self.model(batch["features"])}


def _one_hot(targets: torch.Tensor) -> torch.Tensor:
    return F.one_hot(targets, 2).float()


def _catalyst_pipeline() -> tuple[Runner, list[Callback], Any]:
    """The reference script's pipeline: one-hot targets, two CriterionCallbacks."""
    callbacks = [
        BatchTransformCallback(_one_hot, "on_batch_end", "targets", "onehot"),
        CriterionCallback("logits", "targets", "loss_ce", criterion_key="ce"),
        CriterionCallback("logits", "onehot", "loss_kl", criterion_key="kl"),
    ]
    return _Logits(), callbacks, {"ce": nn.CrossEntropyLoss(), "kl": nn.MSELoss()}


@pytest.mark.parametrize("losses_from", ["handle_batch", "criterion_callbacks"])
def test_metric_aggregation_drives_backward_as_in_catalyst(losses_from: str) -> None:
    model, losses = _model(), _TrainLosses()
    aggregation = MetricAggregationCallback(
        "loss", {"loss_ce": 1.0, "loss_kl": 0.1}, "weighted_sum"
    )
    if losses_from == "handle_batch":
        runner, callbacks, criterion = _TwoLosses(), [], None
    else:
        runner, callbacks, criterion = _catalyst_pipeline()
    runner.train(
        model=model,
        criterion=criterion,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        loaders={"train": _batches(3, last=2), "valid": _batches(2, seed=1)},
        num_epochs=2,
        callbacks=[*callbacks, aggregation, losses],
        console=False,
    )
    close(losses.values, AGGREGATION_RUN["batch_losses"], "batch losses")
    valid = {key: runner.epoch_metrics["valid"][key] for key in AGGREGATION_RUN["valid"]}
    close(valid, AGGREGATION_RUN["valid"], "valid")
    close(model.weight.detach().flatten(), AGGREGATION_RUN["weight"], "weight")
    close(model.bias.detach(), AGGREGATION_RUN["bias"], "bias")


# ---------------------------------------------------------------------------------- TimerCallback

# computed by catalyst 22.4: the batch metrics TimerCallback adds.
TIMER_KEYS = ["_timer/_fps", "_timer/batch_time", "_timer/data_time", "_timer/model_time"]


def test_timer_callback_writes_catalysts_keys() -> None:
    seen = []

    class Keys(Callback):
        def __init__(self) -> None:
            super().__init__(order=Order.EXTERNAL)

        def on_batch_end(self, runner: Any) -> None:
            seen.append({k: v for k, v in runner.batch_metrics.items() if k.startswith("_timer")})

    runner = _train([TimerCallback(), Keys()], {"train": _batches(2)})
    assert all(sorted(batch) == TIMER_KEYS for batch in seen) and len(seen) == 2
    for batch in seen:
        assert batch["_timer/batch_time"] >= batch["_timer/model_time"] >= 0
        assert batch["_timer/batch_time"] >= batch["_timer/data_time"] >= 0
        assert batch["_timer/_fps"] > 0
    assert "_timer/batch_time" in runner.epoch_metrics["train"]
