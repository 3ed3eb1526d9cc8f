"""Catalyst 22.04's metric callbacks: signatures, the batch/loader protocol on the bus, and a
whole run against Catalyst's ``runner.epoch_metrics``.

The end-to-end reference: the same seeded ``nn.Linear(5, 4)`` (``torch.manual_seed(0)``), the
same ``torch.Generator`` data in unshuffled ``DataLoader``s of batch size 8 (30 samples: a short
last batch), ``SGD(lr=0.1)``, one epoch on ``train`` and ``valid``, ``dl.SupervisedRunner`` with
the catalyst callbacks of the same arguments, on CPU.
"""

from __future__ import annotations

import inspect

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

pytest.importorskip("torchmetrics")

import eventrunner
from eventrunner import metrics
from eventrunner.catalyst import callbacks as C
from eventrunner.events import Order
from eventrunner.testing import fire
from tests.catalyst_port._compare import close

# computed by catalyst 22.4 (runner.epoch_metrics after runner.train; loss, lr, momentum left out)
CATALYST_EPOCH_METRICS = {
    "multiclass": {
        "train": {
            "accuracy01": 0.2,
            "accuracy03": 0.700000003973643,
            "accuracy01/std": 0.26587526243036186,
            "accuracy03/std": 0.14283661497154868,
            "one_accuracy01_x": 0.2,
            "one_accuracy01_x/std": 0.26587526243036186,
            "precision/_micro": 0.19999999999999996,
            "recall/_micro": 0.19999999999999996,
            "f1/_micro": 0.19999500012499682,
            "precision/_macro": 0.19583333333333336,
            "recall/_macro": 0.17916666666666667,
            "f1/_macro": 0.16507030391675656,
            "precision/_weighted": 0.27111111111111114,
            "recall/_weighted": 0.19999999999999998,
            "f1/_weighted": 0.2107804862312559,
            "precision/class_00": 0.30000000000000004,
            "precision/class_01": 0.08333333333333337,
            "precision/class_02": 0.4,
            "precision/class_03": 0.0,
            "recall/class_00": 0.30000000000000004,
            "recall/class_01": 0.25,
            "recall/class_02": 0.16666666666666663,
            "recall/class_03": 0.0,
            "f1/class_00": 0.299995000083332,
            "f1/class_01": 0.12499625011249667,
            "f1/class_02": 0.23528996547119754,
            "f1/class_03": 0.0,
            "support/class_00": 10.0,
            "support/class_01": 4.0,
            "support/class_02": 12.0,
            "support/class_03": 4.0,
        },
        "valid": {
            "accuracy01": 0.26666666865348815,
            "accuracy03": 0.8,
            "accuracy01/std": 0.0988438931678285,
            "accuracy03/std": 0.22167077171896785,
            "one_accuracy01_x": 0.26666666865348815,
            "one_accuracy01_x/std": 0.0988438931678285,
            "precision/_micro": 0.2666666666666667,
            "recall/_micro": 0.2666666666666667,
            "f1/_micro": 0.266661666760415,
            "precision/_macro": 0.27242063492063495,
            "recall/_macro": 0.26339285714285715,
            "f1/_macro": 0.25384685950039404,
            "precision/_weighted": 0.29804232804232805,
            "recall/_weighted": 0.26666666666666666,
            "f1/_weighted": 0.2682492727585012,
            "precision/class_00": 0.11111111111111116,
            "precision/class_01": 0.30000000000000004,
            "precision/class_02": 0.25,
            "precision/class_03": 0.4285714285714286,
            "recall/class_00": 0.19999999999999996,
            "recall/class_01": 0.4285714285714286,
            "recall/class_02": 0.125,
            "recall/class_03": 0.30000000000000004,
            "f1/class_00": 0.1428525511679982,
            "f1/class_01": 0.3529363322464202,
            "f1/class_02": 0.16666222234073758,
            "f1/class_03": 0.3529363322464202,
            "support/class_00": 5.0,
            "support/class_01": 7.0,
            "support/class_02": 8.0,
            "support/class_03": 10.0,
        },
    },
    "multilabel": {
        "train": {
            "accuracy": 0.5166666666666667,
            "accuracy/std": 0.05827828535069789,
            "auc/class_00": 0.5535714030265808,
            "auc/class_01": 0.5178571343421936,
            "auc/class_02": 0.3891402781009674,
            "auc/class_03": 0.41798943281173706,
            "auc/_micro": 0.4814285714285715,
            "auc": 0.46963953971862793,
            "auc/_macro": 0.46963953971862793,
            "auc/_weighted": 0.7940242886543274,
        },
        "valid": {
            "accuracy": 0.5333333333333333,
            "accuracy/std": 0.06628919748406398,
            "auc/class_00": 0.6244344115257263,
            "auc/class_01": 0.22499999403953552,
            "auc/class_02": 0.5311004519462585,
            "auc/class_03": 0.48148149251937866,
            "auc/_micro": 0.49469866071428575,
            "auc": 0.46550410985946655,
            "auc/_macro": 0.46550410985946655,
            "auc/_weighted": 0.9124718904495239,
        },
    },
}


