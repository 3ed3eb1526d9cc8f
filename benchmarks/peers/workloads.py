"""The workloads every framework runs, built identically for all of them.

A workload fixes the model, the data, the batch size, the optimizer, the seeds and the number of
epochs. Every framework module calls :func:`build` and gets the same objects, trains them in its own
idiomatic way, and hands the result back through :func:`result`.

Timing is measured the same way for everyone, without touching any framework: the model counts its
own forward calls in train mode and stamps the clock at the first train batch of epoch 2 and at the
first train batch of the last epoch. The window in between holds exactly ``epochs - 2`` whole epochs
(train loader, valid loader, and whatever the framework does at loader and epoch boundaries), and
leaves out set-up, the warm-up epoch 1, the last epoch and tear-down. ``per_batch_us`` is that
window
divided by the number of batches (train + valid) it holds.
"""

from __future__ import annotations

import dataclasses
import os
import time

import torch
from torch import nn
from torch.utils.data import DataLoader, Sampler, TensorDataset
from torch.utils.data._utils.collate import default_collate

SEED = 0
NUM_THREADS = 1
BATCH_SIZE = 32


@dataclasses.dataclass(frozen=True)
class Spec:
    name: str
    in_features: int
    hidden: int
    num_classes: int
    n_train: int
    n_valid: int
    epochs: int  # total, including the warm-up epoch 1 and the untimed last epoch
    optimizer: str  # "sgd" (lr=0.1) or "adam" (lr=1e-3)
    loader_sleep_s: float = 0.0  # time.sleep in collate, per batch
    description: str = ""


SPECS = {
    "small": Spec(
        "small",
        32,
        64,
        10,
        n_train=4096,
        n_valid=1024,
        epochs=5,
        optimizer="sgd",
        description="MLP 32-64-10, in-memory tensors: framework overhead dominates",
    ),
    "large": Spec(
        "large",
        512,
        2048,
        10,
        n_train=2048,
        n_valid=512,
        epochs=4,
        optimizer="adam",
        description="MLP 512-2048-10, in-memory tensors: compute dominates",
    ),
    "slow": Spec(
        "slow",
        512,
        1536,
        10,
        n_train=1024,
        n_valid=256,
        epochs=5,
        optimizer="sgd",
        loader_sleep_s=0.002,
        description="MLP 512-1536-10 (~2 ms step), collate sleeps 2 ms per batch: prefetch matters",
    ),
}


def setup_process() -> None:
    """Same thread count and seeds for every framework (called before anything is built)."""
    os.environ.setdefault("OMP_NUM_THREADS", str(NUM_THREADS))
    torch.set_num_threads(NUM_THREADS)
    torch.manual_seed(SEED)


class Stopwatch:
    """Stamps the clock at given train-mode forward counts (1-based)."""

    def __init__(self, start_at: int, stop_at: int) -> None:
        self.start_at = start_at
        self.stop_at = stop_at
        self.count = 0
        self.t0: float | None = None
        self.t1: float | None = None

    def tick(self) -> None:
        self.count += 1
        if self.count == self.start_at:
            self.t0 = time.perf_counter()
        elif self.count == self.stop_at:
            self.t1 = time.perf_counter()


class MLP(nn.Module):
    def __init__(self, in_features: int, hidden: int, num_classes: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(hidden, num_classes)
        self.stopwatch: Stopwatch | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.stopwatch is not None:
            self.stopwatch.tick()
        return self.fc2(self.act(self.fc1(x)))


class EpochShuffle(Sampler[int]):
    """A random permutation per pass, drawn from ``seed + pass number`` (1-based)."""

    def __init__(self, n: int, seed: int) -> None:
        self.n = n
        self.seed = seed
        self.passes = 0

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        self.passes += 1
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.passes)
        return iter(torch.randperm(self.n, generator=g).tolist())


