"""What the progress bar costs: the same eventrunner training with the bar off and on.

Small workload (MLP 32-64-10, batches of 32, in-memory dict batches): per-batch overhead
shows most there. Runs alternate between the variants in one process; medians of the
per-batch times and their ratios are printed. The bar draws to ``os.devnull`` (a file that
is not a terminal, so tqdm formats and writes as it would into a log); ``--stderr`` draws it
on the terminal instead. "redraw every batch" shows what the 0.1 s throttle saves.

    python benchmarks/progress_overhead.py [--reps 9] [--epochs 4]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from types import SimpleNamespace

import torch
from torch import nn

import eventrunner
from plugins import ProgressBarCallback

SIZES = (32, 64, 10)


def make_batches(count: int, seed: int) -> list[dict]:
    generator = torch.Generator().manual_seed(seed)
    return [
        {
            "features": torch.randn(32, SIZES[0], generator=generator),
            "targets": torch.randint(0, SIZES[2], (32,), generator=generator),
        }
        for _ in range(count)
    ]


def make_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(SIZES[0], SIZES[1]), nn.ReLU(), nn.Linear(SIZES[1], SIZES[2]))


def train(train_batches, valid_batches, epochs: int, bar: ProgressBarCallback | None) -> None:
    model = make_model()
    eventrunner.SupervisedRunner().train(
        model=model,
        criterion=nn.CrossEntropyLoss(),
        optimizer=torch.optim.SGD(model.parameters(), lr=0.01),
        loaders={"train": train_batches, "valid": valid_batches},
        num_epochs=epochs,
        callbacks=[bar] if bar is not None else [],
        console=False,
        seed=None,
    )


def per_call_us(sink, calls: int = 200_000) -> float:
    """The bar's own ``on_batch_end``, called alone on a stand-in runner (no training)."""
    runner = SimpleNamespace(
        epoch_step=1,
        num_epochs=1,
        loader_key="train",
        loader_batch_len=calls,
        batch_metrics={"loss": 0.5},
        loader_metrics={},
        callbacks=[],
    )
    bar = ProgressBarCallback(file=sink)
    bar.on_experiment_start(runner)
    bar.on_loader_start(runner)
    on_batch_end = bar.on_batch_end
    start = time.perf_counter()
    for _ in range(calls):
        on_batch_end(runner)
    elapsed = time.perf_counter() - start
    bar.on_experiment_end(runner)
    return elapsed / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=9)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--stderr", action="store_true", help="draw the bar on stderr")
    args = parser.parse_args()
    torch.set_num_threads(1)
    sink = sys.stderr if args.stderr else open(os.devnull, "w")  # noqa: SIM115 - whole run
    train_batches, valid_batches = make_batches(128, seed=1), make_batches(32, seed=2)
    batches = args.epochs * (len(train_batches) + len(valid_batches))
    variants = {
        "off": lambda: None,
        "on": lambda: ProgressBarCallback(file=sink),
        "redraw every batch": lambda: ProgressBarCallback(file=sink, refresh_seconds=0),
    }
    for make in variants.values():  # warm-up
        train(train_batches, valid_batches, 1, make())
    wall: dict[str, list[float]] = {name: [] for name in variants}
    cpu: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    for rep in range(args.reps):
        for name in names[rep % 3 :] + names[: rep % 3]:  # rotate: no variant always goes first
            bar = variants[name]()
            start, start_cpu = time.perf_counter(), time.process_time()
            train(train_batches, valid_batches, args.epochs, bar)
            wall[name].append((time.perf_counter() - start) / batches * 1e6)
            cpu[name].append((time.process_time() - start_cpu) / batches * 1e6)
    for label, times in (("wall", wall), ("cpu", cpu)):
        off = statistics.median(times["off"])
        on = statistics.median(times["on"])
        every = statistics.median(times["redraw every batch"])
        # The median of the per-round ratios pairs runs made moments apart (noise cancels).
        paired = statistics.median(a / b for a, b in zip(times["on"], times["off"], strict=True))
        print(
            f"progress bar ({label} time), MLP {SIZES[0]}-{SIZES[1]}-{SIZES[2]} batch 32 "
            f"in-memory: off {off:.1f} us/batch | on {on:.1f} us/batch | ratio {on / off:.3f} "
            f"(paired {paired:.3f}; target <= 1.03) | redraw every batch {every:.1f} us/batch, "
            f"ratio {every / off:.3f} (medians of {args.reps} interleaved runs, "
            f"{batches} batches each)"
        )
    print(f"progress bar on_batch_end alone: {per_call_us(sink):.2f} us/call (redraws included)")


if __name__ == "__main__":
    main()
