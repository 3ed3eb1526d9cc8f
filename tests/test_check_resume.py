"""``eventrunner check-resume``: it says ``exact`` for a run that resumes exactly, and names
what differs, and from which batch, for one that does not (random augmentation inside
DataLoader workers, which fresh workers cannot continue)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs SIGKILL")

NOISY_DATASET = textwrap.dedent(
    """
    import torch
    from torch.utils.data import Dataset


    class NoisyBlobs(Dataset):
        def __init__(self, size=96):
            g = torch.Generator().manual_seed(0)
            self.x = torch.randn(size, 4, generator=g)
            self.y = (self.x[:, 0] > 0).long()

        def __len__(self):
            return len(self.x)

        def __getitem__(self, i):
            # Augmentation inside the worker process: its random stream is the worker's own.
            return {"features": self.x[i] + 0.1 * torch.randn(4), "targets": self.y[i]}
    """
)

CONFIG = textwrap.dedent(
    """
    model: {_target_: torch.nn.Linear, in_features: 4, out_features: 2}
    criterion: {_target_: torch.nn.CrossEntropyLoss}
    optimizer: {_target_: torch.optim.SGD, lr: 0.1}
    loaders:
      train:
        dataset: {_target_: noisy_blobs.NoisyBlobs}
        batch_size: 8
        shuffle: true
        num_workers: 2
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
    assert done.stdout.rstrip().splitlines()[-1].startswith("check-resume example:digits: exact")


def test_it_names_what_differs_and_from_which_batch(tmp_path):
    (tmp_path / "noisy_blobs.py").write_text(NOISY_DATASET)
    (tmp_path / "noisy.yaml").write_text(CONFIG)
    done = check_resume("noisy.yaml", "--kills", "1", "--seed", "3", "--every", "2", cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "NOT exact (1 of 1 kills)" in done.stdout
    assert "differs in model.weight" in done.stdout or "differs in model.bias" in done.stdout
    assert "first batch whose loss differs:" in done.stdout
    # The resumed run said beforehand that it would not be exact.
    assert "random numbers drawn inside them" in done.stderr and "not exact" in done.stderr
