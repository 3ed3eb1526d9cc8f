"""Catalyst 22.04's segmentation, R², CMC, recsys and confusion-matrix callbacks: a whole run
against Catalyst's ``runner.epoch_metrics``, the signatures, and the bus protocol.

The end-to-end reference: per family, the same seeded model (``torch.manual_seed(0)``), the
same ``torch.Generator`` data in unshuffled ``DataLoader``s of batch size 8 (30 samples: a short
last batch), ``SGD(lr=0)`` (a frozen model: both runners see the same outputs), one epoch on
``train`` and ``valid``, ``dl.SupervisedRunner`` with the catalyst callbacks of the same
arguments, on CPU. Catalyst's ``ConfusionMatrixCallback`` only plots (and needs matplotlib), so
its reference is catalyst's ``ConfusionMatrixMetric`` fed the frozen model's batches.
"""

from __future__ import annotations

import inspect
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

pytest.importorskip("torchmetrics")

import eventrunner
from eventrunner.catalyst import metric_callbacks as C
from eventrunner.catalyst import metrics as M
from eventrunner.events import Order
from eventrunner.testing import fire
from tests.catalyst_port._compare import close


class DictDataset(Dataset):
    def __init__(self, **tensors):
        self.tensors = tensors

    def __len__(self):
        return len(next(iter(self.tensors.values())))

    def __getitem__(self, i):
        return {key: value[i] for key, value in self.tensors.items()}


def data(family, seed):
    g = torch.Generator().manual_seed(seed)
    if family == "segmentation":
        x = torch.randn(30, 1, 6, 6, generator=g)
        y = (torch.rand(30, 3, 6, 6, generator=g) < 0.4).float()
        y[:, 2] = 0
        return TensorDataset(x, y)
    if family == "regression":
        x = torch.randn(30, 5, generator=g)
        return TensorDataset(x, x[:, :1] * 0.5 + 0.3 * torch.randn(30, 1, generator=g))
    if family == "recsys":
        x = torch.randn(30, 5, generator=g)
        return TensorDataset(x, (torch.rand(30, 6, generator=g) < 0.3).float())
    if family in ("cmc", "confusion"):
        x = torch.randn(30, 5, generator=g)
        y = torch.randint(0, 4 if family == "cmc" else 3, (30,), generator=g)
        if family == "confusion":
            return TensorDataset(x, y)
        return DictDataset(features=x, targets=y, is_query=(torch.arange(30) % 3 == 0).long())
    raise ValueError(family)


MODELS = {
    "segmentation": lambda: torch.nn.Conv2d(1, 3, 3, padding=1),
    "regression": lambda: torch.nn.Linear(5, 1),
    "recsys": lambda: torch.nn.Linear(5, 6),
    "cmc": lambda: torch.nn.Linear(5, 4),
    "confusion": lambda: torch.nn.Linear(5, 4),
}
CRITERIA = {
    "segmentation": torch.nn.BCEWithLogitsLoss,
    "regression": torch.nn.MSELoss,
    "recsys": torch.nn.BCEWithLogitsLoss,
    "cmc": torch.nn.CrossEntropyLoss,
    "confusion": torch.nn.CrossEntropyLoss,
}


def setup(family):
    torch.manual_seed(0)
    model = MODELS[family]()
    loaders = {
        key: DataLoader(data(family, seed), batch_size=8, shuffle=False)
        for key, seed in (("train", 1), ("valid", 2))
    }
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    return model, loaders, CRITERIA[family](), optimizer


