"""Prefetch: batches intact and in order on the device, loader errors, producer lifecycle."""

from __future__ import annotations

import collections
import faulthandler
import signal
import threading
import time
import traceback

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import eventrunner
from eventrunner.data import prefetch, prefetch_trial
from eventrunner.data.prefetch import Prefetcher, move_to_device, prefetched

Pair = collections.namedtuple("Pair", "left right")
MODES = ("auto", "thread", "inline")


@pytest.fixture(autouse=True)
def _no_hang():
    # A prefetch bug shows as a hang: dump the stacks and fail instead of blocking the suite.
    faulthandler.dump_traceback_later(60, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


def _threads() -> set[threading.Thread]:
    return set(threading.enumerate())


def _no_new_threads(before: set[threading.Thread]) -> list[str]:
    return [t.name for t in threading.enumerate() if t not in before and t.is_alive()]


def nested_batch(i: int) -> dict:
    return {
        "features": torch.full((4, 3), float(i)),
        "nested": {"ids": torch.arange(4) + i, "pair": Pair(torch.ones(2) * i, "tag")},
        "items": [torch.zeros(1) + i, (torch.tensor([i]), None)],
        "name": f"batch{i}",
        "count": i,
    }


def assert_same(a, b) -> None:
    assert type(a) is type(b)
    if isinstance(a, torch.Tensor):
        assert a.device == b.device or b.device.type == "cuda"
        assert torch.equal(a.cpu(), b.cpu())
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for key in a:
            assert_same(a[key], b[key])
    elif isinstance(a, list | tuple):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_same(x, y)
    else:
        assert a == b


class Recorder(eventrunner.Runner):
    """Keeps every batch it gets (and ``probe(batch)`` in ``probed``); a scalar loss so the
    default subscribers are content."""

    def __init__(self, *args, sleep=0.0, fail_at=None, probe=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.seen: list = []
        self.probed: list = []
        self.sleep = sleep
        self.fail_at = fail_at
        self.probe = probe

    def handle_batch(self, batch):
        self.seen.append(batch)
        if self.probe is not None:
            self.probed.append(self.probe(batch))
        if self.sleep:
            time.sleep(self.sleep)
        if self.fail_at is not None and len(self.seen) == self.fail_at:
            raise RuntimeError("step failed")
        self.batch_metrics["loss"] = torch.zeros(())


class Batches:
    """A loader (not a list, so prefetch applies) over prebuilt batches."""

    def __init__(self, batches, sleep: float = 0.0):
        self.batches = batches
        self.sleep = sleep
        self.fetched = 0

    def __len__(self):
        return len(self.batches)

    def __iter__(self):
        for batch in self.batches:
            if self.sleep:
                time.sleep(self.sleep)
            self.fetched += 1
            yield batch


def train(runner, loader, mode="auto", **kwargs):
    runner._prefetcher = Prefetcher(mode)
    kwargs.setdefault("num_epochs", 1)
    runner.train(model=nn.Linear(1, 1), loaders={"train": loader}, console=False, **kwargs)


@pytest.mark.parametrize("mode", MODES)
def test_nested_batches_arrive_intact_and_in_order(mode):
    batches = [nested_batch(i) for i in range(30)]
    runner = Recorder()
    train(runner, Batches(batches), mode=mode, num_epochs=2)
    assert len(runner.seen) == 60
    for got, want in zip(runner.seen, batches + batches, strict=True):
        assert_same(want, got)


def test_move_to_device_keeps_structure():
    batch = nested_batch(3)
    moved = move_to_device(batch, torch.device("cpu"))
    assert_same(batch, moved)
    assert moved["nested"]["pair"].right == "tag"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("mode", MODES)
def test_batches_land_on_cuda_intact(mode):
    batches = [nested_batch(i) for i in range(30)]
    runner = Recorder(device="cuda", probe=lambda batch: batch["features"].device.type)
    train(runner, Batches(batches), mode=mode)
    assert set(runner.probed) == {"cuda"}
    for got, want in zip(runner.seen, batches, strict=True):
        assert_same(want, got)
    assert runner.seen[0]["nested"]["ids"].device.type == "cuda"


@pytest.mark.parametrize("decision", [True, False])
def test_switching_way_after_the_trial_loses_no_batch(monkeypatch, decision):
    monkeypatch.setattr(prefetch_trial, "TRIAL_BATCHES", 3)

    def decide(plan, key):
        plan.use_thread = decision
        return decision

    monkeypatch.setattr(prefetch_trial.Plan, "decide", decide)
    numbers = [{"i": torch.tensor(i)} for i in range(60)]
    with prefetched(Batches(numbers), lambda b: b, 2) as batches:
        got = [int(b["i"]) for b in batches]
    assert got == list(range(60))


def test_the_measurement_goes_on_over_short_passes_and_loses_no_batch():
    runner = Recorder()
    loader = Batches([{"i": torch.tensor(i)} for i in range(7)])
    train(runner, loader, num_epochs=12)
    assert [int(b["i"]) for b in runner.seen] == list(range(7)) * 12
    assert runner._prefetcher.choices()["train"] in ("thread", "inline")


def test_a_waiting_loader_gets_the_thread_an_in_memory_one_does_not():
    waiting = Batches([{"x": torch.zeros(1)} for _ in range(50)], sleep=0.004)  # warm-up + trial
    runner = Recorder(sleep=0.004)
    runner._prefetcher = Prefetcher()
    runner.train(
        model=nn.Linear(1, 1),
        console=False,
        num_epochs=1,
        loaders={"train": waiting, "valid": [{"x": torch.zeros(1)}] * 5},
    )
    assert runner._prefetcher.choices() == {"train": "thread"}


def _failing_loader(n_ok: int):
    for i in range(n_ok):
        yield {"x": torch.tensor([float(i)])}
    raise KeyError("loader_broke_here")


class FailingLoader:
    def __init__(self, n_ok: int):
        self.n_ok = n_ok

    def __iter__(self):
        return _failing_loader(self.n_ok)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("n_ok", [0, 3, 30])
def test_loader_errors_keep_type_and_traceback(mode, n_ok):
    before = _threads()
    runner = Recorder()
    with pytest.raises(KeyError, match="loader_broke_here") as info:
        train(runner, FailingLoader(n_ok), mode=mode)
    frames = [frame.name for frame in traceback.extract_tb(info.value.__traceback__)]
    assert "_failing_loader" in frames
    assert len(runner.seen) == n_ok
    assert _no_new_threads(before) == []


@pytest.mark.parametrize("mode", MODES)
def test_no_thread_left_after_success_error_and_early_stop(mode):
    before = _threads()
    train(Recorder(), Batches([{"x": torch.zeros(1)}] * 20), mode=mode, num_epochs=2)
    assert _no_new_threads(before) == []

    with pytest.raises(RuntimeError, match="step failed"):
        train(Recorder(fail_at=5), Batches([{"x": torch.zeros(1)}] * 50), mode=mode)
    assert _no_new_threads(before) == []

    class StopEarly(eventrunner.Callback):
        def on_batch_end(self, runner):
            runner.need_early_stop = True

    runner = Recorder()
    train(
        runner,
        Batches([{"x": torch.zeros(1)}] * 20),
        mode=mode,
        num_epochs=5,
        callbacks=[StopEarly()],
    )
    assert runner.epoch_step == 1
    assert _no_new_threads(before) == []


def test_leaving_early_with_a_full_queue_does_not_hang_and_closes_the_loader():
    closed = []

    def endless():
        try:
            i = 0
            while True:
                i += 1
                yield {"x": torch.tensor([i])}
        finally:
            closed.append(threading.current_thread().name)

    class Endless:
        def __iter__(self):
            return endless()

    before = _threads()
    with prefetched(Endless(), lambda b: b, 2, mode="thread") as batches:
        for i, _ in enumerate(batches):
            if i == 3:
                time.sleep(0.05)  # the producer fills the queue and waits for a slot
                break
    assert closed, "the loader's generator was not closed"
    assert _no_new_threads(before) == []


def test_at_most_prefetch_batches_are_fetched_ahead():
    loader = Batches([{"x": torch.zeros(1)} for _ in range(30)])
    ahead = []
    with prefetched(loader, lambda b: b, 3, mode="thread") as batches:
        for consumed, _ in enumerate(batches, start=1):
            time.sleep(0.002)  # let the producer run as far ahead as it may
            ahead.append(loader.fetched - consumed)
    assert max(ahead) <= 3
    assert max(ahead) >= 1  # it did fetch ahead


def test_prefetch_zero_starts_no_thread():
    runner = Recorder(probe=lambda batch: threading.active_count())
    train(runner, Batches([{"x": torch.zeros(1)}] * 30), mode="thread", prefetch=0)
    assert max(runner.probed) == threading.active_count()


class TupleRecorder(Recorder):
    def to_dict_batch(self, batch):
        return {"x": batch[0]}


def test_shuffled_order_repeats_with_the_producer_thread():
    x = torch.arange(64).float().unsqueeze(1)

    def order():
        runner = TupleRecorder()
        loader = DataLoader(TensorDataset(x), batch_size=8, shuffle=True)
        torch.manual_seed(0)
        train(runner, loader, mode="thread", num_epochs=3, seed=None)
        return [int(b["x"][0]) for b in runner.seen]

    first = order()
    assert first == order()
    assert first[:8] != first[8:16]  # it does reshuffle


def test_ctrl_c_stops_training_at_once_and_leaves_no_thread():
    main = threading.main_thread().ident
    before = _threads()

    class Interrupting(Batches):
        def __iter__(self):
            for i, batch in enumerate(super().__iter__()):
                if i == 10:
                    signal.pthread_kill(main, signal.SIGINT)  # as if Ctrl-C was pressed
                yield batch

    runner = Recorder(sleep=0.002)
    with pytest.raises(KeyboardInterrupt):
        train(runner, Interrupting([{"x": torch.zeros(1)}] * 400), mode="thread", num_epochs=3)
    assert len(runner.seen) < 100
    assert isinstance(runner.exception, KeyboardInterrupt)
    assert _no_new_threads(before) == []


class FakeCudaMover:
    """Stands in for the CUDA mover on a CPU machine: records who copies what, after what."""

    def __init__(self, device):
        self.device = device
        self.stream = None  # torch.cuda.stream(None) is a no-op
        self.puts, self.takes, self.marks = [], [], 0

    def put(self, batch, after=None):
        self.puts.append((int(batch["i"]), after, threading.current_thread().name))
        return ("copied", batch)

    def take(self, item):
        tag, batch = item
        assert tag == "copied"
        self.takes.append((int(batch["i"]), threading.current_thread().name))
        return batch

    def mark(self):
        return ("mark", self.takes[-1][0])  # the compute stream's progress at this hand-out


def test_cuda_path_copies_on_the_producer_and_waits_for_the_slot_it_reuses(monkeypatch):
    movers = []
    monkeypatch.setattr(
        prefetch, "CudaMover", lambda device: movers.append(FakeCudaMover(device)) or movers[-1]
    )
    depth, n = 2, 12
    loader = Batches([{"i": torch.tensor(i)} for i in range(n)])
    with Prefetcher().batches(loader, lambda b: b, depth, torch.device("cuda")) as batches:
        got = [int(b["i"]) for b in batches]
    assert got == list(range(n))
    (mover,) = movers
    main = threading.current_thread().name
    assert [t for _, t in mover.takes] == [main] * n  # the compute stream's side: the loop
    assert mover.puts[0][2] == main  # the first batch: fetched inline, the loop waits for it
    assert {t for _, _, t in mover.puts[1:]} == {"eventrunner-prefetch-None"}
    # Batch k reuses the slot freed when batch k - depth was handed out: at most depth + 1
    # batches are ever on the device.
    afters = [after for _, after, _ in mover.puts]
    assert afters == [None] * (depth + 1) + [("mark", k - depth) for k in range(depth + 1, n)]


def test_prefetch_above_the_limit_is_refused_before_any_fetch():
    loader = Batches([{"x": torch.zeros(1)}] * 4)
    too_many = rf"prefetch must be from 0 to {prefetch.MAX_PREFETCH}\b.*got 100000000"
    started = time.perf_counter()
    with pytest.raises(ValueError, match=too_many):
        train(Recorder(), loader, mode="thread", prefetch=10**8)
    with (
        pytest.raises(ValueError, match=too_many),
        prefetched(loader, lambda b: b, 10**8, mode="thread") as batches,
    ):
        next(batches)
    runner = Recorder()
    runner.model = nn.Linear(1, 1)
    with pytest.raises(ValueError, match=too_many):
        next(runner.predict_loader(loader, prefetch=10**8))
    with pytest.raises(TypeError, match="prefetch must be an int"):
        train(Recorder(), loader, prefetch="2")
    assert time.perf_counter() - started < 2
    assert loader.fetched == 0


class Hangs:
    """Yields ``n_ok`` batches, then blocks in ``__next__`` until ``release`` is set."""

    def __init__(self, n_ok: int):
        self.n_ok = n_ok
        self.release = threading.Event()

    def __iter__(self):
        for i in range(self.n_ok):
            yield {"x": torch.tensor([float(i)])}
        self.release.wait()  # a hung data source (network, a stuck worker)


def test_ctrl_c_does_not_wait_for_a_hung_fetch(caplog):
    class CtrlC(eventrunner.Callback):
        def on_batch_end(self, runner):
            if runner.loader_batch_step == 2:
                raise KeyboardInterrupt

    # Batch 1 is fetched inline, batch 2 by the producer, which then hangs fetching batch 3
    # (it holds a second free slot) while the loop is interrupted at batch 2.
    loader = Hangs(n_ok=2)
    outcome = {}

    def run():
        started = time.perf_counter()
        try:
            train(Recorder(), loader, mode="thread", prefetch=2, callbacks=[CtrlC()])
        except BaseException as error:
            outcome["error"] = error
        outcome["seconds"] = time.perf_counter() - started

    with caplog.at_level("WARNING", logger="eventrunner"):
        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        thread.join(timeout=10)
    try:
        assert not thread.is_alive(), "Ctrl-C waited for the hung fetch"
        assert isinstance(outcome["error"], KeyboardInterrupt)
        assert outcome["seconds"] < 2.5
        assert "'train'" in caplog.text and "prefetch" in caplog.text
    finally:
        loader.release.set()  # let the left thread finish
    thread.join(timeout=5)


@pytest.mark.parametrize(("mode", "depth"), [("thread", 2), ("inline", 2), ("thread", 0)])
@pytest.mark.parametrize("persistent", [False, True])
def test_a_failed_run_leaves_no_dataloader_worker(mode, depth, persistent):
    import multiprocessing

    before = set(multiprocessing.active_children())
    loader = DataLoader(
        TensorDataset(torch.arange(64).float().unsqueeze(1)),
        batch_size=4,
        num_workers=2,
        persistent_workers=persistent,
    )
    runner = TupleRecorder(fail_at=3)
    with pytest.raises(RuntimeError, match="step failed"):
        train(runner, loader, mode=mode, prefetch=depth)
    assert runner.exception is not None  # holds the traceback, and the frames in it
    assert [p for p in multiprocessing.active_children() if p not in before] == []
    if persistent:  # the loader still works: it starts new workers
        runner = TupleRecorder()
        train(runner, loader, mode=mode, prefetch=depth)
        assert len(runner.seen) == 16
