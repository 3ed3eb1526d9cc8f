"""Real Catalyst 22.04 programs, ported by changing their imports, run under eventrunner.

Each file in ``programs/`` (README.md there lists sources and changes) runs at import, as a
script: as ``python program.py`` in a fresh temp folder (relative logdirs land there), with a
timeout, and must exit 0. Each runs in its own process, forked from one that has imported
torch and eventrunner already (``_program_server.py``: the imports are most of a program's
time on a CPU). ``run_on_catalyst.py`` runs the same files under Catalyst 22.4.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
PROGRAMS = HERE / "programs"
NAMES = sorted(p.stem for p in PROGRAMS.glob("*.py") if not p.name.startswith("_"))
TIMEOUT_S = 120


@pytest.fixture(scope="module")
def server() -> Iterator[subprocess.Popen[str]]:
    # CPU only: the programs are sized for a CPU and the CI machine has no accelerator.
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "_program_server.py"), str(TIMEOUT_S)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    yield proc
    assert proc.stdin is not None
    proc.stdin.close()
    assert proc.wait(timeout=60) == 0


@pytest.mark.parametrize("name", NAMES)
def test_program_runs(name: str, tmp_path: Path, server: subprocess.Popen[str]) -> None:
    assert server.stdin is not None and server.stdout is not None
    log = tmp_path.parent / f"{tmp_path.name}.log"  # beside the folder, which stays the program's
    server.stdin.write(f"{PROGRAMS / f'{name}.py'}\t{tmp_path}\t{log}\n")
    server.stdin.flush()
    status = server.stdout.readline()
    assert status, f"the program server stopped (exit {server.poll()}) before running {name}.py"
    code = int(status)
    assert code == 0, (
        f"{name}.py exited {code} ({-signal.SIGALRM}: killed after {TIMEOUT_S} s); output tail:\n"
        f"{log.read_text(errors='replace')[-4000:]}"
    )
