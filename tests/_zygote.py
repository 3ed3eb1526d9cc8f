"""A "zygote" process for tests that SIGKILL training children: it imports torch once and
forks one child per script (a fresh interpreter costs seconds per kill); it never computes
itself, so forking it is safe."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

# Imports torch and eventrunner once, then forks one training child per line it reads (the
# path of a script) and answers its pid. Children are reaped automatically (SIGCHLD ignored);
# a child writes its exit status to "<script>.exit".
ZYGOTE = textwrap.dedent(
    """
    import os, runpy, signal, sys, traceback

    import torch, eventrunner, plugins  # noqa: F401, E401
    # The first optimizer imports torch._dynamo (~1.5 s): once, here.
    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    try:  # the default TensorBoard logger's import, once (when the extra is installed)
        import torch.utils.tensorboard  # noqa: F401
    except ImportError:
        pass

    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    for line in sys.stdin:
        script = line.strip()
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # stdout carries pids to the test
            code = 1
            try:
                runpy.run_path(script, run_name="__main__")
                code = 0
            except SystemExit as exit:  # a preempted run exits with its own status
                code = exit.code if isinstance(exit.code, int) else 1
            except BaseException:
                traceback.print_exc()
            finally:
                with open(script + ".exit", "w") as status:
                    status.write(str(code))
                sys.stderr.flush()
                os._exit(code)
        print(pid, flush=True)
    """
)


class Zygote:
    def __init__(self, folder: Path) -> None:
        path = folder / "zygote.py"
        path.write_text(ZYGOTE)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
        self.process = subprocess.Popen(
            [sys.executable, str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            text=True,
        )

    def fork(self, script: Path) -> int:
        Path(f"{script}.exit").unlink(missing_ok=True)
        self.process.stdin.write(f"{script}\n")
        self.process.stdin.flush()
        return int(self.process.stdout.readline())

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=30)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def start(zygote: Zygote, script: Path, logdir: Path, num_epochs: int) -> int:
    (logdir / "started").unlink(missing_ok=True)
    params = {"logdir": str(logdir), "num_epochs": num_epochs}
    (script.parent / "params.json").write_text(json.dumps(params))
    return zygote.fork(script)


def wait_for(condition, pid: int, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if not alive(pid):
            raise AssertionError(f"child exited before {what}")
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.001)


def wait_exit(pid: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            raise AssertionError("timed out waiting for the child to exit")
        time.sleep(0.005)
