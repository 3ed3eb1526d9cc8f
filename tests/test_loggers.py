"""CSV, JSON-lines and TensorBoard loggers: what a 3-epoch run leaves in its logdir."""

from __future__ import annotations

import csv
import json
import os
import re
import threading
from types import SimpleNamespace

import pytest

import eventrunner
from eventrunner import FunctionCallback
from eventrunner.checkpoint import load_checkpoint
from eventrunner.testing import tiny_run
from plugins import AccuracyCallback, CSVLogger, JSONLogger
from plugins.csv_logger import read_metrics_csv
from plugins.json_logger import read_events, record_event

LOADERS = {"train": 4, "valid": 2}  # batches per loader


def _train(runner_class=eventrunner.SupervisedRunner, num_epochs=3, callbacks=(), **kwargs):
    history: list[dict[str, dict[str, float]]] = []
    record = FunctionCallback(
        "epoch_end", lambda r: history.append({k: dict(v) for k, v in r.epoch_metrics.items()})
    )
    runner = tiny_run(
        [AccuracyCallback(), record, *callbacks],
        runner=runner_class(),
        loaders=LOADERS,
        batch_size=16,
        num_epochs=num_epochs,
        **kwargs,
    )
    return runner, history


def _kinds(runner) -> list[str]:
    return [callback.kind for callback in runner.callbacks]


def test_loggers_composed_only_with_logdir(tmp_path):
    runner, _ = _train(num_epochs=1)
    assert not {"csv", "jsonl", "tensorboard"} & set(_kinds(runner))
    runner, _ = _train(num_epochs=1, logdir=tmp_path)
    assert {"csv", "jsonl"} <= set(_kinds(runner))


def test_csv_rows_equal_epoch_metrics_history(tmp_path):
    _, history = _train(logdir=tmp_path)
    with open(tmp_path / "metrics.csv", newline="") as file:
        rows = list(csv.reader(file))
    assert rows[0] == ["epoch", "loader", "loss", "accuracy01"]
    expected = [
        [str(epoch), loader, repr(metrics["loss"]), repr(metrics["accuracy01"])]
        for epoch, by_loader in enumerate(history, start=1)
        for loader, metrics in by_loader.items()
    ]
    assert rows[1:] == expected
    assert len(expected) == 6
    parsed = read_metrics_csv(tmp_path / "metrics.csv")
    assert parsed[-1] == {"epoch": 3, "loader": "valid", **history[-1]["valid"]}


class _LateMetricRunner(eventrunner.SupervisedRunner):
    """Adds a metric from epoch 2 on, and only on the valid loader."""

    def handle_batch(self, batch):
        super().handle_batch(batch)
        if self.epoch_step >= 2 and self.is_valid_loader:
            self.batch_metrics["late"] = float(self.epoch_step)


