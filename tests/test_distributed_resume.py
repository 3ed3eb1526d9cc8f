"""Automatic resume under torchrun: ``torchrun --nproc_per_node=2 --max-restarts=1`` where one
rank is killed (SIGKILL) inside an epoch; torchrun restarts both workers, ``resume="auto"``
takes the mid-epoch ``last.pth``, and the run ends with the weights and metrics of the same
run uninterrupted (gloo on the CPU: the same sums in the same order, so bitwise). And SIGTERM
on one rank only: every rank stops after the same batch, which is saved and resumed from.

This file is also the worker script (``python -m torch.distributed.run ... thisfile OUT MODE``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from eventrunner import checkpoint as ckpt

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")

KILL_AT = 10  # per rank 5 train + 2 valid batches an epoch: epoch 2, train batch 3


def _worker(out: Path, mode: str) -> None:
    from eventrunner import FunctionCallback, Order, SupervisedRunner, distributed
    from plugins import DistributedCallback

    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(80, 5, generator=g)
    data = TensorDataset(x, (x[:, 0] - x[:, 1] > 0).long())
    loaders = {
        "train": DataLoader(data, batch_size=8, shuffle=True),
        "valid": DataLoader(TensorDataset(x[:32], (x[:32, 0] > 0).long()), batch_size=8),
    }
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 2))
    attempt = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))

    def kill(runner) -> None:
        if attempt > 0 or distributed.get_rank() != 1 or runner.batch_step != KILL_AT:
            return
        if mode == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        if mode == "term":  # this rank only: both must stop after one and the same batch
            os.kill(os.getpid(), signal.SIGTERM)

    def started(runner) -> None:
        point = runner.resume_point
        where = point.position if point is not None else None
        if distributed.get_rank() == 0:
            summary = None if where is None else [where["epoch"], where["loader"], where["batches"]]
            (out / f"{mode}_start_{attempt}.json").write_text(json.dumps(summary))

    runner = SupervisedRunner()
    runner.train(
        model=model,
        criterion=nn.CrossEntropyLoss(),
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9),
        loaders=loaders,
        num_epochs=3,
        logdir=out / mode,
        checkpoint_every_n_batches=2,
        resume="auto",
        callbacks=[
            DistributedCallback(stop_check_every=2),
            FunctionCallback("experiment_start", started),
            FunctionCallback("batch_end", kill, order=Order.CHECKPOINT + 1),
        ],
        console=False,
        seed=0,
    )
    if distributed.get_rank() == 0:
        torch.save(
            {"model": model.state_dict(), "metrics": runner.epoch_metrics, "attempt": attempt},
            out / f"{mode}.pt",
        )


def _torchrun(out: Path, mode: str, restarts: int = 1) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc_per_node=2", f"--max-restarts={restarts}", __file__, str(out), mode]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The uninterrupted run: ``reference.pt`` and ``reference/metrics.csv``."""
    out = tmp_path_factory.mktemp("ddp_reference")
    done = _torchrun(out, "reference")
    assert done.returncode == 0, done.stderr[-4000:]
    return out


def _same_as_reference(reference: Path, out: Path, mode: str) -> None:
    expected = torch.load(reference / "reference.pt", weights_only=True)
    resumed = torch.load(out / f"{mode}.pt", weights_only=True)
    for key, value in expected["model"].items():
        assert torch.equal(value, resumed["model"][key]), key
    assert resumed["metrics"] == expected["metrics"]
    csv = (reference / "reference" / "metrics.csv").read_bytes()
    assert (out / mode / "metrics.csv").read_bytes() == csv


def test_a_rank_killed_mid_epoch_resumes_by_itself_under_torchrun(tmp_path, reference):
    killed = _torchrun(tmp_path, "kill")
    assert killed.returncode == 0, killed.stderr[-4000:]
    resumed = torch.load(tmp_path / "kill.pt", weights_only=True)
    assert resumed["attempt"] == 1  # the run finished in torchrun's restart
    # The restart resumed inside epoch 2, from the checkpoint after its train batch 2.
    assert json.loads((tmp_path / "kill_start_1.json").read_text()) == [2, "train", 2]
    _same_as_reference(reference, tmp_path, "kill")


def test_sigterm_on_one_rank_stops_every_rank_after_the_same_batch(tmp_path, reference):
    preempted = _torchrun(tmp_path, "term", restarts=0)
    assert preempted.returncode != 0  # the workers exited with 143
    assert "exitcode: 143" in preempted.stderr or "exitcode : 143" in preempted.stderr, (
        preempted.stderr[-3000:]
    )
    saved = ckpt.load_checkpoint(tmp_path / "term" / "checkpoints" / "last.pth")
    # SIGTERM at rank 1's batch 10 (epoch 2, train batch 3); the ranks agree every 2 train
    # batches: both stop after train batch 4, which is saved, each rank's share in it.
    position = saved["position"]
    assert (position["epoch"], position["loader"], position["batches"]) == (2, "train", 4)
    assert len(position["ranks"]) == 2
    finished = _torchrun(tmp_path, "term")  # attempt 0 again, but the SIGTERM batch is past
    assert finished.returncode == 0, finished.stderr[-4000:]
    _same_as_reference(reference, tmp_path, "term")


if __name__ == "__main__":
    _worker(Path(sys.argv[1]), sys.argv[2])
