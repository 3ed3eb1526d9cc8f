# ruff: noqa
# fmt: off
"""A deterministic Catalyst 22.04 classification run; test_same_loss.py checks its losses.

Not from the Catalyst sources: written for this suite in Catalyst 22.04's API (the README's
multiclass example made deterministic): fixed data, no shuffle, CPU, 2 epochs, the seed set
right before the model is built. 100 samples in batches of 32 make the last batch 4 long, so
a batch-size-weighted loader mean and a plain mean of batch losses differ.
Writes ``epoch_losses.json`` ({loader: [loss per epoch]}) into the working folder.
"""

import json

import torch
from torch.utils.data import DataLoader, TensorDataset
from eventrunner import dl, utils

gen = torch.Generator().manual_seed(0)
num_samples, num_features, num_classes = 100, 10, 4
X = torch.rand(num_samples, num_features, generator=gen)
y = (X[:, :num_classes].argmax(dim=1) + (torch.rand(num_samples, generator=gen) > 0.8)) % num_classes
X_valid = torch.rand(60, num_features, generator=gen)
y_valid = X_valid[:, :num_classes].argmax(dim=1)
loaders = {
    "train": DataLoader(TensorDataset(X, y), batch_size=32, shuffle=False),
    "valid": DataLoader(TensorDataset(X_valid, y_valid), batch_size=32, shuffle=False),
}

utils.set_global_seed(42)
model = torch.nn.Linear(num_features, num_classes)
criterion = torch.nn.CrossEntropyLoss()
optimizer = torch.optim.Adam(model.parameters(), lr=0.05)


class EpochLosses(dl.Callback):
    """Keeps each epoch's loader losses."""

    def __init__(self):
        super().__init__(order=dl.CallbackOrder.External)
        self.losses = {"train": [], "valid": []}

    def on_epoch_end(self, runner):
        for loader in self.losses:
            self.losses[loader].append(float(runner.epoch_metrics[loader]["loss"]))


epoch_losses = EpochLosses()
runner = dl.SupervisedRunner(
    input_key="features", output_key="logits", target_key="targets", loss_key="loss"
)
runner.train(
    engine=dl.CPUEngine(),
    model=model,
    criterion=criterion,
    optimizer=optimizer,
    loaders=loaders,
    num_epochs=2,
    callbacks=[epoch_losses],
    valid_loader="valid",
    valid_metric="loss",
    minimize_valid_metric=True,
    verbose=False,
)
with open("epoch_losses.json", "w") as f:
    json.dump(epoch_losses.losses, f)
print(json.dumps(epoch_losses.losses))
