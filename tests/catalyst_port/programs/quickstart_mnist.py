# ruff: noqa
# fmt: off
"""Catalyst 22.04 program, ported by changing imports (see README.md here).

Source: docs/getting_started/quickstart.rst (steps 2-7, in order) at v22.04.
"""

import os
from torch import nn, optim
from torch.utils.data import DataLoader
from eventrunner import dl, utils
from _standins import MNIST  # port: no-download stand-in for catalyst.contrib.datasets

model = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 10))
criterion = nn.CrossEntropyLoss()
optimizer = optim.Adam(model.parameters(), lr=0.02)

loaders = {
    "train": DataLoader(MNIST(os.getcwd(), train=True), batch_size=32),
    "valid": DataLoader(MNIST(os.getcwd(), train=False), batch_size=32),
}

class CustomRunner(dl.Runner):

    def predict_batch(self, batch):
        # model inference step
        return self.model(batch[0].to(self.engine.device))

    def handle_batch(self, batch):
        # model train/valid step
        x, y = batch
        logits = self.model(x)
        self.batch = {"features": x, "targets": y, "logits": logits}

runner = CustomRunner()

# model training
runner.train(
    model=model,
    criterion=criterion,
    optimizer=optimizer,
    loaders=loaders,
    logdir="./logs",
    num_epochs=5,
    verbose=True,
    callbacks=[
        dl.AccuracyCallback(input_key="logits", target_key="targets", topk=(1, 3)),
        dl.PrecisionRecallF1SupportCallback(
            input_key="logits", target_key="targets", num_classes=10
        ),
        dl.CriterionCallback(input_key="logits", target_key="targets", metric_key="loss"),
        dl.BackwardCallback(metric_key="loss"),
        dl.OptimizerCallback(metric_key="loss"),
        dl.CheckpointCallback(
            "./logs", loader_key="valid", metric_key="loss", minimize=True, topk=3
        ),
    ]
)

# model evaluation
metrics = runner.evaluate_loader(
    loader=loaders["valid"],
    callbacks=[dl.AccuracyCallback(input_key="logits", target_key="targets", topk=(1, 3, 5))],
)

# model batch inference
features_batch = next(iter(loaders["valid"]))[0]
prediction_batch = runner.predict_batch(features_batch)
# model loader inference
for prediction in runner.predict_loader(loader=loaders["valid"]):
    assert prediction.detach().cpu().numpy().shape[-1] == 10

model = runner.model.cpu()
batch = next(iter(loaders["valid"]))[0]
# model tracing
utils.trace_model(model=model, batch=batch)
# model quantization
utils.quantize_model(model=model)
# model pruning
utils.prune_model(model=model, pruning_fn="l1_unstructured", amount=0.8)
# onnx export
utils.onnx_export(model=model, batch=batch, file="./logs/mnist.onnx", verbose=True)
