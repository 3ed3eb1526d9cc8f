"""What background checkpoint saving buys: epoch time with a large model (hundreds of MB of
state: weights + SGD momentum) when each epoch's checkpoint is written inline vs on a thread
while the next epoch trains. Runs without checkpoints give the floor.

Two workloads: ``cpu`` trains on the CPU with every core busy (the writer thread competes
with training for them); ``wait`` does the same steps on a small batch and then sleeps
``--wait`` seconds per batch, standing in for a loop that waits on an accelerator, during
which the CPU is free (an emulation: no GPU here).

Modes alternate within one process (interleaved, ``--reps`` rounds); the medians of the
per-epoch times (from one ``epoch_start`` to the next, so a save's cost lands in the epoch it
delays) and of whole runs (the last save included) are printed with their ratios.

    python benchmarks/checkpoint_save.py [--reps 3] [--epochs 4] [--workload cpu|wait|both]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

import plugins
from eventrunner import Callback, Order, Runner
from eventrunner import checkpoint as ckpt


class MLPRunner(Runner):
    def __init__(self, wait: float = 0.0) -> None:
        super().__init__()
        self.wait = wait

    def handle_batch(self, batch: dict[str, Any]) -> None:
        logits = self.model(batch["features"])
        self.batch_metrics["loss"] = nn.functional.cross_entropy(logits, batch["targets"])
        if self.wait:
            time.sleep(self.wait)  # the accelerator computes; this thread waits


class EpochClock(Callback):
    """Times from one epoch_start to the next (the first epoch warms up and is left out)."""

    def __init__(self) -> None:
        super().__init__(order=Order.INTERNAL)
        self.starts: list[float] = []

    def on_epoch_start(self, runner: Any) -> None:
        self.starts.append(time.perf_counter())

    def epoch_times(self) -> list[float]:
        return [b - a for a, b in zip(self.starts[1:], self.starts[2:], strict=False)]


def make_model(layers: int, width: int) -> nn.Module:
    torch.manual_seed(0)
    blocks: list[nn.Module] = []
    for _ in range(layers):
        blocks += [nn.Linear(width, width), nn.ReLU()]
    return nn.Sequential(*blocks, nn.Linear(width, 10))


def run(
    mode: str, args: argparse.Namespace, batches: list[dict[str, torch.Tensor]], wait: float
) -> dict:
    model = make_model(args.layers, args.width)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    clock = EpochClock()
    callbacks: list[Callback] = [clock]
    folder = Path(tempfile.mkdtemp(prefix="eventrunner-ckpt-bench-"))
    if mode != "none":
        callbacks.append(
            plugins.CheckpointCallback(logdir=folder, background_save=mode == "background")
        )
    start = time.perf_counter()
    MLPRunner(wait).train(
        model=model,
        optimizer=optimizer,
        loaders={"train": batches, "valid": batches[:1]},
        num_epochs=args.epochs,
        callbacks=callbacks,
        console=False,
    )
    total = time.perf_counter() - start
    size = (folder / "checkpoints" / "last.pth").stat().st_size if mode != "none" else 0
    shutil.rmtree(folder, ignore_errors=True)
    return {"epochs": clock.epoch_times(), "total": total, "size": size}


def make_batches(count: int, size: int, width: int) -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    return [
        {
            "features": torch.randn(size, width, generator=generator),
            "targets": torch.randint(0, 10, (size,), generator=generator),
        }
        for _ in range(count)
    ]


def measure(workload: str, args: argparse.Namespace) -> None:
    size, wait = (args.batch_size, 0.0) if workload == "cpu" else (4, args.wait)
    batches = make_batches(args.batches, size, args.width)
    modes = ["none", "inline", "background"]
    results: dict[str, list[dict]] = {mode: [] for mode in modes}
    for rep in range(args.reps):
        order = modes if rep % 2 == 0 else modes[::-1]
        for mode in order:
            results[mode].append(run(mode, args, batches, wait))

    params = sum(p.numel() for p in make_model(args.layers, args.width).parameters())
    megabytes = results["inline"][0]["size"] / 1e6
    print(
        f"workload {workload}: {params / 1e6:.1f}M parameters, checkpoint {megabytes:.0f} MB "
        f"(weights + momentum), {args.epochs} epochs x {args.batches} batches of {size}"
        + (f" + {wait:.2f} s wait" if wait else "")
        + f", {args.reps} interleaved reps"
    )
    medians = {}
    for mode in modes:
        epochs = [t for result in results[mode] for t in result["epochs"]]
        totals = [result["total"] for result in results[mode]]
        medians[mode] = (statistics.median(epochs), statistics.median(totals))
        print(
            f"  {mode:<10}  epoch median {medians[mode][0]:7.3f} s   "
            f"run median {medians[mode][1]:7.3f} s   (epochs {len(epochs)}, runs {len(totals)})"
        )
    none, inline, background = medians["none"], medians["inline"], medians["background"]
    print(
        f"  epoch time inline/background: {inline[0] / background[0]:.2f}x   "
        f"run time inline/background: {inline[1] / background[1]:.2f}x"
    )
    print(
        f"  per-epoch save cost: inline {inline[0] - none[0]:+.3f} s, "
        f"background {background[0] - none[0]:+.3f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--wait", type=float, default=0.25)
    parser.add_argument("--workload", choices=["cpu", "wait", "both"], default="both")
    args = parser.parse_args()
    print(
        f"checkpoint_save: torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"checkpoint format {ckpt.FORMAT} v{ckpt.VERSION}"
    )
    for workload in ["cpu", "wait"] if args.workload == "both" else [args.workload]:
        measure(workload, args)


if __name__ == "__main__":
    main()
