"""YAML configs: building, the Python round trip, --set overrides, and errors naming key paths."""

from __future__ import annotations

import copy
import dataclasses
import sys
import types
from typing import Any

import pytest
import torch
import yaml
from torch import nn
from torch.utils.data import DataLoader

import eventrunner
from eventrunner import config
from eventrunner.config import ConfigError, apply_override, build, load_config, parse_override
from eventrunner.settings import TrainSettings

pytest.importorskip("sklearn")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def digits() -> dict[str, Any]:
    """The shipped example config, as loaded from its YAML file."""
    return load_config(config.example_path("digits"))


def _quick(cfg: dict[str, Any], epochs: int = 2) -> dict[str, Any]:
    cfg = copy.deepcopy(cfg)
    cfg["train"].update(num_epochs=epochs, console=False)
    cfg["loaders"]["train"]["batch_size"] = 128  # 12 batches an epoch: fast, still learns
    return cfg


def test_example_config_builds_the_objects_it_names(digits):
    experiment = build(digits)
    kw = experiment.train_kwargs
    assert type(experiment.runner) is eventrunner.SupervisedRunner
    assert experiment.runner.input_key == "features"
    assert list(kw["loaders"]) == ["train", "valid"]  # order kept
    assert isinstance(kw["loaders"]["train"], DataLoader)
    assert kw["loaders"]["train"].batch_size == 32
    assert isinstance(kw["optimizer"], torch.optim.Adam)
    assert kw["optimizer"].defaults["lr"] == 0.003
    # the optimizer got the model's parameters, the scheduler that optimizer
    assert kw["optimizer"].param_groups[0]["params"][0] is next(kw["model"].parameters())
    assert kw["scheduler"].optimizer is kw["optimizer"]
    assert [type(c).__name__ for c in kw["callbacks"]] == [
        "AccuracyCallback",
        "EarlyStoppingCallback",
    ]
    assert kw["callbacks"][0].topk == (1, 3)
    assert kw["main_metric"] == "accuracy01" and kw["minimize_metric"] is False


def test_config_round_trip_matches_the_same_run_written_in_python(tmp_path, digits):
    from eventrunner.examples.digits import DigitsDataset, DigitsMLP
    from plugins import AccuracyCallback, EarlyStoppingCallback

    path = tmp_path / "digits.yaml"
    path.write_text(yaml.safe_dump(_quick(digits)))
    from_yaml = config.run_config(path)

    eventrunner.seed_everything(42)
    runner = eventrunner.SupervisedRunner(
        input_key="features", output_key="logits", target_key="targets"
    )
    model = DigitsMLP(hidden=128, dropout=0.1)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.003)
    runner.train(
        model=model,
        criterion=nn.CrossEntropyLoss(),
        optimizer=optimizer,
        scheduler=torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=0.8),
        loaders={
            "train": DataLoader(DigitsDataset(split="train"), batch_size=128, shuffle=True),
            "valid": DataLoader(DigitsDataset(split="valid"), batch_size=256),
        },
        callbacks=[AccuracyCallback(topk=(1, 3)), EarlyStoppingCallback(patience=3)],
        num_epochs=2,
        valid_loader="valid",
        main_metric="accuracy01",
        minimize_metric=False,
        load_best_on_end=True,
        seed=42,
        console=False,
    )
    assert from_yaml.epoch_metrics == runner.epoch_metrics
    assert from_yaml.epoch_metrics["valid"]["accuracy01"] > 0.8
    assert (from_yaml.best_epoch, from_yaml.best_valid_metric) == (
        runner.best_epoch,
        runner.best_valid_metric,
    )


def test_a_different_seed_gives_a_different_run(digits):
    first = build(_quick(digits, epochs=1)).run()
    cfg = _quick(digits, epochs=1)
    cfg["train"]["seed"] = 7
    second = build(cfg).run()
    assert first.epoch_metrics["train"]["loss"] != second.epoch_metrics["train"]["loss"]