# computed by catalyst 22.4 (runner.epoch_metrics after runner.train; loss, lr, momentum left
# out; "confusion": ConfusionMatrixMetric(num_classes=4).compute() per loader)
CATALYST = {
    "segmentation": {
        "train": {
            "iou/class_00": 0.18914473056793213,
            "iou/class_01": 0.22411128878593445,
            "iou/class_02": 0.0,
            "iou/_micro": 0.1501154750585556,
            "iou": 0.1377520114183426,
            "iou/_macro": 0.1377520114183426,
            "dice/_micro": -1.5844359397888184,
            "dice": -1.020089030265808,
            "dice/_macro": -1.020089030265808,
            "t_trevsky/_micro": 0.25077158212661743,
            "t_trevsky": 0.24581634998321533,
            "t_trevsky/_macro": 0.24581634998321533,
            "t_trevsky/_weighted": 0.1860126554965973,
        },
        "valid": {
            "iou/class_00": 0.1829855591058731,
            "iou/class_01": 0.19306184351444244,
            "iou/class_02": 0.0,
            "iou/_micro": 0.13797035813331604,
            "iou": 0.12534913420677185,
            "iou/_macro": 0.12534913420677185,
            "dice/_micro": -1.950487494468689,
            "dice": -1.1204582452774048,
            "dice/_macro": -1.1204582452774048,
            "t_trevsky/_micro": 0.23595944046974182,
            "t_trevsky": 0.23100686073303223,
            "t_trevsky/_macro": 0.23100686073303223,
            "t_trevsky/_weighted": 0.17368221282958984,
        },
    },
    "regression": {
        "train": {"r2squared_x": -0.6574687957763672},
        "valid": {"r2squared_x": -1.0014331340789795},
    },
    "recsys": {
        "train": {
            "hitrate01": 0.14722222884496053,
            "hitrate03": 0.31111111839612327,
            "hitrate01/std": 0.07526825973963339,
            "hitrate03/std": 0.09862156886584807,
            "mrr01": 0.3333333353201548,
            "mrr03": 0.41666667660077417,
            "mrr01/std": 0.14182715723279393,
            "mrr03/std": 0.11903051247629119,
            "map03": 0.4111111263434092,
            "map03/std": 0.11215980811105224,
            "r_ndcg01": 0.3333333353201548,
            "r_ndcg03": 0.31913603345553077,
            "r_ndcg01/std": 0.14182715723279393,
            "r_ndcg03/std": 0.10094482716042202,
        },
        "valid": {
            "hitrate01": 0.1927777846654256,
            "hitrate03": 0.5255555709203084,
            "hitrate01/std": 0.08299693108877496,
            "hitrate03/std": 0.033992535072372175,
            "mrr01": 0.4333333373069763,
            "mrr03": 0.5888888915379842,
            "mrr01/std": 0.22037064302922718,
            "mrr03/std": 0.14297626233014563,
            "map03": 0.5777777830759685,
            "map03/std": 0.12293959831710097,
            "r_ndcg01": 0.4333333373069763,
            "r_ndcg03": 0.48942243258158363,
            "r_ndcg01/std": 0.22037064302922718,
            "r_ndcg03/std": 0.06632890957548562,
        },
    },
    "cmc": {
        "train": {"cmc01": 0.4000000059604645, "cmc03": 0.800000011920929},
        "valid": {"cmc01": 0.30000001192092896, "cmc03": 0.6000000238418579},
    },
    "confusion": {
        "train": [[2, 6, 4, 1], [3, 2, 0, 1], [1, 4, 4, 2], [0, 0, 0, 0]],
        "valid": [[5, 4, 1, 1], [2, 3, 0, 3], [2, 3, 2, 4], [0, 0, 0, 0]],
    },
}

