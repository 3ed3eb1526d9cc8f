"""What mid-epoch checkpoints cost, and what resuming inside an epoch costs.

1. Per-batch cost of ``checkpoint_every_n_batches=N``: the overhead benchmark's workloads
   (``small`` MLP 32-64-10, ``large`` 512-2048-10, in-memory batches) trained with a logdir,
   with and without mid-epoch saves, interleaved in a new order each round (``--reps``
   rounds). Printed per mode: the median per-batch time of whole runs and its ratio to the
   runs without mid-epoch saves, as the overhead benchmark does; and the cost measured inside
   each run: its mean train batch over the mean of its train batches away from a save (more
   than ``AFTER_SAVE`` batches after one), and what that makes a save cost the loop. On a
   shared machine whole runs drift by more than the saves cost (up to 30% from one run to the
   next here), so the second ratio is the one that measures the saves; in the runs without
   mid-epoch saves it is the estimator's own noise. ``--background`` also runs background
   saving.
2. Time to resume inside an epoch: a DataLoader over a map-style dataset of ``--samples``
   samples (shuffled); the time from ``train(resume=...)`` to the first trained batch, for a
   checkpoint written after 1% and after 90% of the epoch's batches. The sampler seeks past
   the skipped batches' indices and their samples are not loaded, so the two should be equal.

    python benchmarks/checkpoint_inside_epoch.py [--reps 5] [--every 100 1000] [--samples 200000]
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from overhead import WORKLOADS, AccuracyRunner, make_batches, make_model
from torch import nn
from torch.utils.data import DataLoader, Dataset

import plugins
from eventrunner import Callback, Order, SupervisedRunner


class TrainBatchClock(Callback):
    """The end time of every train batch, after every other subscriber of the batch."""

    def __init__(self) -> None:
        super().__init__(order=Order.EXTERNAL + 1)
        self._last: float | None = None
        self.durations: list[float] = []

    def on_loader_start(self, runner: Any) -> None:
        self._last = time.perf_counter()

    def on_batch_end(self, runner: Any) -> None:
        now = time.perf_counter()
        if runner.is_train_loader and self._last is not None:
            self.durations.append(now - self._last)
        self._last = now


def train_time(sizes, train, valid, logdir: Path, **settings: Any) -> tuple[float, list[float]]:
    """The run's time and its train batches' durations."""
    model = make_model(sizes)
    runner = AccuracyRunner()
    clock = TrainBatchClock()
    start = time.perf_counter()
    runner.train(
        model=model,
        criterion=nn.CrossEntropyLoss(),
        optimizer=torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9),
        loaders={"train": train, "valid": valid},
        num_epochs=2,
        logdir=logdir,
        overwrite=True,
        console=False,
        seed=None,
        **{**settings, "callbacks": [*settings.get("callbacks", []), clock]},
    )
    return time.perf_counter() - start, clock.durations


# Batches after a save that its cost can still reach (the writer's I/O, cold caches).
AFTER_SAVE = 20


def cost_inside_run(durations: list[float], every: int, per_epoch: int) -> tuple[float, float]:
    """``(ratio, seconds)``: the run's mean train batch over the mean of the batches that no
    save can have reached, and the extra time in all. A batch of step ``k * every`` and the
    ``AFTER_SAVE`` after it are the ones a save reaches (also counted in runs without saves)."""
    steps = (i % per_epoch + 1 for i in range(len(durations)))
    reached = (step >= every and step % every <= AFTER_SAVE for step in steps)
    typical = statistics.fmean(d for d, near in zip(durations, reached, strict=True) if not near)
    total = sum(durations)
    return total / (typical * len(durations)), total - typical * len(durations)


def per_batch_cost(name: str, reps: int, every: int, background: bool) -> None:
    """Interleaved runs with epoch checkpoints only and with saves every ``every`` batches."""
    sizes = WORKLOADS[name]
    train = make_batches(sizes[0], sizes[2], 1000, seed=1)
    valid = make_batches(sizes[0], sizes[2], 50, seed=2)
    batches = 2 * (len(train) + len(valid))
    base_mode = "epoch saves only"
    modes: dict[str, Callable[[], dict[str, Any]]] = {
        base_mode: dict,
        f"every {every} batches": lambda: {"checkpoint_every_n_batches": every},
    }
    if background:
        modes[f"every {every}, background"] = lambda: {
            "checkpoint_every_n_batches": every,
            "callbacks": [plugins.CheckpointCallback(background_save=True)],
        }
    times: dict[str, list[float]] = {mode: [] for mode in modes}
    inside: dict[str, list[tuple[float, float]]] = {mode: [] for mode in modes}
    with tempfile.TemporaryDirectory() as folder:
        for round_ in range(reps + 1):  # the first round warms up
            # A new order each round: the run after another one is often slower on this kind
            # of machine, which a fixed order would charge to one mode.
            order = list(modes.items())
            random.Random(round_).shuffle(order)
            for mode, settings in order:
                logdir = Path(folder) / "run"
                elapsed, durations = train_time(sizes, train, valid, logdir, **settings())
                if round_:
                    times[mode].append(elapsed / batches * 1e6)
                    inside[mode].append(cost_inside_run(durations, every, len(train)))
                shutil.rmtree(logdir)
    base = statistics.median(times[base_mode])
    saves = 2 * len(train) // every
    for mode in modes:
        median = statistics.median(times[mode])
        ratio = statistics.median(r for r, _ in inside[mode])
        count = saves if mode != base_mode else 0
        extra = statistics.median(e for _, e in inside[mode]) / max(count, 1)
        per_save = f"{extra * 1e3:5.2f} ms a save" if count else " " * 14
        print(
            f"{name:5s} {mode:22s} {median:8.1f} us/batch  ratio {median / base:.3f}  "
            f"inside runs {ratio:.3f} {per_save}  ({count} mid-epoch saves in "
            f"{batches} batches; medians of {reps})"
        )


class Samples(Dataset):
    def __init__(self, count: int) -> None:
        self.count = count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"features": torch.full((8,), float(i % 97)), "targets": torch.tensor(i % 2)}


class StopAt(Callback):
    """Stops the first run after ``at`` train batches (its last checkpoint is there)."""

    def __init__(self, at: int) -> None:
        super().__init__(order=Order.EXTERNAL + 1)
        self.at = at

    def on_batch_end(self, runner: Any) -> None:
        if runner.is_train_loader and runner.loader_batch_step == self.at:
            raise KeyboardInterrupt


class FirstBatch(Callback):
    def __init__(self) -> None:
        super().__init__(order=Order.INTERNAL)
        self.at: float | None = None

    def on_batch_start(self, runner: Any) -> None:
        if self.at is None:
            self.at = time.perf_counter()


def resume_time(samples: int, fraction: float, folder: Path) -> float:
    loader = DataLoader(Samples(samples), batch_size=64, shuffle=True)
    at = max(1, int(len(loader) * fraction))
    settings = dict(
        criterion=nn.CrossEntropyLoss(),
        loaders={"train": loader},
        num_epochs=1,
        logdir=folder,
        console=False,
        checkpoint_every_n_batches=at,
    )
    model = nn.Linear(8, 2)
    with contextlib.suppress(KeyboardInterrupt):
        SupervisedRunner().train(
            model=model,
            optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
            callbacks=[StopAt(at)],
            overwrite=True,
            **settings,
        )
    first = FirstBatch()
    model = nn.Linear(8, 2)
    start = time.perf_counter()
    with contextlib.suppress(KeyboardInterrupt):
        SupervisedRunner().train(
            model=model,
            optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
            callbacks=[first, StopAt(at + 1)],
            resume=folder / "checkpoints" / "last.pth",
            **settings,
        )
    assert first.at is not None
    return first.at - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--every", type=int, nargs="*", default=[100, 1000])
    parser.add_argument("--samples", type=int, default=200_000)
    parser.add_argument("--workloads", nargs="*", default=list(WORKLOADS))
    parser.add_argument("--background", action="store_true")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    logging.getLogger("eventrunner").setLevel(logging.ERROR)  # "no valid loader" per run
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load {os.getloadavg()}")
    for name in args.workloads:
        for every in args.every:
            per_batch_cost(name, args.reps, every, args.background)
    with tempfile.TemporaryDirectory() as folder:
        for fraction in (0.01, 0.9):
            times = [
                resume_time(args.samples, fraction, Path(folder) / f"r{i}")
                for i in range(args.reps)
            ]
            print(
                f"resume after {fraction:.0%} of an epoch of {args.samples // 64} batches: "
                f"{statistics.median(times) * 1e3:.1f} ms to the first batch "
                f"(median of {args.reps})"
            )
    print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
