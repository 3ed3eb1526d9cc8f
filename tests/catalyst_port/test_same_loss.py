"""A Catalyst program's per-epoch losses under eventrunner equal Catalyst 22.4's own.

``programs/same_loss_classification.py`` (a SupervisedRunner classification with fixed data,
no shuffle, the seed set before the model is built, CPU, 2 epochs) runs in a subprocess, as a
user would run it, and writes its per-epoch loader losses. The expected numbers were computed
by catalyst 22.4 running the same program (imports switched back to ``catalyst`` by
``run_on_catalyst.py``). They are the batch-size-weighted means of the batch losses (the last
train batch holds 4 of 100 samples); a plain PyTorch loop gives the same numbers.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.catalyst_port._compare import close

PROGRAM = Path(__file__).resolve().parent / "programs" / "same_loss_classification.py"

# computed by catalyst 22.4 (torch 2.13, CPU)
CATALYST_LOSSES = {
    "train": [1.4073983430862427, 1.317032513618469],
    "valid": [1.4639705578486124, 1.554326589902242],
}


def test_per_epoch_losses_match_catalyst(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(PROGRAM)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, f"{PROGRAM.name} failed:\n{proc.stderr[-3000:]}"
    losses = json.loads((tmp_path / "epoch_losses.json").read_text())
    close(losses, CATALYST_LOSSES, "per-epoch loader losses")
