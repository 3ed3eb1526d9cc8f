"""Loaders: kinds by name prefix, ``BatchLimitLoaderWrapper`` limits and replay, iterables
without ``len()``, and ``concat_datasets`` of datasets and of loaders."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import ConcatDataset, DataLoader, Dataset

from eventrunner import BatchLimitLoaderWrapper, Callback, Runner, SupervisedRunner, concat_datasets
from eventrunner.data.loaders import loader_kind


class DictDataset(Dataset):
    """Sample ``i`` is ``{"x": [i, i, i], "y": [i], "index": i}``."""

    def __init__(self, n: int, offset: int = 0) -> None:
        self.n = n
        self.offset = offset

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, Any]:
        value = float(i + self.offset)
        return {
            "x": torch.full((3,), value),
            "y": torch.tensor([value]),
            "index": torch.tensor(i + self.offset),
        }


def dataloader(n: int, batch_size: int = 2, shuffle: bool = False, seed: int = 0) -> DataLoader:
    generator = torch.Generator().manual_seed(seed) if shuffle else None
    return DataLoader(DictDataset(n), batch_size=batch_size, shuffle=shuffle, generator=generator)


def indices(batches: Any) -> list[list[int]]:
    return [batch["index"].tolist() for batch in batches]


class NoLen:
    """An iterable of dict batches without ``len()``."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.passes = 0

    def __iter__(self):
        self.passes += 1
        for i in range(self.n):
            yield {
                "x": torch.full((2, 3), float(i)),
                "y": torch.zeros(2, 1),
                "index": torch.tensor([i, i]),
            }


class PassRecorder(Callback):
    """Per loader pass: the sample indices of its batches, the mode, and the batch length."""

    def __init__(self) -> None:
        super().__init__(order=100)
        self.passes: list[dict[str, Any]] = []

    def _mode(self, runner: Runner) -> tuple[bool, ...]:
        return (
            torch.is_grad_enabled(),
            runner.model.training,
            runner.is_train_loader,
            runner.is_valid_loader,
            runner.is_infer_loader,
        )

    def on_loader_start(self, runner):
        self.before = [p.detach().clone() for p in runner.model.parameters()]
        self.passes.append(
            {
                "loader": runner.loader_key,
                "epoch": runner.epoch_step,
                "batches": [],
                "len": runner.loader_batch_len,
                "modes": {self._mode(runner)},
            }
        )

    def on_batch_end(self, runner):
        self.passes[-1]["batches"].append(runner.batch["index"].tolist())
        self.passes[-1]["modes"].add(self._mode(runner))

    def on_loader_end(self, runner):
        self.passes[-1]["modes"].add(self._mode(runner))  # the mode holds for the whole pass
        self.passes[-1]["changed"] = any(
            not torch.equal(a, b)
            for a, b in zip(self.before, runner.model.parameters(), strict=True)
        )

    def of(self, loader_key: str) -> list[dict[str, Any]]:
        return [p for p in self.passes if p["loader"] == loader_key]


def run(loaders: dict[str, Any], num_epochs: int = 1, **kw: Any) -> tuple[Runner, PassRecorder]:
    model = nn.Linear(3, 1)
    recorder = PassRecorder()
    runner = SupervisedRunner(input_key="x", output_key="out", target_key="y")
    runner.train(
        model=model,
        criterion=nn.MSELoss(),
        optimizer=torch.optim.SGD(model.parameters(), lr=0.01),
        loaders=loaders,
        num_epochs=num_epochs,
        callbacks=[recorder, *kw.pop("callbacks", [])],
        console=False,
        **kw,
    )
    return runner, recorder


# ----------------------------------------------------------------- prefixes


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("train", "train"),
        ("train2", "train"),
        ("training_set", "train"),
        ("valid", "valid"),
        ("valid_2", "valid"),
        ("validation", "valid"),
        ("infer", "infer"),
        ("infer_test", "infer"),
    ],
)
def test_loader_kind_by_prefix(name, kind):
    assert loader_kind(name) == kind


