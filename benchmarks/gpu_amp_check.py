"""GPU check for SPEC 10: fp16 AMP + GradScaler trains on CUDA (and bf16, and DDP over nccl);
on the digits example, fp16 and bf16 reach fp32's valid accuracy within 2 points.

Run on a machine with a GPU: ``python benchmarks/gpu_amp_check.py``. Prints one line per check
and exits non-zero when one fails; prints ``SKIP`` and exits 0 without CUDA. The timings
(median of interleaved runs, fp32 vs fp16 on the same card) are printed as ratios, not asserted.
"""

from __future__ import annotations

import statistics
import sys
import time
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from eventrunner import Callback, SupervisedRunner


class _Probe(Callback):
    def __init__(self) -> None:
        super().__init__()
        self.dtypes: set[torch.dtype] = set()
        self.losses: list[float] = []
        self.scales: list[float] = []

    def on_batch_end(self, runner: Any) -> None:
        self.dtypes.add(runner.output["logits"].dtype)

    def on_epoch_end(self, runner: Any) -> None:
        self.losses.append(runner.epoch_metrics["train"]["loss"])
        if runner.scaler is not None:
            self.scales.append(runner.scaler.get_scale())


def _loaders(n: int = 8192, dim: int = 512, batch: int = 256) -> dict[str, DataLoader]:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, dim, generator=gen)
    y = (x[:, : dim // 2].sum(dim=1) > 0).long()
    split = n * 7 // 8
    return {
        "train": DataLoader(TensorDataset(x[:split], y[:split]), batch_size=batch, shuffle=True),
        "valid": DataLoader(TensorDataset(x[split:], y[split:]), batch_size=batch),
    }


def _run(amp: Any, epochs: int = 5, **kwargs: Any) -> tuple[SupervisedRunner, _Probe, float]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(512, 2048), nn.ReLU(), nn.Linear(2048, 2))
    probe = _Probe()
    runner = SupervisedRunner()
    start = time.perf_counter()
    runner.train(
        model=model,
        criterion=nn.CrossEntropyLoss(),
        optimizer=torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9),
        loaders=_loaders(),
        callbacks=[probe],
        num_epochs=epochs,
        console=False,
        device="cuda",
        amp=amp,
        **kwargs,
    )
    torch.cuda.synchronize()
    return runner, probe, time.perf_counter() - start


def _digits_accuracy(*overrides: str) -> float:
    """Best valid accuracy01 of the digits example (``eventrunner run --example digits``)."""
    from eventrunner import config

    cfg = config.load_config(
        config.example_path("digits"),
        overrides=["train.console=false", "train.device=cuda", *overrides],
    )
    return config.build(cfg).run().best_valid_metric


def _check(name: str, ok: bool, detail: str, failures: list[str]) -> None:
    print(f"{'OK  ' if ok else 'FAIL'} {name}: {detail}")
    if not ok:
        failures.append(name)


def main() -> int:
    if not torch.cuda.is_available():
        print("SKIP: no CUDA device; run this on a GPU machine")
        return 0
    print(f"device: {torch.cuda.get_device_name()} torch {torch.__version__}")
    failures: list[str] = []

    runner, probe, _ = _run("fp16")
    scaler = runner.scaler
    _check(
        "fp16 autocast + GradScaler",
        probe.dtypes == {torch.float16}
        and isinstance(scaler, torch.amp.GradScaler)
        and all(0 < s < float("inf") for s in probe.scales)
        and probe.losses[-1] < probe.losses[0] * 0.8,
        f"dtypes={sorted(map(str, probe.dtypes))} losses={[round(v, 4) for v in probe.losses]} "
        f"scales={probe.scales}",
        failures,
    )
    runner, probe, _ = _run("fp16", grad_clip_norm=1.0, accumulation_steps=2)
    _check(
        "fp16 + clipping (unscale_ first) + accumulation",
        probe.losses[-1] < probe.losses[0] * 0.8,
        f"losses={[round(v, 4) for v in probe.losses]}",
        failures,
    )
    if torch.cuda.is_bf16_supported():
        runner, probe, _ = _run("bf16")
        _check(
            "bf16 autocast, no scaler",
            probe.dtypes == {torch.bfloat16} and runner.scaler is None,
            f"losses={[round(v, 4) for v in probe.losses]}",
            failures,
        )
    fp32_accuracy = _digits_accuracy()
    for amp in ("fp16", "bf16") if torch.cuda.is_bf16_supported() else ("fp16",):
        for extra in ((), ("train.grad_clip_norm=1.0", "train.accumulation_steps=2")):
            accuracy = _digits_accuracy(f"train.amp={amp}", *extra)
            _check(
                f"digits {amp}{' + clipping + accumulation' if extra else ''} reaches fp32",
                abs(accuracy - fp32_accuracy) <= 0.02,
                f"valid accuracy01 {accuracy:.4f} vs fp32 {fp32_accuracy:.4f} (within 0.02)",
                failures,
            )
    runner, probe, _ = _run("fp16", epochs=2, ddp=True)  # nccl, a world of one
    _check(
        "DDP over nccl (world of 1) with fp16",
        type(runner.model) is nn.Sequential and probe.losses[-1] < probe.losses[0],
        f"losses={[round(v, 4) for v in probe.losses]}",
        failures,
    )

    _run(False, epochs=1)  # warm-up
    times: dict[str, list[float]] = {"fp32": [], "fp16": []}
    for _ in range(3):  # interleaved
        times["fp32"].append(_run(False, epochs=2)[2])
        times["fp16"].append(_run("fp16", epochs=2)[2])
    fp32, fp16 = (statistics.median(times[k]) for k in ("fp32", "fp16"))
    print(f"time fp32 {fp32:.3f}s fp16 {fp16:.3f}s ratio fp16/fp32 {fp16 / fp32:.2f}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
