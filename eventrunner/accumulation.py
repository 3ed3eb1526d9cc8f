"""The accumulation window: which train batches one optimizer step takes its gradients from.

One window per run (``runner.accumulation``, fresh at each ``train()``), shared by the backward
and the optimizer subscribers, so both work on the same groups without looking each other up.
A group is ``steps`` batches in a row of one loader pass (the pass's last group may be
shorter). Each loss is scaled by ``n_i / (N·B)`` (``n_i`` its batch size, ``N = steps``, ``B``
the pass's first batch size) and a group of fewer than ``N·B`` samples has its gradients
rescaled by ``N·B / Σ n_i`` before the step: the step then uses the sample-weighted mean
gradient of its group, as one batch of those samples would (for losses that are batch means).
"""

from __future__ import annotations


class AccumulationWindow:
    """The run's accumulation groups: ``steps`` per group, claimed by the subscribers using it.

    The backward subscriber reads :meth:`loss_scale`; the optimizer subscriber, which closes
    groups by stepping, calls :meth:`add` per batch and :meth:`close` at each step. Group
    boundaries come from the loader pass's batch counter, so they need no state of their own.
    """

    __slots__ = ("full", "owner", "samples", "steps")

    def __init__(self) -> None:
        self.steps = 0  # 0 until a subscriber claims the window
        self.owner = ""
        self.full = 0  # samples of a full group in this pass: steps * the first batch size
        self.samples = 0  # samples in the open group

    def claim(self, steps: int, owner: str) -> int:
        """Use the window with ``steps`` batches per step; a different count than the first
        claimant's is refused (its loss scale and the steps would disagree)."""
        if not self.steps:
            self.steps, self.owner = steps, owner
        elif steps != self.steps:
            raise ValueError(
                f"{self.owner} accumulates {self.steps} batches but {owner} accumulates "
                f"{steps}: pass accumulation_steps to train() or the same value to both"
            )
        return self.steps

    def start_pass(self) -> None:
        """A new loader pass: its first batch sets the group size. Idempotent."""
        self.full = 0
        self.samples = 0

    def _full(self, batch_size: int) -> int:
        if not self.full:
            self.full = self.steps * batch_size
        return self.full

    def loss_scale(self, batch_size: int) -> float:
        """``n_i / (N·B)``: this batch's share of its group's mean gradient."""
        return batch_size / self._full(batch_size)

    def closes_group(self, loader_batch_step: int) -> bool:
        """Whether the pass's ``loader_batch_step``-th batch (1-based) ends a full group."""
        return loader_batch_step % self.steps == 0

    def add(self, batch_size: int) -> None:
        """Count a backpropagated batch into the open group."""
        self._full(batch_size)
        self.samples += batch_size

    def close(self) -> float | None:
        """End the open group: the factor its gradients need (None for a full group)."""
        samples, self.samples = self.samples, 0
        return None if samples == self.full else self.full / samples
