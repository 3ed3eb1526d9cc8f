"""Reading checkpoint files safely: foreign pickles are refused without running their code,
truncated or garbage files and other models' checkpoints get errors naming the file (and the
keys), and the atomic write never leaves a half-written final file."""

from __future__ import annotations

import collections
import enum
import os
import pickle
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import plugins
from eventrunner import Runner
from eventrunner import checkpoint as ckpt
from eventrunner.testing import tiny_run


class TinyRunner(Runner):
    def handle_batch(self, batch: dict[str, Any]) -> None:
        out = self.model(batch["x"])
        self.batch_metrics["loss"] = ((out - batch["y"]) ** 2).mean()


def _checkpoint(folder: Path, model: nn.Module | None = None, overwrite: bool = False) -> Path:
    torch.manual_seed(0)
    model = model or nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
    data = [{"x": torch.randn(4, 3), "y": torch.randn(4, 1)} for _ in range(2)]
    TinyRunner().train(
        model=model,
        optimizer=torch.optim.Adam(model.parameters()),
        loaders={"train": data, "valid": data},
        num_epochs=1,
        logdir=folder,
        console=False,
        overwrite=overwrite,
    )
    return folder / "checkpoints" / "last.pth"


class CreatesAFile:
    """Unpickling this calls ``open(target, "w")``: a file appears if the pickle is run."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.target), "w"))


@pytest.mark.parametrize("how", ["pickle", "torch.save"])
def test_a_foreign_pickle_is_refused_without_running_it(tmp_path, how):
    target = tmp_path / "created_by_pickle"
    path = tmp_path / "evil.pth"
    if how == "pickle":
        path.write_bytes(pickle.dumps({"model": CreatesAFile(target)}, protocol=2))
    else:
        torch.save({"format": ckpt.FORMAT, "model": CreatesAFile(target)}, path)
    with pytest.raises(ckpt.CheckpointError, match=r"evil\.pth") as info:
        ckpt.load_checkpoint(path)
    assert "refused" in str(info.value)
    assert not target.exists()
    # The runner's resume= goes through the same door.
    with pytest.raises(ckpt.CheckpointError, match=r"evil\.pth"):
        TinyRunner().train(
            model=nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1)),
            loaders={"train": [{"x": torch.randn(2, 3), "y": torch.randn(2, 1)}]},
            resume=path,
            console=False,
        )
    assert not target.exists()


class RunsACommand:
    """Unpickling this would call ``os.system``."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, ("echo pwned",))


# torch warns about pickle protocols above 2 before it refuses them.
pytestmark = pytest.mark.filterwarnings("ignore:Detected pickle protocol")


@pytest.mark.parametrize("how", ["pickle-2", "pickle-default", "torch.save", "torch.save-legacy"])
def test_a_malicious_pickle_is_refused_as_unsafe_naming_the_global(tmp_path, how):
    path = tmp_path / "evil.pth"
    payload = {"format": ckpt.FORMAT, "model": RunsACommand()}
    if how == "pickle-2":
        path.write_bytes(pickle.dumps(payload, protocol=2))
    elif how == "pickle-default":  # protocol 4+: torch's reader stops at the first frame
        path.write_bytes(pickle.dumps(payload))
    else:
        torch.save(payload, path, _use_new_zipfile_serialization=how == "torch.save")
    with pytest.raises(ckpt.CheckpointError) as info:
        ckpt.load_checkpoint(path)
    message = str(info.value)
    assert message.startswith(f"checkpoint {path}: refused as unsafe")
    assert f"{os.system.__module__}.system" in message  # posix.system (nt.system on Windows)
    assert "weights_only=False" not in message.replace(" ", "")
    assert "False" not in message and "corrupt" not in message
    assert "Please" not in message  # none of torch's advice is relayed


def test_a_pickle_of_plain_data_is_not_called_unsafe(tmp_path):
    path = tmp_path / "plain.pth"
    path.write_bytes(pickle.dumps({"a": [1, 2.0, "x"]}))  # protocol 4+, no global at all
    with pytest.raises(ckpt.CheckpointError, match=r"plain\.pth: cannot be read") as info:
        ckpt.load_checkpoint(path)
    assert "unsafe" not in str(info.value) and "False" not in str(info.value)


def test_garbage_and_truncated_files_name_the_file(tmp_path):
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(os.urandom(4096))
    with pytest.raises(ckpt.CheckpointError, match=r"garbage\.pth"):
        ckpt.load_checkpoint(garbage)

    good = _checkpoint(tmp_path)
    truncated = tmp_path / "truncated.pth"
    data = good.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ckpt.CheckpointError, match=r"truncated\.pth.*truncated, corrupt"):
        ckpt.load_checkpoint(truncated)

    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    with pytest.raises(ckpt.CheckpointError, match=r"empty\.pth"):
        ckpt.load_checkpoint(empty)
    with pytest.raises(FileNotFoundError, match=r"missing\.pth"):
        ckpt.load_checkpoint(tmp_path / "missing.pth")


def test_a_torch_file_that_is_not_ours(tmp_path):
    path = tmp_path / "weights.pth"
    torch.save(nn.Linear(3, 1).state_dict(), path)
    with pytest.raises(ckpt.CheckpointError, match=r"weights\.pth: not an eventrunner checkpoint"):
        ckpt.load_checkpoint(path)


def test_a_checkpoint_of_another_model_names_the_keys(tmp_path):
    path = _checkpoint(tmp_path)
    other = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 1), nn.Linear(1, 1))
    with pytest.raises(ckpt.CheckpointError) as info:
        ckpt.load_weights(other, path)
    message = str(info.value)
    assert "last.pth" in message
    assert "3.weight" in message and "3.bias" in message  # missing from the checkpoint
    assert "0.weight (4, 3) vs (8, 3)" in message  # shapes differ
    with pytest.raises(ckpt.CheckpointError, match="another model"):
        TinyRunner().train(
            model=other,
            loaders={"train": [{"x": torch.randn(2, 3), "y": torch.randn(2, 1)}]},
            resume=path,
            console=False,
        )


