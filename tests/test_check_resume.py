"""``eventrunner check-resume``: it says ``exact`` for a run that resumes exactly, and names
what differs, and from which batch, for one that does not (a subscriber that keeps state but
has no ``state_dict()``, so a resumed run starts it afresh)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs SIGKILL")

WARMUP = textwrap.dedent(
    """
    from eventrunner import Callback, Order


    class LossWarmup(Callback):
        # Scales the loss up over the first 30 train batches; its count has no state_dict().

        def __init__(self):
            super().__init__(order=Order.METRIC + 5)
            self.seen = 0

        def on_batch_end(self, runner):
            if runner.is_train_loader:
                self.seen += 1
                scale = min(1.0, self.seen / 30)
                runner.batch_metrics["loss"] = runner.batch_metrics["loss"] * scale
    """
)

CONFIG = textwrap.dedent(
    """
    model: {_target_: torch.nn.Linear, in_features: 64, out_features: 10}
    criterion: {_target_: torch.nn.CrossEntropyLoss}
    optimizer: {_target_: torch.optim.SGD, lr: 0.1}
    loaders:
      train:
        dataset: {_target_: eventrunner.examples.digits.DigitsDataset, split: train}
        batch_size: 64
        shuffle: true
    callbacks:
      - subscriber: warmup.LossWarmup
    train: {num_epochs: 1}
    """
)


def check_resume(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "eventrunner", "check-resume", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
    )


def test_the_example_resumes_exactly_from_any_batch():
    done = check_resume("--example", "digits", "--kills", "2", "--set", "train.num_epochs=1")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = [line for line in done.stdout.splitlines() if "killed at batch" in line]
    assert len(lines) == 2 and all(line.endswith(": exact") for line in lines), done.stdout
    # Each kill says what it tested: where the killed run's resume="auto" went on from.
    assert all(", resumed from " in line for line in lines), done.stdout
    assert done.stdout.rstrip().splitlines()[-1].startswith("check-resume example:digits: exact")


def test_it_names_what_differs_and_from_which_batch(tmp_path):
    (tmp_path / "warmup.py").write_text(WARMUP)
    (tmp_path / "warmup.yaml").write_text(CONFIG)
    done = check_resume("warmup.yaml", "--kills", "1", "--seed", "3", "--every", "4", cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "NOT exact (1 of 1 kills)" in done.stdout
    assert "differs in model.bias" in done.stdout or "differs in model.weight" in done.stdout
    assert "first batch whose loss differs:" in done.stdout
