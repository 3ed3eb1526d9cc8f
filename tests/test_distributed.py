"""Multi-process training: two ranks under torchrun (gloo, CPU) against one process, same data.

This file is also the worker script: ``python -m torch.distributed.run --standalone
--nproc_per_node=2 tests/test_distributed.py OUT`` runs :func:`_worker` on each rank. One launch
serves every test here (module-scoped fixture) to keep the suite fast.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, TensorDataset

from eventrunner import Callback, Order, SupervisedRunner, distributed
from eventrunner.distributed import UnpaddedDistributedSampler, distributed_loader, find_sampler
from plugins import AccuracyCallback
from plugins._run_info import is_main_process as logs_here

WORLD = 2
TRAIN_N, VALID_N = 64, 51  # 51: the two ranks get 26 and 25 validation samples
PER_RANK_BATCH = 8


def _data() -> tuple[TensorDataset, TensorDataset]:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(TRAIN_N + VALID_N, 10, generator=gen)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long() + (x[:, 2] > 1).long()
    return (
        TensorDataset(x[:TRAIN_N], y[:TRAIN_N]),
        TensorDataset(x[TRAIN_N:], y[TRAIN_N:]),
    )


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 3))


class _Record(Callback):
    """Keeps each epoch's metrics (and whether the samplers got set_epoch)."""

    def __init__(self) -> None:
        super().__init__(order=90)
        self.epochs: list[dict[str, dict[str, float]]] = []
        self.sampler_epochs: list[int | None] = []

    def on_epoch_end(self, runner: Any) -> None:
        self.epochs.append({k: dict(v) for k, v in runner.epoch_metrics.items()})
        sampler = find_sampler(runner.loaders["train"])
        self.sampler_epochs.append(getattr(sampler, "epoch", None))


class _CountSyncs(Callback):
    """Counts DDP's gradient all-reduces through a comm hook (registered after the wrap)."""

    def __init__(self) -> None:
        super().__init__(order=1)
        self.calls = 0

    def on_experiment_start(self, runner: Any) -> None:
        from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

        def hook(state, bucket):  # DDP refuses a string annotation (postponed evaluation)
            self.calls += 1
            return allreduce_hook(state, bucket)

        runner.model.register_comm_hook(None, hook)


def _train(
    batch_size: int, num_epochs: int, extra: list[Callback] | None = None, **kwargs: Any
) -> tuple[SupervisedRunner, _Record]:
    train_set, valid_set = _data()
    model = _model()
    record = _Record()
    runner = SupervisedRunner()
    runner.train(
        model=model,
        criterion=nn.CrossEntropyLoss(),
        optimizer=torch.optim.SGD(model.parameters(), lr=0.3),
        loaders={
            "train": DataLoader(train_set, batch_size=batch_size, shuffle=False),
            "valid": DataLoader(valid_set, batch_size=batch_size),
        },
        callbacks=[AccuracyCallback(), record, *(extra or [])],
        num_epochs=num_epochs,
        console=False,
        **kwargs,
    )
    return runner, record


def _weights(model: nn.Module) -> list[list[float]]:
    return [p.detach().flatten().tolist() for p in model.parameters()]