def test_a_checkpoint_loads_into_the_same_model(tmp_path):
    path = _checkpoint(tmp_path)
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
    state = ckpt.load_weights(model, path)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state["model"].items())
    assert ckpt.peek_epoch(path) == 1 and ckpt.peek_epoch(tmp_path / "nope.pth") is None


def test_atomic_write_keeps_the_previous_file_when_the_write_fails(tmp_path, monkeypatch):
    target = tmp_path / "last.pth"
    ckpt.save_checkpoint({"format": ckpt.FORMAT, "version": 1, "epoch": 1}, [target])

    def dies_midway(obj: Any, handle: Any) -> None:
        handle.write(b"PK\x03\x04 half a zip")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", dies_midway)
    with pytest.raises(OSError, match="No space"):
        ckpt.save_checkpoint({"format": ckpt.FORMAT, "version": 1, "epoch": 2}, [target])
    assert ckpt.load_checkpoint(target)["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pth"]  # the temp file is gone


def test_one_write_gives_every_name_the_same_content(tmp_path):
    names = [tmp_path / "epoch_0001.pth", tmp_path / "best.pth", tmp_path / "last.pth"]
    ckpt.save_checkpoint({"format": ckpt.FORMAT, "version": 1, "epoch": 1}, names)
    assert [ckpt.peek_epoch(p) for p in names] == [1, 1, 1]
    # A later write to one name leaves the others as they were.
    ckpt.save_checkpoint({"format": ckpt.FORMAT, "version": 1, "epoch": 2}, [names[2]])
    assert [ckpt.peek_epoch(p) for p in names] == [1, 1, 2]


def test_leftover_temp_files_are_removed_at_start(tmp_path):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    leftover = folder / ".eventrunner-0123.tmp"
    leftover.write_bytes(b"half")
    mine = folder / "notes.txt"
    mine.write_text("keep me")
    _checkpoint(tmp_path, overwrite=True)  # the leftover is a killed run's
    assert not leftover.exists() and mine.exists()


def test_checkpoint_callback_replaces_the_default_by_kind(tmp_path):
    class MyCheckpoint(plugins.CheckpointCallback):
        pass

    runner = tiny_run([MyCheckpoint(logdir=tmp_path / "mine", topk=0)], num_epochs=1)
    folder = tmp_path / "mine" / "checkpoints"
    assert sorted(p.name for p in folder.iterdir()) == ["best.pth", "index.json", "last.pth"]
    assert sum(isinstance(c, plugins.CheckpointCallback) for c in runner.callbacks) == 1


# --------------------------------------------------------------- skipping the read-back


Pair = collections.namedtuple("Pair", "a b")


class Colour(enum.IntEnum):
    RED = 1


def _with_attribute() -> torch.Tensor:
    tensor = torch.ones(2)
    tensor.note = "mine"  # type: ignore[attr-defined]
    return tensor


_VALUES: dict[str, Any] = {
    "scalars": {"a": None, "b": True, "c": 3, "d": 2.5, "e": 1j, "f": "x", "g": b"y"},
    "containers": [(1, 2), {3, 4}, {5: [6.0]}],
    "a state_dict (OrderedDict with _metadata)": nn.Linear(2, 3).state_dict(),
    "an optimizer state": torch.optim.Adam(nn.Linear(2, 1).parameters()).state_dict(),
    "torch values": [torch.float16, torch.device("cpu"), torch.Size([2, 3])],
    "tensors": [
        torch.ones(2, dtype=torch.bfloat16),
        torch.ones(4)[::2],
        nn.Parameter(torch.ones(1)),
    ],
    "an IntEnum": Colour.RED,
    "a namedtuple": Pair(1, 2),
    "a frozenset": frozenset([1]),
    "a range": range(3),
    "a sparse tensor": torch.ones(2).to_sparse(),
    "a tensor with an attribute": _with_attribute(),
    "an object": object(),
    "an object deep inside": {"a": [{"b": (1, object())}]},
}


@pytest.mark.parametrize("name", list(_VALUES))
def test_values_taken_as_loading_back_do_load_with_weights_only(tmp_path, name):
    """The reference is torch.load(weights_only=True) itself: whatever save_checkpoint does
    not read back must load that way (the converse may fail: those are read back)."""
    value = _VALUES[name]
    path = tmp_path / "value.pth"
    torch.save({"value": value}, path)
    try:
        torch.load(path, weights_only=True)
        loads = True
    except pickle.UnpicklingError:
        loads = False
    if ckpt.loads_by_construction({"value": value}):
        assert loads, name
    if not loads:
        assert not ckpt.loads_by_construction({"value": value}), name


def test_a_plain_state_is_not_read_back_and_another_one_is(tmp_path, monkeypatch):
    reads: list[Path] = []
    load = torch.load

    def counting(path: Any, *args: Any, **kwargs: Any) -> Any:
        reads.append(Path(path))
        return load(path, *args, **kwargs)

    monkeypatch.setattr(torch, "load", counting)
    ckpt.save_checkpoint({"weights": torch.ones(2), "step": 3}, [tmp_path / "plain.pth"])
    assert reads == []
    torch.serialization.add_safe_globals([Colour])
    try:
        ckpt.save_checkpoint({"colour": Colour.RED}, [tmp_path / "allowed.pth"])
    finally:
        torch.serialization.clear_safe_globals()
    assert len(reads) == 1  # read back: an allow-listed class loads, so it is written
    assert (tmp_path / "allowed.pth").exists()
