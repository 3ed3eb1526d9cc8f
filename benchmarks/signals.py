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
    _per_pass_cost(args.batches)


def _per_pass_cost(batches_per_pass: int) -> None:
    """The deterministic part: what a signal without receivers adds to a loader pass."""
    runner = SupervisedRunner()
    model = nn.Linear(4, 1)
    runner.compose(
        model=model,
        criterion=nn.MSELoss(),
        optimizer=torch.optim.SGD(model.parameters(), lr=0.01),
        loaders={"train": _batches(2)},
        console=False,
    )
    runner.loader_key = "train"
    subs = runner.bus.subscriptions("batch_end")
    plain, _ = compile_calls("batch_end", subs, "train", 1, None)
    sent, _ = compile_calls("batch_end", subs, "train", 1, None, signals.batch_end)
    assert plain == sent, "a signal without receivers must add no call per batch"
    number = 20000
    cost: dict[str, float] = {"without": float("inf"), "with": float("inf")}
    for _ in range(7):  # alternating rounds; the fastest of each (least disturbed)
        for name, signal in (("without", None), ("with", signals.batch_end)):
            start = time.perf_counter()
            for _ in range(number):
                compile_calls("batch_end", subs, "train", 1, None, signal)
            cost[name] = min(cost[name], (time.perf_counter() - start) / number)
    extra = cost["with"] - cost["without"]
    print(
        f"  per batch: the same {len(plain)} calls with and without the signal (no receiver); "
        f"per loader pass: {extra * 1e9:+.0f} ns to look at its receivers, "
        f"{extra * 1e6 / batches_per_pass:+.5f} µs per batch over {batches_per_pass} batches"
    )


if __name__ == "__main__":
    main()
