"""The ``eventrunner`` command: run (config, --example, --set, --dry-run), plugins, plot."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch
import yaml

import eventrunner
from eventrunner import EVENTS, cli, config

pytest.importorskip("sklearn")


pytestmark = pytest.mark.usefixtures("one_torch_thread", "only_own_plugins")


def _valid_accuracies(text: str) -> list[float]:
    return [float(m) for m in re.findall(r"\(valid\):.*?accuracy01=([0-9.]+)", text)]


def test_run_example_digits_reaches_90_percent(capsys):
    status = cli.main(["run", "--example", "digits", "--set", "train.num_epochs=3"])
    out = capsys.readouterr().out
    assert status == 0
    accuracies = _valid_accuracies(out)
    assert len(accuracies) == 3  # one console line per epoch for the valid loader
    assert max(accuracies) > 0.90
    assert "Best epoch" in out and "done: 3 epochs" in out
    assert "DigitsMLP" in out  # the summary printed before training


def test_run_a_config_file_with_overrides(tmp_path, capsys):
    path = tmp_path / "run.yaml"
    path.write_text(config.example_path("digits").read_text())
    status = cli.main(
        ["run", str(path), "--set", "train.num_epochs=1", "--set", "loaders.train.batch_size=256"]
    )
    out = capsys.readouterr().out
    assert status == 0
    assert "1/1 * Epoch (train)" in out and "2/1" not in out
    assert "6 batches, batch_size 256" in out  # 1,438 samples / 256


def test_dry_run_prints_every_event_with_its_subscribers_in_order(capsys):
    status = cli.main(["run", "--example", "digits", "--dry-run"])
    out = capsys.readouterr().out
    assert status == 0
    assert "Epoch (" not in out  # nothing trained
    headers = [line[:-1] for line in out.splitlines() if line.rstrip(":") in EVENTS]
    assert headers == list(EVENTS)
    # Each event's subscribers are listed in ascending order, as the bus runs them.
    sections = re.split(r"^(\w+):$", out, flags=re.M)
    listed = dict(zip(sections[1::2], sections[2::2], strict=True))
    for event in EVENTS:
        orders = [int(o) for o in re.findall(r"order=(-?\d+)", listed[event])]
        assert orders == sorted(orders), event
    batch_end = re.findall(r"^  (\w+) \(", listed["batch_end"], flags=re.M)
    expected = ["AccuracyCallback", "MetricMeansCallback", "BackwardCallback"]
    assert [name for name in batch_end if name in expected] == expected
    assert "loaders=['train*']" in listed["batch_end"]  # filters are shown
    assert "EarlyStoppingCallback" in listed["epoch_end"]


def test_dry_run_output_is_the_composed_bus(capsys):
    cli.main(["run", "--example", "digits", "--dry-run", "--set", "train.verbose=true"])
    out = capsys.readouterr().out
    path = config.example_path("digits")
    bus = config.build(config.load_config(path, ["train.verbose=true"])).compose()
    assert bus.describe() in out
    assert "ProgressBarCallback" in out  # --set reached the composition


def test_config_errors_exit_2_naming_the_key_path(capsys):
    status = cli.main(["run", "--example", "digits", "--set", "loaders.valid.batch_size=sixty"])
    err = capsys.readouterr().err
    assert status == 2
    assert "loaders.valid.batch_size: expected a positive int" in err
    assert "'sixty'" in err


def test_missing_config_file_and_unknown_example(tmp_path, capsys):
    assert cli.main(["run", str(tmp_path / "nope.yaml")]) == 2
    assert "nope.yaml" in capsys.readouterr().err
    assert cli.main(["run", "--example", "digitz"]) == 2
    assert "available: digits" in capsys.readouterr().err


def test_missing_sklearn_says_which_extra_to_install(monkeypatch, capsys):
    from eventrunner.examples import digits

    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    digits._load.cache_clear()
    try:
        status = cli.main(["run", "--example", "digits", "--dry-run"])
    finally:
        digits._load.cache_clear()
    assert status == 2
    assert "pip install 'eventrunner[examples]'" in capsys.readouterr().err


def test_plugins_lists_parameters_and_defaults(capsys):
    assert cli.main(["plugins"]) == 0
    out = capsys.readouterr().out
    for name in ("accuracy", "early_stopping", "checkpoint", "overfit", "scheduler"):
        assert re.search(rf"^{name}  ->  plugins\.", out, flags=re.M), name
    assert "patience: int  (required)" in out
    assert "min_delta: float = 1e-06" in out
    assert "topk: Sequence[int] = (1,)" in out


def test_plugins_unknown_name_suggests_close_matches(capsys):
    assert cli.main(["plugins", "early_stoping"]) == 2
    assert "did you mean 'early_stopping'" in capsys.readouterr().err


def test_plot_is_delegated_to_eventrunner_plot(monkeypatch):
    calls = []
    fake = types.ModuleType("eventrunner.plot")
    fake.main = lambda argv: calls.append(argv) or 0
    monkeypatch.setitem(sys.modules, "eventrunner.plot", fake)
    assert cli.main(["plot", "logs/run", "--out", "curves.png"]) == 0
    assert calls == [["logs/run", "--out", "curves.png"]]


def test_plot_without_its_module_is_a_clear_error(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "eventrunner.plot", None)
    assert cli.main(["plot", "logs"]) == 2
    assert "eventrunner plot" in capsys.readouterr().err


def test_python_dash_m_eventrunner():
    done = subprocess.run(
        [sys.executable, "-m", "eventrunner", "plugins", "overfit"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "overfit  ->  plugins.overfit:BatchOverfitCallback" in done.stdout


# ------------------------------------------------------------------ a config is code; imports

MODEL_SOURCE = """
from torch import nn


