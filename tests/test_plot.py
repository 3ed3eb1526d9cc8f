"""``eventrunner plot LOGDIR``: a PNG of the expected size from a run's logdir, clear errors."""

from __future__ import annotations

import struct

import pytest

from eventrunner import plot
from eventrunner.testing import tiny_run
from plugins import AccuracyCallback

pytest.importorskip("matplotlib")


def _png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk
    return width, height


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    path = tmp_path_factory.mktemp("run")
    tiny_run([AccuracyCallback()], num_epochs=3, loaders={"train": 4, "valid": 2}, logdir=path)
    return path


def test_plot_writes_a_png_of_the_expected_size(logdir, tmp_path, capsys):
    output = tmp_path / "curves.png"
    assert plot.main([str(logdir), "-o", str(output)]) == 0
    assert f"wrote {output}" in capsys.readouterr().out
    # Two metrics (loss, accuracy01): two 5-inch panels in a row at 100 dpi, 3.6+0.5+0.4 in high.
    assert _png_size(output) == (1000, 450) == plot.figure_size(2)


def test_plot_defaults_to_logdir_and_honours_dpi(logdir):
    assert plot.main([str(logdir), "--dpi", "50"]) == 0
    assert _png_size(logdir / "metrics.png") == (500, 225)


def test_best_epoch_is_read_from_the_event_log(logdir):
    best = plot.load_best(logdir / "events.jsonl")
    assert best is not None
    assert (best.loader, best.metric, best.minimize) == ("valid", "loss", True)
    assert 1 <= best.epoch <= 3


def test_layout_wraps_after_three_panels():
    assert plot.figure_size(1) == (500, 450)
    assert plot.figure_size(3) == (1500, 450)
    assert plot.figure_size(4) == (1500, 810)


def test_missing_logdir_is_a_clear_error(tmp_path, capsys):
    assert plot.main([str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert "metrics.csv not found" in err and "nowhere" in err


def test_foreign_csv_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "metrics.csv").write_text("step,value\n1,2\n")
    assert plot.main([str(tmp_path)]) == 2
    assert "not an eventrunner metrics row" in capsys.readouterr().err
