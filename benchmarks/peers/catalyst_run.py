"""Catalyst 22.4: ``dl.SupervisedRunner`` + ``runner.train(...)`` with an ``AccuracyCallback``.

No logdir (so no checkpoint, CSV or TensorBoard logger), ``verbose=False`` (no tqdm bar). Catalyst
always adds its console logger, which prints one line per loader per epoch: that is left as it is,
as a user gets it. Catalyst reseeds the global RNGs at set-up and every epoch (``seed=``);
the shuffle
of the train loader has its own generator, so the batch order is still the same as everyone's.
"""

from __future__ import annotations

import time

import catalyst
import workloads
from catalyst import dl

FRAMEWORK = "catalyst"


def versions() -> dict:
    import accelerate
    import torch

    return {
        "catalyst": catalyst.__version__,
        "accelerate": accelerate.__version__,
        "torch": torch.__version__,
    }


def run(workload_name: str, epochs: int | None = None) -> dict:
    w = workloads.build(workload_name, epochs)
    runner = dl.SupervisedRunner(
        input_key="features", output_key="logits", target_key="targets", loss_key="loss"
    )
    t = time.perf_counter()
    runner.train(
        model=w.model,
        criterion=w.criterion,
        optimizer=w.optimizer,
        loaders={"train": w.train_loader, "valid": w.valid_loader},
        callbacks=[dl.AccuracyCallback(input_key="logits", target_key="targets", topk=(1,))],
        num_epochs=w.epochs,
        valid_loader="valid",
        valid_metric="loss",
        minimize_valid_metric=True,
        seed=workloads.SEED,
        verbose=False,
    )
    fit_s = time.perf_counter() - t
    m = runner.epoch_metrics
    return workloads.result(
        w,
        valid_loss=m["valid"]["loss"],
        valid_acc=m["valid"]["accuracy01"],
        train_loss=m["train"]["loss"],
        train_acc=m["train"]["accuracy01"],
        fit_s=fit_s,
    )
