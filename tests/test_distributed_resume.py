"""Automatic resume under torchrun: ``torchrun --nproc_per_node=2 --max-restarts=1`` where one
rank is killed (SIGKILL) inside an epoch; torchrun restarts both workers, ``resume="auto"``
takes the mid-epoch ``last.pth``, and the run ends with the weights and metrics of the same
run uninterrupted (gloo on the CPU: the same sums in the same order, so bitwise).

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

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")

KILL_AT = 10  # per rank 5 train + 2 valid batches an epoch: epoch 2, train batch 3


def _worker(out: Path, mode: str) -> None:
    from eventrunner import FunctionCallback, Order, SupervisedRunner, distributed

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
        rank = distributed.get_rank()
        if mode == "kill" and attempt == 0 and rank == 1 and runner.batch_step == KILL_AT:
            os.kill(os.getpid(), signal.SIGKILL)

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


def _torchrun(out: Path, mode: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc_per_node=2", "--max-restarts=1", __file__, str(out), mode]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


def test_a_rank_killed_mid_epoch_resumes_by_itself_under_torchrun(tmp_path):
    reference = _torchrun(tmp_path, "reference")
    assert reference.returncode == 0, reference.stderr[-4000:]
    killed = _torchrun(tmp_path, "kill")
    assert killed.returncode == 0, killed.stderr[-4000:]
    expected = torch.load(tmp_path / "reference.pt", weights_only=True)
    resumed = torch.load(tmp_path / "kill.pt", weights_only=True)
    assert resumed["attempt"] == 1  # the run finished in torchrun's restart
    # The restart resumed inside epoch 2, from the checkpoint after its train batch 2.
    assert json.loads((tmp_path / "kill_start_1.json").read_text()) == [2, "train", 2]
    for key, value in expected["model"].items():
        assert torch.equal(value, resumed["model"][key]), key
    assert resumed["metrics"] == expected["metrics"]
    csv = (tmp_path / "reference" / "metrics.csv").read_bytes()
    assert (tmp_path / "kill" / "metrics.csv").read_bytes() == csv


if __name__ == "__main__":
    _worker(Path(sys.argv[1]), sys.argv[2])
