"""Runs each ported program as ``python program.py`` would, in a process forked from this one.

Importing torch, its compiler stack (which the first optimizer pulls in), eventrunner and the
metric libraries takes most of a program's run on a CPU; done once here, each program starts
from a copy of this process instead. No kernel has run here before a fork (only a one-element
tensor is made), so no thread pool is started and each child starts single-threaded, as a new
interpreter does. A child's threads are joined and its exit handlers run as at a script's end;
only the module teardown after them, seconds of work that checks nothing, is skipped.

Reads ``program<TAB>folder<TAB>log`` lines from stdin; for each, forks a child that runs the
program as ``__main__`` in ``folder`` (its own folder first on ``sys.path``, like ``python``
does) with stdout and stderr in ``log``, killed by SIGALRM after ``timeout`` seconds; writes
the child's exit status (negative: the signal that ended it) as one line to stdout.
"""

from __future__ import annotations

import atexit
import os
import runpy
import signal
import sys
import traceback

import numpy  # noqa: F401
import tensorboard  # noqa: F401
import torch
import torch.distributed
import torch.multiprocessing
import torch.utils.tensorboard
import torchmetrics  # noqa: F401
import tqdm  # noqa: F401

import eventrunner.catalyst.contrib
import eventrunner.catalyst.settings  # noqa: F401
from eventrunner import dl

for name in dl.__all__:  # the names resolve lazily, some with heavy imports
    getattr(dl, name)
# The first optimizer imports torch's compiler stack (seconds); an empty parameter list
# is refused, so a one-element tensor (no kernel that starts threads runs for it).
torch.optim.Adam([torch.nn.Parameter(torch.empty(1))])


_status = 0


def _exit_now() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(_status)


def run(program: str, folder: str, log: str, timeout: int) -> int:
    """In the child: run ``program`` as a script; returns its exit status."""
    os.chdir(folder)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    signal.alarm(timeout)
    # Run last of the exit handlers (after the program's own, and after its threads are
    # joined): tearing down this many modules takes seconds and checks nothing.
    atexit.register(_exit_now)
    sys.argv = [program]
    sys.path[0] = os.path.dirname(program)
    try:
        runpy.run_path(program, run_name="__main__")
    except SystemExit as exit_:
        code = exit_.code
        if code is None:
            return 0
        if isinstance(code, int):
            return code
        print(code, file=sys.stderr)
        return 1
    except BaseException:
        traceback.print_exc()
        return 1
    return 0


def serve(timeout: int) -> int:
    global _status
    for line in sys.stdin:
        program, folder, log = line.rstrip("\n").split("\t")
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            _status = run(program, folder, log, timeout)
            return _status  # the child exits as an interpreter does, up to _exit_now
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(serve(int(sys.argv[1])))