@pytest.mark.parametrize("name", ["test", "Train", "val", "", "my_train"])
def test_other_names_are_refused(name):
    with pytest.raises(ValueError, match=r"train.*valid.*infer") as info:
        loader_kind(name)
    assert repr(name) in str(info.value)


def test_prefix_decides_what_runs():
    loaders = {
        "train": dataloader(4),
        "valid": dataloader(4),
        "train_b": dataloader(4),
        "validation": dataloader(2),
        "infer": dataloader(2),
    }
    runner, recorder = run(loaders)
    by_loader = {p["loader"]: p for p in recorder.passes}
    assert list(by_loader) == list(loaders)
    assert by_loader["train"]["modes"] == {(True, True, True, False, False)}
    assert by_loader["train_b"]["modes"] == {(True, True, True, False, False)}
    assert by_loader["valid"]["modes"] == {(False, False, False, True, False)}
    assert by_loader["validation"]["modes"] == {(False, False, False, True, False)}
    assert by_loader["infer"]["modes"] == {(False, False, False, False, True)}
    assert {key: p["changed"] for key, p in by_loader.items()} == {
        "train": True,
        "valid": False,
        "train_b": True,
        "validation": False,
        "infer": False,
    }
    # forward-only loaders still have their metrics aggregated
    assert set(runner.epoch_metrics) == set(loaders)
    assert isinstance(runner.epoch_metrics["infer"]["loss"], float)


# ----------------------------------------------------------------- BatchLimitLoaderWrapper


@pytest.mark.parametrize(
    ("num_batches", "expected"),
    [(1, 1), (3, 3), (6, 6), (7, 7), (100, 7), (0.5, 3), (0.01, 1), (0.999, 6), (1.0, 7)],
)
def test_batch_limit_counts(num_batches, expected):
    source = dataloader(13)  # 7 batches, the last one of 1 sample
    wrapper = BatchLimitLoaderWrapper(source, num_batches=num_batches)
    assert len(wrapper) == expected
    assert len(list(wrapper)) == expected
    assert indices(wrapper) == indices(source)[:expected]


@pytest.mark.parametrize("num_batches", [1.0, 7, 8, 1000])
def test_whole_loader_limit_passes_through(num_batches):
    source = dataloader(13, shuffle=True)
    wrapper = BatchLimitLoaderWrapper(source, num_batches=num_batches)
    assert wrapper.is_passthrough
    first, second = indices(wrapper), indices(wrapper)
    assert first != second  # reshuffled as usual
    for one_pass in (first, second):
        assert sorted(i for batch in one_pass for i in batch) == list(range(13))


@pytest.mark.parametrize("num_batches", [2, 0.5])
def test_limited_batches_are_replayed(num_batches):
    source = dataloader(12, shuffle=True)  # 6 batches
    wrapper = BatchLimitLoaderWrapper(source, num_batches=num_batches)
    assert not wrapper.is_passthrough
    passes = [indices(wrapper) for _ in range(3)]
    assert passes[0] == passes[1] == passes[2]
    assert len(passes[0]) == (2 if num_batches == 2 else 3)


def test_limited_batches_replayed_in_training():
    source = dataloader(12, shuffle=True)
    wrapper = BatchLimitLoaderWrapper(source, num_batches=2)
    runner, recorder = run({"train": wrapper, "valid": dataloader(4)}, num_epochs=3)
    train = recorder.of("train")
    assert [len(p["batches"]) for p in train] == [2, 2, 2]
    assert train[0]["batches"] == train[1]["batches"] == train[2]["batches"]
    assert [p["len"] for p in train] == [2, 2, 2]
    assert all(p["changed"] for p in train)
    assert runner.batch_step == 3 * (2 + 2)


def test_passthrough_reshuffles_in_training():
    wrapper = BatchLimitLoaderWrapper(dataloader(12, shuffle=True), num_batches=1.0)
    _, recorder = run({"train": wrapper}, num_epochs=2)
    first, second = (p["batches"] for p in recorder.of("train"))
    assert len(first) == len(second) == 6
    assert first != second


@pytest.mark.parametrize("bad", [0, -1, -3, 0.0, -0.5, 1.5, 2.0, float("nan")])
def test_bad_limits_are_refused(bad):
    with pytest.raises(ValueError, match="num_batches"):
        BatchLimitLoaderWrapper(dataloader(4), num_batches=bad)