class SleepyCollate:
    """default_collate, after sleeping ``seconds`` (a loader that costs as much as the step)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def __call__(self, samples):
        time.sleep(self.seconds)
        return default_collate(samples)


def _make_data(spec: Spec, n: int, generator: torch.Generator, teacher: torch.Tensor):
    x = torch.randn(n, spec.in_features, generator=generator)
    noise = 0.5 * torch.randn(n, spec.num_classes, generator=generator)
    y = (x @ teacher + noise).argmax(dim=1)
    return x, y


@dataclasses.dataclass
class Workload:
    spec: Spec
    model: MLP
    criterion: nn.Module
    optimizer: torch.optim.Optimizer
    train_loader: DataLoader
    valid_loader: DataLoader
    stopwatch: Stopwatch
    epochs: int

    @property
    def n_train_batches(self) -> int:
        return len(self.train_loader)

    @property
    def n_valid_batches(self) -> int:
        return len(self.valid_loader)

    @property
    def timed_batches(self) -> int:
        return (self.epochs - 2) * (self.n_train_batches + self.n_valid_batches)


def make_optimizer(spec: Spec, model: nn.Module) -> torch.optim.Optimizer:
    if spec.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=0.1)
    if spec.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=1e-3)
    raise ValueError(f"unknown optimizer {spec.optimizer!r}")


def build(name: str, epochs: int | None = None) -> Workload:
    """Model, data, loaders, optimizer, criterion for workload ``name`` (same for everyone)."""
    spec = SPECS[name]
    epochs = spec.epochs if epochs is None else int(epochs)
    if epochs < 3:
        raise ValueError("epochs must be >= 3 (warm-up epoch, >= 1 timed epoch, last epoch)")
    setup_process()

    data_gen = torch.Generator().manual_seed(SEED + 1)
    teacher = torch.randn(spec.in_features, spec.num_classes, generator=data_gen)
    x_train, y_train = _make_data(spec, spec.n_train, data_gen, teacher)
    x_valid, y_valid = _make_data(spec, spec.n_valid, data_gen, teacher)

    collate = SleepyCollate(spec.loader_sleep_s) if spec.loader_sleep_s > 0 else None
    # The shuffle order of each epoch depends only on the seed and on how many passes have been
    # started, so it is the same for everyone: a framework that reseeds the global RNG (Catalyst
    # does, every epoch), or that stops at len() instead of draining the sampler (Lightning does;
    # a RandomSampler with a generator draws one more permutation when drained), still sees the
    # same batches as the plain loop.
    train_set = TensorDataset(x_train, y_train)
    train_loader = DataLoader(
        train_set,
        batch_size=BATCH_SIZE,
        sampler=EpochShuffle(len(train_set), SEED + 2),
        num_workers=0,
        collate_fn=collate,
    )
    valid_loader = DataLoader(
        TensorDataset(x_valid, y_valid),
        batch_size=BATCH_SIZE,
        shuffle=False,
        num_workers=0,
        collate_fn=collate,
    )

    torch.manual_seed(SEED)
    model = MLP(spec.in_features, spec.hidden, spec.num_classes)
    n_train_batches = len(train_loader)
    stopwatch = Stopwatch(start_at=n_train_batches + 1, stop_at=n_train_batches * (epochs - 1) + 1)
    model.stopwatch = stopwatch
    torch.manual_seed(SEED)
    return Workload(
        spec=spec,
        model=model,
        criterion=nn.CrossEntropyLoss(),
        optimizer=make_optimizer(spec, model),
        train_loader=train_loader,
        valid_loader=valid_loader,
        stopwatch=stopwatch,
        epochs=epochs,
    )


def result(
    w: Workload,
    *,
    valid_loss: float,
    valid_acc: float,
    train_loss: float | None = None,
    train_acc: float | None = None,
    fit_s: float | None = None,
    **extra,
) -> dict:
    """The dict every ``run()`` returns."""
    sw = w.stopwatch
    if sw.t0 is None or sw.t1 is None:
        raise RuntimeError(
            f"stopwatch incomplete: {sw.count} train forwards seen, expected >= {sw.stop_at} "
            f"({w.epochs} epochs x {w.n_train_batches} train batches)"
        )
    window = sw.t1 - sw.t0
    out = {
        "workload": w.spec.name,
        "epochs": w.epochs,
        "timed_batches": w.timed_batches,
        "window_s": window,
        "per_batch_us": window / w.timed_batches * 1e6,
        "train_forwards": sw.count,
        "valid_loss": float(valid_loss),
        "valid_acc": float(valid_acc),
        "train_loss": None if train_loss is None else float(train_loss),
        "train_acc": None if train_acc is None else float(train_acc),
        "fit_s": fit_s,
        "num_threads_after": torch.get_num_threads(),
        "torch": torch.__version__,
    }
    out.update(extra)
    return out
