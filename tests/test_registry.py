"""The plugin registry (entry points, import paths), a third-party plugin, eventrunner.testing."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import plugins
from eventrunner import Callback, FunctionCallback, Order, cli, compose, config, registry
from eventrunner.settings import TrainSettings
from eventrunner.testing import EventRecorder, fake_runner, fire, tiny_run

# What the user has installed besides eventrunner must not change what these tests see.
pytestmark = pytest.mark.usefixtures("only_own_plugins")

# A complete third-party subscriber, as the README's plugin guide shows it.
PLUGIN_SOURCE = '''
from eventrunner import Callback, Order


class LearningRateMonitor(Callback):
    """Adds the optimizer's learning rate to the train loaders' metrics."""

    kind = "lr_monitor"

    def __init__(self, key: str = "lr", param_group: int = 0, every: int | None = None):
        super().__init__(order=Order.USER, loaders="train*", every=every)
        self.key = key
        self.param_group = param_group

    def on_loader_end(self, runner):
        # after metric aggregation (20), before the loggers (80): they print and save it
        lr = runner.optimizer.param_groups[self.param_group]["lr"]
        runner.loader_metrics[self.key] = lr
'''


@pytest.fixture
def third_party(tmp_path, monkeypatch):
    """A package installed the way pip leaves it: a module plus a .dist-info with entry points."""
    (tmp_path / "er_lr_monitor.py").write_text(PLUGIN_SOURCE)
    info = tmp_path / "er_lr_monitor-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: er-lr-monitor\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        textwrap.dedent(
            """\
            [eventrunner.plugins]
            lr_monitor = er_lr_monitor:LearningRateMonitor
            broken = er_lr_monitor_missing:Nothing
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(__import__("sys").modules, "er_lr_monitor", raising=False)
    registry.refresh()
    yield
    monkeypatch.undo()
    registry.refresh()


def test_builtins_are_registered_by_entry_point():
    names = registry.available()
    for name in ("accuracy", "backward", "checkpoint", "console", "early_stopping", "overfit"):
        assert name in names
        assert names[name].group == registry.ENTRY_POINT_GROUP
    assert registry.resolve("early_stopping") is plugins.EarlyStoppingCallback
    assert registry.resolve("overfit") is plugins.BatchOverfitCallback


def test_every_default_kind_that_train_composes_is_registered():
    runner = fake_runner(optimizer=object(), scheduler=object())
    settings = TrainSettings(loaders={"train": [{}]}, overfit=True, verbose=True, profile=True)
    kinds = compose.default_kinds(runner, settings)
    missing = [kind for kind in kinds if kind not in registry.available()]
    assert missing == []


def test_builtins_are_found_by_kind_without_entry_points(monkeypatch):
    # A source checkout that is not installed has no entry points; the names stay the same.
    tomllib = pytest.importorskip("tomllib")
    pyproject = tomllib.loads((Path(plugins.__file__).parents[1] / "pyproject.toml").read_text())
    declared = pyproject["project"]["entry-points"][registry.ENTRY_POINT_GROUP]
    monkeypatch.setattr(registry, "entry_points", lambda **params: [])
    registry.refresh()
    try:
        found = registry.available()
        assert {name: ep.value for name, ep in found.items()} == declared
        assert all(ep.dist is None for ep in found.values())
        assert registry.resolve("early_stopping") is plugins.EarlyStoppingCallback
    finally:
        monkeypatch.undo()
        registry.refresh()


def test_unknown_name_lists_close_matches():
    with pytest.raises(ValueError, match="did you mean 'early_stopping'") as info:
        registry.resolve("early_stoping")
    assert "registered:" in str(info.value)


@pytest.mark.parametrize(
    "path",
    [
        "plugins.early_stopping:EarlyStoppingCallback",
        "plugins.early_stopping.EarlyStoppingCallback",
    ],
)
def test_import_paths(path):
    assert registry.resolve(path) is plugins.EarlyStoppingCallback
    assert registry.create(path, patience=2).patience == 2


@pytest.mark.parametrize(
    ("path", "says"),
    [
        ("plugins.early_stopping:EarlyStopping", "did you mean 'EarlyStoppingCallback'"),
        ("no_such_pkg.mod:Thing", "no module named 'no_such_pkg'"),
    ],
)
def test_bad_import_paths_say_what_is_missing(path, says):
    with pytest.raises(ValueError, match=says):
        registry.resolve(path)


def test_import_object_finds_the_module_prefix():
    assert (
        registry.import_object("torch.optim.lr_scheduler.StepLR") is torch.optim.lr_scheduler.StepLR
    )
    assert registry.import_object("torch.nn:Linear") is torch.nn.Linear


def test_describe_reads_signatures_and_docstrings():
    info = registry.describe("early_stopping")
    params = {p.name: p for p in info.parameters}
    assert params["patience"].default is None and "required" in str(params["patience"])
    assert params["min_delta"].default == "1e-06"
    assert info.target == "plugins.early_stopping:EarlyStoppingCallback"
    assert info.distribution.startswith("eventrunner ")
    assert info.summary  # the class's own docstring, not Callback's
    assert "Base class of subscribers" not in info.summary


def test_param_docs_from_an_args_section():
    class Documented(Callback):
        """Does a thing.

        Args:
            alpha: how much of it.
            beta (int): how often.
        """

        def __init__(self, alpha: float = 0.5, beta: int = 2) -> None:
            super().__init__()

    docs = {p.name: p.doc for p in registry.parameters(Documented)}
    assert docs == {"alpha": "how much of it.", "beta": "how often."}


# ------------------------------------------------------------------ a third-party plugin