def test_csv_keeps_columns_aligned_when_a_metric_appears_later(tmp_path):
    _, history = _train(_LateMetricRunner, logdir=tmp_path)
    with open(tmp_path / "metrics.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert list(rows[0]) == ["epoch", "loader", "loss", "accuracy01", "late"]
    assert [(r["epoch"], r["loader"], r["late"]) for r in rows] == [
        ("1", "train", ""),
        ("1", "valid", ""),
        ("2", "train", ""),
        ("2", "valid", "2.0"),
        ("3", "train", ""),
        ("3", "valid", "3.0"),
    ]
    for row, (epoch, loader) in zip(
        rows, [(e, k) for e in (1, 2, 3) for k in ("train", "valid")], strict=True
    ):
        assert float(row["loss"]) == history[epoch - 1][loader]["loss"]


def test_csv_resume_keeps_the_epochs_already_done(tmp_path):
    (tmp_path / "metrics.csv").write_text(
        "epoch,loader,loss\n1,train,0.5\n1,valid,0.6\n2,train,0.4\n2,valid,0.5\n3,train,0.3\n"
    )
    logger = CSVLogger()
    runner = SimpleNamespace(logdir=tmp_path, resume="last.pth", epoch_step=2, epoch_metrics={})
    logger.on_experiment_start(runner)
    runner.epoch_step = 3
    runner.epoch_metrics = {"train": {"loss": 0.25, "accuracy01": 0.9}}
    logger.on_epoch_end(runner)
    logger.on_experiment_end(runner)  # waits for the write
    assert (tmp_path / "metrics.csv").read_text().splitlines() == [
        "epoch,loader,loss,accuracy01",
        "1,train,0.5,",
        "1,valid,0.6,",
        "2,train,0.4,",
        "2,valid,0.5,",
        "3,train,0.25,0.9",
    ]


def test_csv_logger_without_logdir_names_the_fix():
    with pytest.raises(ValueError, match=r"CSVLogger: no log directory.*logdir="):
        _train(num_epochs=1, callbacks=[CSVLogger()])


class _NotMainRank(eventrunner.SupervisedRunner):
    is_main_process = False


def test_loggers_write_nothing_off_rank_zero(tmp_path):
    _train(_NotMainRank, num_epochs=1, logdir=tmp_path)
    written = {path.name for path in tmp_path.iterdir()}
    assert not written & {"metrics.csv", "events.jsonl", "tensorboard"}


def test_jsonl_records_the_run(tmp_path):
    class CheckpointNote(eventrunner.Callback):
        def on_epoch_end(self, runner):
            record_event(runner, "checkpoint", path=f"checkpoints/epoch{runner.epoch_step}.pth")

    runner, history = _train(logdir=tmp_path, callbacks=[CheckpointNote()])
    records = read_events(tmp_path / "events.jsonl")
    assert [r["event"] for r in records] == [
        "experiment_start",
        *["checkpoint", "epoch_end"] * 3,  # the note's order (70) runs before logging (80)
        "experiment_end",
    ]
    start = records[0]
    assert start["hparams"]["optimizer"] == "SGD" and start["hparams"]["lr"] == 0.1
    assert start["loaders"] == {"train": 4, "valid": 2}
    epochs = [r for r in records if r["event"] == "epoch_end"]
    assert [r["metrics"] for r in epochs] == history
    assert [r["epoch"] for r in epochs] == [1, 2, 3]
    assert records[1] == {**records[1], "path": "checkpoints/epoch1.pth", "epoch": 1}
    end = records[-1]
    assert end["status"] == "completed"
    assert (end["best_epoch"], end["best_valid_metric"]) == (
        runner.best_epoch,
        runner.best_valid_metric,
    )
    assert sum(r["is_best"] for r in epochs) >= 1
    assert epochs[runner.best_epoch - 1]["is_best"]


class _FailingRunner(eventrunner.SupervisedRunner):
    def handle_batch(self, batch):
        if self.epoch_step == 2 and self.loader_batch_step == 2:
            raise RuntimeError("boom at epoch 2")
        super().handle_batch(batch)


def test_jsonl_and_csv_on_failure(tmp_path):
    with pytest.raises(RuntimeError, match="boom"):
        _train(_FailingRunner, logdir=tmp_path)
    records = read_events(tmp_path / "events.jsonl")
    assert [r["event"] for r in records] == [
        "experiment_start",
        "epoch_end",
        "exception",
        "experiment_end",
    ]
    assert records[2]["error"] == "RuntimeError" and records[2]["loader"] == "train"
    assert records[-1]["status"] == "failed"
    assert [row["epoch"] for row in read_metrics_csv(tmp_path / "metrics.csv")] == [1, 1]
    json.loads((tmp_path / "events.jsonl").read_text().splitlines()[-1])  # whole last line


def test_jsonl_config_is_written(tmp_path):
    _train(num_epochs=1, logdir=tmp_path, callbacks=[JSONLogger(config={"model": {"hidden": 8}})])
    assert read_events(tmp_path / "events.jsonl")[0]["config"] == {"model": {"hidden": 8}}


def test_tensorboard_scalars_read_back(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    from plugins import TensorBoardLogger

    runner, history = _train(logdir=tmp_path, callbacks=[TensorBoardLogger(log_batch_every=2)])
    assert "tensorboard" in _kinds(runner)
    for loader in ("train", "valid"):
        events = EventAccumulator(str(tmp_path / "tensorboard" / loader))
        events.Reload()
        assert {"epoch/loss", "epoch/accuracy01"} <= set(events.Tags()["scalars"])
        for name in ("loss", "accuracy01"):
            scalars = events.Scalars(f"epoch/{name}")
            assert [s.step for s in scalars] == [1, 2, 3]
            assert [s.value for s in scalars] == pytest.approx(
                [epoch[loader][name] for epoch in history], rel=1e-6
            )
        batch_steps = [s.step for s in events.Scalars("batch/loss")]
        per_epoch = 2 if loader == "train" else 1  # 4 and 2 batches, every 2nd one
        assert len(batch_steps) == 3 * per_epoch
    hparams = EventAccumulator(str(tmp_path / "tensorboard" / "hparams"))
    hparams.Reload()
    start = hparams.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    session = plugin_data_pb2.HParamsPluginData.FromString(start).session_start_info
    assert session.hparams["optimizer"].string_value == "SGD"
    assert session.hparams["lr"].number_value == pytest.approx(0.1)
    best = hparams.Scalars("hparam/best_valid_metric")
    assert best[-1].value == pytest.approx(runner.best_valid_metric, rel=1e-6)


def test_tensorboard_without_batch_logging_has_no_batch_handler(tmp_path):
    pytest.importorskip("tensorboard")
    from plugins import TensorBoardLogger

    assert "batch_end" not in TensorBoardLogger(logdir=tmp_path).handlers()
    assert "batch_end" in TensorBoardLogger(logdir=tmp_path, log_batch_every=10).handlers()
    with pytest.raises(ValueError, match="log_batch_every"):
        TensorBoardLogger(log_batch_every=0)


def test_resumed_run_continues_the_csv_and_the_event_log(tmp_path):
    _, first = _train(num_epochs=2, logdir=tmp_path)
    last = tmp_path / "checkpoints" / "last.pth"
    if not last.exists():
        pytest.skip("checkpoints on disk are not written by this build")
    _, second = _train(num_epochs=4, logdir=tmp_path, resume=last)
    rows = read_metrics_csv(tmp_path / "metrics.csv")
    assert [(row["epoch"], row["loader"]) for row in rows] == [
        (epoch, loader) for epoch in (1, 2, 3, 4) for loader in ("train", "valid")
    ]
    assert rows[0]["loss"] == first[0]["train"]["loss"]
    assert rows[-1]["loss"] == second[-1]["valid"]["loss"]
    events = [r["event"] for r in read_events(tmp_path / "events.jsonl")]
    assert events.count("experiment_start") == 2 and events.count("epoch_end") == 4


def test_console_lines_on_rank_zero_only(capsys):
    _train(num_epochs=1, console=True)
    assert "1/1 * Epoch (valid): loss=" in capsys.readouterr().out
    _train(_NotMainRank, num_epochs=1, console=True)
    assert "Epoch" not in capsys.readouterr().out


# ------------------------------------------------- nothing written outside the logdir


def test_csv_temp_file_does_not_follow_a_planted_symlink(tmp_path):
    logdir, outside = tmp_path / "logs", tmp_path / "outside.txt"
    logdir.mkdir()
    outside.write_text("not yours\n")
    (logdir / ".metrics.csv.tmp").symlink_to(outside)  # the temp name the logger used to use
    _, history = _train(num_epochs=2, logdir=logdir)
    assert outside.read_text() == "not yours\n"
    assert not (logdir / "metrics.csv").is_symlink()
    rows = read_metrics_csv(logdir / "metrics.csv")
    assert [(row["epoch"], row["loader"]) for row in rows] == [
        (epoch, loader) for epoch in (1, 2) for loader in ("train", "valid")
    ]
    assert rows[-1]["loss"] == history[-1]["valid"]["loss"]


def _outside_names(tmp_path):
    return ["../x.log", "sub/../../x.log", str(tmp_path / "x.log")]


@pytest.mark.parametrize("logger_class", [CSVLogger, JSONLogger])
@pytest.mark.parametrize("which", [0, 1, 2], ids=["dotdot", "nested-dotdot", "absolute"])
def test_logger_filename_outside_the_logdir_is_refused(tmp_path, logger_class, which):
    name = _outside_names(tmp_path)[which]
    logdir = tmp_path / "logs"
    expected = rf"{logger_class.__name__}: filename '{re.escape(name)}' .*{re.escape(str(logdir))}"
    with pytest.raises(ValueError, match=expected):
        _train(num_epochs=1, logdir=logdir, callbacks=[logger_class(filename=name)])
    assert not (tmp_path / "x.log").exists()


@pytest.mark.parametrize("logger_class", [CSVLogger, JSONLogger])
def test_logger_file_symlinked_out_of_the_logdir_is_refused(tmp_path, logger_class):
    logdir, outside = tmp_path / "logs", tmp_path / "outside.txt"
    logdir.mkdir()
    outside.write_text("not yours\n")
    (logdir / "mine.log").symlink_to(outside)
    expected = rf"{logger_class.__name__}: filename 'mine.log' resolves to .*outside.txt"
    with pytest.raises(ValueError, match=expected):
        _train(num_epochs=1, logdir=logdir, callbacks=[logger_class(filename="mine.log")])
    assert outside.read_text() == "not yours\n"


def test_logger_filename_in_a_subfolder_of_the_logdir_is_fine(tmp_path):
    (tmp_path / "logs" / "csv").mkdir(parents=True)
    _train(num_epochs=1, logdir=tmp_path / "logs", callbacks=[CSVLogger(filename="csv/m.csv")])
    assert len(read_metrics_csv(tmp_path / "logs" / "csv" / "m.csv")) == 2


class _FakeSummaryWriter:
    """Stands in for SummaryWriter (tensorboard is optional): makes its folder, as it does."""

    folders: list[str] = []

    def __init__(self, log_dir: str) -> None:
        os.makedirs(log_dir, exist_ok=True)
        self.folders.append(log_dir)

    def add_scalar(self, *args) -> None: ...
    def flush(self) -> None: ...
    def close(self) -> None: ...


@pytest.fixture
def fake_tensorboard(monkeypatch):
    from plugins import tensorboard_logger

    _FakeSummaryWriter.folders = []
    monkeypatch.setattr(tensorboard_logger, "_summary_writer", lambda: _FakeSummaryWriter)
    monkeypatch.setattr(tensorboard_logger.TensorBoardLogger, "_write_hparams", lambda *a: None)
    return tensorboard_logger.TensorBoardLogger


@pytest.mark.parametrize("loader", ["train/../../x", "train/../../../x"])
def test_tensorboard_loader_folder_cannot_leave_the_logdir(tmp_path, fake_tensorboard, loader):
    logdir = tmp_path / "a" / "logs"
    error = None
    try:
        tiny_run(
            [fake_tensorboard()],
            loaders={loader: LOADERS["train"], "valid": LOADERS["valid"]},
            batch_size=16,
            num_epochs=1,
            logdir=logdir,
        )
    except ValueError as raised:
        error = raised
    outside = [p for p in (tmp_path / "a").rglob("*") if not p.is_relative_to(logdir)]
    assert outside == [] and not (tmp_path / "x").exists()
    assert error is not None, "a loader name that leaves the logdir must be refused"
    message = str(error)
    assert message.startswith(f"TensorBoardLogger: loader {loader!r} contains '..'")
    assert str(logdir) in message
    assert _FakeSummaryWriter.folders == []  # refused before the first batch


def test_tensorboard_subdir_outside_the_logdir_is_refused(tmp_path, fake_tensorboard):
    with pytest.raises(ValueError, match=r"TensorBoardLogger: subdir '\.\./tb' contains '\.\.'"):
        _train(num_epochs=1, logdir=tmp_path / "logs", callbacks=[fake_tensorboard(subdir="../tb")])
    assert not (tmp_path / "tb").exists()


def test_tensorboard_loader_names_with_a_slash_nest_inside_the_logdir(tmp_path, fake_tensorboard):
    tiny_run(
        [fake_tensorboard()],
        loaders={"train/fold1": LOADERS["train"], "valid": LOADERS["valid"]},
        batch_size=16,
        num_epochs=1,
        logdir=tmp_path,
    )
    assert _FakeSummaryWriter.folders == [
        str(tmp_path / "tensorboard" / "train" / "fold1"),
        str(tmp_path / "tensorboard" / "valid"),
    ]


# ------------------------------------------- metrics.csv: the checkpoint is the truth


def _uninterrupted_csv(tmp_path) -> str:
    _train(num_epochs=3, logdir=tmp_path / "uninterrupted")
    return (tmp_path / "uninterrupted" / "metrics.csv").read_text()


@pytest.mark.parametrize("loss", ["truncated", "deleted", "other logdir"])
def test_csv_resume_rebuilds_the_rows_the_file_lost(tmp_path, loss):
    expected = _uninterrupted_csv(tmp_path)
    run = tmp_path / "run"
    _train(num_epochs=2, logdir=run)
    csv_path = run / "metrics.csv"
    if loss == "truncated":  # the epoch-2 rows never reached the disk
        lines = csv_path.read_text().splitlines(keepends=True)
        csv_path.write_text("".join(lines[:-2]))
    elif loss == "deleted":
        csv_path.unlink()
    else:
        csv_path = tmp_path / "resumed" / "metrics.csv"
    _train(num_epochs=3, logdir=csv_path.parent, resume=run / "checkpoints" / "last.pth")
    assert csv_path.read_text() == expected


def test_csv_resume_after_the_last_write_failed(tmp_path, monkeypatch):
    expected = _uninterrupted_csv(tmp_path)
    run = tmp_path / "run"
    writerows = csv.DictWriter.writerows

    def fails_at_epoch_2(self, rows):
        rows = list(rows)
        if any(row["epoch"] == 2 for row in rows):
            raise OSError("disk gone while writing epoch 2")
        return writerows(self, rows)

    monkeypatch.setattr(csv.DictWriter, "writerows", fails_at_epoch_2)
    with pytest.raises(OSError, match="disk gone"):
        _train(num_epochs=2, logdir=run)
    monkeypatch.undo()
    last = run / "checkpoints" / "last.pth"
    assert load_checkpoint(last)["epoch"] == 2  # saved before the write failed
    assert [row["epoch"] for row in read_metrics_csv(run / "metrics.csv")] == [1, 1]
    _train(num_epochs=3, logdir=run, resume=last)
    assert (run / "metrics.csv").read_text() == expected


def test_checkpoint_holds_the_csv_rows_while_their_write_is_in_flight(tmp_path, monkeypatch):
    release = threading.Event()
    writerows = csv.DictWriter.writerows

    def slow_at_epoch_2(self, rows):
        rows = list(rows)
        if any(row["epoch"] == 2 for row in rows):
            assert release.wait(10), "the epoch-2 write was never released"
        return writerows(self, rows)

    monkeypatch.setattr(csv.DictWriter, "writerows", slow_at_epoch_2)
    # Released just after the checkpoint subscriber (60) saved epoch 2 at experiment_end.
    after_save = FunctionCallback("experiment_end", lambda r: release.set(), order=61)
    _, history = _train(num_epochs=2, logdir=tmp_path, callbacks=[after_save])
    state = load_checkpoint(tmp_path / "checkpoints" / "last.pth")["callbacks"]["csv"]
    assert [(row["epoch"], row["loader"], row["loss"]) for row in state["rows"]] == [
        (epoch, loader, history[epoch - 1][loader]["loss"])
        for epoch in (1, 2)
        for loader in ("train", "valid")
    ]
    assert len(read_metrics_csv(tmp_path / "metrics.csv")) == 4  # written by the end


def test_csv_state_from_a_checkpoint_is_checked():
    logger = CSVLogger()
    logger.load_state_dict({"rows": [{"epoch": 1, "loader": "train", "loss": 0.5}]})
    with pytest.raises(ValueError, match=r"CSVLogger: checkpoint state rows\[0\]"):
        logger.load_state_dict({"rows": [{"epoch": "1", "loader": "train"}]})
    with pytest.raises(ValueError, match=r"CSVLogger: checkpoint state rows\[1\]\['loss'\]"):
        logger.load_state_dict(
            {"rows": [{"epoch": 1, "loader": "train"}, {"epoch": 1, "loader": "v", "loss": "x"}]}
        )
    with pytest.raises(ValueError, match="CSVLogger: checkpoint state rows"):
        logger.load_state_dict({"rows": "epoch,loader"})