class TinyNet(nn.Module):
    def __init__(self, hidden: int = 8) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, hidden), nn.ReLU(), nn.Linear(hidden, 2))

    def forward(self, features):
        return self.net(features)
"""


def _tiny_config(model: str, criterion: str = "torch.nn.CrossEntropyLoss", **model_keys) -> str:
    """A config that trains in a blink on ``eventrunner.testing:tiny_loader`` batches."""
    loader = {"_target_": "eventrunner.testing:tiny_loader"}
    return yaml.safe_dump(
        {
            "model": {"_target_": model, **model_keys},
            "criterion": {"_target_": criterion},
            "optimizer": {"_target_": "torch.optim.SGD", "lr": 0.1},
            "loaders": {"train": loader, "valid": loader},
            "train": {"num_epochs": 1, "console": False},
        },
        sort_keys=False,
    )


def _console_script() -> Path:
    script = Path(sys.executable).with_name("eventrunner")
    if not script.is_file():
        pytest.skip("the eventrunner console script is not installed in this environment")
    return script


def _run(command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # only what the CLI adds
    return subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_run_help_says_a_config_is_code(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["run", "--help"])
    assert info.value.code == 0
    text = " ".join(capsys.readouterr().out.split()).lower()
    assert "only run configs you trust; --dry-run builds every object" in text
    assert "sys.path" in text  # where a config's own modules are imported from


def test_console_script_imports_a_module_beside_the_config(tmp_path):
    (tmp_path / "my_model.py").write_text(MODEL_SOURCE)
    (tmp_path / "my.yaml").write_text(_tiny_config("my_model.TinyNet"))
    for command in (
        [str(_console_script()), "run", "my.yaml", "--dry-run"],
        [sys.executable, "-m", "eventrunner", "run", "my.yaml", "--dry-run"],
    ):
        done = _run(command, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert "model:     TinyNet (58 parameters)" in done.stdout


def test_console_script_imports_from_the_config_folder_and_the_working_directory(tmp_path):
    configs, work = tmp_path / "configs", tmp_path / "work"
    configs.mkdir()
    work.mkdir()
    (configs / "my_model.py").write_text(MODEL_SOURCE)
    (work / "my_loss.py").write_text("from torch.nn import CrossEntropyLoss as MyLoss\n")
    (configs / "my.yaml").write_text(_tiny_config("my_model.TinyNet", "my_loss.MyLoss"))
    done = _run([str(_console_script()), "run", "../configs/my.yaml"], cwd=work)
    assert done.returncode == 0, done.stderr
    assert "done: 1 epochs" in done.stdout


def test_run_leaves_sys_path_as_it_was(tmp_path, capsys):
    (tmp_path / "er_cli_beside_model.py").write_text(MODEL_SOURCE)
    path = tmp_path / "my.yaml"
    path.write_text(_tiny_config("er_cli_beside_model.TinyNet"))
    before = list(sys.path)
    try:
        assert cli.main(["run", str(path), "--dry-run"]) == 0, capsys.readouterr().err
    finally:
        sys.modules.pop("er_cli_beside_model", None)
    assert sys.path == before
    assert "TinyNet" in capsys.readouterr().out


# ------------------------------------------------------------------ --overwrite


def _record_train(monkeypatch) -> list[dict]:
    calls: list[dict] = []

    def train(self, settings=None, /, **kwargs):
        fields = dataclasses.fields(settings) if settings is not None else ()
        calls.append({**{f.name: getattr(settings, f.name) for f in fields}, **kwargs})

    monkeypatch.setattr(eventrunner.Runner, "train", train)
    return calls


def test_overwrite_flag_reaches_train(tmp_path, monkeypatch, capsys):
    path = tmp_path / "my.yaml"
    path.write_text(_tiny_config("torch.nn.Linear", in_features=4, out_features=2))
    calls = _record_train(monkeypatch)
    assert cli.main(["run", str(path), "--overwrite"]) == 0, capsys.readouterr().err
    assert cli.main(["run", str(path)]) == 0, capsys.readouterr().err
    assert [call.get("overwrite", False) for call in calls] == [True, False]


def test_a_second_run_in_a_logdir_is_refused_unless_overwrite(tmp_path, capsys):
    path = tmp_path / "my.yaml"
    path.write_text(_tiny_config("torch.nn.Linear", in_features=4, out_features=2))
    logdir = tmp_path / "logs"
    command = ["run", str(path), "--set", f"train.logdir={logdir}"]
    assert cli.main(command) == 0, capsys.readouterr().err
    first = (logdir / "metrics.csv").read_bytes()
    capsys.readouterr()
    assert cli.main(command) == 2
    err = capsys.readouterr().err
    assert err.startswith("eventrunner: error: ") and "already holds a run" in err
    assert "--overwrite" in err and "Traceback" not in err
    assert (logdir / "metrics.csv").read_bytes() == first  # the refused run wrote nothing
    assert cli.main([*command, "--overwrite"]) == 0, capsys.readouterr().err


# ------------------------------------------------------------------ one composition per run


def _count_compose_and_seed(monkeypatch) -> dict[str, int]:
    counts = {"compose": 0, "seed": 0, "seed before building": 0}
    compose, seed = eventrunner.Runner.compose, eventrunner.runner.seed_everything

    def counted_compose(self, *args, **kwargs):
        counts["compose"] += 1
        return compose(self, *args, **kwargs)

    def counted(key):
        def seed_everything(value):
            counts[key] += 1
            seed(value)

        return seed_everything

    monkeypatch.setattr(eventrunner.Runner, "compose", counted_compose)
    monkeypatch.setattr(eventrunner.runner, "seed_everything", counted("seed"))
    # build() seeds once too, so that the model's initial weights follow train.seed
    monkeypatch.setattr(config.experiment, "seed_everything", counted("seed before building"))
    return counts


@pytest.mark.parametrize("dry_run", [False, True])
def test_a_run_is_composed_and_seeded_once(tmp_path, monkeypatch, capsys, dry_run):
    # It was composed (and reseeded) three times: by the CLI, by Experiment.run, by train().
    path = tmp_path / "my.yaml"
    path.write_text(_tiny_config("torch.nn.Linear", in_features=4, out_features=2))
    counts = _count_compose_and_seed(monkeypatch)
    command = ["run", str(path), *(["--dry-run"] if dry_run else [])]
    assert cli.main(command) == 0, capsys.readouterr().err
    assert counts == {"compose": 1, "seed": 1, "seed before building": 1}
    out = capsys.readouterr().out
    assert ("done: 1 epochs" in out) is not dry_run
    assert ("dry run: composed, not trained" in out) is dry_run


def test_resume_continues_a_run_from_its_logdir_alone(tmp_path, capsys):
    logdir = tmp_path / "run"
    args = ["--set", f"train.logdir={logdir}", "--set", "train.num_epochs=1"]
    assert cli.main(["run", "--example", "digits", *args]) == 0
    saved = (logdir / "config.yaml").read_text()
    assert saved.startswith("# eventrunner: resolved from ")
    assert "num_epochs: 1" in saved and "resume:" not in saved
    capsys.readouterr()
    assert cli.main(["resume", str(logdir), "--set", "train.num_epochs=2"]) == 0
    out = capsys.readouterr().out
    assert f"Resumed from {logdir / 'checkpoints' / 'last.pth'} after epoch 1\n" in out
    assert "2/2 * Epoch (train)" in out and "1/2 * Epoch" not in out  # epoch 2 only
    assert "done: 2 epochs" in out
    rows = (logdir / "metrics.csv").read_text().splitlines()[1:]
    assert [row.split(",")[0] for row in rows] == ["1", "1", "2", "2"]


def test_resume_auto_on_a_new_logdir_starts_a_run_and_a_finished_one_trains_nothing(
    tmp_path, capsys, caplog
):
    args = ["--set", f"train.logdir={tmp_path / 'run'}", "--set", "train.num_epochs=1"]
    assert cli.main(["run", "--example", "digits", *args, "--resume", "auto"]) == 0
    assert "1/1 * Epoch (train)" in capsys.readouterr().out
    assert cli.main(["run", "--example", "digits", *args, "--resume", "auto"]) == 0
    assert "Epoch (train)" not in capsys.readouterr().out
    assert "no epoch left to train" in caplog.text


@pytest.mark.parametrize("what", ["folder", "not a checkpoint"])
def test_a_bad_resume_path_is_a_message_not_a_traceback(tmp_path, capsys, what):
    path = tmp_path / "given"
    if what == "folder":
        path.mkdir()
    else:
        torch.save({"a": 1}, path)
    args = ["--set", f"train.logdir={tmp_path / 'run'}", "--set", "train.num_epochs=1"]
    assert cli.main(["run", "--example", "digits", *args, "--resume", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"eventrunner: error: checkpoint {path}: "), err
    assert "Traceback" not in err


def test_a_logdir_given_as_the_checkpoint_names_the_file_in_it(tmp_path, capsys):
    args = ["--set", f"train.logdir={tmp_path / 'run'}", "--set", "train.num_epochs=1"]
    assert cli.main(["run", "--example", "digits", *args]) == 0
    capsys.readouterr()
    assert cli.main(["run", "--example", "digits", *args, "--resume", str(tmp_path / "run")]) == 2
    last = tmp_path / "run" / "checkpoints" / "last.pth"
    assert f"is a folder, expected a .pth file (this run's last checkpoint is {last})" in (
        capsys.readouterr().err
    )


def test_resume_auto_without_a_logdir_is_a_config_error(capsys):
    assert cli.main(["run", "--example", "digits", "--resume", "auto"]) == 2
    err = capsys.readouterr().err
    assert "train.resume: 'auto' resumes from train.logdir/checkpoints" in err, err
    assert "Traceback" not in err


def test_resume_without_a_saved_config_says_what_to_do(tmp_path, capsys):
    assert cli.main(["resume", str(tmp_path)]) == 2
    assert "no resolved config here" in capsys.readouterr().err
