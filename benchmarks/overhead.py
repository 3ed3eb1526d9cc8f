"""Framework overhead: the same training through a hand-written loop and through eventrunner.

Train + valid every epoch, loss and top-1 accuracy, on in-memory dict batches of 32 samples.
Runs alternate between the two loops in one process; the medians of the per-batch times and
their ratio are printed for a small MLP (overhead dominates) and a larger one (compute does).

    python benchmarks/overhead.py [--reps 15] [--epochs 4] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

import eventrunner
from eventrunner import accuracy

WORKLOADS = {"small": (32, 64, 10), "large": (512, 2048, 10)}


def make_batches(features: int, classes: int, count: int, seed: int) -> list[dict]:
    generator = torch.Generator().manual_seed(seed)
    return [
        {
            "features": torch.randn(32, features, generator=generator),
            "targets": torch.randint(0, classes, (32,), generator=generator),
        }
        for _ in range(count)
    ]


def make_model(sizes: tuple[int, int, int]) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(sizes[0], sizes[1]), nn.ReLU(), nn.Linear(sizes[1], sizes[2]))


def plain_loop(model, train, valid, epochs: int) -> dict:
    """What a careful user writes by hand: same model, metrics and zero_grad placement."""
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    metrics = {}
    for _ in range(epochs):
        for name, batches, training in (("train", train, True), ("valid", valid, False)):
            model.train(training)
            loss_sum = acc_sum = count = 0.0
            with torch.set_grad_enabled(training):
                for batch in batches:
                    logits = model(batch["features"])
                    loss = criterion(logits, batch["targets"])
                    (acc,) = accuracy(logits, batch["targets"], topk=(1,))
                    if training:
                        loss.backward()
                        optimizer.step()
                        optimizer.zero_grad(set_to_none=True)
                    n = batch["features"].shape[0]
                    loss_sum += loss.item() * n
                    acc_sum += acc.item() * n
                    count += n
            metrics[name] = {"loss": loss_sum / count, "accuracy01": acc_sum / count}
    return metrics


class AccuracyRunner(eventrunner.SupervisedRunner):
    def handle_batch(self, batch):
        super().handle_batch(batch)
        (self.batch_metrics["accuracy01"],) = accuracy(
            self.output["logits"], batch["targets"], topk=(1,)
        )


def eventrunner_loop(model, train, valid, epochs: int) -> dict:
    runner = AccuracyRunner()
    runner.train(
        model=model,
        criterion=nn.CrossEntropyLoss(),
        optimizer=torch.optim.SGD(model.parameters(), lr=0.01),
        loaders={"train": train, "valid": valid},
        num_epochs=epochs,
        console=False,
        seed=None,
    )
    return runner.epoch_metrics


def measure(name: str, sizes, reps: int, epochs: int) -> None:
    train = make_batches(sizes[0], sizes[2], 64, seed=1)
    valid = make_batches(sizes[0], sizes[2], 16, seed=2)
    batches = epochs * (len(train) + len(valid))
    loops = {"plain": plain_loop, "eventrunner": eventrunner_loop}
    times: dict[str, list[float]] = {key: [] for key in loops}
    results = {}
    for key, loop in loops.items():  # warm-up, and the two must agree
        results[key] = loop(make_model(sizes), train, valid, 1)
    for _ in range(reps):
        for key, loop in loops.items():
            model = make_model(sizes)
            start = time.perf_counter()
            loop(model, train, valid, epochs)
            times[key].append((time.perf_counter() - start) / batches * 1e6)
    plain = statistics.median(times["plain"])
    ours = statistics.median(times["eventrunner"])
    paired = statistics.median(
        e / p for e, p in zip(times["eventrunner"], times["plain"], strict=True)
    )
    agree = all(
        abs(results["plain"][loader][m] - results["eventrunner"][loader][m]) < 1e-4
        for loader in ("train", "valid")
        for m in ("loss", "accuracy01")
    )
    print(
        f"{name:5s} MLP {sizes[0]}-{sizes[1]}-{sizes[2]}: plain {plain:7.1f} us/batch | "
        f"eventrunner {ours:7.1f} us/batch | ratio {ours / plain:.3f} (paired {paired:.3f}; "
        f"medians of {reps}; metrics agree: {agree})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--workloads", nargs="*", default=list(WORKLOADS))
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's own choice)"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for name in args.workloads:
        measure(name, WORKLOADS[name], args.reps, args.epochs)


if __name__ == "__main__":
    main()