@pytest.mark.parametrize("bad", ["1", None, True, [1]])
def test_limits_of_the_wrong_type_are_refused(bad):
    with pytest.raises(TypeError, match="num_batches"):
        BatchLimitLoaderWrapper(dataloader(4), num_batches=bad)


def test_wrapper_exposes_the_wrapped_loader():
    source = dataloader(6, batch_size=3)
    wrapper = BatchLimitLoaderWrapper(source, num_batches=1)
    assert wrapper.batch_size == 3
    assert wrapper.dataset is source.dataset


# ----------------------------------------------------------------- iterables without len()


def test_int_limit_takes_the_first_batches_of_any_iterable():
    source = NoLen(5)
    wrapper = BatchLimitLoaderWrapper(source, num_batches=2)
    assert [b["index"].tolist() for b in wrapper] == [[0, 0], [1, 1]]
    assert [b["index"].tolist() for b in wrapper] == [[0, 0], [1, 1]]
    assert source.passes == 1  # replayed, not re-read


def test_int_limit_over_a_short_iterable_without_len():
    source = NoLen(2)
    wrapper = BatchLimitLoaderWrapper(source, num_batches=5)
    # the length is unknown until the first pass: not claimed as 5
    with pytest.raises(TypeError):
        len(wrapper)
    assert len(list(wrapper)) == 2
    assert len(wrapper) == 2
    _, recorder = run({"train": BatchLimitLoaderWrapper(NoLen(2), num_batches=5)}, 2)
    assert [(p["len"], len(p["batches"])) for p in recorder.passes] == [(None, 2), (2, 2)]


def test_fraction_needs_a_length():
    with pytest.raises(ValueError, match="len"):
        BatchLimitLoaderWrapper(NoLen(5), num_batches=0.5)


def test_loader_without_len_runs():
    runner, recorder = run({"train": NoLen(3), "valid": NoLen(2)}, num_epochs=2)
    assert [len(p["batches"]) for p in recorder.passes] == [3, 2, 3, 2]
    assert [p["len"] for p in recorder.passes] == [None] * 4
    assert runner.batch_step == 10


def test_plain_list_of_batches_is_a_loader():
    batches = [
        {"x": torch.ones(2, 3), "y": torch.zeros(2, 1), "index": torch.tensor([k, k])}
        for k in range(3)
    ]
    _, recorder = run({"valid": batches})
    assert recorder.passes[0]["batches"] == [[0, 0], [1, 1], [2, 2]]
    assert recorder.passes[0]["len"] == 3


# ----------------------------------------------------------------- concat_datasets


def test_concat_datasets_of_datasets():
    joined = concat_datasets(DictDataset(3), DictDataset(2, offset=10))
    assert isinstance(joined, ConcatDataset)
    assert len(joined) == 5
    assert [int(joined[i]["index"]) for i in range(5)] == [0, 1, 2, 10, 11]
    _, recorder = run({"train": DataLoader(joined, batch_size=2)})
    assert recorder.passes[0]["batches"] == [[0, 1], [2, 10], [11]]


def test_concat_datasets_of_loaders():
    a = dataloader(4)
    b = DataLoader(DictDataset(3, offset=20), batch_size=2)
    joined = concat_datasets(a, b)
    assert len(joined) == 2 + 2
    assert indices(joined) == [[0, 1], [2, 3], [20, 21], [22]]
    _, recorder = run(
        {"train": joined, "valid": concat_datasets(dataloader(2), NoLen(1))}, num_epochs=2
    )
    assert [len(p["batches"]) for p in recorder.of("train")] == [4, 4]
    assert recorder.of("valid")[0]["batches"] == [[0, 1], [0, 0]]
    assert recorder.of("valid")[0]["len"] is None  # a joined loader without len()


def test_concat_datasets_refuses_a_mix_and_nothing():
    with pytest.raises(TypeError, match="not a mix"):
        concat_datasets(DictDataset(2), dataloader(2))
    with pytest.raises(ValueError, match="at least one"):
        concat_datasets()
