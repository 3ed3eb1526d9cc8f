"""Real Catalyst 22.04 programs, ported by changing their imports, run under eventrunner.

Each file in ``programs/`` (README.md there lists sources and changes) runs at import, as a
script: ``python program.py`` in a fresh temp folder (relative logdirs land there), with a
timeout, and must exit 0. ``run_on_catalyst.py`` runs the same files under Catalyst 22.4.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

PROGRAMS = Path(__file__).resolve().parent / "programs"
NAMES = sorted(p.stem for p in PROGRAMS.glob("*.py") if not p.name.startswith("_"))
TIMEOUT_S = 120


@pytest.mark.parametrize("name", NAMES)
def test_program_runs(name: str, tmp_path: Path) -> None:
    # CPU only: the programs are sized for a CPU and the CI machine has no accelerator.
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run(
        [sys.executable, str(PROGRAMS / f"{name}.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert proc.returncode == 0, (
        f"{name}.py exited {proc.returncode}; stderr tail:\n{proc.stderr[-4000:]}"
    )
