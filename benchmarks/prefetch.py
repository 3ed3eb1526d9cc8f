"""Prefetch on vs off, in one process: medians of interleaved runs, printed as ratios.

(a) a slow loader (its collate sleeps 2 ms per batch, or does ~2 ms of torch work) and a
    model step of ~2 ms: eventrunner with ``prefetch=2`` vs ``prefetch=0`` (target: >= 1.7x
    faster), and ``prefetch=2`` per batch vs max(load, step) (target: within 15%).
(b) in-memory loaders (a list of dict batches; a DataLoader over a TensorDataset), MLP
    32-64-10, batch 32: ``prefetch=2`` vs ``prefetch=0`` (target: no slower than 3%). The
    forced producer thread (``thread``) is shown too: it is what the measurement avoids.

``plain`` is a hand-written loop; in (a) ``plain+thread`` adds a minimal hand-written prefetch
thread (queue.Queue): the reference for what a thread can do on this machine at that moment.

Timing: the model stamps the clock at its first train forward of epoch 2 and of the last
epoch; the window holds whole epochs (loader start/end and producer start/stop included).
One torch thread, as in benchmarks/peers: the second core is the loader's.

    python benchmarks/prefetch.py [--reps 7] [--only a|b]
"""

from __future__ import annotations

import argparse
import logging
import os
import queue
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset, default_collate

import eventrunner
from eventrunner.data.prefetch import Prefetcher

BATCH = 32
#: How the auto prefetch fetched each run's train loader (thread or inline).
CHOICES: list[str] = []


class Stamped(nn.Module):
    """An MLP that stamps the clock at given train-forward counts."""

    def __init__(self, sizes: tuple[int, int, int]) -> None:
        super().__init__()
        d_in, hidden, d_out = sizes
        self.net = nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, d_out))
        self.count = 0
        self.marks: dict[int, float] = {}
        self.stamp_at: tuple[int, ...] = ()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.count += 1
            if self.count in self.stamp_at:
                self.marks[self.count] = time.perf_counter()
        return self.net(x)


