"""Exact resume from any batch (SPEC 7): a child process training with
``checkpoint_every_n_batches`` is killed with a real SIGKILL at random batches (and inside
saves), resumes from ``last.pth`` in a new process, and must end bitwise-identical to the
same run uninterrupted: final weights, optimizer and scheduler state, and ``metrics.csv``.

The configurations cover what a mid-pass position must restore: the sampler's shuffle order
(global RNG and a loader ``generator=``), DataLoader workers (also persistent), dropout,
random augmentation in the main process and inside workers (also persistent: each batch is
seeded from the run, whichever worker loads it), gradient accumulation with a group open, the kept
batches of ``overfit``/``BatchLimitLoaderWrapper``, torchdata's ``StatefulDataLoader`` (put
back through its own ``state_dict``), a scheduler stepped per batch, fp16 autocast with its
``GradScaler`` (on the CPU; its first step overflows and is skipped, its growth tracker counts
every step), and batches in flight in the prefetch queue (the loop consumes fewer than the
producer fetched).
"""

from __future__ import annotations

import json
import os
import random
import signal
import textwrap
from pathlib import Path

import pytest
import torch
from _zygote import Zygote, wait_exit

from eventrunner import checkpoint as ckpt

pytestmark = pytest.mark.skipif(
    not (hasattr(signal, "SIGKILL") and hasattr(os, "fork")), reason="needs SIGKILL and fork"
)

CHILD = textwrap.dedent(
    """
    import json, os, signal, sys
    from pathlib import Path

    import torch
    from torch import nn
    from torch.utils.data import DataLoader, Dataset

    import eventrunner.checkpoint.files as files
    from eventrunner import BatchLimitLoaderWrapper, FunctionCallback, SupervisedRunner

    p = json.loads(Path(sys.argv[0]).with_suffix(".json").read_text())
    torch.set_num_threads(1)
    logdir = Path(p["logdir"])


    class Noisy(Dataset):
        # Random augmentation where the loader fetches: the main process (num_workers=0).
        def __init__(self, x, y, noise):
            self.x, self.y, self.noise = x, y, noise

        def __len__(self):
            return len(self.x)

        def __getitem__(self, i):
            x = self.x[i]
            if self.noise:
                x = x + self.noise * torch.randn_like(x)
            return x, self.y[i]


    g = torch.Generator().manual_seed(0)
    x = torch.randn(120, 6, generator=g)
    y = (x[:, 0] + x[:, 1] > 0).long()
    c = p["config"]
    workers = c.get("workers", 0)
    if c.get("stateful"):
        from torchdata.stateful_dataloader import StatefulDataLoader as DataLoader
    train = DataLoader(
        Noisy(x, y, c.get("noise", 0.0)),
        batch_size=8,
        shuffle=True,
        num_workers=workers,
        persistent_workers=c.get("persistent", False) and workers > 0,
        generator=torch.Generator().manual_seed(7) if c.get("generator") else None,
    )
    if c.get("limit"):
        train = BatchLimitLoaderWrapper(train, c["limit"])
    loaders = {"train": train, "valid": DataLoader(Noisy(x[:40], y[:40], 0.0), batch_size=16)}
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=4, gamma=0.9)
    saves = [0]


    def kill_inside_save(link_into=files.link_into):
        def link(source, target):
            saves[0] += 1
            if saves[0] == p.get("kill_in_save"):
                os.kill(os.getpid(), signal.SIGKILL)  # the temp file is written, not renamed
            link_into(source, target)
        return link


    files.link_into = kill_inside_save()


    def at_batch_end(runner):
        if runner.batch_step == p.get("kill_at"):
            os.kill(os.getpid(), signal.SIGKILL)
        if runner.batch_step == p.get("term_at"):
            os.kill(os.getpid(), signal.SIGTERM)


    from plugins import SchedulerCallback
    from eventrunner.events import Order

    last = logdir / "checkpoints" / "last.pth"
    runner = SupervisedRunner()
    runner.train(
        model=model,
        criterion=nn.CrossEntropyLoss(),
        optimizer=optimizer,
        scheduler=scheduler,
        loaders=loaders,
        num_epochs=3,
        logdir=logdir,
        resume="auto",
        checkpoint_every_n_batches=c.get("every", 2),
        accumulation_steps=c.get("accumulation", 1),
        amp=c.get("amp"),
        overfit=c.get("overfit", False),
        prefetch=c.get("prefetch", 2),
        callbacks=[
            SchedulerCallback(mode="batch"),
            FunctionCallback("batch_end", at_batch_end, order=Order.CHECKPOINT + 1),
        ],
        console=False,
        seed=0,
    )
    torch.save(
        {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
         "scheduler": scheduler.state_dict(), "epoch_metrics": runner.epoch_metrics,
         "scaler": runner.scaler.state_dict() if runner.scaler is not None else {}},
        logdir / "final.pt",
    )
    """
)

