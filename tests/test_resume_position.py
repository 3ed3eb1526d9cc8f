"""Mid-epoch checkpoints in one process (SPEC 7): what a position holds, the errors a crafted
one gets, ``resume="auto"``, SIGTERM, ``checkpoint_saved``, and that a run without mid-epoch
checkpoints pays nothing per batch. (Resuming after a real SIGKILL, bitwise:
``test_resume_inside_epoch.py``.)"""

from __future__ import annotations

import io
import json
import logging
import os
import signal
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import plugins
from eventrunner import BatchLimitLoaderWrapper, FunctionCallback, Order, SupervisedRunner, signals
from eventrunner import checkpoint as ckpt
from eventrunner.data.skip import PassFrom, skip_kind
from eventrunner.preemption import PREEMPTED_STATUS, Preempted


def _loaders() -> dict[str, Any]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(48, 3, generator=g)
    data = TensorDataset(x, (x[:, 0] > 0).long())
    return {
        "train": DataLoader(data, batch_size=8, shuffle=True),
        "valid": [(x[:8], (x[:8, 0] > 0).long())],
    }


def _train(logdir: Path, **kw: Any) -> tuple[SupervisedRunner, nn.Module]:
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    runner = SupervisedRunner()
    kw.setdefault("loaders", _loaders())
    runner.train(
        model=model,
        criterion=nn.CrossEntropyLoss(),
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        num_epochs=2,
        logdir=logdir,
        console=False,
        **kw,
    )
    return runner, model


def _stop_at(batch_step: int) -> FunctionCallback:
    def stop(runner: Any) -> None:
        if runner.batch_step == batch_step:
            raise KeyboardInterrupt

    return FunctionCallback("batch_end", stop, order=Order.CHECKPOINT + 1)


def test_a_mid_epoch_checkpoint_holds_where_the_loop_stands(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path, checkpoint_every_n_batches=2, callbacks=[_stop_at(10)])
    saved = ckpt.load_checkpoint(tmp_path / "checkpoints" / "last.pth")
    # 6 train + 1 valid batches per epoch: batch 10 is epoch 2's third train batch; the
    # last save was at its second.
    position = saved["position"]
    assert (position["epoch"], position["loader"], position["batches"]) == (2, "train", 2)
    assert position["samples"] == 16 and saved["epoch"] == 1
    assert set(position["epoch_metrics"]) == set()  # no loader of epoch 2 done yet
    assert position["ranks"][0]["running_metrics"]["counts"] == {"loss": 16}
    index = ckpt.read_index(tmp_path / "checkpoints")
    assert index["last_position"] == {"epoch": 2, "loader": "train", "batches": 2}
    assert index["last_epoch"] == 1
    # The resumed run says where it goes on from (before: only at logging.INFO, unseen).
    shown = io.StringIO()
    _train(tmp_path, resume="auto", callbacks=[plugins.ConsoleLogger(stream=shown)])
    last = tmp_path / "checkpoints" / "last.pth"
    assert shown.getvalue().startswith(f"Resumed from {last} in epoch 2, train after batch 2\n")


def test_a_crafted_position_is_refused_naming_the_file_and_field(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path / "a", checkpoint_every_n_batches=2, callbacks=[_stop_at(3)])
    path = tmp_path / "a" / "checkpoints" / "last.pth"
    saved = ckpt.load_checkpoint(path)
    part = saved["position"]["ranks"][0]
    for change, message in [
        ({"loader": "valid"}, "inside the pass over loader 'valid'"),
        ({"batches": "two"}, "position.batches must be an int"),
        ({"epoch": 5}, "position.epoch must be the epoch after counters.epoch_step (1)"),
        ({"ranks": [part, part]}, "by 2 processes; this run has 1"),
        ({"ranks": [{**part, "grads": {"weight": torch.zeros(5)}}]}, "ranks[0].grads['weight']"),
        (
            {"ranks": [{**part, "running_metrics": {"sums": {"loss": "x"}, "counts": {}}}]},
            "ranks[0].running_metrics.sums",
        ),
    ]:
        crafted = tmp_path / "crafted.pth"
        torch.save({**saved, "position": {**saved["position"], **change}}, crafted)
        with pytest.raises(ckpt.CheckpointError, match=r"crafted\.pth") as error:
            _train(tmp_path / "b", resume=crafted)
        assert message in str(error.value)


