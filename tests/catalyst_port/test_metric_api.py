"""The shape of the Catalyst-compatible metrics: where the names live, how they load, the
interfaces and the call protocol (the numbers are in test_metric_parity)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

pytest.importorskip("torchmetrics")

from eventrunner import metrics
from eventrunner.catalyst import metrics as catalyst_metrics


def test_eventrunner_metrics_exposes_the_catalyst_names():
    own = {"WeightedMeans", "accuracy", "as_number"}
    assert own <= set(metrics.__all__) and own <= set(dir(metrics))
    for name in catalyst_metrics.__all__:
        assert name in metrics.__all__ and name in dir(metrics)
        assert getattr(metrics, name) is getattr(catalyst_metrics, name)
    assert catalyst_metrics.accuracy is metrics.accuracy  # one accuracy, with its fast path
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        metrics.nope  # noqa: B018


def test_from_import_works_for_compat_names():
    from eventrunner.metrics import AccuracyMetric, precision_recall_fbeta_support

    assert AccuracyMetric is catalyst_metrics.AccuracyMetric
    assert callable(precision_recall_fbeta_support)


def test_loading_is_lazy_and_names_the_extra_without_torchmetrics():
    script = textwrap.dedent(
        """
        import sys
        import eventrunner
        from eventrunner import metrics
        assert "torchmetrics" not in sys.modules, "import eventrunner loaded torchmetrics"
        assert "eventrunner.catalyst.metrics" not in sys.modules
        metrics.accuracy, metrics.WeightedMeans, metrics.as_number  # no torchmetrics needed
        sys.modules["torchmetrics"] = None  # as if it were not installed
        try:
            metrics.AUCMetric
        except ImportError as error:
            print(error)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    assert 'pip install "eventrunner[catalyst]"' in done.stdout


def test_interfaces_are_abstract():
    for interface in (
        metrics.IMetric,
        metrics.ICallbackBatchMetric,
        metrics.ICallbackLoaderMetric,
    ):
        with pytest.raises(TypeError):
            interface()
    assert issubclass(metrics.AccuracyMetric, metrics.ICallbackBatchMetric)
    assert issubclass(
        metrics.MulticlassPrecisionRecallF1SupportMetric, metrics.ICallbackBatchMetric
    )
    assert issubclass(metrics.AUCMetric, metrics.ICallbackLoaderMetric)
    assert issubclass(metrics.AdditiveMetric, metrics.IMetric)
    assert metrics.AdditiveValueMetric is metrics.AdditiveMetric


def test_a_user_metric_on_the_interfaces():
    class CountMetric(metrics.ICallbackLoaderMetric):
        def reset(self, num_batches: int, num_samples: int) -> None:
            self.count = 0

        def update(self, batch: torch.Tensor) -> None:
            self.count += len(batch)

        def compute(self) -> int:
            return self.count

        def compute_key_value(self) -> dict[str, float]:
            return {f"{self.prefix}count{self.suffix}": float(self.count)}

    metric = CountMetric(prefix="train_")
    metric.reset(2, 5)
    assert metric(torch.zeros(3)) == 3  # compute_on_call: the call returns compute()
    assert metric.compute_key_value() == {"train_count": 3.0}


def test_compute_on_call():
    logits, targets = torch.eye(4), torch.tensor([0, 1, 2, 0])
    on_call = metrics.AccuracyMetric(topk=(1, 3))
    assert on_call(logits, targets) == ((0.75, 1.0), (0.0, 0.0))
    quiet = metrics.AccuracyMetric(topk=(1, 3), compute_on_call=False)
    assert quiet(logits, targets) == [0.75, 1.0]  # what update returned


def test_accuracy_metric_keys():
    metric = metrics.AccuracyMetric(num_classes=8, prefix="p_", suffix="_s")
    metric.update(torch.eye(8), torch.arange(8))
    assert list(metric.compute_key_value()) == [
        "p_accuracy01_s",
        "p_accuracy03_s",
        "p_accuracy05_s",
        "p_accuracy01_s/std",
        "p_accuracy03_s/std",
        "p_accuracy05_s/std",
    ]


def test_per_class_keys_only_when_asked():
    logits, targets = torch.eye(3), torch.arange(3)
    metric = metrics.MulticlassPrecisionRecallF1SupportMetric(num_classes=3)
    metric.update(logits, targets)
    keys = list(metric.compute_key_value())
    assert keys == [
        f"{m}/{a}" for a in ("_micro", "_macro", "_weighted") for m in ("precision", "recall", "f1")
    ]
    assert metric.compute()[0] == []
    metric = metrics.MulticlassPrecisionRecallF1SupportMetric(compute_per_class_metrics=True)
    metric.update(logits, targets)
    values = metric.compute_key_value()
    assert values["support/class_02"] == 1.0 and values["precision/class_00"] == 1.0
    metric.reset()
    assert metric.statistics == {}


def test_auc_with_one_class_only_is_nan_as_in_catalyst():
    metric = metrics.AUCMetric()
    metric.update(torch.tensor([0.2, 0.7]), torch.tensor([1, 1]))
    assert torch.isnan(torch.tensor(metric.compute_key_value()["auc"]))


def test_additive_metric_refuses_unknown_mode():
    with pytest.raises(ValueError, match="mode"):
        metrics.AdditiveMetric(mode="jax")


def test_multilabel_targets_must_be_binary():
    with pytest.raises(ValueError, match="binary"):
        metrics.multilabel_accuracy(torch.zeros(2, 2), torch.full((2, 2), 2.0), threshold=0.5)


def test_eventrunner_metrics_lists_every_catalyst_name():
    # eventrunner.metrics lists the names without importing torchmetrics: the two lists agree.
    assert set(metrics._CATALYST_NAMES) | {"accuracy"} == set(catalyst_metrics.__all__)