def _data(seed: int, multilabel: bool) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(30, 5, generator=g)
    if multilabel:
        return x, (torch.rand(30, 4, generator=g) < 0.4).float()
    return x, torch.randint(0, 4, (30,), generator=g)


def _run(multilabel: bool, callbacks: list) -> dict:
    torch.manual_seed(0)
    model = torch.nn.Linear(5, 4)
    loaders = {
        key: DataLoader(TensorDataset(*_data(seed, multilabel)), batch_size=8, shuffle=False)
        for key, seed in (("train", 1), ("valid", 2))
    }
    runner = eventrunner.SupervisedRunner(
        input_key="features", output_key="logits", target_key="targets"
    )
    runner.train(
        model=model,
        criterion=torch.nn.BCEWithLogitsLoss() if multilabel else torch.nn.CrossEntropyLoss(),
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        loaders=loaders,
        callbacks=callbacks,
        num_epochs=1,
        verbose=False,
        console=False,
    )
    return runner.epoch_metrics


def _matches(ours: dict, expected: dict) -> None:
    for loader, values in expected.items():
        close({key: ours[loader][key] for key in values}, values, loader)


def test_multiclass_run_matches_catalyst():
    epoch_metrics = _run(
        False,
        [
            C.AccuracyCallback("logits", "targets", topk=(1, 3)),
            C.AccuracyCallback("logits", "targets", prefix="one_", suffix="_x"),
            C.PrecisionRecallF1SupportCallback(
                "logits", "targets", num_classes=4, compute_per_class_metrics=True
            ),
        ],
    )
    _matches(epoch_metrics, CATALYST_EPOCH_METRICS["multiclass"])


def test_multilabel_run_matches_catalyst():
    epoch_metrics = _run(
        True,
        [
            C.MultilabelAccuracyCallback("logits", "targets"),
            C.AUCCallback("logits", "targets", compute_per_class_metrics=True),
        ],
    )
    _matches(epoch_metrics, CATALYST_EPOCH_METRICS["multilabel"])


# inspect.signature of catalyst 22.4's dl.<name>, parameter names and defaults
CATALYST_SIGNATURES = {
    "AccuracyCallback": [
        ("input_key", None),
        ("target_key", None),
        ("topk", None),
        ("num_classes", None),
        ("log_on_batch", True),
        ("prefix", None),
        ("suffix", None),
    ],
    "PrecisionRecallF1SupportCallback": [
        ("input_key", None),
        ("target_key", None),
        ("num_classes", None),
        ("zero_division", 0),
        ("log_on_batch", True),
        ("compute_per_class_metrics", False),
        ("prefix", None),
        ("suffix", None),
    ],
    "AUCCallback": [
        ("input_key", None),
        ("target_key", None),
        ("compute_per_class_metrics", False),
        ("prefix", None),
        ("suffix", None),
    ],
    "MultilabelAccuracyCallback": [
        ("input_key", None),
        ("target_key", None),
        ("threshold", 0.5),
        ("log_on_batch", True),
        ("prefix", None),
        ("suffix", None),
    ],
    "MultilabelPrecisionRecallF1SupportCallback": [
        ("input_key", None),
        ("target_key", None),
        ("num_classes", None),
        ("zero_division", 0),
        ("log_on_batch", True),
        ("compute_per_class_metrics", False),
        ("prefix", None),
        ("suffix", None),
    ],
    "BatchMetricCallback": [
        ("metric", None),
        ("input_key", None),
        ("target_key", None),
        ("log_on_batch", True),
    ],
    "LoaderMetricCallback": [("metric", None), ("input_key", None), ("target_key", None)],
}