class SleepyCollate:
    """default_collate, then a sleep: a loader waiting on disk or network (GIL released)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def __call__(self, samples: list[Any]) -> Any:
        time.sleep(self.seconds)
        return default_collate(samples)


class DecodeCollate:
    """default_collate, then ~2 ms of torch work per batch (a stand-in for decoding)."""

    def __init__(self, width: int) -> None:
        self.width = width
        self.generator = torch.Generator().manual_seed(0)

    def __call__(self, samples: list[Any]) -> Any:
        x, y = default_collate(samples)
        noise = torch.randn(x.shape[0], x.shape[1], self.width, generator=self.generator)
        return x + noise.cumsum(-1).mean(-1) * 1e-3, y


def _data(n: int, d_in: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, d_in, generator=g), torch.randint(0, 10, (n,), generator=g)


def _window(model: Stamped, batches_per_epoch: int, epochs: int) -> float:
    start, stop = batches_per_epoch + 1, batches_per_epoch * (epochs - 1) + 1
    return (model.marks[stop] - model.marks[start]) / (batches_per_epoch * (epochs - 2))


def run_eventrunner(
    make_loader: Callable[[], Any],
    sizes: tuple[int, int, int],
    epochs: int,
    prefetch: int,
    mode: str = "auto",
) -> float:
    """Seconds per batch of ``SupervisedRunner.train`` with the default subscribers."""
    torch.manual_seed(0)
    model = Stamped(sizes)
    loader = make_loader()
    n = len(loader)
    model.stamp_at = (n + 1, n * (epochs - 1) + 1)
    runner = eventrunner.SupervisedRunner()
    runner._prefetcher = Prefetcher(mode)
    runner.train(
        model=model,
        criterion=nn.CrossEntropyLoss(),
        optimizer=torch.optim.SGD(model.parameters(), lr=0.01),
        loaders={"train": loader},
        num_epochs=epochs,
        console=False,
        prefetch=prefetch,
        seed=None,
    )
    if prefetch and mode == "auto":
        CHOICES.append(runner._prefetcher.choices().get("train", "inline, in memory"))
    return _window(model, n, epochs)


class ThreadedLoader:
    """A minimal hand-written prefetch: a thread puts batches into a queue.Queue(maxsize)."""

    def __init__(self, loader: Any, depth: int = 2) -> None:
        self.loader, self.depth = loader, depth

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Any:
        q: queue.Queue[Any] = queue.Queue(maxsize=self.depth)
        end = object()

        def produce() -> None:
            for batch in self.loader:
                q.put(batch)
            q.put(end)

        thread = threading.Thread(target=produce, daemon=True)
        thread.start()
        while (batch := q.get()) is not end:
            yield batch
        thread.join()


def run_plain(
    make_loader: Callable[[], Any], sizes: tuple[int, int, int], epochs: int, threaded: bool = False
) -> float:
    """Seconds per batch of a hand-written loop, loss summed on the device; ``threaded``: with
    a minimal prefetch thread (the reference for what a thread can do on this machine)."""
    torch.manual_seed(0)
    model = Stamped(sizes)
    loader = make_loader()
    if threaded:
        loader = ThreadedLoader(loader)
    n = len(loader)
    model.stamp_at = (n + 1, n * (epochs - 1) + 1)
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    model.train()
    for _ in range(epochs):
        total = torch.zeros(())
        for batch in loader:
            x, y = (batch["features"], batch["targets"]) if isinstance(batch, dict) else batch
            loss = criterion(model(x), y)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            total += loss.detach()
        total.item()
    return _window(model, n, epochs)


def load_time(make_loader: Callable[[], Any], passes: int = 2) -> float:
    """Seconds per batch to iterate the loader alone."""
    loader = make_loader()
    times = []
    for _ in range(passes):
        t = time.perf_counter()
        n = sum(1 for _ in loader)
        times.append((time.perf_counter() - t) / n)
    return statistics.median(times)


def interleave(configs: dict[str, Callable[[], float]], reps: int) -> dict[str, list[float]]:
    """Seconds per batch of each config per round; runs alternate, order rotated each round."""
    names = list(configs)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for rep in range(reps):
        shift = rep % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(configs[name]())
    return samples


def ratio(samples: dict[str, list[float]], num: str, den: str) -> str:
    """Ratio of medians, and the median of the per-round ratios (same machine state)."""
    of_medians = statistics.median(samples[num]) / statistics.median(samples[den])
    per_round = statistics.median(a / b for a, b in zip(samples[num], samples[den], strict=True))
    return f"{of_medians:.3f} (per round {per_round:.3f})"


def _choices() -> str:
    counts = {way: CHOICES.count(way) for way in dict.fromkeys(CHOICES)}
    CHOICES.clear()
    return ", ".join(f"{way} {n}x" for way, n in counts.items())


def _us(seconds: float) -> str:
    return f"{seconds * 1e6:8.0f} µs"


def scenario_a(reps: int, hidden: int, decode_width: int, epochs: int = 4) -> None:
    sizes = (512, hidden, 10)
    x, y = _data(64 * BATCH, 512)
    in_memory = [(x[i : i + BATCH], y[i : i + BATCH]) for i in range(0, len(x), BATCH)]
    collates = {
        "sleep 2 ms": SleepyCollate(0.002),
        "torch work": DecodeCollate(decode_width),
    }
    for label, collate in collates.items():

        def make(collate: Any = collate) -> DataLoader:
            return DataLoader(
                TensorDataset(x, y),
                batch_size=BATCH,
                shuffle=True,
                generator=torch.Generator().manual_seed(2),
                collate_fn=collate,
            )

        # Load alone and step alone are timed in the same rounds as the loops, so that a
        # burst of load on a shared machine weighs on all of them alike.
        res = interleave(
            {
                "load": lambda m=make: load_time(m, passes=epochs - 2),
                "step": lambda: run_plain(lambda: in_memory, sizes, epochs),
                "plain": lambda m=make: run_plain(m, sizes, epochs),
                "plain+thread": lambda m=make: run_plain(m, sizes, epochs, threaded=True),
                "prefetch=0": lambda m=make: run_eventrunner(m, sizes, epochs, 0),
                "prefetch=2": lambda m=make: run_eventrunner(m, sizes, epochs, 2),
            },
            reps,
        )
        med = {name: statistics.median(values) for name, values in res.items()}
        bound = max(med["load"], med["step"])
        print(
            f"(a) {label}: load alone {_us(med['load'])}, step alone {_us(med['step'])} "
            f"(MLP 512-{hidden}-10), max {_us(bound)}"
        )
        for name in ("plain", "plain+thread", "prefetch=0", "prefetch=2"):
            print(f"    {name:<12} {_us(med[name])} per batch")
        res["max"] = [max(a, b) for a, b in zip(res["load"], res["step"], strict=True)]
        print(
            f"    prefetch=0 / prefetch=2 = {ratio(res, 'prefetch=0', 'prefetch=2')} "
            "(target >= 1.70)"
        )
        print(
            f"    prefetch=2 / max(load, step) = {ratio(res, 'prefetch=2', 'max')} (target <= 1.15)"
        )
        print(f"    prefetch=2 fetched the train loader with: {_choices()}")


def scenario_b(reps: int, epochs: int = 6) -> None:
    sizes = (32, 64, 10)
    x, y = _data(128 * BATCH, 32)
    dict_batches = [
        {"features": x[i : i + BATCH], "targets": y[i : i + BATCH]} for i in range(0, len(x), BATCH)
    ]
    loaders: dict[str, Callable[[], Any]] = {
        "list of dict batches": lambda: dict_batches,
        "DataLoader(TensorDataset)": lambda: DataLoader(
            TensorDataset(x, y),
            batch_size=BATCH,
            shuffle=True,
            generator=torch.Generator().manual_seed(2),
        ),
    }
    for label, make in loaders.items():
        res = interleave(
            {
                "plain": lambda m=make: run_plain(m, sizes, epochs),
                "prefetch=0": lambda m=make: run_eventrunner(m, sizes, epochs, 0),
                "prefetch=2": lambda m=make: run_eventrunner(m, sizes, epochs, 2),
                "thread": lambda m=make: run_eventrunner(m, sizes, epochs, 2, mode="thread"),
            },
            reps,
        )
        print(f"(b) {label}, MLP 32-64-10, batch {BATCH}:")
        for name, values in res.items():
            print(f"    {name:<12} {_us(statistics.median(values))} per batch")
        print(
            f"    prefetch=2 / prefetch=0 = {ratio(res, 'prefetch=2', 'prefetch=0')} "
            "(target <= 1.03)"
        )
        print(f"    forced thread / prefetch=0 = {ratio(res, 'thread', 'prefetch=0')}")
        print(f"    prefetch=2 fetched the train loader with: {_choices()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--hidden", type=int, default=1664, help="(a)'s MLP width: ~2 ms step")
    parser.add_argument("--decode-width", type=int, default=20, help="(a)'s collate work: ~2 ms")
    parser.add_argument("--only", choices=("a", "b"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    logging.getLogger("eventrunner").setLevel(logging.ERROR)  # "no model selection" notes
    print(
        f"torch {torch.__version__}, {os.cpu_count()} CPUs, 1 torch thread, "
        f"load average {os.getloadavg()[0]:.2f}, {args.reps} interleaved runs per config"
    )
    if args.only in (None, "a"):
        scenario_a(args.reps, args.hidden, args.decode_width)
    if args.only in (None, "b"):
        scenario_b(args.reps)
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
