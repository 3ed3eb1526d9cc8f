"""Catalyst 22.04's engines, dicts of components, ``IRunner`` and the training-step callbacks'
keywords, each checked against the plain PyTorch loop that a Catalyst program means."""

from __future__ import annotations

import copy
import logging
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from eventrunner import Callback, CallbackOrder, IRunner, Runner, dl
from eventrunner.catalyst.names import NOT_PORTED
from eventrunner.testing import EventRecorder, same_weights


def _pairs(sizes: list[int], seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(n, 4, generator=generator), torch.randint(0, 3, (n,), generator=generator))
        for n in sizes
    ]


LOADERS = {"train": _pairs([4, 4, 2]), "valid": _pairs([5, 3], seed=1)}


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Linear(4, 3)


def _sgd(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)


def _plain(model: nn.Module, epochs: int = 2, clip: float | None = None) -> nn.Module:
    optimizer = _sgd(model)
    for _ in range(epochs):
        model.train()
        for x, y in LOADERS["train"]:
            F.cross_entropy(model(x), y).backward()
            if clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), clip)
            optimizer.step()
            optimizer.zero_grad()
    return model


class EngineRunner(Runner):
    """Catalyst's README pattern: ``self.engine.backward(loss)`` and a manual step."""

    def handle_batch(self, batch: Any) -> None:
        x, y = batch
        loss = F.cross_entropy(self.model(x.to(self.engine.device)), y)
        self.batch_metrics["loss"] = loss
        if self.is_train_loader:
            self.engine.backward(loss)
            self.optimizer.step()
            self.optimizer.zero_grad()


class LossRunner(Runner):
    def handle_batch(self, batch: Any) -> None:
        x, y = batch
        self.batch_metrics["loss"] = F.cross_entropy(self.model(x), y)


# -------------------------------------------------------------------------- engines


@pytest.mark.parametrize(
    "engine", [dl.CPUEngine(), dl.GPUEngine(), dl.DataParallelEngine(), None], ids=repr
)
def test_an_engine_trains_as_the_plain_loop(engine):
    # GPUEngine on a machine without CUDA trains on the CPU (as accelerate does), with a warning.
    model = _model()
    runner = EngineRunner()
    runner.train(
        model=model,
        optimizer=_sgd(model),
        loaders=LOADERS,
        num_epochs=2,
        engine=engine,
        console=False,
    )
    assert runner.engine.device == runner.device
    if engine is not None:
        assert runner.engine is engine
    assert same_weights(model.state_dict(), _plain(_model()).state_dict())


def test_engine_flags_ask_for_device_precision_and_ddp():
    from eventrunner.settings import TrainSettings

    settings = TrainSettings(loaders=LOADERS, cpu=True)
    assert settings.device == torch.device("cpu")
    assert TrainSettings(loaders=LOADERS, engine=dl.CPUEngine(fp16=True)).amp == "fp16"
    assert TrainSettings(loaders=LOADERS, fp16=True).amp == "fp16"
    ddp = TrainSettings(loaders=LOADERS, engine=dl.DistributedDataParallelEngine())
    assert ddp.ddp is True
    with pytest.raises(ValueError, match=r"device=.*disagrees with the engine"):
        TrainSettings(loaders=LOADERS, engine=dl.CPUEngine(), device="meta")
    with pytest.raises(TypeError, match="engine must be an engine"):
        TrainSettings(loaders=LOADERS, engine="cpu-please")
    with pytest.raises(TypeError, match="unknown arguments \\['fp64'\\]"):
        dl.CPUEngine(fp64=True)


def test_engine_helpers_outside_ddp():
    engine = dl.CPUEngine()
    assert (engine.is_ddp, engine.is_master_process, engine.num_processes) == (False, True, 1)
    assert engine.prepare("model") == "model"
    assert engine.sync_device({"x": torch.ones(1)})["x"].device.type == "cpu"
    assert engine.mean_reduce_ddp_metrics({"loss": 1.5}) == {"loss": 1.5}


# --------------------------------------------------------------- dicts of components