@pytest.mark.parametrize("name", sorted(CATALYST_SIGNATURES))
def test_signatures_are_catalysts(name):
    parameters = inspect.signature(getattr(C, name)).parameters.values()
    empty = inspect.Parameter.empty
    ours = [(p.name, None if p.default is empty else p.default) for p in parameters]
    assert ours == CATALYST_SIGNATURES[name]


def _batch(logits: torch.Tensor, targets: torch.Tensor) -> dict:
    return {
        "output": {"logits": logits},
        "batch": {"targets": targets},
        "batch_metrics": {},
        "loader_key": "valid",
    }


def test_batch_values_go_to_batch_metrics_and_loader_values_after_aggregation():
    callback = C.AccuracyCallback("logits", "targets")
    main, loader_part = callback.parts()
    assert main is callback and main.order == Order.METRIC
    assert loader_part.order == Order.METRIC_AGGREGATION + 1
    assert main.writes == {
        "batch_end": ("batch_metrics.accuracy01", "batch_metrics.accuracy01/std")
    }
    assert loader_part.writes == {
        "loader_end": ("loader_metrics.accuracy01", "loader_metrics.accuracy01/std")
    }
    g = torch.Generator().manual_seed(0)
    logits, targets = torch.randn(12, 3, generator=g), torch.randint(0, 3, (12,), generator=g)
    runner = fire(main, "loader_start", loader_key="valid")
    fire(main, "batch_end", runner, **_batch(logits[:8], targets[:8]))
    expected = metrics.AccuracyMetric().update_key_value(logits[:8], targets[:8])
    close(runner.batch_metrics, expected)
    fire(main, "batch_end", runner, **_batch(logits[8:], targets[8:]))
    runner.loader_metrics = {"accuracy01": -1.0, "loss": 2.0}  # the aggregation's batch means
    fire(callback.parts(), "loader_end", runner)
    reference = metrics.AccuracyMetric()
    reference.update(logits[:8], targets[:8])
    reference.update(logits[8:], targets[8:])
    # The batch mean of accuracy01 is replaced, other keys stay, the std is added.
    expected = {"accuracy01": None, "loss": 2.0, **reference.compute_key_value()}
    close(runner.loader_metrics, expected)


def test_log_on_batch_false_keeps_batch_metrics_empty():
    callback = C.PrecisionRecallF1SupportCallback("logits", "targets", log_on_batch=False)
    assert callback.writes == {"batch_end": ()}
    g = torch.Generator().manual_seed(1)
    runner = fire(callback, "loader_start", loader_key="valid")
    fire(
        callback, "batch_end", runner, **_batch(torch.randn(6, 3, generator=g), torch.arange(6) % 3)
    )
    assert runner.batch_metrics == {}


def test_loader_metric_reads_the_batch_and_takes_key_value_inputs():
    class Count(metrics.ICallbackLoaderMetric):
        def reset(self, num_batches, num_samples):
            self.sizes = (num_batches, num_samples)
            self.total = 0.0

        def update(self, scores, labels):
            self.total += float((scores * labels).sum())

        def compute(self):
            return self.total

        def compute_key_value(self):
            return {"dot": torch.tensor(self.compute())}

    callback = C.LoaderMetricCallback(Count(), {"x": "scores"}, ["labels"])
    runner = fire(callback, "loader_start", loader_key="valid", loader_batch_len=2)
    assert callback.metric.sizes == (2, None)
    for _ in range(2):
        fire(
            callback,
            "batch_end",
            runner,
            output={},
            batch={"x": torch.ones(3), "labels": torch.ones(3)},
        )
    runner.loader_metrics = {}
    fire(callback.parts(), "loader_end", runner)
    assert runner.loader_metrics == {"dot": 6.0}  # a one-element tensor filed as a number
    assert type(runner.loader_metrics["dot"]) is float


def test_wrong_arguments_are_refused():
    with pytest.raises(TypeError, match="ICallbackBatchMetric"):
        C.BatchMetricCallback(metrics.AUCMetric(), "logits", "targets")
    with pytest.raises(TypeError, match="ICallbackLoaderMetric"):
        C.LoaderMetricCallback(metrics.AccuracyMetric(), "logits", "targets")
    with pytest.raises(TypeError, match="both be names"):
        C.AccuracyCallback("logits", ["targets"])
    callback = C.AccuracyCallback("logits", "targets")
    runner = fire(callback, "loader_start", loader_key="valid")
    with pytest.raises(KeyError, match="'targets' is in neither"):
        fire(callback, "batch_end", runner, output={"logits": torch.zeros(2, 2)}, batch={})
