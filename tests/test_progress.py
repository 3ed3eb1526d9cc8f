"""The tqdm progress bar: output off a terminal, running metrics, closed on errors, rank 0 only."""

from __future__ import annotations

import io
import os
import re
import select
import struct
import subprocess
import sys
import time

import pytest

import eventrunner
from eventrunner.testing import tiny_run
from plugins import ProgressBarCallback


def _train(runner_class=eventrunner.SupervisedRunner, callbacks=(), num_epochs=2, **kwargs):
    # 6 train and 2 valid batches: the bar counts differ per loader.
    loaders = {"train": 6, "valid": 2}
    return tiny_run(
        callbacks, runner=runner_class(), loaders=loaders, num_epochs=num_epochs, **kwargs
    )


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


# A child process that trains with bars and console lines on a pseudo-terminal: first the
# default (verbose=True, bar removed), then a user's bar that is left on screen.
_TERMINAL_CHILD = """
import time
import eventrunner
from eventrunner.testing import tiny_run
from plugins import ProgressBarCallback

class Slow(eventrunner.SupervisedRunner):
    def handle_batch(self, batch):
        time.sleep(0.025)  # 6 batches: longer than the bar's 0.1 s delay, so it draws
        super().handle_batch(batch)

tiny_run(runner=Slow(), num_batches=6, console=True, verbose=True)
print("-- leave=True --", flush=True)
bar = ProgressBarCallback(refresh_seconds=0.02, leave=True)
tiny_run([bar], runner=Slow(), num_batches=6, console=True)
"""


def _run_on_a_terminal(code: str, columns: int = 120) -> str:
    """What a child writes to a pseudo-terminal (stdout and stderr both), as raw text."""
    pty = pytest.importorskip("pty")
    fcntl = pytest.importorskip("fcntl")
    termios = pytest.importorskip("termios")
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    child = subprocess.Popen(
        [sys.executable, "-c", code], stdin=slave, stdout=slave, stderr=slave, env=env
    )
    os.close(slave)
    chunks = []
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if not ready:
                if child.poll() is not None:
                    break
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
        if child.poll() is None:
            child.kill()
        child.wait()
    raw = b"".join(chunks).decode("utf-8", errors="replace")
    assert child.returncode == 0, raw
    return raw


_CSI = re.compile(r"\x1b\[(\d*)([A-Za-z])")


def _screen(raw: str) -> list[str]:
    """The lines a terminal shows after ``raw``: ``\\r``, ``\\n``, cursor up, erase in line."""
    lines: list[list[str]] = [[]]
    row = col = 0
    i = 0
    while i < len(raw):
        char = raw[i]
        if char == "\x1b":
            match = _CSI.match(raw, i)
            assert match, f"unexpected escape sequence {raw[i : i + 8]!r}"
            count, command = int(match.group(1) or 1), match.group(2)
            if command == "A":
                row = max(0, row - count)
            elif command == "K":  # 0: to the end of the line, 2: the whole line
                line = lines[row]
                del line[col if match.group(1) in ("", "0") else 0 :]
            i = match.end()
            continue
        if char == "\r":
            col = 0
        elif char == "\n":
            row += 1
            while len(lines) <= row:
                lines.append([])
        else:
            line = lines[row]
            line.extend(" " * (col - len(line)))
            if col < len(line):
                line[col] = char
            else:
                line.append(char)
            col += 1
        i += 1
    return ["".join(line).rstrip() for line in lines]


def test_console_lines_replace_the_bar_on_a_terminal():
    raw = _run_on_a_terminal(_TERMINAL_CHILD)
    assert "%|" in raw  # the bars were drawn
    screen = [line for line in _screen(raw) if line]
    marker = screen.index("-- leave=True --")
    console = re.compile(r"[12]/2 \* Epoch \((train|valid)\): loss=\d+\.\d{4}")
    best = re.compile(r"Best epoch \d: valid loss=\d+\.\d{4}")

    # verbose=True: each console line on a line of its own, no bar left on screen.
    default = screen[:marker]
    assert len(default) == 5 and best.fullmatch(default.pop()), screen
    assert all(console.fullmatch(line) for line in default), screen

    # A bar left on screen (leave=True) comes first, complete, then its console line.
    kept = screen[marker + 1 :]
    assert len(kept) == 9 and best.fullmatch(kept.pop()), kept
    for bar, line in zip(kept[::2], kept[1::2], strict=True):
        assert "100%|" in bar and "6/6" in bar, kept
        assert console.fullmatch(line), kept
        assert bar.startswith(line[: line.index(":")] + ":"), kept  # same epoch and loader
