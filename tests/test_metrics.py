"""Metrics: ``accuracy`` against a hand computation, batch-size-weighted loader means of every
scalar in ``batch_metrics``, and torchmetrics-style objects as loader metrics."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import torch
from torch import nn

import plugins
from eventrunner import FunctionCallback, Runner, accuracy
from eventrunner.metrics import WeightedMeans
from eventrunner.testing import EventRecorder, regression_run

# ----------------------------------------------------------------- accuracy

LOGITS = torch.tensor(
    [
        [0.1, 0.9, 0.0, 0.2, 0.3],  # ranking: 1, 4, 3, 0, 2
        [0.8, 0.1, 0.5, 0.0, 0.7],  # ranking: 0, 4, 2, 1, 3
        [0.2, 0.3, 0.4, 0.9, 0.1],  # ranking: 3, 2, 1, 0, 4
        [0.6, 0.5, 0.4, 0.3, 0.2],  # ranking: 0, 1, 2, 3, 4
    ]
)
TARGETS = torch.tensor([1, 2, 0, 4])
# target rank per row: 1st, 3rd, 4th, 5th
HAND = {1: 1 / 4, 2: 1 / 4, 3: 2 / 4, 4: 3 / 4, 5: 4 / 4}


def test_accuracy_matches_a_hand_computation():
    acc1, acc3 = accuracy(LOGITS, TARGETS, topk=(1, 3))
    assert acc1.ndim == 0 and acc3.ndim == 0
    assert acc1.item() == pytest.approx(HAND[1])
    assert acc3.item() == pytest.approx(HAND[3])
    values = accuracy(LOGITS, TARGETS, topk=(1, 2, 3, 4, 5))
    assert [v.item() for v in values] == pytest.approx([HAND[k] for k in range(1, 6)])


def test_accuracy_default_is_top1():
    (acc,) = accuracy(LOGITS, TARGETS)
    assert acc.item() == pytest.approx(0.25)


def test_accuracy_with_one_hot_targets():
    one_hot = nn.functional.one_hot(TARGETS, num_classes=5).float()
    assert [v.item() for v in accuracy(LOGITS, one_hot, topk=(1, 3))] == pytest.approx(
        [HAND[1], HAND[3]]
    )


def test_accuracy_with_column_targets():
    acc1, acc3 = accuracy(LOGITS, TARGETS.reshape(-1, 1), topk=(1, 3))
    assert (acc1.item(), acc3.item()) == pytest.approx((HAND[1], HAND[3]))


def test_accuracy_refuses_bad_topk_and_shapes():
    with pytest.raises(ValueError, match="topk"):
        accuracy(LOGITS, TARGETS, topk=(6,))
    with pytest.raises(ValueError, match="topk"):
        accuracy(LOGITS, TARGETS, topk=(0,))
    with pytest.raises(ValueError, match="logits"):
        accuracy(torch.zeros(4), TARGETS)


# ----------------------------------------------------------------- weighted means

SIZES = [4, 4, 2]  # an uneven last batch
VALUES = [1.0, 2.0, 10.0]
WEIGHTED = sum(v * n for v, n in zip(VALUES, SIZES, strict=True)) / sum(SIZES)  # 3.6
PLAIN_MEAN = sum(VALUES) / len(VALUES)  # 4.33: what an unweighted mean would give


def metric_batches() -> list[dict[str, torch.Tensor]]:
    return [
        {"x": torch.randn(n, 3), "y": torch.randn(n, 1), "v": torch.tensor(v)}
        for v, n in zip(VALUES, SIZES, strict=True)
    ]


class MetricRunner(Runner):
    """Puts every kind of value in ``batch_metrics``."""

    def handle_batch(self, batch):
        out = self.model(batch["x"])
        v = float(batch["v"])
        loss = ((out - batch["y"]) ** 2).mean()
        self.batch_metrics.update(
            loss=loss,
            py_float=v,
            py_int=int(v),
            tensor=torch.tensor(v),
            with_grad=out.sum() * 0 + v,  # a 0-d tensor that requires grad
            one_element=torch.tensor([v]),
            vector=torch.full((3,), v),  # not a scalar: carried, not aggregated
            text="not a number",
        )
        self.output = {"out": out}


def metrics_recorder() -> EventRecorder:
    """Keeps a copy of ``batch_metrics`` at every batch end."""
    return EventRecorder(events=["batch_end"], fields=["batch_metrics"])


@pytest.mark.parametrize("loader_key", ["train", "valid"])
def test_scalars_are_batch_size_weighted_means(loader_key):
    recorder = metrics_recorder()
    runner = regression_run(
        [recorder], loaders={loader_key: metric_batches()}, runner=MetricRunner()
    )
    metrics = runner.epoch_metrics[loader_key]
    assert metrics["py_float"] != pytest.approx(PLAIN_MEAN)
    for name in ("py_float", "tensor", "with_grad", "one_element"):
        assert metrics[name] == pytest.approx(WEIGHTED), name
        assert type(metrics[name]) is float, name
    assert metrics["py_int"] == pytest.approx(WEIGHTED)
    # non-scalars are carried along in batch_metrics, not aggregated
    assert "vector" not in metrics and "text" not in metrics
    assert all(
        torch.equal(b["vector"], torch.full((3,), v))
        for b, v in zip(recorder.column("batch_metrics"), VALUES, strict=True)
    )
    assert [b["text"] for b in recorder.column("batch_metrics")] == ["not a number"] * 3
    grad = loader_key == "train"
    assert all(b["with_grad"].requires_grad is grad for b in recorder.column("batch_metrics"))
    assert runner.loader_metrics is runner.epoch_metrics[loader_key]


def test_loss_weighted_by_batch_size():
    batches = metric_batches()
    recorder = metrics_recorder()
    runner = regression_run([recorder], loaders={"valid": batches}, runner=MetricRunner())
    losses = [b["loss"].item() for b in recorder.column("batch_metrics")]
    expected = sum(v * n for v, n in zip(losses, SIZES, strict=True)) / sum(SIZES)
    assert runner.epoch_metrics["valid"]["loss"] == pytest.approx(expected)


def test_batch_size_is_the_first_tensor_in_key_order():
    seen: list[int] = []

    class Runner2(MetricRunner):
        def handle_batch(self, batch):
            seen.append(self.batch_size)
            super().handle_batch(batch)

    # "w" first, with a leading dim that is not the sample count
    batches = [{"w": torch.zeros(n * 2), **b} for b, n in zip(metric_batches(), SIZES, strict=True)]
    runner = regression_run(loaders={"valid": batches}, runner=Runner2())
    assert seen == [8, 8, 4]
    # weights 8, 8, 4 are proportional to 4, 4, 2: same mean
    assert runner.epoch_metrics["valid"]["py_float"] == pytest.approx(WEIGHTED)


def test_handle_batch_may_reweigh_the_batch():
    class Reweigh(MetricRunner):
        def handle_batch(self, batch):
            super().handle_batch(batch)
            self.batch_size = 1  # every batch counts the same

    runner = regression_run(loaders={"valid": metric_batches()}, runner=Reweigh())
    assert runner.epoch_metrics["valid"]["py_float"] == pytest.approx(PLAIN_MEAN)
    assert runner.sample_step == 3


def test_metrics_are_per_loader_and_per_epoch():
    class ByLoader(Runner):
        def handle_batch(self, batch):
            self.batch_metrics["value"] = {"train": 1.0, "valid": 2.0, "valid2": 3.0}[
                self.loader_key
            ] * self.epoch_step
            self.batch_metrics["loss"] = self.model(batch["x"]).mean()

    epochs: list[dict[str, dict[str, float]]] = []
    loaders = {key: metric_batches() for key in ("train", "valid", "valid2")}
    regression_run(
        [
            FunctionCallback(
                "epoch_end",
                lambda r: epochs.append({k: dict(v) for k, v in r.epoch_metrics.items()}),
            )
        ],
        loaders=loaders,
        runner=ByLoader(),
        num_epochs=2,
    )
    assert [{k: v["value"] for k, v in e.items()} for e in epochs] == [
        {"train": 1.0, "valid": 2.0, "valid2": 3.0},
        {"train": 2.0, "valid": 4.0, "valid2": 6.0},
    ]


def test_loader_metrics_are_final_after_aggregation_order():
    seen: dict[str, dict[str, Any]] = {}

    def at(order: int) -> FunctionCallback:
        return FunctionCallback(
            "loader_end",
            lambda r: seen.__setitem__(str(order), dict(r.loader_metrics)),
            order=order,
        )

    regression_run(
        [at(15), at(25), at(80)], loaders={"valid": metric_batches()}, runner=MetricRunner()
    )
    assert "py_float" not in seen["15"]
    assert seen["25"]["py_float"] == pytest.approx(WEIGHTED)
    assert seen["80"] == seen["25"]


def test_weighted_means_directly():
    means = WeightedMeans()
    means.update({"a": 1.0, "b": torch.tensor(4.0), "flag": True, "v": torch.ones(2)}, 3)
    means.update({"a": 3.0}, 1)
    assert means.compute() == pytest.approx({"a": 1.5, "b": 4.0})
    means.reset()
    assert means.compute() == {}


def test_non_scalar_tensor_warns_once_per_loader_and_key(caplog):
    loaders = {"train": metric_batches(), "valid": metric_batches()}
    with caplog.at_level(logging.WARNING, logger="eventrunner"):
        runner = regression_run(loaders=loaders, num_epochs=2, runner=MetricRunner())
    warnings = [r.getMessage() for r in caplog.records if "not a scalar" in r.getMessage()]
    assert warnings == [
        f"eventrunner: loader {loader!r}: batch_metrics['vector'] is a tensor of shape (3,), "
        "not a scalar: it stays in batch_metrics but is not aggregated into loader_metrics; "
        "reduce it (e.g. .mean()) to have it aggregated"
        for loader in ("train", "valid")
    ]
    assert runner.non_scalar_metrics == {"train": {"vector": (3,)}, "valid": {"vector": (3,)}}
    # still carried, not aggregated (SPEC 4); the scalars are unchanged
    assert "vector" not in runner.epoch_metrics["valid"]
    assert runner.epoch_metrics["valid"]["py_float"] == pytest.approx(WEIGHTED)


def test_non_scalar_main_metric_says_it_is_not_a_scalar():
    model = nn.Linear(3, 1)
    with pytest.raises(ValueError) as caught:
        MetricRunner().train(
            model=model,
            optimizer=torch.optim.SGD(model.parameters(), lr=0.01),
            loaders={"train": metric_batches(), "valid": metric_batches()},
            main_metric="vector",
            console=False,
        )
    message = str(caught.value)
    assert "'vector' of loader 'valid' is a tensor of shape (3,), not a scalar" in message
    assert ".mean()" in message


def test_weighted_means_note_non_scalars():
    import numpy as np

    means = WeightedMeans()
    means.update({"v": torch.ones(2, 3), "a": np.ones(4), "s": torch.tensor([2.0])}, 2)
    means.update({"v": torch.ones(5), "s": np.array(4.0), "one": np.array([1.0])}, 2)
    assert means.non_scalar == {"v": (2, 3), "a": (4,)}  # the first shape seen
    assert means.compute() == pytest.approx({"s": 3.0, "one": 1.0})  # 1-element arrays count
    means.reset()
    assert means.non_scalar == {}


def test_weighted_means_take_numpy_scalars():
    # sklearn/numpy metrics return np.float32/np.float64: aggregated, not silently dropped.
    import numpy as np

    means = WeightedMeans()
    means.update({"f32": np.float32(1.0), "f64": np.float64(2.0), "flag": np.bool_(True)}, 1)
    means.update({"f32": np.float32(4.0), "f64": np.float64(5.0), "i": np.int64(3)}, 2)
    assert means.compute() == pytest.approx({"f32": 3.0, "f64": 4.0, "i": 3.0})


# ----------------------------------------------------------------- torchmetrics protocol


class CountingAccuracy:
    """update/compute/reset, like a torchmetrics metric."""

    def __init__(self) -> None:
        self.resets = 0
        self.reset()
        self.resets = 0

    def reset(self) -> None:
        self.resets += 1
        self.correct = 0
        self.total = 0

    def update(self, preds: torch.Tensor, targets: torch.Tensor) -> None:
        assert not preds.requires_grad  # given detached
        self.correct += int((preds.argmax(dim=1) == targets).sum())
        self.total += targets.numel()

    def compute(self) -> torch.Tensor:
        return torch.tensor(self.correct / self.total)


class ClassifierRunner(Runner):
    def handle_batch(self, batch):
        logits = self.model(batch["features"])
        self.batch_metrics["loss"] = nn.functional.cross_entropy(logits, batch["targets"])
        self.output = {"logits": logits}


def test_loader_metric_protocol_object():
    torch.manual_seed(0)
    model = nn.Linear(4, 3)

    def batches(n: int) -> list[dict[str, torch.Tensor]]:
        return [
            {"features": torch.randn(5, 4), "targets": torch.randint(0, 3, (5,))} for _ in range(n)
        ]

    loaders = {"train": batches(3), "valid": batches(2)}
    metric = CountingAccuracy()
    runner = ClassifierRunner()
    runner.train(
        model=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        loaders=loaders,
        callbacks=[plugins.LoaderMetricCallback(metric, "my_accuracy")],
        num_epochs=2,
        console=False,
    )
    assert metric.resets == 4  # once per loader pass
    assert metric.total == 10  # the last pass: valid's 2 batches of 5
    # the valid value, computed by hand with the trained model
    with torch.no_grad():
        correct = sum(
            int((model(b["features"]).argmax(1) == b["targets"]).sum()) for b in loaders["valid"]
        )
    assert runner.epoch_metrics["valid"]["my_accuracy"] == pytest.approx(correct / 10)
    assert type(runner.epoch_metrics["train"]["my_accuracy"]) is float


def test_loader_metric_needs_the_protocol():
    class NoCompute:
        def update(self, *args: Any) -> None: ...
        def reset(self) -> None: ...

    with pytest.raises(TypeError, match="compute"):
        plugins.LoaderMetricCallback(NoCompute(), "broken")


def test_accuracy_callback_adds_batch_metrics():
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    loaders = {"valid": [{"features": torch.randn(6, 4), "targets": torch.randint(0, 3, (6,))}]}
    runner = ClassifierRunner()
    runner.train(
        model=model,
        loaders=loaders,
        console=False,
        callbacks=[plugins.AccuracyCallback(topk=(1, 2))],
    )
    batch = loaders["valid"][0]
    with torch.no_grad():
        expected = accuracy(model(batch["features"]), batch["targets"], topk=(1, 2))
    assert runner.epoch_metrics["valid"]["accuracy01"] == pytest.approx(expected[0].item())
    assert runner.epoch_metrics["valid"]["accuracy02"] == pytest.approx(expected[1].item())
