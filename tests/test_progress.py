"""The tqdm progress bar: output off a terminal, running metrics, closed on errors, rank 0 only."""

from __future__ import annotations

import io

import pytest
import torch
from _data import separable_loaders
from torch import nn

import eventrunner
from plugins import ProgressBarCallback


def _train(runner_class=eventrunner.SupervisedRunner, callbacks=(), num_epochs=2, **kwargs):
    loaders = separable_loaders(48, 16)
    model = nn.Linear(4, 2)
    runner = runner_class()
    runner.train(
        model=model,
        criterion=nn.CrossEntropyLoss(),
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        loaders=loaders,
        num_epochs=num_epochs,
        callbacks=list(callbacks),
        console=False,
        **kwargs,
    )
    return runner


class _RecordingBar(ProgressBarCallback):
    """Keeps every bar it opened, and counts the times it read the metrics."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.opened = []
        self.reads = 0

    def on_loader_start(self, runner):
        super().on_loader_start(runner)
        if self.bar is not None:
            self.opened.append(self.bar)

    def _postfix(self, runner):
        self.reads += 1
        return super()._postfix(runner)


def test_bar_output_when_not_a_terminal():
    stream = io.StringIO()  # not a tty
    callback = _RecordingBar(file=stream, leave=True, refresh_seconds=0)
    runner = _train(callbacks=[callback])
    text = stream.getvalue()
    for epoch in (1, 2):
        assert f"{epoch}/2 * Epoch (train)" in text
        assert f"{epoch}/2 * Epoch (valid)" in text
    assert "6/6" in text and "2/2" in text  # every batch counted
    # The final postfix shows the loader's mean, as epoch_metrics holds it.
    assert f"loss={runner.epoch_metrics['valid']['loss']:.4g}" in text
    assert len(callback.opened) == 4
    assert all(bar.disable for bar in callback.opened)  # tqdm marks a closed bar disabled
    assert callback.bar is None


def test_verbose_composes_the_bar():
    runner = _train(verbose=True, num_epochs=1)
    assert "progress" in [callback.kind for callback in runner.callbacks]
    runner = _train(num_epochs=1)
    assert "progress" not in [callback.kind for callback in runner.callbacks]


def test_bar_draws_on_stderr_and_is_cleared(capsys):
    _train(callbacks=[ProgressBarCallback(refresh_seconds=0)], num_epochs=1)
    err = capsys.readouterr().err
    assert "1/1 * Epoch (train)" in err and "loss=" in err
    assert err.rstrip(" ").endswith("\r")  # leave=False: the last bar is wiped from its line


def test_short_loader_passes_draw_nothing():
    # A pass shorter than the redraw interval never shows a bar (tqdm's delay=).
    stream = io.StringIO()
    _train(callbacks=[ProgressBarCallback(file=stream, refresh_seconds=3600)])
    assert stream.getvalue().strip() == ""


def test_metrics_are_read_per_redraw_not_per_batch():
    # A redraw interval longer than the run: metrics are read only at each loader end.
    callback = _RecordingBar(file=io.StringIO(), refresh_seconds=3600)
    _train(callbacks=[callback])
    assert callback.reads == 0  # loader end reads loader_metrics, not the running means
    callback = _RecordingBar(file=io.StringIO(), refresh_batches=2)
    _train(callbacks=[callback])
    assert callback.reads == 2 * (6 // 2 + 2 // 2)  # 2 epochs x (train 6, valid 2 batches)


class _Failing(eventrunner.SupervisedRunner):
    def handle_batch(self, batch):
        if self.loader_batch_step == 3:
            raise KeyError("bad batch")
        super().handle_batch(batch)


def test_bar_closed_on_error():
    callback = _RecordingBar(file=io.StringIO())
    with pytest.raises(KeyError, match="bad batch"):
        _train(_Failing, callbacks=[callback])
    assert len(callback.opened) == 1
    assert callback.opened[0].disable
    assert callback.bar is None


class _NotMainRank(eventrunner.SupervisedRunner):
    is_main_process = False


def test_no_bar_off_rank_zero():
    stream = io.StringIO()
    callback = _RecordingBar(file=stream)
    _train(_NotMainRank, callbacks=[callback])
    assert stream.getvalue() == ""
    assert callback.opened == []


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="refresh_batches"):
        ProgressBarCallback(refresh_batches=0)
    with pytest.raises(ValueError, match="refresh_seconds"):
        ProgressBarCallback(refresh_seconds=-1)
