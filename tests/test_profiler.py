"""The subscriber profiler: its table, its numbers, its warning, and a bus left as it found it."""

from __future__ import annotations

import io
import json
import time

import pytest
import torch
from _data import separable_loaders
from torch import nn

import eventrunner
from eventrunner import Callback
from plugins import AccuracyCallback, ProfilerCallback
from plugins.profiler import ProfilerWarning


def _train(runner_class=eventrunner.SupervisedRunner, callbacks=(), **kwargs):
    loaders = separable_loaders(32, 16)
    model = nn.Linear(4, 2)
    runner = runner_class()
    runner.train(
        model=model,
        criterion=nn.CrossEntropyLoss(),
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        loaders=loaders,
        num_epochs=2,
        callbacks=list(callbacks),
        console=False,
        **kwargs,
    )
    return runner


class _AsyncNote(Callback):
    async def on_loader_end(self, runner):
        self.seen = runner.loader_key


def test_profile_true_lists_every_subscriber(tmp_path, capsys):
    runner = _train(callbacks=[AccuracyCallback(), _AsyncNote()], profile=True, logdir=tmp_path)
    profiler = next(cb for cb in runner.callbacks if isinstance(cb, ProfilerCallback))
    table = capsys.readouterr().out
    assert table.strip().endswith(profiler.table.strip().splitlines()[-1])
    names = {cb.describe_name() for cb in runner.callbacks if cb is not profiler}
    assert len(names) >= 8
    listed = {line.split()[0] for line in profiler.table.splitlines() if line}
    assert names <= listed
    assert (tmp_path / "profile.txt").read_text().strip() == profiler.table.strip()
    saved = json.loads((tmp_path / "profile.json").read_text())
    assert saved["batches"] == 2 * (4 + 2)

    calls = {(row["subscriber"], row["event"]): row["calls"] for row in saved["subscribers"]}
    assert calls[("MetricMeansCallback", "batch_end")] == 12
    assert calls[("BackwardCallback", "batch_end")] == 8  # train batches only
    assert calls[("_AsyncNote", "loader_end")] == 4  # async handlers are timed too
    assert calls[("CheckpointCallback", "epoch_end")] == 2
    phases = saved["phases"]
    assert [phases[k]["batches"] for k in ("train", "valid")] == [8, 4]
    for phase in phases.values():
        assert phase["step_s"] >= phase["handle_batch_s"] > 0
        assert phase["data_wait_s"] > 0


def test_profiler_leaves_the_runner_and_bus_unwrapped():
    runner = _train(callbacks=[ProfilerCallback(print_table=False)])
    assert "handle_batch" not in runner.__dict__
    for event in eventrunner.EVENTS:
        for sub in runner.bus.subscriptions(event):
            assert sub.name != "profiler"
            assert getattr(sub.handler, "__self__", None) is not None  # bound methods again


def test_off_by_default():
    runner = _train()
    assert not any(isinstance(cb, ProfilerCallback) for cb in runner.callbacks)
    assert "handle_batch" not in runner.__dict__


class _Slow(Callback):
    def on_batch_end(self, runner):
        time.sleep(0.02)


def test_warns_about_a_slow_batch_end_subscriber():
    stream = io.StringIO()
    with pytest.warns(ProfilerWarning, match=r"_Slow takes \d+% of the step at batch_end"):
        _train(callbacks=[_Slow(), ProfilerCallback(stream=stream, warn_share=0.2)])
    assert "warning: _Slow" in stream.getvalue()


class _Failing(eventrunner.SupervisedRunner):
    def handle_batch(self, batch):
        if self.epoch_step == 2:
            raise RuntimeError("boom")
        super().handle_batch(batch)


def test_report_after_a_failure():
    profiler = ProfilerCallback(print_table=False)
    runner = None
    with pytest.raises(RuntimeError, match="boom"):
        runner = _train(_Failing, callbacks=[profiler])
    assert profiler.report["phases"]["train"]["batches"] == 4
    assert "FiniteCheckCallback" in profiler.table
    assert runner is None


class _BackgroundNote(Callback):
    background = True

    def on_epoch_end(self, runner):
        time.sleep(0.001)


def test_background_subscribers_are_timed_on_their_worker():
    profiler = ProfilerCallback(print_table=False)
    _train(callbacks=[_BackgroundNote(), profiler])
    rows = [r for r in profiler.report["subscribers"] if r["subscriber"] == "_BackgroundNote"]
    # Epoch 1's job has finished by the end of epoch 2; epoch 2's may still be running at
    # experiment_end, when the report is made.
    assert [(r["event"], r["background"]) for r in rows] == [("epoch_end", True)]
    assert rows[0]["calls"] >= 1 and rows[0]["seconds"] >= 0.001
    assert "epoch_end (bg)" in profiler.table
