"""Evaluation and prediction outside train(): ``evaluate_loader``, ``predict_loader`` and
``predict_batch`` run in eval mode without grad and leave the training state alone."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from eventrunner import Runner
from eventrunner.testing import (
    EventRecorder,
    RegressionRunner,
    make_loaders,
    regression_batches,
    regression_run,
)


def mode_recorder() -> EventRecorder:
    """Records the grad mode and the model's train/eval mode at each batch end."""
    return EventRecorder(
        events=["batch_end"],
        fields={
            "grad": lambda runner: torch.is_grad_enabled(),
            "training": lambda runner: runner.model.training,
        },
    )


def test_evaluate_loader_returns_metrics_without_training():
    model = nn.Linear(3, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    runner = RegressionRunner()
    regression_run(
        runner=runner, model=model, optimizer=optimizer, scheduler=scheduler, num_epochs=2
    )
    before = {k: v.clone() for k, v in model.state_dict().items()}
    lr = optimizer.param_groups[0]["lr"]

    data = make_loaders({"valid": [3, 1]})["valid"]
    recorder = mode_recorder()
    metrics = runner.evaluate_loader(data, callbacks=[recorder])
    with torch.no_grad():
        expected = (
            sum(((model(b["x"]) - b["y"]) ** 2).mean().item() * len(b["x"]) for b in data) / 4
        )
    assert metrics["loss"] == pytest.approx(expected)
    assert set(recorder.column("grad", "training")) == {(False, False)}
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key])
    assert optimizer.param_groups[0]["lr"] == lr  # evaluating does not step the scheduler


def test_evaluate_loader_with_another_model():
    runner = RegressionRunner()
    other = nn.Linear(3, 1)
    metrics = runner.evaluate_loader(make_loaders({"valid": [2]})["valid"], model=other)
    assert runner.model is other
    assert set(metrics) == {"loss"}


def test_predict_loader_yields_outputs_in_eval_mode_without_grad():
    model = nn.Linear(3, 1)
    model.train()
    seen: list[tuple[bool, bool]] = []

    class Probe(RegressionRunner):
        def handle_batch(self, batch):
            seen.append((torch.is_grad_enabled(), self.model.training))
            self.output = {"out": self.model(batch["x"])}

    data = make_loaders({"infer": [3, 2, 1]})["infer"]
    outputs = list(Probe().predict_loader(data, model=model))
    assert [o["out"].shape[0] for o in outputs] == [3, 2, 1]
    assert seen == [(False, False)] * 3
    with torch.no_grad():
        assert torch.allclose(outputs[1]["out"], model(data[1]["x"]))
    assert not outputs[0]["out"].requires_grad


def test_predict_batch():
    model = nn.Linear(3, 1)
    runner = RegressionRunner(model=model)
    (b,) = regression_batches(1)
    output = runner.predict_batch(b)
    assert torch.allclose(output["out"], model(b["x"]))
    assert not output["out"].requires_grad
    with pytest.raises(TypeError, match="dict batches"):
        runner.predict_batch(b["x"])  # a tuple or list would reach handle_batch as it is


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