class TwoModelRunner(Runner):
    """Two models, two optimizers, two losses: stepped by callbacks with optimizer_key."""

    def handle_batch(self, batch: Any) -> None:
        x, y = batch
        self.batch_metrics["loss_a"] = F.cross_entropy(self.model["a"](x), y)
        self.batch_metrics["loss_b"] = F.cross_entropy(self.model["b"](x), y)


def _two_callbacks() -> list[Any]:
    return [
        dl.BackwardCallback(metric_key="loss_a"),
        dl.OptimizerCallback(metric_key="loss_a", optimizer_key="a"),
        dl.BackwardCallback("loss_b"),
        dl.OptimizerCallback("loss_b", optimizer_key="b"),
    ]


def _two(models: dict[str, nn.Module], logdir: Any = None, **kwargs: Any) -> TwoModelRunner:
    runner = TwoModelRunner()
    kwargs = {"num_epochs": 2, "console": False, **kwargs}
    runner.train(
        model=models,
        optimizer={key: _sgd(model) for key, model in models.items()},
        loaders=LOADERS,
        callbacks=_two_callbacks(),
        logdir=logdir,
        **kwargs,
    )
    return runner


def test_a_dict_of_models_and_optimizers_trains_each_as_the_plain_loop(tmp_path):
    models = {"a": _model(0), "b": _model(1)}
    runner = _two(models, tmp_path / "logs")
    assert isinstance(runner.model, nn.ModuleDict)
    assert runner.model["a"] is models["a"]
    assert same_weights(models["a"].state_dict(), _plain(_model(0)).state_dict())
    assert same_weights(models["b"].state_dict(), _plain(_model(1)).state_dict())
    saved = torch.load(tmp_path / "logs" / "checkpoints" / "last.pth", weights_only=True)
    assert set(saved["optimizer"]) == {"a", "b"}
    assert saved["classes"]["optimizer"] == {"a": "SGD", "b": "SGD"}


def test_a_dict_of_optimizers_resumes_bitwise(tmp_path):
    whole = {"a": _model(0), "b": _model(1)}
    uninterrupted = _two(whole, tmp_path / "whole", num_epochs=3)
    _two({"a": _model(0), "b": _model(1)}, tmp_path / "part", num_epochs=1)
    resumed = {"a": _model(0), "b": _model(1)}
    runner = _two(
        resumed,
        tmp_path / "resumed",
        num_epochs=3,
        resume=tmp_path / "part" / "checkpoints" / "last.pth",
    )
    assert runner.epoch_step == 3
    for key in ("a", "b"):
        assert same_weights(resumed[key].state_dict(), whole[key].state_dict())
        assert torch.equal(
            runner.optimizer[key].state_dict()["state"][0]["momentum_buffer"],
            uninterrupted.optimizer[key].state_dict()["state"][0]["momentum_buffer"],
        )


def test_a_dict_of_optimizers_without_a_key_is_refused_before_training():
    models = {"a": _model(0), "b": _model(1)}
    with pytest.raises(
        ValueError, match="optimizer is a dict \\(\\['a', 'b'\\]\\): pass optimizer_key"
    ):
        TwoModelRunner().train(
            model=models,
            optimizer={key: _sgd(model) for key, model in models.items()},
            loaders=LOADERS,
            callbacks=[dl.BackwardCallback("loss_a"), dl.OptimizerCallback("loss_a")],
            console=False,
        )


def test_a_dict_of_schedulers_is_stepped_by_key():
    models = {"a": _model(0), "b": _model(1)}
    optimizers = {key: _sgd(model) for key, model in models.items()}
    schedulers = {
        "a": torch.optim.lr_scheduler.StepLR(optimizers["a"], step_size=1, gamma=0.5),
        "b": torch.optim.lr_scheduler.StepLR(optimizers["b"], step_size=1, gamma=0.1),
    }
    TwoModelRunner().train(
        model=models,
        optimizer=optimizers,
        scheduler=schedulers,
        loaders=LOADERS,
        callbacks=[*_two_callbacks(), dl.SchedulerCallback("a")],
        num_epochs=2,
        console=False,
    )
    assert optimizers["a"].param_groups[0]["lr"] == pytest.approx(0.025)
    assert optimizers["b"].param_groups[0]["lr"] == pytest.approx(0.1)  # not asked to step


