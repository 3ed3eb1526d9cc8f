# ruff: noqa
# fmt: off
"""Catalyst 22.04 program, ported by changing imports (see README.md here).

Source: examples/notebooks/customizing_what_happens_in_train.ipynb, cells [4, 12] at v22.04.
"""

from eventrunner import dl, metrics, utils
# port: dropped `import catalyst` and the `catalyst.__version__` display line


import numpy as np
import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset


class CustomRunner(dl.Runner):
    def handle_batch(self, batch):
        # Unpack the data. Its structure depends on your model and
        # on what you pass to `train()`.
        x, y = batch

        y_pred = self.model(x) # Forward pass

        # pass all batch-based artefacts to `self.batch`
        # we recommend to use key-value storage to make it Callbacks-friendly
        self.batch = {"features": x, "targets": y, "logits": y_pred}


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
  criterion=criterion,
  scheduler=None,
  loaders=loaders, 
  num_epochs=3,
  verbose=True,
  timeit=False,
  callbacks={
    # alias for 
    # `runner.batch_metrics[metric_key] = \
    #     runner.criterion[criterion_key](runner.batch[input_key], runner.batch[target_key])`
    "criterion": dl.CriterionCallback(  # special Callback for criterion computation
      input_key="logits",               # `input_key` specifies model predictions (`y_pred`) from `runner.batch`
      target_key="targets",             # `target_key` specifies correct labels (or `y_true`) from `runner.batch`       
      metric_key="loss",                # `metric_key` - key to use with `runner.batch_metrics`
      criterion_key=None,               # `criterion_key` specifies criterion in case of key-value runner.criterion
                                        #   if `criterion_key=None`, runner.criterion used for computation
    ), 
    # alias for 
    # `runner.batch_metrics[metric_key] = \
    #     metric_fn(runner.batch[input_key], runner.batch[target_key])`
    "metric": dl.FunctionalMetricCallback( # special Callback for metrics computation
      input_key="logits",                  # the same logic as with `CriterionCallback`
      target_key="targets",                # the same logic as with `CriterionCallback`
      metric_key="loss_mae",               # the same logic as with `CriterionCallback`
      metric_fn=F.l1_loss,                 # metric function to use
    ),  
    "backward": dl.BackwardCallback(metric_key="loss"),
    "optimizer": dl.OptimizerCallback(metric_key="loss", accumulation_steps=1)
  }
)