def test_third_party_plugin_is_found_by_name(third_party):
    assert "lr_monitor" in registry.available()
    cls = registry.resolve("lr_monitor")
    assert cls.__name__ == "LearningRateMonitor" and cls.kind == "lr_monitor"
    info = registry.describe("lr_monitor")
    assert info.distribution == "er-lr-monitor 0.1"
    assert [p.name for p in info.parameters] == ["key", "param_group", "every"]


def test_third_party_plugin_used_by_name_in_a_config(third_party):
    cfg = {
        "model": {"_target_": "torch.nn.Linear", "in_features": 4, "out_features": 2},
        "criterion": {"_target_": "torch.nn.CrossEntropyLoss"},
        "optimizer": {"_target_": "torch.optim.SGD", "lr": 0.25},
        "loaders": {
            name: {
                "_target_": "eventrunner.testing:tiny_loader",
                "num_batches": 2,
                "batch_size": 4,
            }
            for name in ("train", "valid")
        },
        "callbacks": ["lr_monitor"],
        "train": {"num_epochs": 2, "console": False},
    }
    runner = config.run_config(cfg)
    assert runner.epoch_metrics["train"]["lr"] == 0.25
    assert "lr" not in runner.epoch_metrics["valid"]  # its loaders="train*" filter


def test_broken_plugin_is_listed_with_its_error(third_party, capsys):
    info = registry.describe("broken")
    assert info.error and "er_lr_monitor_missing" in info.error
    assert cli.main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "lr_monitor  ->  er_lr_monitor:LearningRateMonitor  [er-lr-monitor 0.1]" in out
    assert "failed to load" in out


def test_refresh_forgets_uninstalled_plugins(third_party, monkeypatch):
    assert "lr_monitor" in registry.available()
    monkeypatch.undo()
    registry.refresh()
    assert "lr_monitor" not in registry.available()


_INNER = "EVENTRUNNER_INNER_TEST_RUN"


def _install_user_plugin(site: Path) -> None:
    """The README's plugin, pip-installed by a user, with one name that shadows a built-in."""
    (site / "mypkg").mkdir(parents=True)
    (site / "mypkg" / "__init__.py").write_text("")
    (site / "mypkg" / "callbacks.py").write_text(PLUGIN_SOURCE)
    info = site / "mypkg-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mypkg\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[eventrunner.plugins]\n"
        "lr_monitor = mypkg.callbacks:LearningRateMonitor\n"
        "early_stopping = mypkg.callbacks:LearningRateMonitor\n"
    )


def test_registry_tests_pass_with_a_user_plugin_installed(tmp_path):
    if os.environ.get(_INNER):
        pytest.fail("ran inside its own inner pytest run")
    _install_user_plugin(tmp_path / "site")
    here = Path(__file__).resolve().parent
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site"), _INNER: "1"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            f"--basetemp={tmp_path / 'pytest'}",  # the user's site is outside the tests' folder
            "-k",
            "not with_a_user_plugin_installed",  # not this test again
            str(here / "test_registry.py"),
            f"{here / 'test_cli.py'}::test_plugins_lists_parameters_and_defaults",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]


# ------------------------------------------------------------------ eventrunner.testing


def _monitor():
    namespace: dict = {}
    exec(PLUGIN_SOURCE, namespace)
    return namespace["LearningRateMonitor"]


def test_fire_runs_one_event_with_the_filters_of_the_loop():
    LearningRateMonitor = _monitor()
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.5)
    runner = fire(LearningRateMonitor(), "loader_end", loader_key="train", optimizer=optimizer)
    assert runner.loader_metrics == {"lr": 0.5}
    runner = fire(LearningRateMonitor(), "loader_end", loader_key="valid", optimizer=optimizer)
    assert runner.loader_metrics == {}  # loaders="train*"
    runner = fire(LearningRateMonitor(every=2), "loader_end", optimizer=optimizer, epoch_step=1)
    assert runner.loader_metrics == {}  # every=2: not in epoch 1
    fire(LearningRateMonitor(every=2), "loader_end", runner, epoch_step=2)
    assert runner.loader_metrics == {"lr": 0.5}


def test_fire_keeps_the_order_and_awaits_async_handlers():
    seen = []

    async def late(runner):
        seen.append(("late", runner.epoch_step))

    callbacks = [
        FunctionCallback("epoch_end", late, order=Order.LOGGING),
        FunctionCallback("epoch_end", lambda r: seen.append(("early", r.epoch_step)), order=10),
        FunctionCallback("epoch_start", lambda r: seen.append(("other event", 0))),
    ]
    fire(callbacks, "epoch_end", epoch_step=3)
    assert seen == [("early", 3), ("late", 3)]


def test_fake_runner_state():
    runner = fake_runner(loader_key="valid_2", main_metric="accuracy01", minimize_metric=False)
    assert runner.is_valid_loader and not runner.is_train_loader
    assert runner.selection.metric == "accuracy01" and runner.selection.metric_given
    assert not runner.selection.minimize and runner.selection.loader == "valid"


def test_tiny_run_is_a_real_training():
    recorder = EventRecorder(loaders="valid")
    runner = tiny_run([recorder], num_epochs=2, num_batches=3)
    assert runner.epoch_step == 2
    assert runner.epoch_metrics["valid"]["loss"] < 0.69  # better than chance (ln 2)
    names = recorder.names()
    assert names[:3] == ["experiment_start", "epoch_start", "loader_start"]
    assert names.count("batch_end") == 2 * 3  # valid batches only
    assert names[-1] == "experiment_end"
    assert {loader for _, loader, _, _ in recorder.events if loader} == {"valid"}


def test_tiny_run_is_deterministic():
    first = tiny_run(num_epochs=1)
    second = tiny_run(num_epochs=1)
    assert first.epoch_metrics == second.epoch_metrics
