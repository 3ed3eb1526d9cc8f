"""``eventrunner check-resume CONFIG``: is resuming this training exact?

It trains the config once uninterrupted, then, for each of ``--kills`` random batches,
trains it again in a child process that is killed with SIGKILL at that batch, resumes it
(``resume="auto"``, from the last checkpoint written inside the epoch) in another, and
compares the two runs' final ``last.pth`` (weights, optimizer, scheduler, grad scaler,
epoch metrics) and ``metrics.csv`` bitwise, and every batch's loss. It prints ``exact`` per
kill, or which tensors and metrics differ and the first batch whose loss differs.

Each child is ``python -m eventrunner.check_resume child ...``: the config's training with
its logdir in a work folder and ``checkpoint_every_n_batches`` (``--every``, unless the config
sets it); a receiver of the public ``batch_end`` signal records each batch's loss, and kills
the process at the chosen batch. The runs are independent processes, as after a real crash.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from eventrunner.checkpoint import load_checkpoint
from eventrunner.metrics import as_number

_EXAMPLE = "example:"  # how a child is told to run a built-in example


def _child(argv: Sequence[str]) -> int:
    """One training run of the check: records batch losses, dies at ``--kill-at``."""
    parser = argparse.ArgumentParser(prog="eventrunner.check_resume child")
    parser.add_argument("config")
    parser.add_argument("--logdir", required=True)
    parser.add_argument("--record", required=True)
    parser.add_argument("--every", type=int, required=True)
    parser.add_argument("--kill-at", type=int, default=None)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args(argv)

    from eventrunner import signals
    from eventrunner.config import build, example_path, import_paths, load_config

    path = (
        example_path(args.config[len(_EXAMPLE) :])
        if args.config.startswith(_EXAMPLE)
        else args.config
    )
    overrides = [*args.overrides, f"train.logdir={args.logdir}", "train.console=false"]
    overrides += [
        "train.verbose=false",
        "train.resume=auto" if args.resume else "train.overwrite=true",
    ]
    config = load_config(path, overrides)
    train = config.setdefault("train", {})
    train.setdefault("checkpoint_every_n_batches", args.every)
    record = open(args.record, "a", encoding="utf-8")  # noqa: SIM115 - the process's lifetime

    def on_batch_end(runner: Any) -> None:
        loss = as_number(runner.batch_metrics.get(runner.loss_key))
        line = [runner.batch_step, runner.epoch_step, runner.loader_key, runner.loader_batch_step]
        record.write(json.dumps([*line, loss]) + "\n")
        record.flush()
        if runner.batch_step == args.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    signals.batch_end.connect(on_batch_end)
    with import_paths(path):
        build(config).run()
    record.close()
    return 0


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for key, value in obj.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    if isinstance(obj, list | tuple):
        return _flatten(dict(enumerate(obj)), prefix)
    return {prefix.rstrip("."): obj}


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    return a == b or (a != a and b != b)  # NaN == NaN here: the same number was saved


def compare_runs(reference: Path, resumed: Path) -> list[str]:
    """What differs between two runs' final ``last.pth`` and ``metrics.csv``."""
    differ = []
    ref = load_checkpoint(reference / "checkpoints" / "last.pth")
    res = load_checkpoint(resumed / "checkpoints" / "last.pth")
    for part in ("model", "optimizer", "scheduler", "scaler", "epoch_metrics", "counters"):
        a, b = _flatten(ref.get(part) or {}), _flatten(res.get(part) or {})
        differ += [
            f"{part}.{key}" for key in sorted(set(a) | set(b)) if not _same(a.get(key), b.get(key))
        ]
    csv_a, csv_b = reference / "metrics.csv", resumed / "metrics.csv"
    if csv_a.exists() and (not csv_b.exists() or csv_a.read_bytes() != csv_b.read_bytes()):
        differ.append("metrics.csv")
    return differ


def _losses(record: Path) -> dict[int, list[Any]]:
    """batch_step -> [epoch, loader, loader batch, loss]; a resumed run's lines replace those
    of the batches the killed run trained after its checkpoint."""
    rows: dict[int, list[Any]] = {}
    for line in record.read_text(encoding="utf-8").splitlines():
        step, *rest = json.loads(line)
        rows[step] = rest
    return rows


def _where(row: list[Any]) -> str:
    return f"epoch {row[0]}, {row[1]} batch {row[2]}"


