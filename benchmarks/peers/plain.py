"""The reference: a hand-written PyTorch loop, as a careful user would write it.

Loss and correct counts are summed on the device and turned into Python floats once per loader
pass (no per-batch ``.item()``), gradients are cleared with ``set_to_none``.
"""

from __future__ import annotations

import time

import torch
import workloads

FRAMEWORK = "plain"


def versions() -> dict:
    return {"torch": torch.__version__}


def _run_loader(model, criterion, optimizer, loader, train: bool):
    model.train(train)
    loss_sum = torch.zeros(())
    correct = torch.zeros((), dtype=torch.long)
    n = 0
    with torch.set_grad_enabled(train):
        for x, y in loader:
            logits = model(x)
            loss = criterion(logits, y)
            if train:
                loss.backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            bs = y.shape[0]
            loss_sum += loss.detach() * bs
            correct += (logits.argmax(dim=1) == y).sum()
            n += bs
    return loss_sum.item() / n, correct.item() / n


def run(workload_name: str, epochs: int | None = None) -> dict:
    w = workloads.build(workload_name, epochs)
    model, criterion, optimizer = w.model, w.criterion, w.optimizer
    t = time.perf_counter()
    for _ in range(w.epochs):
        train_loss, train_acc = _run_loader(model, criterion, optimizer, w.train_loader, True)
        valid_loss, valid_acc = _run_loader(model, criterion, optimizer, w.valid_loader, False)
    fit_s = time.perf_counter() - t
    return workloads.result(
        w,
        valid_loss=valid_loss,
        valid_acc=valid_acc,
        train_loss=train_loss,
        train_acc=train_acc,
        fit_s=fit_s,
    )
