"""``eventrunner.utils`` against ``catalyst.utils`` 22.04, on the same inputs.

Reference values computed by catalyst 22.4 (``benchmarks/peers/.venv``, torch 2.13.0 CPU),
calling ``catalyst.utils.<name>`` with exactly the inputs built below.
"""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch
from torch import nn

from eventrunner import utils


def test_set_global_seed_draws_what_catalyst_draws(monkeypatch):
    monkeypatch.setenv("PYTHONHASHSEED", "0")  # set_global_seed writes it: restored after
    utils.set_global_seed(7)
    draws = (random.random(), float(np.random.rand()), float(torch.rand(())))
    assert os.environ["PYTHONHASHSEED"] == "7"
    # computed by catalyst 22.4: set_global_seed(7), then random.random(), np.random.rand(),
    # torch.rand(())
    assert draws == (0.32383276483316237, 0.07630828937395717, 0.5349225401878357)


def _mixup_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.arange(12, dtype=torch.float32).reshape(4, 3)
    y = torch.tensor([[1.0], [0.0], [0.0], [1.0]])
    return x, y


def test_mixup_batch_as_catalyst():
    x, y = _mixup_inputs()
    np.random.seed(0)
    mixed_x, mixed_y = utils.mixup_batch([x.clone(), y.clone()], alpha=0.4)
    # computed by catalyst 22.4: np.random.seed(0); mixup_batch([x, y], alpha=0.4)
    expected_x = [
        [1.9791094064712524, 2.979109287261963, 3.979109525680542],
        [4.311711311340332, 5.311711311340332, 6.311711311340332],
        [8.224794387817383, 9.224794387817383, 10.224794387817383],
        [1.2989071607589722, 2.2989072799682617, 3.2989072799682617],
    ]
    expected_y = [[0.34029683470726013], [0.0], [0.7415981292724609], [1.0]]
    assert torch.allclose(mixed_x, torch.tensor(expected_x), atol=1e-6)
    assert torch.allclose(mixed_y, torch.tensor(expected_y), atol=1e-6)
    np.random.seed(1)
    (added,) = utils.mixup_batch([x.clone()], alpha=1.0, mode="add")
    # computed by catalyst 22.4: np.random.seed(1); mixup_batch([x], alpha=1.0, mode="add")[0][4:]
    expected_added = [
        [2.9988653659820557, 3.9988653659820557, 4.998865127563477],
        [4.158603668212891, 5.158603668212891, 6.158603668212891],
        [7.949306488037109, 8.94930648803711, 9.94930648803711],
        [3.8167672157287598, 4.81676721572876, 5.816767692565918],
    ]
    assert added.shape == (8, 3)
    assert torch.equal(added[:4], x)
    assert torch.allclose(added[4:], torch.tensor(expected_added), atol=1e-6)
    with pytest.raises(ValueError, match="mode must be 'add' or 'replace'"):
        utils.mixup_batch([x], mode="concat")


def test_soft_update_as_catalyst():
    torch.manual_seed(0)
    target, source = nn.Linear(2, 2), nn.Linear(2, 2)
    utils.soft_update(target, source, 0.25)
    # computed by catalyst 22.4: torch.manual_seed(0); two nn.Linear(2, 2); soft_update(a, b, 0.25)
    expected_weight = [
        [-0.007472994737327099, 0.42465654015541077],
        [-0.45217347145080566, -0.34351328015327454],
    ]
    expected_bias = [-0.2576831579208374, 0.10746373236179352]
    assert torch.allclose(target.weight, torch.tensor(expected_weight), atol=1e-6)
    assert torch.allclose(target.bias, torch.tensor(expected_bias), atol=1e-6)


