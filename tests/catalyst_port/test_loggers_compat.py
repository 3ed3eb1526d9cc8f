"""Catalyst 22.04's loggers (``train(loggers=...)``, ``hparams=``): the calls an ``ILogger``
gets, and the console lines, CSV files and TensorBoard scalars of Catalyst's own loggers,
against what catalyst 22.4 produces for the same program."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from eventrunner import dl
from eventrunner.catalyst.loggers import logger_subscribers


def _loader() -> DataLoader:
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(12, 3), torch.randint(0, 2, (12,)))
    return DataLoader(data, batch_size=4)


class Recorder(dl.ILogger):
    def __init__(self) -> None:
        super().__init__(log_batch_metrics=True, log_epoch_metrics=True)
        self.calls: list[list[Any]] = []

    def log_hparams(self, hparams: dict[str, Any], runner: Any = None) -> None:
        self.calls.append(["hparams", hparams])

    def log_metrics(self, metrics: dict[str, Any], scope: str, runner: Any) -> None:
        if scope == "epoch":
            keys: Any = {key: sorted(value) for key, value in metrics.items()}
            self.calls.append([scope, None, runner.epoch_step, None, keys])
        else:
            step = runner.loader_batch_step if scope == "batch" else None
            self.calls.append([scope, runner.loader_key, runner.epoch_step, step, sorted(metrics)])

    def flush_log(self) -> None:
        self.calls.append(["flush"])

    def close_log(self) -> None:
        self.calls.append(["close"])


class LossRunner(dl.Runner):
    def handle_batch(self, batch: Any) -> None:
        x, y = batch
        self.batch_metrics["loss"] = F.cross_entropy(self.model(x), y)


def _catalyst_calls() -> list[list[Any]]:
    # Computed by catalyst 22.4: the same program with a recording ILogger (2 epochs, 3 batches
    # per loader, BackwardCallback + OptimizerCallback).
    calls: list[list[Any]] = [["hparams", {"lr": 0.1}]]
    for epoch in (1, 2):
        for loader in ("train", "valid"):
            calls += [
                ["batch", loader, epoch, step, ["loss", "lr", "momentum"]] for step in (1, 2, 3)
            ]
            calls.append(["loader", loader, epoch, None, ["lr", "momentum"]])
        keys = {"_epoch_": [], "train": ["lr", "momentum"], "valid": ["lr", "momentum"]}
        calls += [["epoch", None, epoch, None, keys], ["flush"]]
    return [*calls, ["flush"], ["close"]]


def _as_eventrunner_names(calls: list[list[Any]]) -> list[list[Any]]:
    """Catalyst's keys as eventrunner names them, on purpose: its OptimizerCallback's ``lr`` and
    ``momentum`` are not metrics here; every loader metric is the batch mean (``loss``)."""

    def keys(names: list[str]) -> list[str]:
        return sorted({*names, "loss"} - {"lr", "momentum"})

    out = []
    for call in calls:
        if call[0] in ("batch", "loader"):
            call = [*call[:4], keys(call[4])]
        elif call[0] == "epoch":
            call = [*call[:4], {k: keys(v) if k != "_epoch_" else v for k, v in call[4].items()}]
        out.append(call)
    return out


def test_an_ilogger_is_called_where_catalyst_calls_it():
    recorder = Recorder()
    model = torch.nn.Linear(3, 2)
    LossRunner().train(
        model=model,
        optimizer=torch.optim.SGD(model.parameters(), 0.1),
        loaders={"train": _loader(), "valid": _loader()},
        num_epochs=2,
        hparams={"lr": 0.1},
        loggers={"rec": recorder},
        callbacks=[dl.BackwardCallback("loss"), dl.OptimizerCallback("loss")],
    )
    assert recorder.calls == _as_eventrunner_names(_catalyst_calls())


class ScoreRunner(dl.Runner):
    """Metrics the runner computes itself, the same under Catalyst and eventrunner."""

    def handle_batch(self, batch: Any) -> None:
        self.batch_metrics = {}

    def on_loader_end(self, runner: Any) -> None:
        self.loader_metrics["score"] = float(self.epoch_step * 10 + self.loader_batch_step)
        self.loader_metrics["half"] = 0.5
        super().on_loader_end(runner)


# Computed by catalyst 22.4 (stdout, the CSVLogger's files, the TensorboardLogger's scalars).
CATALYST_CONSOLE = """Hparams: {'lr': 0.1, 'name': 'x'}
train (1/2) half: 0.5 | score: 13.0
valid (1/2) half: 0.5 | score: 13.0
* Epoch (1/2) 
train (2/2) half: 0.5 | score: 23.0
valid (2/2) half: 0.5 | score: 23.0
* Epoch (2/2) 
"""  # noqa: W291 - Catalyst prints "* Epoch (e/n) " and the (empty) epoch-level metrics
CATALYST_CSV = {
    "train.csv": "step,half,score\n1,0.5,13.0\n2,0.5,23.0\n",
    "valid.csv": "step,half,score\n1,0.5,13.0\n2,0.5,23.0\n",
    "_epoch_.csv": "step\n1\n2\n",
    "hparams.json": '{\n  "lr": 0.1,\n  "name": "x"\n}',
}
CATALYST_SCALARS = {
    "_epoch_": {},
    "train": {"score/epoch": [[1, 13.0], [2, 23.0]], "half/epoch": [[1, 0.5], [2, 0.5]]},
    "valid": {"score/epoch": [[1, 13.0], [2, 23.0]], "half/epoch": [[1, 0.5], [2, 0.5]]},
}


def test_catalysts_console_csv_and_tensorboard_loggers_write_what_catalyst_writes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ScoreRunner().train(
        model=torch.nn.Linear(3, 2),
        loaders={"train": _loader(), "valid": _loader()},
        num_epochs=2,
        hparams={"lr": 0.1, "name": "x"},
        valid_metric="score",
        minimize_valid_metric=False,
        loggers={
            "console": dl.ConsoleLogger(log_hparams=True),
            "csv": dl.CSVLogger(tmp_path / "csv"),
            "tb": dl.TensorboardLogger(tmp_path / "tb"),
        },
    )
    assert capsys.readouterr().out == CATALYST_CONSOLE  # the console logger replaced ours
    files = {path.name: path.read_text() for path in (tmp_path / "csv").iterdir()}
    assert files == CATALYST_CSV
    scalars = {}
    for folder in sorted((tmp_path / "tb").iterdir()):
        events = EventAccumulator(str(folder))
        events.Reload()
        scalars[folder.name] = {
            tag: [[e.step, e.value] for e in events.Scalars(tag)]
            for tag in events.Tags()["scalars"]
        }
    assert scalars == CATALYST_SCALARS


def test_a_catalyst_logger_replaces_the_default_of_its_kind_only(tmp_path: Path):
    runner = ScoreRunner()
    runner.train(
        model=torch.nn.Linear(3, 2),
        loaders={"train": _loader()},
        logdir=tmp_path / "run",
        valid_loader="train",
        valid_metric="score",
        loggers={"csv": dl.CSVLogger(tmp_path / "csv", use_logdir_postfix=True)},
        console=False,
    )
    assert (tmp_path / "csv" / "csv_logger" / "train.csv").exists()
    assert not (tmp_path / "run" / "metrics.csv").exists()  # eventrunner's CSV default
    assert (tmp_path / "run" / "events.jsonl").exists()  # kept: no Catalyst counterpart


def test_eventrunner_loggers_pass_through_and_others_are_refused():
    import plugins

    ours = plugins.CSVLogger()
    assert logger_subscribers({"csv": ours}) == [ours]
    with pytest.raises(TypeError, match=r"loggers\['bad'\]: expected a logger"):
        logger_subscribers({"bad": print})
    with pytest.raises(TypeError, match="loggers must be a mapping"):
        LossRunner().train(
            model=torch.nn.Linear(3, 2), loaders={"train": _loader()}, loggers=[ours]
        )