# ------------------------------------------------------------------ --set overrides


@pytest.mark.parametrize(
    ("text", "key", "value"),
    [
        ("train.num_epochs=3", "train.num_epochs", 3),
        ("optimizer.lr=0.01", "optimizer.lr", 0.01),
        ("optimizer.lr=1.0e-3", "optimizer.lr", 0.001),
        ("optimizer.lr=1e-3", "optimizer.lr", 0.001),  # YAML alone would keep a string
        ("train.logdir=1e3x", "train.logdir", "1e3x"),
        ("train.verbose=true", "train.verbose", True),
        ("train.logdir=null", "train.logdir", None),
        ("train.logdir=runs/a=b", "train.logdir", "runs/a=b"),
        ("callbacks.0.topk=[1, 5]", "callbacks.0.topk", [1, 5]),
        ("train.main_metric=loss", "train.main_metric", "loss"),
    ],
)
def test_set_values_are_typed_by_yaml(text, key, value):
    assert parse_override(text) == (key, value)


def test_set_overrides_reach_the_built_objects(digits):
    cfg = load_config(
        config.example_path("digits"),
        overrides=[
            "loaders.train.batch_size=64",
            "optimizer.lr=0.01",
            "callbacks.early_stopping.patience=7",  # a subscriber addressed by name
            "callbacks.0.topk=[1]",
            "scheduler.gamma=0.5",
            "train.num_epochs=4",
            "train.minimize_metric=true",
        ],
    )
    kw = build(cfg).train_kwargs
    assert kw["loaders"]["train"].batch_size == 64
    assert kw["optimizer"].defaults["lr"] == 0.01
    assert kw["callbacks"][1].patience == 7
    assert kw["callbacks"][0].topk == (1,)
    assert kw["scheduler"].gamma == 0.5
    assert kw["num_epochs"] == 4 and kw["minimize_metric"] is True
    assert digits["loaders"]["train"]["batch_size"] == 32  # the loaded original is untouched


def test_set_creates_missing_sections_and_grows_named_subscribers():
    cfg = {"callbacks": ["early_stopping"]}
    apply_override(cfg, "train.logdir=runs/x")
    apply_override(cfg, "callbacks.early_stopping.patience=2")
    apply_override(cfg, "callbacks.1.subscriber=console")  # one past the end appends
    apply_override(cfg, "callbacks.2=progress")
    assert cfg == {
        "callbacks": [
            {"subscriber": "early_stopping", "patience": 2},
            {"subscriber": "console"},
            "progress",
        ],
        "train": {"logdir": "runs/x"},
    }


@pytest.mark.parametrize(
    ("override", "path"),
    [
        ("train.num_epochs.x=1", "train.num_epochs"),
        ("callbacks.5.patience=1", "callbacks.5"),
        ("callbacks.nope.patience=1", "callbacks.nope"),
        ("no_equals_sign", "--set"),
    ],
)
def test_bad_set_names_its_key_path(digits, override, path):
    with pytest.raises(ConfigError) as info:
        apply_override(copy.deepcopy(digits), override)
    assert info.value.path == path
    assert str(info.value).startswith(f"{path}: ")


# ------------------------------------------------------------------ errors


