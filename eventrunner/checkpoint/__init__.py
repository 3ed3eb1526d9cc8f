"""Checkpoints: what one holds, reading it safely, writing it atomically, and exact resume.

A checkpoint is a plain dict written with ``torch.save`` and read with
``torch.load(weights_only=True)``; what it holds is data, checked before anything is restored.

- :mod:`~eventrunner.checkpoint.state`: what a checkpoint holds (collecting run state, the
  schema, reading one back, loading weights).
- :mod:`~eventrunner.checkpoint.files`: safe loading and the one atomic write of the project.
- :mod:`~eventrunner.checkpoint.refused`: what ``weights_only`` loading refused in a file.
- :mod:`~eventrunner.checkpoint.folder`: ``logdir/checkpoints`` (last, best, top-k, index).
- :mod:`~eventrunner.checkpoint.writer`: the background writer.
- :mod:`~eventrunner.checkpoint.position`: where a run stands inside an epoch (mid-epoch
  checkpoints) and putting it back there.
- :mod:`~eventrunner.checkpoint.resume`: :func:`restore_run`, ``resume="auto"``.
"""

from __future__ import annotations

from eventrunner.checkpoint.files import (
    CheckpointError,
    atomic_file,
    link_into,
    loads_by_construction,
    save_checkpoint,
    write_json_atomic,
)
from eventrunner.checkpoint.folder import (
    BEST,
    INDEX,
    INDEX_FORMAT,
    LAST,
    CheckpointFolder,
    Entry,
    SavePlan,
    check_file_name,
    epoch_file,
    read_index,
)
from eventrunner.checkpoint.position import capture_position
from eventrunner.checkpoint.resume import auto_resume, check_fits, find_resume, restore_run
from eventrunner.checkpoint.state import (
    FORMAT,
    VERSION,
    callback_keys,
    capture_state,
    check_model_state,
    check_structure,
    copy_to_cpu,
    load_checkpoint,
    load_model_state,
    load_weights,
    peek_epoch,
    plain_numbers,
)
from eventrunner.checkpoint.writer import CheckpointWriter

__all__ = [
    "BEST",
    "FORMAT",
    "INDEX",
    "INDEX_FORMAT",
    "LAST",
    "VERSION",
    "CheckpointError",
    "CheckpointFolder",
    "CheckpointWriter",
    "Entry",
    "SavePlan",
    "atomic_file",
    "auto_resume",
    "callback_keys",
    "capture_position",
    "capture_state",
    "check_file_name",
    "check_fits",
    "check_model_state",
    "check_structure",
    "copy_to_cpu",
    "epoch_file",
    "find_resume",
    "link_into",
    "load_checkpoint",
    "load_model_state",
    "load_weights",
    "loads_by_construction",
    "peek_epoch",
    "plain_numbers",
    "read_index",
    "restore_run",
    "save_checkpoint",
    "write_json_atomic",
]
