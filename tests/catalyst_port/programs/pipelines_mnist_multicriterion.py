# ruff: noqa
# fmt: off
"""Catalyst 22.04 program, ported by changing imports (see README.md here).

Source: tests/pipelines/test_mnist_multicriterion.py (train_experiment, CPU) at v22.04.
"""

# flake8: noqa
import os
from pathlib import Path
from tempfile import TemporaryDirectory

# port: dropped `from pytest import mark` (no pytest tests here)

import torch
from torch import nn, optim
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn import functional as F
from torch.utils.data import DataLoader

from eventrunner import dl, metrics
from _standins import MNIST  # port: no-download stand-in for catalyst.contrib.datasets
from eventrunner.catalyst.settings import IS_CUDA_AVAILABLE, NUM_CUDA_DEVICES, SETTINGS
DATA_ROOT = os.getcwd()  # port: was tests.DATA_ROOT (the stand-ins ignore it)
# port: dropped `from tests.misc import run_experiment_from_configs` (Config API not ported)


class CustomRunner(dl.Runner):
    def predict_batch(self, batch):
        # model inference step
        return self.model(batch[0].to(self.device))

    def on_loader_start(self, runner):
        super().on_loader_start(runner)
        self.meters = {
            key: metrics.AdditiveMetric(compute_on_call=False)
            for key in ["loss", "accuracy01", "accuracy03"]
        }

    def handle_batch(self, batch):
        # model train/valid step
        # unpack the batch
        x, y = batch
        # run model forward pass
        logits = self.model(x)
        # <--- multi-criterion usage --->
        # compute the loss
        loss_multiclass = self.criterion["multiclass"](logits, y)
        loss_multilabel = self.criterion["multilabel"](
            logits, F.one_hot(y, 10).to(torch.float32)
        )
        loss = loss_multiclass + loss_multilabel
        # <--- multi-criterion usage --->
        # compute other metrics of interest
        accuracy01, accuracy03 = metrics.accuracy(logits, y, topk=(1, 3))
        # log metrics
        self.batch_metrics.update(
            {"loss": loss, "accuracy01": accuracy01, "accuracy03": accuracy03}
        )
        for key in ["loss", "accuracy01", "accuracy03"]:
            self.meters[key].update(self.batch_metrics[key].item(), self.batch_size)
        # run model backward pass
        if self.is_train_loader:
            self.engine.backward(loss)
            self.optimizer.step()
            self.optimizer.zero_grad()

    def on_loader_end(self, runner):
        for key in ["loss", "accuracy01", "accuracy03"]:
            self.loader_metrics[key] = self.meters[key].compute()[0]
        super().on_loader_end(runner)


def train_experiment(engine=None):
    with TemporaryDirectory() as logdir:

        model = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 10))
        optimizer = optim.Adam(model.parameters(), lr=0.02)
        # <--- multi-criterion setup --->
        criterion = {
            "multiclass": nn.CrossEntropyLoss(),
            "multilabel": nn.BCEWithLogitsLoss(),
        }
        # <--- multi-criterion setup --->

        loaders = {
            "train": DataLoader(
                MNIST(DATA_ROOT, train=True),
                batch_size=32,
            ),
            "valid": DataLoader(
                MNIST(DATA_ROOT, train=False),
                batch_size=32,
            ),
        }

        runner = CustomRunner()
        # model training
        runner.train(
            engine=engine,
            model=model,
            criterion=criterion,
            optimizer=optimizer,
            loaders=loaders,
            logdir=logdir,
            num_epochs=1,
            verbose=False,
            valid_loader="valid",
            valid_metric="loss",
            minimize_valid_metric=True,
        )


train_experiment(dl.CPUEngine())  # port: the CPU test path (test_run_on_cpu)