def test_resume_auto_needs_a_logdir_and_the_intervals_are_checked(tmp_path):
    with pytest.raises(ValueError, match="resume='auto' needs a logdir"):
        _train(None, resume="auto")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="resume must be a path or 'auto', got an empty string"):
        _train(tmp_path, resume="")
    with pytest.raises(ValueError, match="checkpoint_every_n_batches must be a positive int"):
        _train(tmp_path, checkpoint_every_n_batches=0)
    with pytest.raises(ValueError, match="checkpoint_every_seconds"):
        _train(tmp_path, checkpoint_every_seconds=-1)


def test_mid_epoch_checkpoints_without_a_logdir_are_an_error_not_silently_dropped(tmp_path):
    # Before: the run trained on and never wrote last.pth; a preempted job lost everything.
    with pytest.raises(ValueError, match=r"train\(checkpoint_every_n_batches=2\) .* no logdir"):
        _train(None, checkpoint_every_n_batches=2)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"train\(checkpoint_every_seconds=5\) .* no logdir"):
        _train(None, checkpoint_every_seconds=5)  # type: ignore[arg-type]
    own = plugins.CheckpointCallback(every_n_batches=2)
    with pytest.raises(ValueError, match=r"CheckpointCallback\(every_n_batches=2\) .* no logdir"):
        _train(None, callbacks=[own])  # type: ignore[arg-type]
    # A checkpoint callback with a folder of its own writes the run's mid-epoch saves.
    positions: list[Any] = []

    def saved(sender: Any, position: Any = None, **_: Any) -> None:
        positions.append(position and position["batches"])

    folder = plugins.CheckpointCallback(logdir=tmp_path)
    with signals.checkpoint_saved.connected_to(saved):
        _train(None, checkpoint_every_n_batches=2, callbacks=[folder])  # type: ignore[arg-type]
    assert positions[:4] == [2, 4, 6, None]  # 6 train batches, then epoch 1's own save


def test_preempted_run_is_recorded_as_preempted_not_failed(tmp_path):
    def term(runner: Any) -> None:
        if runner.batch_step == 4:
            os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(Preempted):
        _train(tmp_path, callbacks=[FunctionCallback("batch_end", term)])
    lines = (tmp_path / "events.jsonl").read_text().splitlines()
    assert json.loads(lines[-1])["status"] == "preempted"


def test_sigterm_without_a_logdir_does_not_claim_to_save(caplog):
    def term(runner: Any) -> None:
        if runner.batch_step == 2:
            os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(Preempted):
        _train(None, callbacks=[FunctionCallback("batch_end", term)])  # type: ignore[arg-type]
    assert "SIGTERM: stopping after the current batch" in caplog.text
    assert "saved" not in caplog.text  # nothing claims a save that did not happen


def test_sigterm_stops_after_the_batch_and_saves_it(tmp_path, caplog):
    def term(runner: Any) -> None:
        if runner.batch_step == 4:
            os.kill(os.getpid(), signal.SIGTERM)

    ended = []
    with pytest.raises(Preempted) as stopped:
        _train(
            tmp_path,
            callbacks=[
                FunctionCallback("batch_end", term),
                FunctionCallback("experiment_end", lambda r: ended.append(r.batch_step)),
            ],
        )
    assert stopped.value.code == PREEMPTED_STATUS == 143
    last = tmp_path / "checkpoints" / "last.pth"
    assert f"SIGTERM: saved {last} in epoch 1, train after batch 4" in caplog.text
    assert ended == [4]  # the end events were published, after batch 4
    position = ckpt.load_checkpoint(tmp_path / "checkpoints" / "last.pth")["position"]
    assert (position["epoch"], position["loader"], position["batches"]) == (1, "train", 4)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # put back after the run


