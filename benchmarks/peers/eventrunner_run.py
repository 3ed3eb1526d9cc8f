"""eventrunner: ``SupervisedRunner`` + ``runner.train(...)``, the Catalyst-style call.

Top-1 accuracy is added to ``batch_metrics`` in ``handle_batch`` (SPEC §1, §4): eventrunner
aggregates it, and the loss, over each loader pass by itself. No logdir, ``verbose=False``, every
other argument at its default (prefetch included: it is part of what is measured).
"""

from __future__ import annotations

import time

import workloads

import eventrunner

FRAMEWORK = "eventrunner"


def versions() -> dict:
    import torch

    try:
        from importlib.metadata import version

        v = version("eventrunner")
    except Exception:  # not installed as a distribution (plain checkout on sys.path)
        v = getattr(eventrunner, "__version__", "checkout")
    return {"eventrunner": v, "torch": torch.__version__}


class AccuracyRunner(eventrunner.SupervisedRunner):
    def handle_batch(self, batch):
        super().handle_batch(batch)
        self.batch_metrics.update(
            accuracy01=eventrunner.accuracy(
                self.output["logits"], self.batch["targets"], topk=(1,)
            )[0]
        )


def run(workload_name: str, epochs: int | None = None) -> dict:
    w = workloads.build(workload_name, epochs)
    runner = AccuracyRunner(
        input_key="features", output_key="logits", target_key="targets", loss_key="loss"
    )
    t = time.perf_counter()
    runner.train(
        model=w.model,
        criterion=w.criterion,
        optimizer=w.optimizer,
        loaders={"train": w.train_loader, "valid": w.valid_loader},
        num_epochs=w.epochs,
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