# inspect.signature of catalyst 22.4's dl.<name>, parameter names and defaults
# (ConfusionMatrixCallback: read from catalyst 22.04's source; dl hides it without matplotlib)
CATALYST_SIGNATURES = {
    "IOUCallback": [
        ("input_key", None),
        ("target_key", None),
        ("class_dim", 1),
        ("weights", None),
        ("class_names", None),
        ("threshold", None),
        ("log_on_batch", True),
        ("compute_per_class_metrics", False),
        ("prefix", None),
        ("suffix", None),
    ],
    "DiceCallback": [
        ("input_key", None),
        ("target_key", None),
        ("class_dim", 1),
        ("weights", None),
        ("class_names", None),
        ("threshold", None),
        ("log_on_batch", True),
        ("compute_per_class_metrics", False),
        ("prefix", None),
        ("suffix", None),
    ],
    "TrevskyCallback": [
        ("input_key", None),
        ("target_key", None),
        ("alpha", None),
        ("beta", None),
        ("class_dim", 1),
        ("weights", None),
        ("class_names", None),
        ("threshold", None),
        ("log_on_batch", True),
        ("compute_per_class_metrics", False),
        ("prefix", None),
        ("suffix", None),
    ],
    "R2SquaredCallback": [
        ("input_key", None),
        ("target_key", None),
        ("prefix", None),
        ("suffix", None),
    ],
    "CMCScoreCallback": [
        ("embeddings_key", None),
        ("labels_key", None),
        ("is_query_key", None),
        ("topk", None),
        ("prefix", None),
        ("suffix", None),
    ],
    "ReidCMCScoreCallback": [
        ("embeddings_key", None),
        ("pids_key", None),
        ("cids_key", None),
        ("is_query_key", None),
        ("topk", None),
        ("prefix", None),
        ("suffix", None),
    ],
    "HitrateCallback": [
        ("input_key", None),
        ("target_key", None),
        ("topk", None),
        ("log_on_batch", True),
        ("prefix", None),
        ("suffix", None),
    ],
    "MRRCallback": [
        ("input_key", None),
        ("target_key", None),
        ("topk", None),
        ("log_on_batch", True),
        ("prefix", None),
        ("suffix", None),
    ],
    "MAPCallback": [
        ("input_key", None),
        ("target_key", None),
        ("topk", None),
        ("log_on_batch", True),
        ("prefix", None),
        ("suffix", None),
    ],
    "ConfusionMatrixCallback": [
        ("input_key", None),
        ("target_key", None),
        ("prefix", None),
        ("class_names", None),
        ("num_classes", None),
        ("normalize", False),
        ("plot_params", None),
    ],
    "NDCGCallback": [
        ("input_key", None),
        ("target_key", None),
        ("topk", None),
        ("log_on_batch", True),
        ("prefix", None),
        ("suffix", None),
    ],
}


def _callbacks(family: str) -> list:
    if family == "segmentation":
        return [
            C.IOUCallback("logits", "targets", threshold=0.0, compute_per_class_metrics=True),
            C.DiceCallback("logits", "targets"),
            C.TrevskyCallback(
                "logits",
                "targets",
                alpha=0.3,
                threshold=0.0,
                weights=[0.2, 0.3, 0.5],
                class_names=["a", "b", "c"],
                prefix="t_",
            ),
        ]
    if family == "regression":
        return [C.R2SquaredCallback("logits", "targets", suffix="_x")]
    if family == "recsys":
        return [
            C.HitrateCallback("logits", "targets", topk=[1, 3]),
            C.MRRCallback("logits", "targets", topk=[1, 3]),
            C.MAPCallback("logits", "targets", topk=[3]),
            C.NDCGCallback("logits", "targets", topk=[1, 3], prefix="r_"),
        ]
    if family == "cmc":
        return [C.CMCScoreCallback("logits", "targets", "is_query", topk=[1, 3])]
    return [C.ConfusionMatrixCallback("logits", "targets", num_classes=4)]


def _run(family: str, callbacks: list) -> dict[str, Any]:
    model, loaders, criterion, optimizer = setup(family)
    runner = eventrunner.SupervisedRunner(
        input_key="features", output_key="logits", target_key="targets"
    )
    runner.train(
        model=model,
        criterion=criterion,
        optimizer=optimizer,
        loaders=loaders,
        callbacks=callbacks,
        num_epochs=1,
        verbose=False,
        console=False,
    )
    return runner.epoch_metrics


@pytest.mark.parametrize("family", ["segmentation", "regression", "recsys", "cmc"])
def test_run_matches_catalyst(family):
    epoch_metrics = _run(family, _callbacks(family))
    for loader, expected in CATALYST[family].items():
        ours = {k: v for k, v in epoch_metrics[loader].items() if not k.startswith("loss")}
        # the same keys as catalyst's loader: per-class batch values stay out of it
        assert sorted(ours) == sorted(expected), loader
        close({key: ours[key] for key in expected}, expected, loader)


def test_confusion_matrix_run_matches_catalyst():
    callback = C.ConfusionMatrixCallback("logits", "targets", num_classes=4)
    epoch_metrics = _run("confusion", [callback])
    close({key: value.tolist() for key, value in callback.matrices.items()}, CATALYST["confusion"])
    assert not any(key.startswith("confusion_matrix") for key in epoch_metrics["valid"])
    assert callback.prefix == "confusion_matrix"
    assert callback.class_names == ["class_00", "class_01", "class_02", "class_03"]


