"""``SupervisedRunner``'s key mapping (SPEC 1): tuples to dicts, input/output/target/loss keys."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from eventrunner import Callback, SupervisedRunner
from eventrunner.testing import EventRecorder


def batch_recorder() -> EventRecorder:
    """Keeps the batch, the output and the batch metrics of every batch."""
    return EventRecorder(events=["batch_end"], fields=["batch", "output", "batch_metrics"])


def pairs(n: int = 3, size: int = 4, container: type = tuple) -> list[Any]:
    return [container((torch.randn(size, 3), torch.randint(0, 2, (size,)))) for _ in range(n)]


def train(
    runner: SupervisedRunner,
    loaders: dict[str, Any],
    model: nn.Module,
    criterion: Any = None,
    **kw: Any,
) -> EventRecorder:
    recorder = batch_recorder()
    runner.train(
        model=model,
        criterion=criterion if criterion is not None else nn.CrossEntropyLoss(),
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        loaders=loaders,
        callbacks=[recorder],
        console=False,
        **kw,
    )
    return recorder


@pytest.mark.parametrize("container", [tuple, list])
def test_pairs_become_dicts(container):
    data = pairs(container=container)
    model = nn.Linear(3, 2)
    before = model.weight.detach().clone()
    recorder = train(SupervisedRunner(), {"train": data, "valid": pairs(1)}, model)
    first = recorder.column("batch")[0]
    # As in Catalyst 22, runner.batch holds the model's outputs next to the inputs.
    assert list(first) == ["features", "targets", "logits"]
    assert first["features"] is data[0][0] and first["targets"] is data[0][1]
    assert list(recorder.column("output")[0]) == ["logits"]
    assert first["logits"] is recorder.column("output")[0]["logits"]
    assert recorder.column("output")[0]["logits"].shape == (4, 2)
    assert not torch.equal(model.weight, before)  # trained on the "loss" key


def test_dataloader_of_a_tensor_dataset():
    dataset = TensorDataset(torch.randn(10, 3), torch.randint(0, 2, (10,)))
    model = nn.Linear(3, 2)
    runner = SupervisedRunner()
    recorder = train(runner, {"train": DataLoader(dataset, batch_size=4)}, model)
    assert [b["features"].shape[0] for b in recorder.column("batch")] == [4, 4, 2]
    assert runner.sample_step == 10
    assert "loss" in runner.epoch_metrics["train"]


def test_custom_keys():
    model = nn.Linear(3, 2)
    runner = SupervisedRunner(input_key="x", output_key="scores", target_key="y", loss_key="ce")
    before = model.weight.detach().clone()
    recorder = train(runner, {"train": pairs(2)}, model)
    assert list(recorder.column("batch")[0]) == ["x", "y", "scores"]
    assert list(recorder.column("output")[0]) == ["scores"]
    first_metrics = recorder.column("batch_metrics")[0]
    assert "ce" in first_metrics and "loss" not in first_metrics
    assert not torch.equal(model.weight, before)  # backward used loss_key="ce"
    assert "ce" in runner.epoch_metrics["train"]


@pytest.mark.parametrize("length", [1, 3])
def test_wrong_tuple_length(length):
    batch = tuple(torch.randn(4, 3) for _ in range(length))
    with pytest.raises(ValueError, match=rf"{length} elements.*expected 2") as info:
        train(SupervisedRunner(), {"train": [batch]}, nn.Linear(3, 2))
    assert "'train'" in str(info.value)


@pytest.mark.parametrize("input_key", [["features", "extra"], None])
def test_tuples_refused_without_a_single_input_key(input_key):
    runner = SupervisedRunner(input_key=input_key)
    with pytest.raises(ValueError, match="dict batches"):
        train(runner, {"train": pairs(1)}, nn.Linear(3, 2))


class TwoInputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(3, 2)
        self.b = nn.Linear(2, 2)

    def forward(self, features: torch.Tensor, extra: torch.Tensor) -> torch.Tensor:
        return self.a(features) + self.b(extra)


def dict_batches(n: int = 2, with_extra: bool = True) -> list[dict[str, torch.Tensor]]:
    out = []
    for _ in range(n):
        batch = {"features": torch.randn(4, 3), "targets": torch.randint(0, 2, (4,))}
        if with_extra:
            batch["extra"] = torch.randn(4, 2)
        out.append(batch)
    return out


def test_list_input_key_calls_model_with_those_keys():
    model = TwoInputs()
    runner = SupervisedRunner(input_key=["features", "extra"])
    data = dict_batches()
    recorder = train(runner, {"valid": data}, model)
    with torch.no_grad():
        expected = model(features=data[0]["features"], extra=data[0]["extra"])
    assert torch.allclose(recorder.column("output")[0]["logits"], expected)


def test_none_input_key_calls_model_with_the_whole_batch():
    class Everything(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(3, 2)
            self.got: list[str] = []

        def forward(self, **batch):
            self.got = list(batch)
            return self.lin(batch["features"])

    model = Everything()
    train(SupervisedRunner(input_key=None), {"train": dict_batches()}, model)
    assert model.got == ["features", "targets", "extra"]


class TwoOutputs(nn.Module):
    def __init__(self, n_out: int = 2) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 2)
        self.n_out = n_out

    def forward(self, features: torch.Tensor) -> Any:
        logits = self.lin(features)
        return tuple(logits * (i + 1) for i in range(self.n_out))


def test_list_output_key_names_a_tuple_and_loss_uses_the_first():
    seen: list[torch.Tensor] = []

    def criterion(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        seen.append(logits)
        return nn.functional.cross_entropy(logits, targets)

    runner = SupervisedRunner(output_key=["logits", "doubled"])
    recorder = train(runner, {"train": dict_batches(1, with_extra=False)}, TwoOutputs(), criterion)
    output = recorder.column("output")[0]
    assert list(output) == ["logits", "doubled"]
    assert torch.allclose(output["doubled"], output["logits"] * 2)
    assert seen[0] is output["logits"]


@pytest.mark.parametrize("n_out", [1, 3])
def test_list_output_key_checks_the_tuple_length(n_out):
    runner = SupervisedRunner(output_key=["logits", "doubled"])
    with pytest.raises(ValueError, match=rf"tuple of 2.*got {n_out}"):
        train(runner, {"train": dict_batches(1, with_extra=False)}, TwoOutputs(n_out))


def test_list_output_key_refuses_a_single_tensor():
    runner = SupervisedRunner(output_key=["logits", "doubled"])
    with pytest.raises(ValueError, match=r"tuple of 2.*Tensor"):
        train(runner, {"train": dict_batches(1, with_extra=False)}, nn.Linear(3, 2))


def test_none_output_key_expects_a_dict():
    class DictModel(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(3, 2)

        def forward(self, features):
            logits = self.lin(features)
            return {"logits": logits, "probs": logits.softmax(-1)}

    seen: list[torch.Tensor] = []

    def criterion(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        seen.append(logits)
        return nn.functional.cross_entropy(logits, targets)

    runner = SupervisedRunner(output_key=None)
    recorder = train(runner, {"train": dict_batches(1, with_extra=False)}, DictModel(), criterion)
    assert set(recorder.column("output")[0]) == {"logits", "probs"}
    assert seen[0] is recorder.column("output")[0]["logits"]  # the loss reads "logits"

    with pytest.raises(TypeError, match="dict"):
        train(SupervisedRunner(output_key=None), {"train": dict_batches(1)}, nn.Linear(3, 2))


def test_no_criterion_no_loss():
    runner = SupervisedRunner()
    model = nn.Linear(3, 2)
    recorder = batch_recorder()
    runner.train(model=model, loaders={"valid": pairs(2)}, callbacks=[recorder], console=False)
    assert recorder.column("batch_metrics")[0] == {}
    assert runner.epoch_metrics["valid"] == {}


def test_bad_keys_are_refused():
    with pytest.raises(TypeError, match="input_key"):
        SupervisedRunner(input_key=3)
    with pytest.raises(TypeError, match="output_key"):
        SupervisedRunner(output_key=[1, 2])


def test_predict_batch_maps_a_tuple():
    model = nn.Linear(3, 2)
    runner = SupervisedRunner(model=model)
    x = torch.randn(5, 3)
    output = runner.predict_batch((x, torch.zeros(5, dtype=torch.long)))
    assert torch.allclose(output["logits"], model(x))
    assert not output["logits"].requires_grad


def test_the_criterion_has_no_forward_hook_while_a_criterion_callback_computes_the_loss() -> None:
    # SupervisedRunner's loss comes from its CriterionCallback; the loss capture for Catalyst's
    # handle_batch that does not store its loss must not stay hooked on the criterion, which
    # puts every criterion call on nn.Module's slow path.
    criterion = nn.CrossEntropyLoss()
    hooks_seen: list[int] = []

    class Watch(Callback):
        def on_batch_end(self, runner: Any) -> None:
            hooks_seen.append(len(criterion._forward_hooks))

    model = nn.Linear(3, 2)
    runner = SupervisedRunner()
    runner.train(
        model=model,
        criterion=criterion,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        loaders={"train": pairs(4)},
        callbacks=[Watch()],
        console=False,
    )
    assert "loss" in runner.epoch_metrics["train"]
    assert hooks_seen == [0, 0, 0, 0]
