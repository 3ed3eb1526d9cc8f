"""Nothing is lost when a run dies: a child process training with checkpoints is killed with
SIGKILL several times, some of them while a checkpoint is being written (a temp file exists),
others at random moments; each time it resumes from ``last.pth``. After every kill
``last.pth`` and ``best.pth`` load and ``index.json`` matches the files it names.

The children are forked by a small "zygote" process that imported torch once (a fresh
interpreter costs seconds per kill); the zygote itself never computes, so forking it is safe.
"""

from __future__ import annotations

import os
import random
import signal
import textwrap
import time
from pathlib import Path

import pytest
from _zygote import Zygote, start, wait_exit, wait_for

from eventrunner import checkpoint as ckpt

pytestmark = pytest.mark.skipif(
    not (hasattr(signal, "SIGKILL") and hasattr(os, "fork")), reason="needs SIGKILL and fork"
)

# ~4.3M parameters (17 MB per checkpoint) on tiny batches: a save takes about as long as an
# epoch, so kills land during saves often.
CHILD = textwrap.dedent(
    """
    import json
    from pathlib import Path

    import torch
    from torch import nn

    import plugins
    from eventrunner import FunctionCallback, Runner

    params = json.loads((Path(__file__).parent / "params.json").read_text())
    logdir, num_epochs = Path(params["logdir"]), params["num_epochs"]
    torch.set_num_threads(1)


    class Child(Runner):
        def handle_batch(self, batch):
            out = self.model(batch["x"])
            self.batch_metrics["loss"] = ((out - batch["y"]) ** 2).mean()


    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(64, 2048), nn.ReLU(), nn.Linear(2048, 2048), nn.ReLU(), nn.Linear(2048, 1)
    )
    data = [{"x": torch.randn(4, 64), "y": torch.randn(4, 1)} for _ in range(3)]
    last = logdir / "checkpoints" / "last.pth"


    def started(runner):
        (logdir / "started").write_text(str(runner.epoch_step))


    Child().train(
        model=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=1e-3),
        loaders={"train": data, "valid": data[:1]},
        num_epochs=num_epochs,
        resume=last if last.exists() else None,
        callbacks=[
            FunctionCallback("experiment_start", started),
            plugins.CheckpointCallback(logdir=logdir, topk=2, background_save=True),
        ],
        console=False,
        seed=0,
    )
    """
)


def _saving(folder: Path) -> bool:
    try:
        return any(name.startswith(".eventrunner-") for name in os.listdir(folder))
    except FileNotFoundError:
        return False


def _indexed_epoch(folder: Path) -> int:
    """The last epoch ``index.json`` names (0 before the first save)."""
    try:
        return int(ckpt.read_index(folder)["last_epoch"] or 0)
    except (OSError, ValueError):
        return 0


def _check_folder(folder: Path) -> int:
    """The invariants a kill must never break; returns the epoch in last.pth."""
    index = ckpt.read_index(folder)
    last = ckpt.load_checkpoint(folder / "last.pth")["epoch"]
    best = ckpt.load_checkpoint(folder / "best.pth")["epoch"]
    files = index["files"]
    for name, entry in files.items():
        held = ckpt.load_checkpoint(folder / name)
        if name.startswith("epoch_"):
            # Top-k files are immutable: exactly what the index says.
            assert held["epoch"] == entry["epoch"], name
            metric = held["selection"]["history"][-1]["metric"]
            assert entry["metric"] == pytest.approx(metric), name
    for name in index["topk"]:
        assert (folder / name).is_file(), name
    # last.pth/best.pth are replaced just before the index: at most one save ahead of it.
    assert last in (index["last_epoch"], index["last_epoch"] + 1)
    assert best == files["best.pth"]["epoch"] or (best == last == index["last_epoch"] + 1)
    return last


def test_sigkill_at_random_moments_and_during_saves_loses_nothing(tmp_path):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    logdir = tmp_path / "run"
    logdir.mkdir()
    folder = logdir / "checkpoints"
    rng = random.Random(1234)
    zygote = Zygote(tmp_path)
    try:
        epochs_seen = []
        killed_mid_save = 0
        for kind in ["save", "random", "save", "random", "save"]:
            pid = start(zygote, script, logdir, 10_000)
            wait_for(lambda: (logdir / "started").exists(), pid, "the start of training")
            if not (folder / "index.json").exists():
                wait_for(lambda: (folder / "index.json").exists(), pid, "the first save")
            if kind == "save":
                # Let one save of this round finish (so the run moves on), kill during the next.
                # Watched in the index, not by temp files: a killed save's temp file stays until
                # the next run starts, and would pass for a save of this round.
                saved = _indexed_epoch(folder)
                wait_for(
                    lambda saved=saved: _indexed_epoch(folder) > saved, pid, "a save of this round"
                )
                wait_for(lambda: _saving(folder), pid, "the next save")
            else:
                time.sleep(rng.uniform(0.0, 0.6))
            os.kill(pid, signal.SIGKILL)
            wait_exit(pid)
            assert not Path(f"{script}.exit").exists()  # killed, not finished
            killed_mid_save += kind == "save" and _saving(folder)  # its temp file is left
            epochs_seen.append(_check_folder(folder))
        assert epochs_seen == sorted(epochs_seen) and len(set(epochs_seen)) >= 3
        assert killed_mid_save >= 1

        # A last run resumes and finishes: no temp file left, the index matches exactly.
        final = epochs_seen[-1] + 2
        pid = start(zygote, script, logdir, final)
        wait_exit(pid)
        assert Path(f"{script}.exit").read_text() == "0"
    finally:
        zygote.close()
    assert _check_folder(folder) == final
    index = ckpt.read_index(folder)
    assert index["last_epoch"] == final
    assert ckpt.load_checkpoint(folder / "best.pth")["epoch"] == index["best_epoch"]
    assert not _saving(folder)
    on_disk = sorted(p.name for p in folder.glob("epoch_*.pth"))
    assert on_disk == sorted(index["topk"])