@pytest.mark.parametrize("name", sorted(CATALYST_SIGNATURES))
def test_signatures_are_catalysts(name):
    parameters = inspect.signature(getattr(C, name)).parameters.values()
    empty = inspect.Parameter.empty
    ours = [(p.name, None if p.default is empty else p.default) for p in parameters]
    assert ours == CATALYST_SIGNATURES[name]


def _batch(outputs: torch.Tensor, targets: torch.Tensor) -> dict:
    return {
        "output": {"logits": outputs},
        "batch": {"targets": targets},
        "batch_metrics": {},
        "loader_key": "valid",
    }


def test_segmentation_batch_and_loader_values_on_the_bus():
    callback = C.IOUCallback("logits", "targets", class_names=["a", "b"], weights=[0.5, 0.5])
    main, loader_part = callback.parts()
    assert main.order == Order.METRIC and loader_part.order == Order.METRIC_AGGREGATION + 1
    batch_keys = ("iou/a", "iou/b", "iou", "iou/_weighted")
    assert main.writes == {"batch_end": tuple(f"batch_metrics.{k}" for k in batch_keys)}
    loader_keys = ("iou/_micro", "iou", "iou/_macro", "iou/_weighted")
    assert loader_part.writes == {"loader_end": tuple(f"loader_metrics.{k}" for k in loader_keys)}
    g = torch.Generator().manual_seed(3)
    outputs = torch.rand(6, 2, 4, 4, generator=g)
    targets = (torch.rand(6, 2, 4, 4, generator=g) > 0.5).float()
    reference = M.IOUMetric(weights=[0.5, 0.5], class_names=["a", "b"])
    runner = fire(main, "loader_start", loader_key="valid")
    for part in (slice(0, 4), slice(4, 6)):
        fire(main, "batch_end", runner, **_batch(outputs[part], targets[part]))
        expected = reference.update_key_value(outputs[part], targets[part])
        close(runner.batch_metrics, {k: v.item() for k, v in expected.items()})
    runner.loader_metrics = {"iou/a": -1.0, "iou": -1.0, "loss": 2.0}  # the batch means
    fire(callback.parts(), "loader_end", runner)
    expected = {"loss": 2.0, **{k: v.item() for k, v in reference.compute_key_value().items()}}
    assert sorted(runner.loader_metrics) == sorted(expected)  # iou/a: batch-only in Catalyst
    close({k: runner.loader_metrics[k] for k in expected}, expected)


def test_cmc_refuses_ddp_and_reads_the_batch():
    callback = C.CMCScoreCallback("emb", "labels", "is_query")
    with pytest.raises(RuntimeError, match="DDP"):
        fire(callback, "experiment_start", ddp=True)
    assert callback.parts()[1].writes == {"loader_end": ("loader_metrics.cmc01",)}
    embeddings, labels = torch.eye(4), torch.tensor([0, 1, 0, 1])
    runner = fire(callback, "loader_start", loader_key="valid", loader_batch_len=1)
    fire(
        callback,
        "batch_end",
        runner,
        output={"emb": embeddings},
        batch={"labels": labels, "is_query": torch.tensor([1, 1, 0, 0])},
    )
    runner.loader_metrics = {}
    fire(callback.parts(), "loader_end", runner)
    # queries 0 and 1 are equally far from both gallery items: the order argsort gives decides
    reference = M.cmc_score(embeddings[:2], embeddings[2:], labels[2:] == labels[:2, None], 1)
    assert runner.loader_metrics == {"cmc01": reference}


def test_confusion_matrix_callback_arguments():
    with pytest.raises(ValueError, match="num_classes or class_names"):
        C.ConfusionMatrixCallback("logits", "targets")
    callback = C.ConfusionMatrixCallback(
        "logits", "targets", class_names=["x", "y"], num_classes=5, normalize=True
    )
    assert callback.num_classes == 2 and callback.confusion_matrix.normalize
    runner = fire(callback, "loader_start", loader_key="valid")
    fire(callback, "batch_end", runner, **_batch(torch.tensor([0, 1, 1]), torch.tensor([0, 1, 0])))
    fire(callback, "loader_end", runner)
    close(callback.matrices["valid"], [[0.5, 0.5], [0.0, 1.0]])
