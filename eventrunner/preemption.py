"""Preemption: SIGTERM (SLURM, Kubernetes) asks a run to stop after its current batch.

While ``train()`` runs on the main thread, SIGTERM sets ``runner.stop_requested``; the loop
finishes the batch and raises :class:`Preempted`. The checkpoint subscriber writes
``last.pth`` at that batch (on ``exception``, so a resumed run continues with the next
batch), the end events are published (loggers close their files), and ``train()`` raises
``Preempted``: a ``SystemExit`` with status 143 (128 + SIGTERM), so a script that does not
catch it exits with that status, without a traceback, and a scheduler can requeue it.
Under DDP every rank stops after the same batch (see :func:`stop_on_sigterm`).
"""

from __future__ import annotations

import contextlib
import logging
import signal
from collections.abc import Iterator
from typing import Any

from eventrunner.process_signals import temporary_handler

log = logging.getLogger("eventrunner")

#: The exit status of a preempted run: 128 + SIGTERM, as a shell reports a process it ended.
PREEMPTED_STATUS = 128 + signal.SIGTERM


class Preempted(SystemExit):
    """The run stopped after a batch because the process was asked to (SIGTERM)."""

    def __init__(self, reason: str = "SIGTERM") -> None:
        super().__init__(PREEMPTED_STATUS)
        self.reason = reason

    def __str__(self) -> str:
        return f"preempted ({self.reason}): stopped after the current batch"


@contextlib.contextmanager
def stop_on_sigterm(runner: Any) -> Iterator[None]:
    """Within the block, SIGTERM sets ``runner.stop_requested`` instead of ending the process.

    Only on the main thread, and only over the default handler: one the user installed is
    left alone. Under DDP the signal only sets ``runner.stop_pending``: ranks that stopped at
    different batches would wait for each other's next collective, so the DDP subscriber
    asks every rank at the same train batches whether any got it (``any_rank``) and then
    sets ``stop_requested`` on all of them.
    """

    def request_stop(signum: int, frame: Any) -> None:
        if not (runner.stop_requested or runner.stop_pending):
            # The checkpoint subscribers say what they saved (nothing without a logdir).
            log.warning("eventrunner: SIGTERM: stopping after the current batch")
        if runner.ddp:
            runner.stop_pending = "SIGTERM"  # all ranks stop at one batch (DistributedCallback)
        else:
            runner.stop_requested = "SIGTERM"

    with temporary_handler(signal.SIGTERM, request_stop, lambda old: old is signal.SIG_DFL):
        yield