# ------------------------------------------------------------ training-step keywords


def test_catalyst_keywords_of_backward_and_optimizer_callbacks():
    model = _model()
    LossRunner().train(
        model=model,
        optimizer=_sgd(model),
        loaders=LOADERS,
        num_epochs=2,
        console=False,
        callbacks=[
            dl.BackwardCallback(
                metric_key="loss",
                grad_clip_fn="clip_grad_norm_",
                grad_clip_params={"max_norm": 0.05},
            ),
            dl.OptimizerCallback("loss"),
        ],
    )
    assert same_weights(model.state_dict(), _plain(_model(), clip=0.05).state_dict())
    with pytest.raises(ValueError, match="grad_clip_fn='clip_nothing' is not a function"):
        dl.BackwardCallback("loss", grad_clip_fn="clip_nothing")


def test_criterion_callbacks_with_a_dict_of_criteria():
    # SupervisedRunner leaves the loss to CriterionCallback; two criteria by key.
    model = _model()
    runner = dl.SupervisedRunner(input_key="features", output_key="logits", target_key="targets")
    runner.train(
        model=model,
        criterion={"ce": nn.CrossEntropyLoss(), "nll": nn.NLLLoss()},
        optimizer=_sgd(model),
        loaders=LOADERS,
        num_epochs=2,
        console=False,
        callbacks=[
            dl.CriterionCallback("logits", "targets", "loss", criterion_key="ce"),
            dl.CriterionCallback("logits", "targets", "nll", criterion_key="nll"),
        ],
    )
    assert same_weights(model.state_dict(), _plain(_model()).state_dict())
    assert set(runner.epoch_metrics["valid"]) >= {"loss", "nll"}


# ------------------------------------------------------------------------- IRunner


class CustomIRunner(IRunner):
    """The shape of Catalyst's README ``IRunner`` example."""

    def __init__(self, engine: Any) -> None:
        super().__init__()
        self._engine = engine

    @property
    def num_epochs(self) -> int:
        return 2

    def get_loaders(self) -> dict[str, Any]:
        return LOADERS

    def get_model(self) -> nn.Module:
        return self.model if self.model is not None else _model()

    def get_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        return _sgd(model)

    def get_callbacks(self) -> dict[str, Any]:
        return {
            "backward": dl.BackwardCallback(metric_key="loss"),
            "optimizer": dl.OptimizerCallback(metric_key="loss"),
        }

    def handle_batch(self, batch: Any) -> None:
        x, y = batch
        self.batch_metrics = {"loss": F.cross_entropy(self.model(x), y)}


def test_an_irunner_runs_from_its_get_methods():
    runner = CustomIRunner(dl.CPUEngine())
    runner.run()
    assert runner.epoch_step == 2 and runner.engine.device.type == "cpu"
    assert same_weights(runner.model.state_dict(), _plain(_model()).state_dict())
    with pytest.raises(NotImplementedError, match="get_loaders\\(\\) is not written"):
        IRunner(model=_model()).run()


def test_callback_order_has_catalysts_names_and_values():
    assert CallbackOrder.External == CallbackOrder.external == 100
    assert (CallbackOrder.Metric, CallbackOrder.MetricAggregation) == (10, 20)
    assert (CallbackOrder.Backward, CallbackOrder.Optimizer, CallbackOrder.Scheduler) == (
        30,
        40,
        50,
    )


def test_dl_says_which_names_are_not_ported():
    with pytest.raises(AttributeError, match="LRFinder is not ported"):
        dl.LRFinder  # noqa: B018
    assert copy.copy(dl.__all__) == sorted(dl.__all__)