def _worker(out: Path) -> None:
    """One rank: 2 epochs, then (when checkpoints exist) a resume to 3 epochs."""
    rank = int(os.environ["RANK"])
    logs = out / f"logs{rank}"
    runner, record = _train(PER_RANK_BATCH, 2, logdir=logs)
    result: dict[str, Any] = {
        "rank": rank,
        # The group is gone now: the rank comes from torchrun's environment.
        "after_train": {
            "rank": distributed.get_rank(),
            "world_size": distributed.get_world_size(),
            "main": distributed.is_main_process(),
            "logs_here": logs_here(runner),
        },
        "epochs": record.epochs,
        "sampler_epochs": record.sampler_epochs,
        "weights_epoch2": _weights(runner.model),
        "model_restored": type(runner.model).__name__,
        "group_destroyed": not dist.is_initialized(),
        "train_sampler": type(find_sampler(runner.loaders["train"])).__name__,
        "valid_sampler": type(find_sampler(runner.loaders["valid"])).__name__,
        "valid_batches": runner.loader_batch_step,
    }
    last = out / "logs0" / "checkpoints" / "last.pth"
    if last.exists():
        runner, record = _train(PER_RANK_BATCH, 3, logdir=logs, resume=str(last))
        result["resumed_epochs"] = record.epochs
        result["weights_resumed"] = _weights(runner.model)
    # Accumulation under DDP (no_sync on all but the last batch of a group): 2 x 4 per rank.
    syncs = _CountSyncs()
    runner, _ = _train(PER_RANK_BATCH // 2, 1, [syncs], accumulation_steps=2)
    result["weights_accumulated"] = _weights(runner.model)
    result["syncs_accumulated"] = syncs.calls  # one bucket: one all-reduce per step
    (out / f"rank{rank}.json").write_text(json.dumps(result))


class _ExtraMetric(Callback):
    """Puts a metric in ``batch_metrics`` that the other ranks do not produce."""

    def __init__(self, name: str) -> None:
        super().__init__(order=Order.METRIC)  # before the aggregation subscriber
        self.name = name

    def on_batch_end(self, runner: Any) -> None:
        runner.batch_metrics[self.name] = 1.0


def _failure(extra: list[Callback]) -> dict[str, Any]:
    start = time.monotonic()
    try:
        _train(PER_RANK_BATCH, 1, extra, ddp_timeout=MISMATCH_TIMEOUT_S)
        error = None
    except Exception as caught:  # reported to the test, which checks every rank's error
        error = {"type": type(caught).__name__, "message": str(caught)}
    return {"error": error, "seconds": time.monotonic() - start}


def _mismatch_worker(out: Path) -> None:
    """Every rank must fail at once, naming the metric: first rank 1 alone produces ``extra``
    (a longer all-reduce), then the ranks produce as many metrics but not the same ones."""
    rank = int(os.environ["RANK"])
    result = {
        "extra": _failure([_ExtraMetric("extra")] if rank == 1 else []),
        "swapped": _failure([_ExtraMetric(f"only_on_{rank}")]),
    }
    (out / f"rank{rank}.json").write_text(json.dumps(result))


MISMATCH_TIMEOUT_S = 30  # what a hang in the all-reduce would cost (the check must be faster)

# ---------------------------------------------------------------------------- the launch


def _torchrun(out: Path, *args: str, timeout: float = 180) -> tuple[int, str, str]:
    """Run this file under torchrun with ``WORLD`` ranks: ``(returncode, stdout, stderr)``."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += [f"--nproc_per_node={WORLD}", __file__, str(out), *args]
    proc = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.terminate()  # torchrun passes SIGTERM on to its workers (in sessions of their own)
        try:
            stdout, stderr = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
        pytest.fail(
            f"torchrun hung (stopped after {timeout} s):\n{stdout[-3000:]}\n{stderr[-5000:]}"
        )
    return proc.returncode, stdout, stderr


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("ddp")
    code, stdout, stderr = _torchrun(out)
    assert code == 0, f"torchrun failed:\n{stdout[-3000:]}\n{stderr[-5000:]}"
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in range(WORLD)]
    return {"out": out, "ranks": ranks}


@pytest.fixture(scope="module")
def single() -> tuple[SupervisedRunner, _Record]:
    """One process, batch = WORLD x per-rank batch: the same samples per step as the two ranks."""
    return _train(WORLD * PER_RANK_BATCH, 3)


def _close(a: dict[str, dict[str, float]], b: dict[str, dict[str, float]]) -> None:
    assert a.keys() == b.keys()
    for loader in a:
        assert a[loader].keys() == b[loader].keys(), loader
        for name, value in a[loader].items():
            assert value == pytest.approx(b[loader][name], abs=1e-5), (loader, name)


def test_both_ranks_finish_and_clean_up(ddp_run: dict[str, Any]) -> None:
    for result in ddp_run["ranks"]:
        assert result["model_restored"] == "Sequential"  # DDP wrapper removed at the end
        assert result["group_destroyed"]
        assert result["train_sampler"] == "DistributedSampler"
        assert result["valid_sampler"] == "UnpaddedDistributedSampler"
        assert result["sampler_epochs"] == [0, 1]
    # 26 and 25 validation samples: 4 batches each (8, 8, 8, 2 and 8, 8, 8, 1)
    assert [r["valid_batches"] for r in ddp_run["ranks"]] == [4, 4]


def test_rank_queries_stay_right_after_train(ddp_run: dict[str, Any]) -> None:
    # Without the group, the rank must not fall back to 0 (every rank "main", writing files).
    for rank, result in enumerate(ddp_run["ranks"]):
        assert result["after_train"] == {
            "rank": rank,
            "world_size": WORLD,
            "main": rank == 0,
            "logs_here": rank == 0,
        }


def test_loader_metrics_equal_single_process(ddp_run: dict[str, Any], single: Any) -> None:
    _, record = single
    for result in ddp_run["ranks"]:  # every rank holds the reduced numbers
        assert len(result["epochs"]) == 2
        for epoch, metrics in enumerate(result["epochs"]):
            _close(metrics, record.epochs[epoch])
            assert set(metrics["valid"]) == {"loss", "accuracy01"}


def test_weights_identical_on_both_ranks(ddp_run: dict[str, Any]) -> None:
    rank0, rank1 = (r["weights_epoch2"] for r in ddp_run["ranks"])
    assert rank0 == rank1


def test_accumulation_under_ddp_equals_single_process(ddp_run: dict[str, Any]) -> None:
    reference, _ = _train(WORLD * PER_RANK_BATCH, 1)
    expected = torch.cat([torch.tensor(w) for w in _weights(reference.model)])
    for result in ddp_run["ranks"]:
        got = torch.cat([torch.tensor(w) for w in result["weights_accumulated"]])
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
        # 32 samples per rank, batches of 4: 8 backwards, 4 steps, so 4 all-reduces (no_sync)
        assert result["syncs_accumulated"] == 4


def test_only_rank0_writes_files(ddp_run: dict[str, Any]) -> None:
    out = ddp_run["out"]
    written = [p for p in (out / "logs1").rglob("*") if p.is_file()]
    assert written == [], f"rank 1 wrote {written}"
    assert [p for p in (out / "logs0").rglob("*") if p.is_file()], "rank 0 wrote nothing"


def test_resume_under_ddp_continues(ddp_run: dict[str, Any], single: Any) -> None:
    if "resumed_epochs" not in ddp_run["ranks"][0]:
        pytest.skip("no checkpoints/last.pth written yet (checkpoint files not implemented)")
    runner, record = single
    for result in ddp_run["ranks"]:
        assert len(result["resumed_epochs"]) == 1  # epoch 3 only
        _close(result["resumed_epochs"][0], record.epochs[2])
        expected = torch.cat([torch.tensor(w) for w in _weights(runner.model)])
        got = torch.cat([torch.tensor(w) for w in result["weights_resumed"]])
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


# -------------------------------------------------------------------- in-process pieces


def test_unpadded_sampler_covers_each_sample_once() -> None:
    dataset = list(range(11))
    shards = [
        UnpaddedDistributedSampler(dataset, 3, rank, shuffle=True, seed=5) for rank in range(3)
    ]
    for sampler in shards:
        sampler.set_epoch(2)
    seen = [i for sampler in shards for i in sampler]
    assert sorted(seen) == dataset
    assert [len(s) for s in shards] == [len(list(s)) for s in shards] == [4, 4, 3]


@pytest.fixture
def world_of_one() -> Any:
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_distributed_loader_keeps_options(world_of_one: None) -> None:
    train_set, _ = _data()
    generator = torch.Generator().manual_seed(3)
    loader = DataLoader(train_set, batch_size=5, shuffle=True, drop_last=True, generator=generator)
    assert isinstance(loader.sampler, RandomSampler)
    sharded = distributed_loader("train", loader, seed=7)
    assert isinstance(sharded.sampler, DistributedSampler)
    assert sharded.sampler.shuffle and sharded.sampler.seed == 7
    assert sharded.drop_last and sharded.batch_size == 5 and sharded.generator is generator
    assert len(sharded) == TRAIN_N // 5
    assert distributed_loader("train", sharded) is sharded  # already distributed: kept
    plain = [{"x": torch.zeros(1)}]
    assert distributed_loader("train", plain) is plain  # not a DataLoader: left alone


def test_ddp_true_outside_torchrun_is_a_world_of_one() -> None:
    single_runner, single_record = _train(16, 1)
    runner, record = _train(16, 1, ddp=True)
    assert not dist.is_initialized()  # the group train() created is gone
    assert type(runner.model) is nn.Sequential
    _close(record.epochs[0], single_record.epochs[0])
    torch.testing.assert_close(
        list(runner.model.parameters()), list(single_runner.model.parameters())
    )


def test_group_destroyed_after_error() -> None:
    class Boom(Callback):
        def on_batch_end(self, runner: Any) -> None:
            assert isinstance(runner.model, nn.parallel.DistributedDataParallel)
            raise RuntimeError("boom")

    train_set, _ = _data()
    model = _model()
    with pytest.raises(RuntimeError, match="boom"):
        SupervisedRunner().train(
            model=model,
            criterion=nn.CrossEntropyLoss(),
            optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
            loaders={"train": DataLoader(train_set, batch_size=8)},
            callbacks=[Boom()],
            ddp=True,
            console=False,
        )
    assert not dist.is_initialized()


def test_metric_on_one_rank_fails_every_rank_fast(tmp_path: Path) -> None:
    code, stdout, stderr = _torchrun(tmp_path, "mismatch", timeout=120)
    assert code == 0, f"torchrun failed:\n{stdout[-3000:]}\n{stderr[-5000:]}"
    expected = {
        "extra": ["metric 'extra' on rank 1 (rank 0 did not)"],
        "swapped": [
            "metric 'only_on_0' on rank 0 (rank 1 did not)",
            "metric 'only_on_1' on rank 1 (rank 0 did not)",
        ],
    }
    for rank in range(WORLD):
        result = json.loads((tmp_path / f"rank{rank}.json").read_text())
        for case, parts in expected.items():
            outcome = result[case]
            assert outcome["error"] is not None, f"rank {rank} trained without an error ({case})"
            assert outcome["error"]["type"] == "ValueError", outcome["error"]
            message = outcome["error"]["message"]
            assert message.startswith("loader 'train': the ranks produced different metrics")
            for part in parts:
                assert part in message, message
            assert outcome["seconds"] < MISMATCH_TIMEOUT_S / 2, outcome  # failed fast, no hang


def test_metric_names_mismatch_message() -> None:
    message = distributed.metric_names_mismatch(
        "valid", [["accuracy01", "loss"], ["accuracy01", "extra", "loss"], ["loss", "other"]]
    )
    assert message == (
        "loader 'valid': the ranks produced different metrics: metric 'accuracy01' on ranks "
        "0, 1 (rank 2 did not); metric 'extra' on rank 1 (ranks 0, 2 did not); metric "
        "'other' on rank 2 (ranks 0, 1 did not). Every rank must put the same scalar metrics "
        "in batch_metrics (their means are reduced over the ranks together)"
    )


@pytest.fixture
def group_timeouts(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The ``timeout`` each ``init_process_group`` call got (the real one still runs)."""
    seen: list[Any] = []
    real = dist.init_process_group

    def spy(*args: Any, **kwargs: Any) -> None:
        seen.append(kwargs.get("timeout"))
        real(*args, **kwargs)

    monkeypatch.setattr(dist, "init_process_group", spy)
    return seen


def test_ddp_timeout_reaches_init_process_group(group_timeouts: list[Any]) -> None:
    _train(16, 1, ddp=True, ddp_timeout=7)
    _train(16, 1, ddp=True, ddp_timeout=timedelta(seconds=2.5))
    _train(16, 1, ddp=True)
    assert group_timeouts == [
        timedelta(seconds=7),
        timedelta(seconds=2.5),
        timedelta(minutes=10),  # the documented default, for gloo and nccl alike
    ]
    assert not dist.is_initialized()


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("60", TypeError),
        (True, TypeError),
        (0, ValueError),
        (-1.0, ValueError),
        (timedelta(0), ValueError),
        (float("inf"), ValueError),
    ],
)
def test_bad_ddp_timeout_is_refused(
    group_timeouts: list[Any], value: Any, error: type[Exception]
) -> None:
    with pytest.raises(error, match="ddp_timeout"):
        _train(16, 1, ddp=True, ddp_timeout=value)
    assert group_timeouts == [] and not dist.is_initialized()


def test_rank_helpers_follow_the_launcher_without_group(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert (distributed.get_rank(), distributed.get_world_size()) == (3, 4)
    assert distributed.get_local_rank() == 1 and not distributed.is_main_process()
    monkeypatch.setenv("RANK", "three")
    with pytest.raises(ValueError, match=r"environment variable RANK.*'three'"):
        distributed.get_rank()


def test_rank_helpers_without_group() -> None:
    assert not dist.is_initialized()
    assert distributed.get_rank() == 0 and distributed.get_world_size() == 1
    assert distributed.is_main_process()
    model = nn.Linear(2, 2)
    assert distributed.unwrap_model(model) is model


if __name__ == "__main__":
    {"run": _worker, "mismatch": _mismatch_worker}[sys.argv[2] if len(sys.argv) > 2 else "run"](
        Path(sys.argv[1])
    )
