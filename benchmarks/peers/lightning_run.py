"""Lightning: a ``LightningModule`` and ``Trainer.fit`` with logging, checkpointing, progress bar
and
model summary off, on the CPU accelerator.

Loss and accuracy go through ``self.log(..., on_epoch=True)`` in ``training_step`` and
``validation_step``; Lightning averages them over the epoch (weighted by batch size) and leaves them
in ``trainer.callback_metrics``. Everything else is left at Lightning's defaults (the sanity-check
of 2 validation batches before training included).
"""

from __future__ import annotations

import logging
import time
import warnings

import lightning
import lightning.pytorch as pl
import workloads

FRAMEWORK = "lightning"


def versions() -> dict:
    import torch

    return {"lightning": lightning.__version__, "torch": torch.__version__}


class LitClassifier(pl.LightningModule):
    def __init__(self, net, criterion, optimizer):
        super().__init__()
        self.net = net
        self.criterion = criterion
        self._optimizer = optimizer

    def forward(self, x):
        return self.net(x)

    def _step(self, batch, stage: str):
        x, y = batch
        logits = self(x)
        loss = self.criterion(logits, y)
        acc = (logits.argmax(dim=1) == y).float().mean()
        self.log(f"{stage}_loss", loss, on_step=False, on_epoch=True)
        self.log(f"{stage}_acc", acc, on_step=False, on_epoch=True)
        return loss

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, "valid")

    def configure_optimizers(self):
        return self._optimizer


def run(workload_name: str, epochs: int | None = None) -> dict:
    warnings.filterwarnings("ignore", module="lightning")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    w = workloads.build(workload_name, epochs)
    module = LitClassifier(w.model, w.criterion, w.optimizer)
    t = time.perf_counter()
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=w.epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, train_dataloaders=w.train_loader, val_dataloaders=w.valid_loader)
    fit_s = time.perf_counter() - t
    m = trainer.callback_metrics
    return workloads.result(
        w,
        valid_loss=m["valid_loss"],
        valid_acc=m["valid_acc"],
        train_loss=m["train_loss"],
        train_acc=m["train_acc"],
        fit_s=fit_s,
    )