def _resumes_from(logdir: Path) -> str:
    """Where a killed run's ``resume="auto"`` goes on from: what this kill tests."""
    last = logdir / "checkpoints" / "last.pth"
    if not last.exists():
        return "from the start (killed before its first checkpoint)"
    saved = load_checkpoint(last)
    position = saved.get("position")
    if position is not None:
        return (
            f"from epoch {position['epoch']}, {position['loader']} after batch "
            f"{position['batches']}"
        )
    return f"from the end of epoch {saved['epoch']}"


def check(
    config: str, overrides: Sequence[str], kills: int, seed: int, every: int, folder: Path
) -> int:
    """Run the check in ``folder``; 0 when every kill resumed exactly, 1 when one did not,
    2 when the config's own run failed or is too short to interrupt."""

    def run(name: str, kill_at: int | None = None, resume: bool = False) -> int:
        command = [sys.executable, "-m", "eventrunner.check_resume", "child", config]
        command += ["--logdir", str(folder / name), "--record", str(folder / f"{name}.jsonl")]
        command += ["--every", str(every)] + [f"--set={o}" for o in overrides]
        command += ["--kill-at", str(kill_at)] if kill_at is not None else []
        command += ["--resume"] if resume else []
        return subprocess.run(command, check=False).returncode

    print(f"check-resume {config}: the uninterrupted run ...", flush=True)
    if run("reference") != 0:
        print("check-resume: the uninterrupted run failed", file=sys.stderr)
        return 2
    reference = _losses(folder / "reference.jsonl")
    if len(reference) < 2:
        print("check-resume: the run has fewer than 2 batches: nothing to interrupt")
        return 2
    rng = random.Random(seed)
    positions = sorted(rng.sample(range(1, max(reference)), min(kills, max(reference) - 1)))
    failures = 0
    for kill_at in positions:
        name = f"killed_at_{kill_at}"
        status = run(name, kill_at=kill_at)
        if status != -signal.SIGKILL:
            print(f"  batch {kill_at}: the run was not killed (status {status})")
            failures += 1
            continue
        at = f"killed at batch {kill_at} ({_where(reference[kill_at])}), resumed "
        at += _resumes_from(folder / name)
        if run(name, resume=True) != 0:
            print(f"  {at}: the resumed run failed")
            failures += 1
            continue
        differ = compare_runs(folder / "reference", folder / name)
        losses = _losses(folder / f"{name}.jsonl")
        first = next((s for s in sorted(reference) if losses.get(s) != reference[s]), None)
        if not differ and first is None:
            print(f"  {at}: exact")
            continue
        failures += 1
        print(f"  {at}: differs in {', '.join(differ[:8]) or 'no final state'}")
        if len(differ) > 8:
            print(f"    ... and {len(differ) - 8} more")
        if first is not None:
            print(f"    first batch whose loss differs: {first} ({_where(reference[first])})")
    verdict = "exact" if not failures else f"NOT exact ({failures} of {len(positions)} kills)"
    print(f"check-resume {config}: {verdict}")
    return 0 if not failures else 1


def main(argv: Sequence[str] | None = None) -> int:
    """``eventrunner check-resume``; ``child`` is the run it starts in each process."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "child":
        return _child(argv[1:])
    parser = argparse.ArgumentParser(
        prog="eventrunner check-resume", description=__doc__.split("\n\n")[0].replace("``", "")
    )
    parser.add_argument("config", nargs="?", help="the YAML config")
    parser.add_argument("--example", metavar="NAME", help="a built-in example instead (digits)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--kills", type=int, default=3, help="random batches to kill at (3)")
    parser.add_argument("--seed", type=int, default=0, help="picks the batches (0)")
    parser.add_argument(
        "--every",
        type=int,
        default=5,
        help="checkpoint_every_n_batches, unless the config sets it (5)",
    )
    parser.add_argument("--keep", metavar="DIR", help="keep the runs in DIR (default: a temp dir)")
    args = parser.parse_args(argv)
    if (args.config is None) == (args.example is None):
        parser.error("give a CONFIG or --example NAME")
    config = args.config or f"{_EXAMPLE}{args.example}"
    if args.keep:
        Path(args.keep).mkdir(parents=True, exist_ok=True)
        return check(config, args.overrides, args.kills, args.seed, args.every, Path(args.keep))
    with tempfile.TemporaryDirectory(prefix="eventrunner-check-resume-") as folder:
        return check(config, args.overrides, args.kills, args.seed, args.every, Path(folder))


if __name__ == "__main__":
    sys.exit(main())
