"""PyTorch Ignite: ``create_supervised_trainer`` / ``create_supervised_evaluator``.

The evaluator carries ``Loss`` and ``Accuracy`` metrics and runs on the valid loader at every
``EPOCH_COMPLETED`` of the trainer (the pattern of Ignite's own examples). The train-side loss and
accuracy come from metrics attached to the trainer itself (``Average`` of the step's loss and
``Accuracy`` of its predictions), so no extra pass over the train data is made: the same work as
the other frameworks.
"""

from __future__ import annotations

import time

import ignite
import workloads
from ignite.engine import Events, create_supervised_evaluator, create_supervised_trainer
from ignite.metrics import Accuracy, Average, Loss

FRAMEWORK = "ignite"


def versions() -> dict:
    import torch

    return {"pytorch-ignite": ignite.__version__, "torch": torch.__version__}


def _train_output(x, y, y_pred, loss):
    return {"y_pred": y_pred.detach(), "y": y, "loss": loss.item()}


def run(workload_name: str, epochs: int | None = None) -> dict:
    w = workloads.build(workload_name, epochs)
    trainer = create_supervised_trainer(
        w.model, w.optimizer, w.criterion, device="cpu", output_transform=_train_output
    )
    Average(output_transform=lambda out: out["loss"]).attach(trainer, "loss")
    Accuracy(output_transform=lambda out: (out["y_pred"], out["y"])).attach(trainer, "accuracy")
    evaluator = create_supervised_evaluator(
        w.model, metrics={"loss": Loss(w.criterion), "accuracy": Accuracy()}, device="cpu"
    )

    @trainer.on(Events.EPOCH_COMPLETED)
    def _validate(engine):
        evaluator.run(w.valid_loader)

    t = time.perf_counter()
    trainer.run(w.train_loader, max_epochs=w.epochs)
    fit_s = time.perf_counter() - t
    tm, vm = trainer.state.metrics, evaluator.state.metrics
    return workloads.result(
        w,
        valid_loss=vm["loss"],
        valid_acc=vm["accuracy"],
        train_loss=tm["loss"],
        train_acc=tm["accuracy"],
        fit_s=fit_s,
    )
