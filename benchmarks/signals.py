"""What the public blinker signals cost per batch: none connected, and one receiver per batch event.

The same eventrunner training (a tiny linear model, in-memory dict batches, the default
subscribers) runs in three variants, interleaved in one process:

- ``no signals``: the loop compiled without the signal step (``compile_calls(signal=None)``),
  i.e. the loop before the bus sent through blinker;
- ``no receivers``: the shipped loop, no receiver connected (the target: <= 0.2 µs per batch
  more than ``no signals``);
- ``1 receiver``: a no-op receiver on ``batch_start`` and ``batch_end``.

    python benchmarks/signals.py [--reps 15] [--batches 400] [--threads 1]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import time

import torch
from torch import nn

import eventrunner.runner as runner_module
from eventrunner import SupervisedRunner, signals
from eventrunner.dispatch import compile_calls
from eventrunner.events import FunctionCallback, Order


def _batches(count: int) -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    return [
        {"features": torch.randn(8, 4, generator=generator), "targets": torch.zeros(8, 1)}
        for _ in range(count)
    ]


def _train(batches: list[dict[str, torch.Tensor]]) -> float:
    """Seconds per batch inside the loader passes of one run (2 epochs over ``batches``):
    from the last ``loader_start`` subscriber to the first ``loader_end`` one."""
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    runner = SupervisedRunner()
    inside = [0.0]

    def started(runner: object) -> None:
        inside[0] -= time.perf_counter()

    def ended(runner: object) -> None:
        inside[0] += time.perf_counter()

    runner.train(
        callbacks=[
            FunctionCallback("loader_start", started, order=Order.EXTERNAL + 1),
            FunctionCallback("loader_end", ended, order=Order.INTERNAL - 1),
        ],
        model=model,
        criterion=nn.MSELoss(),
        optimizer=torch.optim.SGD(model.parameters(), lr=0.01),
        loaders={"train": batches},
        num_epochs=2,
        console=False,
        seed=None,
    )
    return inside[0] / (2 * len(batches))


def _without_signals(*args, **kwargs):
    kwargs.pop("signal", None)
    if len(args) > 5:
        args = args[:5]
    return compile_calls(*args, **kwargs)


def _receiver(sender: object) -> None:
    pass


def _variant(name: str, batches: list[dict[str, torch.Tensor]]) -> float:
    if name == "no signals":
        runner_module.compile_calls = _without_signals
        try:
            return _train(batches)
        finally:
            runner_module.compile_calls = compile_calls
    if name == "1 receiver":
        with (
            signals.batch_start.connected_to(_receiver),
            signals.batch_end.connected_to(_receiver),
        ):
            return _train(batches)
    return _train(batches)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--batches", type=int, default=400)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.getLogger("eventrunner").setLevel(logging.ERROR)  # no 'valid' loader: no selection
    batches = _batches(args.batches)
    names = ("no signals", "no receivers", "1 receiver")
    times: dict[str, list[float]] = {name: [] for name in names}
    for name in names:  # warm-up
        _variant(name, batches)
    for rep in range(args.reps):
        order = names if rep % 2 == 0 else names[::-1]
        for name in order:
            times[name].append(_variant(name, batches))
    print(
        f"torch {torch.__version__}, {os.cpu_count()} CPUs, {args.threads} torch thread(s), "
        f"load average {os.getloadavg()[0]:.2f}, {args.reps} interleaved runs, "
        f"{args.batches} batches x 2 epochs"
    )
    base = statistics.median(times["no signals"])
    for name in names:
        median = statistics.median(times[name])
        paired = statistics.median(
            a - b for a, b in zip(times[name], times["no signals"], strict=True)
        )
        print(
            f"  {name:<13} {median * 1e6:8.2f} µs per batch   "
            f"{(median - base) * 1e6:+7.2f} µs vs no signals (paired {paired * 1e6:+7.2f} µs)"
        )
    spread = statistics.pstdev(times["no signals"]) * 1e6
    print(f"  spread (stdev of 'no signals' runs): {spread:.2f} µs per batch")


if __name__ == "__main__":
    main()
