# ruff: noqa
# fmt: off
"""Catalyst 22.04 program, ported by changing imports (see README.md here).

Source: examples/notebooks/customizing_what_happens_in_train.ipynb, cells [4, 16, 17, 19] at v22.04.
"""

from eventrunner import dl, metrics, utils
# port: dropped `import catalyst` and the `catalyst.__version__` display line


import torch
from torch.nn import functional as F

class CustomRunner(dl.Runner):
    def predict_batch(self, batch):                         # here is the trick
        return self.model(batch[0].to(self.engine.device))  # you can write any prediciton logic here

    # our first time example
    def on_loader_start(self, runner):
        super().on_loader_start(runner)
        self.meters = {
            key: metrics.AdditiveMetric(compute_on_call=False)
            for key in ["loss", "mae"]
        }

    def handle_batch(self, batch):
        # Unpack the data. Its structure depends on your model and
        # on what you pass to `train()`.
        x, y = batch

        y_pred = self.model(x) # Forward pass

        # Compute the loss value
        loss = F.mse_loss(y_pred, y)

        # Update metrics (includes the metric that tracks the loss)
        self.batch_metrics.update({"loss": loss, "mae": F.l1_loss(y_pred, y)})
        for key in ["loss", "mae"]:
            self.meters[key].update(self.batch_metrics[key].item(), self.batch_size)

        if self.is_train_loader:
            # Compute gradients
            loss.backward()
            # Update weights
            # (the optimizer is stored in `self.state`)
            self.optimizer.step()
            self.optimizer.zero_grad()
    
    def on_loader_end(self, runner):
        for key in ["loss", "mae"]:
            self.loader_metrics[key] = self.meters[key].compute()[0]
        super().on_loader_end(runner)


import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

# Construct custom data
num_samples, num_features = int(320), int(1e1)  # port: 1e4 samples -> 320 (runtime)
X, y = torch.rand(num_samples, num_features), torch.rand(num_samples, 1)
dataset = TensorDataset(X, y)
loader = DataLoader(dataset, batch_size=32, num_workers=1)
loaders = {"train": loader, "valid": loader}

# and model
model = torch.nn.Linear(num_features, 1)
criterion = torch.nn.MSELoss()
optimizer = torch.optim.Adam(model.parameters())

# Just use `train` as usual
runner = CustomRunner()
runner.train(
  model=model, 
  optimizer=optimizer, 
  loaders=loaders, 
  num_epochs=3,
  verbose=True,
  timeit=False,
  valid_loader="valid",   # `loader_key` from loaders to use for model selection
  valid_metric="loss",    # `metric_key` to use for model selection
  minimize_valid_metric=True,
  load_best_on_end=True,  # flag to load best model at the end of the training process
  logdir="./logs",        # logdir to store models checkpoints (required for `load_best_on_end`)
)
# and use `batch` prediciton
prediction = runner.predict_batch(next(iter(loader))) # let's sample first batch from loader
# or `loader` prediction
for prediction in runner.predict_loader(loader=loader):
    assert prediction.detach().cpu().numpy().shape[-1] == 1 # as we have 1-class regression


features_batch = next(iter(loaders["valid"]))[0].to(runner.engine.device)
# model tracing
utils.trace_model(model=runner.model, batch=features_batch)
# model quantization
utils.quantize_model(model=runner.model)
# model pruning
utils.prune_model(model=runner.model, pruning_fn="l1_unstructured", amount=0.8)
# onnx export, catalyst[onnx] or catalyst[onnx-gpu] required
# utils.onnx_export(model=runner.model, batch=features_batch, file="./logs/mnist.onnx", verbose=True)