def _set(cfg: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    cfg = copy.deepcopy(cfg)
    *parents, last = dotted.split(".")
    node: Any = cfg
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
    if value is _DELETE:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return cfg


_DELETE = object()


@pytest.mark.parametrize(
    ("dotted", "value", "path", "says"),
    [
        ("trian", {}, "trian", "did you mean 'train'"),
        ("loaders.valid.batch_size", "sixty", "loaders.valid.batch_size", "'sixty' (str)"),
        ("loaders.valid.batch_size", 0, "loaders.valid.batch_size", "positive int"),
        ("loaders.valid.batch_sise", 32, "loaders.valid.batch_sise", "did you mean 'batch_size'"),
        ("loaders.valid.shuffle", "often", "loaders.valid.shuffle", "a bool"),
        ("loaders.valid.dataset", _DELETE, "loaders.valid.dataset", "found nothing"),
        ("loaders.test", {"batch_size": 1}, "loaders.test", "train, valid or infer"),
        ("loaders.train.dataset.split", "test", "loaders.train.dataset", "split must be"),
        ("loaders", [], "loaders", "mapping of loader name"),
        ("model._target_", "torch.nn.Linearr", "model._target_", "did you mean 'Linear'"),
        ("model.hiden", 64, "model.hiden", "did you mean 'hidden'"),
        ("model.hidden", "big", "model.hidden", "expected an int"),
        ("model", _DELETE, "model", "found null"),
        ("optimizer.lr", "1e-3", "optimizer.lr", "write 1.0e-3"),
        ("optimizer.params", [], "optimizer.params", "filled in for you"),
        ("optimizer", _DELETE, "optimizer", "for the scheduler"),
        ("scheduler.gama", 0.5, "scheduler.gama", "did you mean 'gamma'"),
        ("runner._target_", "torch.nn.Linear", "runner._target_", "subclass of eventrunner.Runner"),
        ("runner.input_kye", "x", "runner.input_kye", "did you mean 'input_key'"),
        ("runner.model", {}, "runner.model", "own top-level section"),
        ("callbacks.0.subscriber", "acuracy", "callbacks.0.subscriber", "did you mean 'accuracy'"),
        ("callbacks.0.topk", 1, "callbacks.0.topk", "expected a list"),
        ("callbacks.0.every", 0, "callbacks.0.every", "positive int"),
        ("callbacks.1.patience", "three", "callbacks.1.patience", "expected an int"),
        ("callbacks.1.subscriber", "no.such.module:Cb", "callbacks.1.subscriber", "no module"),
        ("callbacks.1", 7, "callbacks.1", "subscriber name"),
        ("train.num_epoch", 3, "train.num_epoch", "did you mean 'num_epochs'"),
        ("train.num_epochs", 0, "train.num_epochs", "positive int"),
        ("train.valid_loader", "vaild", "train.valid_loader", "one of the loaders (train, valid)"),
        ("train.minimize_metric", "maybe", "train.minimize_metric", "a bool"),
        ("train.prefetch", -1, "train.prefetch", "int from 0 to 1024"),
        ("train.prefetch", 10**8, "train.prefetch", "int from 0 to 1024"),
        ("train.seed", "x", "train.seed", "an int"),
        ("train.model", {}, "train.model", "own top-level section"),
        # Each section must build the kind of object train() takes.
        ("model", {"_target_": "collections.OrderedDict"}, "model", "a torch.nn.Module"),
        ("model._partial_", True, "model", "found partial (built by"),
        ("criterion", {"_target_": "builtins.dict"}, "criterion", "a callable loss"),
        ("criterion", "torch.nn.CrossEntropyLoss", "criterion", "_target_"),
        ("optimizer", {"_target_": "builtins.list"}, "optimizer", "a torch.optim.Optimizer"),
        ("scheduler", {"_target_": "builtins.repr"}, "scheduler", "a learning-rate scheduler"),
        ("loaders.valid", {"_target_": "builtins.int"}, "loaders.valid", "iterable of batches"),
        (
            "loaders.valid",
            {"_target_": "eventrunner.examples.digits.DigitsDataset", "split": "valid"},
            "loaders.valid",
            "a dataset of samples",
        ),
        ("loaders.valid.dataset", {"_target_": "builtins.int"}, "loaders.valid.dataset", "samples"),
        ("loaders.valid.dataset", 7, "loaders.valid.dataset", "samples"),
    ],
)
def test_config_errors_name_the_key_path(digits, dotted, value, path, says):
    cfg = _set(digits, dotted, value)
    with pytest.raises(ConfigError) as info:
        build(cfg)
    assert info.value.path == path
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert says in message


@pytest.mark.parametrize(
    ("overrides", "path", "says"),
    [
        (["train.accumulation_steps=0"], "train.accumulation_steps", "expected a positive int"),
        (["train.ddp_timeout=-1"], "train.ddp_timeout", "positive, finite duration"),
        (["train.grad_clip_norm=-1"], "train.grad_clip_norm", "positive number"),
        (["train.main_metric=loss", "train.valid_metric=acc"], "train.main_metric", "disagree"),
        # Refused when the run is composed; build() names them first.
        (["train.amp=fp8"], "train.amp", "'fp16' or 'bf16'"),
        (["train.device=cudaa"], "train.device", "a torch device"),
    ],
)
def test_train_settings_errors_name_their_field(overrides, path, says):
    with pytest.raises(ConfigError) as info:
        build(load_config(config.example_path("digits"), overrides))
    assert info.value.path == path
    assert str(info.value).startswith(f"{path}: ") and says in str(info.value)


def test_the_train_section_becomes_train_settings(digits):
    settings = build(digits).settings
    assert isinstance(settings, TrainSettings)
    assert (settings.num_epochs, settings.main_metric, settings.minimize_metric) == (
        10,
        "accuracy01",
        False,
    )


def test_errors_come_before_any_training(digits, monkeypatch):
    trained = []
    monkeypatch.setattr(eventrunner.Runner, "train", _recording(trained))
    with pytest.raises(ConfigError):
        config.run_config(_set(digits, "callbacks.1.patience", "three"))
    assert trained == []


def _recording(calls: list[dict[str, Any]]) -> Any:
    """A stand-in for ``Runner.train`` that records its arguments (settings as a dict)."""

    def train(self, settings=None, /, **kwargs):
        fields = dataclasses.fields(settings) if settings is not None else ()
        calls.append({**{f.name: getattr(settings, f.name) for f in fields}, **kwargs})

    return train


def test_filters_apply_to_subscribers_that_do_not_take_them(digits):
    cfg = _set(digits, "callbacks.0", {"subscriber": "console", "loaders": "valid*", "every": 2})
    console = build(cfg).train_kwargs["callbacks"][0]
    assert console.loader_filter("valid") and not console.loader_filter("train")
    assert console.every == 2


def test_subscribers_by_import_path_and_nested_targets(digits, monkeypatch):
    module = types.ModuleType("er_test_metrics")
    module.MeanMetric = _MeanMetric
    monkeypatch.setitem(sys.modules, "er_test_metrics", module)
    cfg = _set(
        digits,
        "callbacks.1",
        {
            "subscriber": "plugins.metrics:LoaderMetricCallback",
            "name": "mean_logit",
            "metric": {"_target_": "er_test_metrics:MeanMetric"},
        },
    )
    callback = build(cfg).train_kwargs["callbacks"][1]
    assert type(callback).__name__ == "LoaderMetricCallback"
    assert isinstance(callback.metric, _MeanMetric)


class _MeanMetric:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.total = 0.0

    def update(self, preds: torch.Tensor, targets: torch.Tensor) -> None:
        self.total += float(preds.mean())

    def compute(self) -> float:
        return self.total


def test_args_and_partial():
    built = config.instantiate(
        {
            "_target_": "torch.nn.Sequential",
            "_args_": [{"_target_": "torch.nn.Linear", "_args_": [4, 2]}],
        }
    )
    assert isinstance(built[0], nn.Linear) and built[0].in_features == 4
    factory = config.instantiate({"_target_": "torch.nn.Linear", "_partial_": True, "bias": False})
    assert factory(3, 5).bias is None


def test_unknown_example_lists_the_available_ones():
    with pytest.raises(ValueError, match="available: digits"):
        config.example_path("digit")


def test_train_overwrite_reaches_train(digits, monkeypatch):
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(eventrunner.Runner, "train", _recording(calls))
    build(_set(digits, "train.overwrite", True)).run()
    assert calls[0]["overwrite"] is True