def test_checkpoint_saved_is_sent_once_the_file_is_durable(tmp_path):
    seen: list[dict[str, Any]] = []

    def saved(runner: Any, **info: Any) -> None:
        info["loads"] = ckpt.peek_epoch(info["path"]) == info["epoch"]  # already on disk
        seen.append(info)

    with signals.checkpoint_saved.connected_to(saved):
        _train(tmp_path, checkpoint_every_n_batches=4)
    inside = [s for s in seen if s["position"] is not None]
    epochs = [s for s in seen if s["position"] is None]
    assert [s["position"]["epoch"] for s in inside] == [1, 2]  # batch 4 of each train pass
    assert [s["epoch"] for s in epochs] == [1, 2]
    assert all(s["loads"] for s in seen)
    assert all(
        Path(f).name in {"last.pth", "best.pth", "epoch_0001.pth", "epoch_0002.pth"}
        for s in seen
        for f in s["files"]
    )


def test_without_mid_epoch_checkpoints_no_batch_handler_is_added(tmp_path):
    runner, _ = _train(tmp_path)
    assert "CheckpointCallback.inside_epoch (order=90, loaders=['train*'] with mid-epoch" in (
        runner.bus.describe()
    )
    part = next(cb for cb in runner.callbacks if type(cb).__name__ == "CheckpointCallback")._inside
    assert part.on is False and not part.loader_filter("train")
    runner, _ = _train(tmp_path / "on", checkpoint_every_n_batches=3)
    part = next(cb for cb in runner.callbacks if type(cb).__name__ == "CheckpointCallback")._inside
    assert part.on and part.loader_filter("train") and not part.loader_filter("valid")


def test_a_pass_over_a_plain_iterable_is_fast_forwarded_with_a_warning(caplog):
    def batches():
        yield from range(6)

    class Stream:
        def __iter__(self):
            return batches()

    started = []
    with caplog.at_level(logging.WARNING, logger="eventrunner"):
        rest = list(PassFrom(Stream(), 4, lambda: started.append(True)))
    assert rest == [4, 5] and started == [True]
    assert "first 4 batches are read again and dropped" in caplog.text
    assert list(PassFrom([0, 1, 2, 3], 3, lambda: None)) == [3]
    assert skip_kind([1]) == "memory" and skip_kind(Stream()) == "read"
    assert skip_kind(DataLoader(TensorDataset(torch.zeros(4)))) == "indices"


def test_kept_batches_load_only_as_a_list_within_the_limit():
    wrapper = BatchLimitLoaderWrapper([torch.zeros(1)] * 5, num_batches=2)
    with pytest.raises(ValueError, match="kept batches must be a list"):
        wrapper.load_state_dict({"kept": "all"})
    with pytest.raises(ValueError, match="3 kept batches, more than its limit 2"):
        wrapper.load_state_dict({"kept": [1, 2, 3]})
    wrapper.load_state_dict({"kept": [7, 8]})
    assert list(wrapper) == [7, 8]


def test_worker_batch_seeds_depend_on_the_batch_not_on_the_worker():
    from eventrunner.data.worker_seeds import SeedEachBatch, SeededDataset, pass_seed

    batches = list(SeedEachBatch([[0, 1], [2, 3], [4, 5]], pass_seed(42, 0, 1, "train")))
    assert [list(b) for b in batches] == [[0, 1], [2, 3], [4, 5]]
    seeds = [b.seed for b in batches]
    assert len(set(seeds)) == 3
    again = list(SeedEachBatch([[0, 1], [2, 3], [4, 5]], pass_seed(42, 0, 1, "train")))
    assert [b.seed for b in again] == seeds  # the same pass, the same seeds
    others = {
        pass_seed(42, 1, 1, "train"),
        pass_seed(42, 0, 2, "train"),
        pass_seed(7, 0, 1, "train"),
    }
    assert pass_seed(42, 0, 1, "train") not in others  # rank, epoch and run seed count
    # Outside a worker the dataset reads as it is and leaves the process's RNG alone.
    state = torch.get_rng_state()
    assert SeededDataset([10, 11, 12, 13]).__getitems__(batches[1]) == [12, 13]
    assert torch.equal(torch.get_rng_state(), state)