CONFIGS = {
    "shuffle": {},
    "generator-workers": {"generator": True, "workers": 2},
    "persistent-workers": {"workers": 2, "persistent": True, "every": 3},
    "augment-accumulate": {"noise": 0.1, "accumulation": 3, "prefetch": 0},
    "batch-limit": {"limit": 6},
    "overfit": {"overfit": True, "every": 1},
    "stateful-loader": {"stateful": True, "generator": True, "workers": 2},
    "augment-in-workers": {"noise": 0.1, "workers": 2},
    "augment-in-persistent-workers": {"noise": 0.1, "workers": 2, "persistent": True},
    "amp-fp16-scaler": {"amp": "fp16"},
}
KILLS_PER_CONFIG = 4  # + one kill inside a save per config: 50 kills in all


class Children:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.script = folder / "child.py"
        self.script.write_text(CHILD)
        self.zygote = Zygote(folder)

    def run(self, config: dict, logdir: Path, **kill: int) -> str | None:
        """Run the child to its end (or its kill); its exit status, None when killed."""
        params = {"config": config, "logdir": str(logdir), **kill}
        self.script.with_suffix(".json").write_text(json.dumps(params))
        pid = self.zygote.fork(self.script)
        wait_exit(pid)
        status = Path(f"{self.script}.exit")
        return status.read_text() if status.exists() else None


def _final(logdir: Path) -> dict:
    return torch.load(logdir / "final.pt", weights_only=True)


def _differences(reference: dict, resumed: dict) -> list[str]:
    found = []
    for part in ("model", "optimizer", "scheduler", "scaler"):
        flat_ref, flat_res = _flatten(reference[part]), _flatten(resumed[part])
        for key in sorted(set(flat_ref) | set(flat_res)):
            a, b = flat_ref.get(key), flat_res.get(key)
            same = torch.equal(a, b) if isinstance(a, torch.Tensor) else a == b
            if not same:
                found.append(f"{part}.{key}")
    if reference["epoch_metrics"] != resumed["epoch_metrics"]:
        found.append("epoch_metrics")
    return found


def _flatten(obj, prefix: str = "") -> dict:
    if isinstance(obj, dict):
        out = {}
        for key, value in obj.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    if isinstance(obj, list):
        return _flatten(dict(enumerate(obj)), prefix)
    return {prefix.rstrip("."): obj}


def _batches_per_run(config: dict) -> int:
    train = 1 if config.get("overfit") else config.get("limit", 15)
    valid = 1 if config.get("overfit") else 3
    return 3 * (train + valid)


@pytest.fixture(scope="module")
def children(tmp_path_factory):
    made = Children(tmp_path_factory.mktemp("children"))
    yield made
    made.zygote.close()


@pytest.mark.parametrize("name", list(CONFIGS))
def test_sigkill_at_random_batches_resumes_bitwise(children, tmp_path, name):
    config = CONFIGS[name]
    reference = tmp_path / "reference"
    assert children.run(config, reference) == "0"
    expected = _final(reference)
    if config.get("amp"):  # the scaler's state is not its initial one: restoring it matters
        scaler = expected["scaler"]
        assert scaler["scale"] < 2.0**16 and scaler["_growth_tracker"] > 0, scaler
    csv = (reference / "metrics.csv").read_bytes()
    rng = random.Random(name)
    total = _batches_per_run(config)
    kills = [{"kill_at": k} for k in sorted(rng.sample(range(2, total), KILLS_PER_CONFIG))]
    kills.append({"kill_in_save": rng.randint(2, 6)})
    for kill in kills:
        logdir = tmp_path / f"killed_{'_'.join(f'{k}{v}' for k, v in kill.items())}"
        assert children.run(config, logdir, **kill) is None, f"{kill}: not killed"
        assert children.run(config, logdir) == "0", f"{kill}: resumed run failed"
        differ = _differences(expected, _final(logdir))
        assert not differ, f"{name}, killed {kill}: resumed run differs in {differ[:6]}"
        assert (logdir / "metrics.csv").read_bytes() == csv, f"{name}, {kill}: metrics.csv"


def test_sigterm_finishes_the_batch_saves_it_and_exits_143(children, tmp_path):
    config = CONFIGS["shuffle"]
    reference = tmp_path / "reference"
    assert children.run(config, reference) == "0"
    logdir = tmp_path / "preempted"
    assert children.run(config, logdir, term_at=23) == "143"
    saved = ckpt.load_checkpoint(logdir / "checkpoints" / "last.pth")
    # batch 23 of the run: epoch 2 (18 batches per epoch), its train batch 5.
    assert saved["position"]["epoch"] == 2
    assert (saved["position"]["loader"], saved["position"]["batches"]) == ("train", 5)
    index = ckpt.read_index(logdir / "checkpoints")
    assert index["last_position"] == {"epoch": 2, "loader": "train", "batches": 5}
    assert children.run(config, logdir) == "0"  # resume="auto" goes on from there
    assert not _differences(_final(reference), _final(logdir))
    assert (logdir / "metrics.csv").read_bytes() == (reference / "metrics.csv").read_bytes()
