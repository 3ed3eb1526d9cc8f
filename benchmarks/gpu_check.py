"""GPU checks of the prefetch pipeline; run on a machine with CUDA (exits cleanly without).

1. Overlap: host-to-device copies run while the model computes. Per-batch time with
   ``prefetch=2`` vs ``prefetch=0``, next to copy-alone and compute-alone times, and the share
   of HtoD copy time that overlaps kernels in a profiler trace.
2. Memory: peak allocated memory during a loader pass at most ``prefetch + 1`` batches above
   the model's own (weights, grads, activations, measured with one batch resident).
3. No per-batch host sync: ``torch.cuda.set_sync_debug_mode("error")`` from the train loader's
   start to its end, default subscribers included (loader-end reductions are outside).

    python benchmarks/gpu_check.py            # prints PASS/FAIL lines; exit status 1 on a FAIL
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

import eventrunner

MiB = 2**20
RESULTS: list[bool] = []


def report(ok: bool, line: str) -> None:
    RESULTS.append(ok)
    print(f"{'PASS' if ok else 'FAIL'} {line}", flush=True)


class Cycle:
    """``n`` batches drawn in turn from a few prebuilt host batches (a loader with len())."""

    def __init__(self, batches: list[dict[str, torch.Tensor]], n: int) -> None:
        self.batches, self.n = batches, n

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        for i in range(self.n):
            yield self.batches[i % len(self.batches)]


def host_batches(batch: int, features: int, pinned: bool, count: int = 4) -> list[dict]:
    out = []
    for i in range(count):
        x = torch.randn(batch, features)
        y = torch.randint(0, 10, (batch,))
        if pinned:
            x, y = x.pin_memory(), y.pin_memory()
        out.append({"features": x, "targets": y, "index": i})
    return out


class Burn(nn.Module):
    """Reduce the input, then ``depth`` square matmuls: compute time set by ``depth``."""

    def __init__(self, features: int, hidden: int, depth: int) -> None:
        super().__init__()
        self.inp = nn.Linear(features, hidden)
        self.layers = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(depth))
        self.out = nn.Linear(hidden, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(x)
        for layer in self.layers:
            h = torch.tanh(layer(h))
        return self.out(h)


class Window(eventrunner.Callback):
    """Synchronised wall-clock window from batch ``start`` of the train loader to its end."""

    def __init__(self, start: int) -> None:
        super().__init__(order=-1000, loaders="train")
        self.start, self.t0, self.t1, self.batches = start, 0.0, 0.0, 0

    def on_batch_start(self, runner: Any) -> None:
        if runner.loader_batch_step == self.start:
            torch.cuda.synchronize()
            self.t0 = time.perf_counter()

    def on_loader_end(self, runner: Any) -> None:
        torch.cuda.synchronize()
        self.t1 = time.perf_counter()
        self.batches = runner.loader_batch_step - self.start + 1

    @property
    def per_batch(self) -> float:
        return (self.t1 - self.t0) / self.batches


def train(model: nn.Module, loader: Any, prefetch: int, callbacks: list) -> eventrunner.Runner:
    runner = eventrunner.SupervisedRunner()
    runner.train(
        model=model,
        criterion=nn.CrossEntropyLoss(),
        optimizer=torch.optim.SGD(model.parameters(), lr=1e-4),
        loaders={"train": loader},
        callbacks=callbacks,
        num_epochs=1,
        console=False,
        prefetch=prefetch,
        device="cuda",
        seed=0,
    )
    return runner


def timed(fn, repeats: int = 10) -> float:
    fn()
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(repeats):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t) / repeats


def kernel_overlap(trace: Path) -> float:
    """Share of HtoD memcpy time during which some kernel runs (from a chrome trace)."""
    events = json.loads(trace.read_text()).get("traceEvents", [])
    copies, kernels = [], []
    for e in events:
        if e.get("ph") != "X" or "dur" not in e:
            continue
        span = (float(e["ts"]), float(e["ts"]) + float(e["dur"]))
        if e.get("cat") == "gpu_memcpy" and "HtoD" in e.get("name", ""):
            copies.append(span)
        elif e.get("cat") == "kernel":
            kernels.append(span)
    merged: list[list[float]] = []  # kernels of several streams may overlap each other
    for a, b in sorted(kernels):
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    total = sum(b - a for a, b in copies)
    if not total:
        return float("nan")
    covered = 0.0
    for a, b in copies:
        for ka, kb in merged:
            if ka >= b:
                break
            covered += max(0.0, min(b, kb) - max(a, ka))
    return covered / total


class Profile(eventrunner.Callback):
    """Profiles train batches ``start`` .. ``start + count`` into a chrome trace."""

    def __init__(self, path: Path, start: int, count: int) -> None:
        super().__init__(order=-1000, loaders="train")
        self.path, self.start, self.stop = path, start, start + count
        self.prof: Any = None

    def on_batch_start(self, runner: Any) -> None:
        if runner.loader_batch_step == self.start:
            self.prof = torch.profiler.profile(
                activities=[
                    torch.profiler.ProfilerActivity.CPU,
                    torch.profiler.ProfilerActivity.CUDA,
                ]
            )
            self.prof.start()
        elif runner.loader_batch_step == self.stop and self.prof is not None:
            torch.cuda.synchronize()
            self.prof.stop()
            self.prof.export_chrome_trace(str(self.path))
            self.prof = None


def check_overlap(batch: int = 256, features: int = 32768, hidden: int = 4096) -> None:
    print(
        f"\n1. overlap: batches of {batch}x{features} fp32 ({batch * features * 4 / MiB:.0f} MiB)"
    )
    x = torch.randn(batch, features).pin_memory()
    copy = timed(lambda: x.to("cuda", non_blocking=True))
    # Pick the depth so that a step's compute is about 1.5x a batch's copy.
    xd = x.cuda()
    shallow, deep = Burn(features, hidden, 1).cuda(), Burn(features, hidden, 9).cuda()
    t_shallow = timed(lambda: shallow(xd).sum().backward(), 3)
    per_layer = max((timed(lambda: deep(xd).sum().backward(), 3) - t_shallow) / 8, 1e-6)
    depth = max(1, 1 + round((1.5 * copy - t_shallow) / per_layer))
    model = Burn(features, hidden, depth).cuda()
    opt = torch.optim.SGD(model.parameters(), lr=1e-4)
    y = torch.randint(0, 10, (batch,), device="cuda")

    def step() -> None:
        nn.functional.cross_entropy(model(xd), y).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    compute = timed(step)
    print(f"   copy alone {copy * 1e3:.2f} ms, step alone {compute * 1e3:.2f} ms (depth {depth})")
    results = {}
    for label, pinned in (("pinned", True), ("pageable", False)):
        loader = Cycle(host_batches(batch, features, pinned), 40)
        for prefetch in (0, 2):
            window = Window(start=10)
            train(model, loader, prefetch, [window])  # timed without the profiler's cost
            results[label, prefetch] = window.per_batch
            overlap = float("nan")
            with tempfile.TemporaryDirectory() as tmp:
                trace = Path(tmp) / "trace.json"
                try:
                    train(model, loader, prefetch, [Profile(trace, 20, 5)])
                    overlap = kernel_overlap(trace)
                except Exception as error:  # no CUPTI, say: the timing still tells
                    print(f"   (profiler unavailable: {error!r})")
            print(
                f"   {label:<8} prefetch={prefetch}: {window.per_batch * 1e3:.2f} ms per batch, "
                f"{overlap:.0%} of HtoD copy time overlaps kernels"
            )
            if prefetch == 2 and label == "pinned":
                report(overlap > 0.5, f"HtoD copies overlap compute ({overlap:.0%} > 50%)")
    bound = max(copy, compute)
    p2 = results["pinned", 2]
    report(
        p2 < 0.9 * (copy + compute),
        f"prefetch=2 {p2 * 1e3:.2f} ms per batch < 0.9 x (copy + step) "
        f"{0.9 * (copy + compute) * 1e3:.2f} ms; max(copy, step) {bound * 1e3:.2f} ms",
    )


def check_memory(batch: int = 512, features: int = 32768) -> None:
    batch_bytes = batch * features * 4 + batch * 8
    print(f"\n2. peak memory: batches of {batch_bytes / MiB:.1f} MiB, model Linear({features}, 10)")
    model = nn.Linear(features, 10).cuda()
    # The model's own memory: one plain step with a single batch resident, minus the batch.
    xb = torch.randn(batch, features, device="cuda")
    yb = torch.randint(0, 10, (batch,), device="cuda")
    opt = torch.optim.SGD(model.parameters(), lr=1e-4)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    nn.functional.cross_entropy(model(xb), yb).backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    model_own = torch.cuda.max_memory_allocated() - batch_bytes
    del xb, yb
    loader = Cycle(host_batches(batch, features, pinned=True), 30)

    class Peak(eventrunner.Callback):
        def __init__(self) -> None:
            super().__init__(order=-1000, loaders="train")
            self.peak = 0

        def on_loader_start(self, runner: Any) -> None:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()

        def on_loader_end(self, runner: Any) -> None:
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated()

    for prefetch in (0, 1, 2, 4):
        torch.cuda.empty_cache()
        peak = Peak()
        train(model, loader, prefetch, [peak])
        above = (peak.peak - model_own) / batch_bytes
        reserved = torch.cuda.max_memory_reserved() / MiB
        line = (
            f"prefetch={prefetch}: peak {peak.peak / MiB:.0f} MiB = model {model_own / MiB:.0f} "
            f"MiB + {above:.2f} batches (limit {prefetch + 1}); reserved {reserved:.0f} MiB"
        )
        if prefetch:
            report(above <= prefetch + 1 + 0.05, line)
        else:
            print(f"   {line}")


def check_no_sync() -> None:
    print('\n3. set_sync_debug_mode("error") over the train loader, default subscribers')

    class SyncDebug(eventrunner.Callback):
        # Switched on last at loader_start, off first at loader_end: the loader-end reductions
        # (metrics to floats) sync once per loader, by design.
        def __init__(self, on: bool) -> None:
            super().__init__(order=10**6 if on else -(10**6), loaders="train")
            self.on = on

        def on_loader_start(self, runner: Any) -> None:
            if self.on:
                torch.cuda.set_sync_debug_mode("error")

        def on_loader_end(self, runner: Any) -> None:
            if not self.on:
                torch.cuda.set_sync_debug_mode("default")

        def on_exception(self, runner: Any) -> None:
            torch.cuda.set_sync_debug_mode("default")

    # 48 batches: the non-finite-loss check reads its deferred losses every 64 batches.
    for label, pinned in (("pinned", True), ("pageable", False)):
        for prefetch in (0, 2):
            loader = Cycle(host_batches(64, 1024, pinned), 48)
            try:
                train(
                    nn.Linear(1024, 10).cuda(),
                    loader,
                    prefetch,
                    [SyncDebug(True), SyncDebug(False)],
                )
            except RuntimeError as error:
                report(False, f"{label} batches, prefetch={prefetch}: {error}")
            else:
                report(True, f"{label} batches, prefetch={prefetch}: no synchronizing CUDA call")
            finally:
                torch.cuda.set_sync_debug_mode("default")


def main() -> int:
    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device on this machine; nothing to check (run it on a GPU host).")
        return 0
    logging.getLogger("eventrunner").setLevel(logging.ERROR)
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}")
    check_no_sync()
    check_memory()
    check_overlap()
    failed = RESULTS.count(False)
    print(f"\n{len(RESULTS) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
