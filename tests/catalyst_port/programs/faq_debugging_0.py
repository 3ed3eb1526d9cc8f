# ruff: noqa
# fmt: off
"""Catalyst 22.04 program, ported by changing imports (see README.md here).

Source: docs/faq/debugging.rst, code block 1 at v22.04.
"""

import os
import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader
from eventrunner import dl, metrics
# port: dropped `from catalyst.contrib.data import ToTensor`: no such name in catalyst 22.04
from _standins import MNIST  # port: no-download stand-in for catalyst.contrib.datasets

model = torch.nn.Linear(28 * 28, 10)
optimizer = torch.optim.Adam(model.parameters(), lr=0.02)

loaders = {
    "train": DataLoader(
        MNIST(os.getcwd(), train=True, download=True), batch_size=32  # port: dropped transform=ToTensor(): catalyst 22.04's MNIST takes no transform
    ),
    "valid": DataLoader(
        MNIST(os.getcwd(), train=False), batch_size=32
    ),
}

class CustomRunner(dl.Runner):

    def predict_batch(self, batch):
        # model inference step
        return self.model(batch[0].to(self.device).view(batch[0].size(0), -1))

    def handle_batch(self, batch):
        # model train/valid step
        x, y = batch
        y_hat = self.model(x.view(x.size(0), -1))

        # let's stop before metric computation, but after model forward pass
        # port: dropped `import ipdb; ipdb.set_trace()` (interactive)
        # <--- we will stop here --->
        loss = F.cross_entropy(y_hat, y)
        accuracy01, accuracy03 = metrics.accuracy(y_hat, y, topk=(1, 3))
        self.batch_metrics.update(
            {"loss": loss, "accuracy01": accuracy01, "accuracy03": accuracy03}
        )


        if self.is_train_loader:
            self.engine.backward(loss)
            self.optimizer.step()
            self.optimizer.zero_grad()

runner = CustomRunner()
# model training
runner.train(
    model=model,
    optimizer=optimizer,
    loaders=loaders,
    logdir="./logs",
    num_epochs=5,
    verbose=True,
    load_best_on_end=True,
)