# computed by catalyst 22.4: the capitalised public names of ``catalyst.dl`` (``LooseVersion``,
# a distutils class it re-exports by accident, left out)
CATALYST_DL_NAMES = [
    "AUCCallback",
    "AccuracyCallback",
    "BackwardCallback",
    "BatchMetricCallback",
    "BatchOverfitCallback",
    "BatchTransformCallback",
    "CMCScoreCallback",
    "CPUEngine",
    "CSVLogger",
    "Callback",
    "CallbackOrder",
    "CallbackWrapper",
    "CheckRunCallback",
    "CheckpointCallback",
    "ConsoleLogger",
    "ControlFlowCallbackWrapper",
    "CriterionCallback",
    "DataParallelEngine",
    "DiceCallback",
    "DistributedDataParallelEngine",
    "EarlyStoppingCallback",
    "Engine",
    "FunctionalBatchMetricCallback",
    "FunctionalMetricCallback",
    "GPUEngine",
    "HitrateCallback",
    "IBackwardCallback",
    "ICallback",
    "ICheckpointCallback",
    "ICriterionCallback",
    "ILRUpdater",
    "ILogger",
    "IMetricCallback",
    "IOUCallback",
    "IOptimizerCallback",
    "IRunner",
    "IRunnerError",
    "ISchedulerCallback",
    "ISupervisedRunner",
    "LRFinder",
    "LoaderMetricCallback",
    "MAPCallback",
    "MRRCallback",
    "MetricAggregationCallback",
    "MixupCallback",
    "MultilabelAccuracyCallback",
    "MultilabelPrecisionRecallF1SupportCallback",
    "NDCGCallback",
    "OptimizerCallback",
    "PeriodicLoaderCallback",
    "PrecisionRecallF1SupportCallback",
    "ProfilerCallback",
    "R2SquaredCallback",
    "ReidCMCScoreCallback",
    "Runner",
    "SETTINGS",
    "SchedulerCallback",
    "SoftUpdateCallaback",
    "SupervisedRunner",
    "TensorboardLogger",
    "TimerCallback",
    "TqdmCallback",
    "TrevskyCallback",
]


def test_dl_gives_every_name_of_catalysts_dl():
    ported = [name for name in CATALYST_DL_NAMES if name not in NOT_PORTED]
    assert [name for name in ported if getattr(dl, name, None) is None] == []
    assert sorted(NOT_PORTED) == ["ILRUpdater", "LRFinder", "MixupCallback", "SoftUpdateCallaback"]
    assert dl.SETTINGS.pruning_required is True


# ----------------------------------------------------------------- predict/evaluate


class PredictingRunner(LossRunner):
    """Catalyst's README ``CustomRunner.predict_batch``: the prediction is what it returns."""

    def predict_batch(self, batch: Any) -> torch.Tensor:
        return self.model(batch[0].to(self.device))


def test_predict_loader_yields_the_subclass_predict_batch_with_catalysts_arguments(tmp_path):
    model = _model()
    runner = PredictingRunner()
    runner.train(
        model=model, optimizer=_sgd(model), loaders=LOADERS, logdir=tmp_path, console=False
    )
    fresh = _model(5)
    predictions = list(
        runner.predict_loader(
            loader=LOADERS["valid"],
            model=fresh,
            engine=dl.CPUEngine(),
            resume=tmp_path / "checkpoints" / "last.pth",
        )
    )
    assert same_weights(fresh.state_dict(), model.state_dict())  # resume= loaded the weights
    with torch.no_grad():
        expected = [model(x) for x, _ in LOADERS["valid"]]
    assert all(torch.equal(p, e) for p, e in zip(predictions, expected, strict=True))
    assert not predictions[0].requires_grad and torch.is_grad_enabled()
    metrics = runner.evaluate_loader(LOADERS["valid"], engine=dl.CPUEngine())
    with torch.no_grad():
        losses = [F.cross_entropy(model(x), y) * len(y) for x, y in LOADERS["valid"]]
    assert metrics["loss"] == pytest.approx(float(sum(losses)) / 8, abs=1e-6)


# ------------------------------------------------------------ Catalyst's train() flags


