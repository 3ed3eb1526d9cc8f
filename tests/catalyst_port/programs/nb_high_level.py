# ruff: noqa
# fmt: off
"""Catalyst 22.04 program, ported by changing imports (see README.md here).

Source: examples/notebooks/customizing_what_happens_in_train.ipynb, cells [4, 10] at v22.04.
"""

from eventrunner import dl, metrics, utils
# port: dropped `import catalyst` and the `catalyst.__version__` display line


import numpy as np
import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset


class CustomRunner(dl.Runner):
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
        # (the criterion is stored in `self.state` also)
        loss = self.criterion(y_pred, y)

        # Update metrics (includes the metric that tracks the loss)
        self.batch_metrics.update({"loss": loss, "mae": F.l1_loss(y_pred, y)})
        for key in ["loss", "mae"]:
            self.meters[key].update(self.batch_metrics[key].item(), self.batch_size)

    def on_loader_end(self, runner):
        for key in ["loss", "mae"]:
            self.loader_metrics[key] = self.meters[key].compute()[0]
        super().on_loader_end(runner)


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
  criterion=criterion,       # you could also pass any PyTorch criterion for loss computation
  scheduler=None,            # or scheduler, but let's simplify the train loop for now :)
  loaders=loaders, 
  num_epochs=3,
  verbose=True,
  timeit=False,
  callbacks={
    "backward": dl.BackwardCallback(
      metric_key="loss",     
      grad_clip_fn=None,     # or you can use `grad_clip_fn=nn.utils.clip_grad_norm_`
      grad_clip_params=None, #   with `grad_clip_params={max_norm=1, norm_type=2}`
                             # or `grad_clip_fn=nn.utils.clip_grad_value_`
                             #   with `grad_clip_params={clip_value=1}`
                             # for gradient clipping during training!
                             # for more information about gradient clipping please follow pytorch docs
                             # https://pytorch.org/docs/stable/nn.html#clip-grad-norm
    ),
    "optimizer": dl.OptimizerCallback(
      metric_key="loss",     # you can also pass 'mae' to optimize it instead
                             # generaly, you can optimize any differentiable metric from `runner.batch_metrics`
      accumulation_steps=1,  # also you can pass any number of steps for gradient accumulation

    )
  }
)