def test_dict_helpers_as_catalyst():
    # Each expected value below is what catalyst 22.4 returned for the same call.
    assert dict(utils.flatten_dict({"a": {"b": 1, "c": {"d": 2}}, "e": 3})) == {
        "a/b": 1,
        "a/c/d": 2,
        "e": 3,
    }
    first = {"a": {"b": 1, "c": 2}, "x": 1}
    assert utils.merge_dicts(first, {"a": {"c": 3}}, {"y": 2}) == {
        "a": {"b": 1, "c": 3},
        "x": 1,
        "y": 2,
    }
    assert first == {"a": {"b": 1, "c": 2}, "x": 1}  # a deep copy is merged
    assert utils.make_tuple(3) == (3, 3)
    assert utils.make_tuple([1, 2]) == [1, 2]
    assert utils.get_by_keys({"a": {"b": 5}}, "a", "b") == 5
    assert utils.get_by_keys({"a": {"b": 5}}, "a", "z", default=0) == 0
    assert list(utils.pairwise([1, 2, 3])) == [(1, 2), (2, 3)]


def test_optimizer_and_model_helpers_as_catalyst():
    model = nn.Linear(2, 2)
    adam = torch.optim.Adam(model.parameters(), betas=(0.8, 0.9))
    sgd = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.5)
    # computed by catalyst 22.4: 0.8, 0.5, [0.5], and betas (0.7, 0.9) after setting 0.7
    assert utils.get_optimizer_momentum(adam) == 0.8
    assert utils.get_optimizer_momentum(sgd) == 0.5
    assert utils.get_optimizer_momentum_list(sgd) == [0.5]
    utils.set_optimizer_momentum(adam, 0.7)
    assert adam.param_groups[0]["betas"] == (0.7, 0.9)
    utils.set_requires_grad(model, False)
    assert utils.get_requires_grad(model) == {"weight": False, "bias": False}
    utils.set_requires_grad(model, {"weight": True, "bias": False})
    assert utils.get_requires_grad(model) == {"weight": True, "bias": False}
    with pytest.raises(KeyError, match="'bias'"):
        utils.set_requires_grad(model, {"weight": True})
    assert utils.get_rank() == -1 and utils.get_world_size() == 1  # catalyst 22.4: -1, 1
    moved = utils.any2device({"a": (torch.zeros(1), np.zeros(2))}, "cpu")
    assert isinstance(moved["a"], list) and all(isinstance(t, torch.Tensor) for t in moved["a"])


def test_checkpoint_helpers_use_catalysts_keys_and_load_safely(tmp_path):
    generator, discriminator = nn.Linear(2, 2), nn.Linear(2, 1)
    optimizer = torch.optim.SGD(generator.parameters(), lr=0.1)
    checkpoint = utils.pack_checkpoint(
        model={"g": generator, "d": discriminator}, optimizer=optimizer, epoch=3
    )
    # computed by catalyst 22.4: the keys of pack_checkpoint(model={...}, optimizer=..., epoch=3)
    assert sorted(checkpoint) == [
        "epoch",
        "model_d_state_dict",
        "model_g_state_dict",
        "optimizer_state_dict",
    ]
    path = tmp_path / "model.pth"
    utils.save_checkpoint(checkpoint, path)
    loaded = utils.load_checkpoint(path)
    fresh = {"g": nn.Linear(2, 2), "d": nn.Linear(2, 1)}
    utils.unpack_checkpoint(loaded, model=fresh)
    assert torch.equal(fresh["g"].weight, generator.weight)
    assert torch.equal(fresh["d"].bias, discriminator.bias)
    with pytest.raises(KeyError, match="criterion_state_dict"):
        utils.unpack_checkpoint(loaded, criterion=nn.MSELoss())


def test_load_checkpoint_refuses_code(tmp_path):
    # Different from Catalyst on purpose: a checkpoint is data (torch.load(weights_only=True)).
    path = tmp_path / "evil.pth"
    torch.save({"callback": print}, path)
    with pytest.raises(Exception, match=r"evil\.pth"):
        utils.load_checkpoint(path)