def test_check_and_timeit_flags_compose_catalysts_callbacks():
    batches = EventRecorder(events=["batch_end"], fields=["epoch_step", "loader_key"])
    model = _model()
    runner = LossRunner()
    loaders = {"train": _pairs([2] * 5), "valid": _pairs([2] * 5, seed=1)}
    runner.train(
        model=model,
        optimizer=_sgd(model),
        loaders=loaders,
        num_epochs=5,
        console=False,
        check=True,
        timeit=True,
        callbacks=[batches],
    )
    # Catalyst's check run: 3 epochs of 3 batches per loader.
    assert runner.epoch_step == 3
    assert len(batches.column("epoch_step")) == 3 * 2 * 3
    assert {"_timer/batch_time", "_timer/data_time", "_timer/model_time", "_timer/_fps"} <= set(
        runner.epoch_metrics["train"]
    )


class NumpyMetricsRunner(LossRunner):
    """Catalyst-style meters return NumPy scalars (``AdditiveMetric.compute()[0]``)."""

    def on_loader_end(self, runner: Any) -> None:
        self.loader_metrics["accuracy"] = np.float64(0.5)
        self.loader_metrics["seen"] = np.int64(3)
        super().on_loader_end(runner)


def test_numpy_scalars_in_the_run_state_are_saved_as_numbers(tmp_path):
    # Failed before: "the state would not load back with torch.load(weights_only=True)"
    # (numpy scalars in selection/metrics, a MultiStepLR with NumPy milestones).
    model = _model()
    optimizer = _sgd(model)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=np.array([1, 2]))
    NumpyMetricsRunner().train(
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        loaders=LOADERS,
        num_epochs=2,
        logdir=tmp_path,
        main_metric="accuracy",
        console=False,
    )
    saved = torch.load(tmp_path / "checkpoints" / "last.pth", weights_only=True)
    assert saved["selection"]["best_valid_metric"] == 0.5
    assert type(saved["epoch_metrics"]["valid"]["seen"]) is float
    assert dict(saved["scheduler"]["milestones"]) == {1: 1, 2: 1}
    assert type(scheduler.milestones) is type(saved["scheduler"]["milestones"])


def test_checkpoint_callback_takes_catalysts_arguments(tmp_path):
    model = _model()
    first = LossRunner()
    first.train(
        model=model,
        optimizer=_sgd(model),
        loaders=LOADERS,
        logdir=tmp_path / "a",
        console=False,
    )
    fresh = _model(7)
    optimizer = _sgd(fresh)
    LossRunner().train(
        model=fresh,
        optimizer=optimizer,
        loaders={"valid": LOADERS["valid"]},
        console=False,
        callbacks=[
            # Catalyst's positional order, then resume_runner: weights and optimizer state.
            dl.CheckpointCallback(
                tmp_path / "b",
                "valid",
                "loss",
                True,
                1,
                "model",
                True,
                True,
                resume_runner=tmp_path / "a" / "checkpoints" / "last.pth",
            ),
        ],
    )
    assert same_weights(fresh.state_dict(), model.state_dict())
    assert torch.equal(
        optimizer.state_dict()["state"][0]["momentum_buffer"],
        first.optimizer.state_dict()["state"][0]["momentum_buffer"],
    )
    assert (tmp_path / "b" / "checkpoints" / "best.pth").exists()
    with pytest.raises(ValueError, match="save_last/save_best take only True"):
        dl.CheckpointCallback(tmp_path, save_last=False)


def test_evaluating_selects_no_epoch_and_warns_nothing(caplog):
    # Failed before: "no model selection (loader 'valid' produced no 'loss' metric)".
    model = _model()
    runner = LossRunner()
    runner.train(model=model, optimizer=_sgd(model), loaders=LOADERS, console=False)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="eventrunner"):
        metrics = runner.evaluate_loader(LOADERS["valid"], callbacks=[_NoLoss()])
    assert "loss" not in metrics and "seen" in metrics
    assert not caplog.records


class _NoLoss(Callback):
    def __init__(self) -> None:
        super().__init__(order=CallbackOrder.Metric)  # before the means (20)

    def on_batch_end(self, runner: Any) -> None:
        runner.batch_metrics.pop("loss")
        runner.batch_metrics["seen"] = 1.0
