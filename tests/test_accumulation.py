"""Gradient accumulation and clipping in the backward/optimizer subscribers."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from eventrunner import SupervisedRunner
from plugins import BackwardCallback, OptimizerCallback


def _dataset(n: int) -> TensorDataset:
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(n, 6, generator=gen)
    return TensorDataset(x, (x.sum(dim=1) > 0).long())


class CountingSGD(torch.optim.SGD):
    """SGD that records the number of steps and the total gradient norm seen at each step."""

    def __init__(self, params: Any, lr: float) -> None:
        super().__init__(params, lr=lr)
        self.norms: list[float] = []
        self.max_abs: list[float] = []

    def step(self, closure: Any = None) -> Any:
        grads = [
            p.grad for group in self.param_groups for p in group["params"] if p.grad is not None
        ]
        self.norms.append(float(torch.linalg.vector_norm(torch.cat([g.flatten() for g in grads]))))
        self.max_abs.append(max(float(g.abs().max()) for g in grads))
        return super().step(closure)


def _train(
    n: int, batch_size: int, *, shuffle: bool = False, epochs: int = 2, **kwargs: Any
) -> tuple[nn.Module, CountingSGD]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 12), nn.Tanh(), nn.Linear(12, 2))
    optimizer = CountingSGD(model.parameters(), lr=0.5)
    generator = torch.Generator().manual_seed(7)
    loader = DataLoader(_dataset(n), batch_size=batch_size, shuffle=shuffle, generator=generator)
    SupervisedRunner().train(
        model=model,
        criterion=nn.CrossEntropyLoss(),
        optimizer=optimizer,
        loaders={"train": loader},
        num_epochs=epochs,
        console=False,
        **kwargs,
    )
    return model, optimizer


def _assert_same_weights(a: nn.Module, b: nn.Module) -> None:
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    ("n", "shuffle"),
    [
        (96, False),  # three full groups per epoch
        (90, True),  # last group: 8 + 8 + 8 + 2 samples, as the batch-32 loader's last batch
        (100, False),  # last group: one batch of 4 samples
    ],
)
def test_four_batches_of_8_equal_one_batch_of_32(n: int, shuffle: bool) -> None:
    big, big_opt = _train(n, 32, shuffle=shuffle)
    accumulated, acc_opt = _train(n, 8, shuffle=shuffle, accumulation_steps=4)
    _assert_same_weights(accumulated, big)
    assert len(acc_opt.norms) == len(big_opt.norms)  # the partial last group is stepped too


def test_accumulation_on_the_subscribers() -> None:
    big, _ = _train(96, 32)
    accumulated, _ = _train(
        96,
        8,
        callbacks=[BackwardCallback(accumulation_steps=4), OptimizerCallback(accumulation_steps=4)],
    )
    _assert_same_weights(accumulated, big)


def test_accumulation_under_ddp_world_of_one() -> None:
    big, _ = _train(90, 32)
    accumulated, _ = _train(90, 8, accumulation_steps=4, ddp=True)  # through DDP's no_sync
    _assert_same_weights(accumulated, big)


def test_disagreeing_accumulation_is_refused() -> None:
    with pytest.raises(ValueError, match="accumulates 2 batches"):
        _train(32, 8, accumulation_steps=4, callbacks=[BackwardCallback(accumulation_steps=2)])


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_bad_accumulation_steps(bad: Any) -> None:
    with pytest.raises(ValueError, match="accumulation_steps"):
        _train(32, 8, accumulation_steps=bad)


def test_clip_by_norm() -> None:
    _, free = _train(64, 8, epochs=1)
    assert max(free.norms) > 0.1  # the limit below really bites
    _, clipped = _train(64, 8, epochs=1, grad_clip_norm=0.1)
    assert all(norm <= 0.1 + 1e-6 for norm in clipped.norms)
    assert max(clipped.norms) > 0.099


def test_clip_by_value() -> None:
    _, clipped = _train(64, 8, epochs=1, callbacks=[OptimizerCallback(grad_clip_value=0.01)])
    assert all(value <= 0.01 + 1e-8 for value in clipped.max_abs)
    assert max(clipped.max_abs) == pytest.approx(0.01)


def test_clip_unscales_fp16_gradients_first() -> None:
    # With a GradScaler the stored gradients are multiplied by ~65536; clipping must see (and
    # the optimizer must receive) the true ones: norms at the limit, not 65536 times below it.
    _, clipped = _train(64, 8, epochs=1, amp="fp16", grad_clip_norm=0.1)
    assert clipped.norms
    assert all(norm <= 0.1 + 1e-4 for norm in clipped.norms)
    assert max(clipped.norms) > 0.09


@pytest.mark.parametrize("bad", [0, -1.0, "1"])
def test_bad_clip_limits(bad: Any) -> None:
    with pytest.raises(ValueError, match="grad_clip_norm"):
        OptimizerCallback(grad_clip_norm=bad)
