# ruff: noqa
# fmt: off
"""Catalyst 22.04 program, ported by changing imports (see README.md here).

Source: examples/notebooks/customizing_what_happens_in_train.ipynb, cells [4, 14] at v22.04.
"""

from eventrunner import dl, metrics, utils
# port: dropped `import catalyst` and the `catalyst.__version__` display line


import numpy as np
import torch
from torch.nn import functional as F
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
runner = dl.SupervisedRunner(  # `SupervisedRunner` works with any model like `some_output = model(some_input)`
    input_key="features",      # if your dataloader yields (x, y) tuple, it will be transformed to 
    output_key="logits",       # {input_key: x, target_key: y} and stored to runner.batch
    target_key="targets",      # then the model will be used like
    loss_key="loss",           # runner.batch[runner.output_key] = model(runner.batch[input_key])
)                              # loss computation suppose to looks like
                               # loss = criterion(runner.batch[runner.output_key], runner.batch[runner.target_key])
                               # and stored to `runner.batch_metrics[runner.loss_key]`

# thanks to prespecified `input_key`, `output_key`, `target_key` and `loss_key`
#   `SupervisedRunner` automatically adds required `CriterionCallback` and `OptimizerCallback`
# moreover, with specified `logdir`, `valid_loader` and `valid_metric`
#   `SupervisedRunner` automatically adds `CheckpointCallback` and tracks best performing based on selected metric
runner.train(
  model=model, 
  optimizer=optimizer,
  criterion=criterion,
  scheduler=None,
  loaders=loaders, 
  num_epochs=3,
  verbose=True,
  timeit=False,
  valid_loader="valid",        # `loader_key` from loaders to use for model selection
  valid_metric="loss",         # `metric_key` to use for model selection
  logdir="./logs_supervised",  # logdir to store models checkpoints
  callbacks={
#     "criterion_mse": dl.CriterionCallback(
#       input_key="logits",
#       target_key="targets",
#       metric_key="loss",
#     ),
    "criterion_mae": dl.FunctionalMetricCallback(
      input_key="logits",
      target_key="targets",
      metric_key="mae",
      metric_fn=F.l1_loss,
    ),
#     "optimizer": dl.OptimizerCallback(
#       metric_key="loss", 
#       accumulation_steps=1,
#       grad_clip_fn=None,
#       grad_clip_params=None,
#     )
  }
)
