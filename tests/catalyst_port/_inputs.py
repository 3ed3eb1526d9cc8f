"""Seeded inputs of the Catalyst parity tests, built with ``torch.Generator`` only, so that
they come out the same in any environment with the same torch (the reference values were
computed from these very tensors)."""

from __future__ import annotations

import torch


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def logits_missing_class(seed: int = 0, n: int = 48, classes: int = 5) -> tuple:
    """Scores over ``classes``; targets never hit the last class."""
    g = _gen(seed)
    return torch.randn(n, classes, generator=g), torch.randint(0, classes - 1, (n,), generator=g)


def tied_logits(seed: int = 1, n: int = 40, classes: int = 6) -> tuple:
    """Small integer scores: many rows have tied maxima."""
    g = _gen(seed)
    logits = torch.randint(0, 3, (n, classes), generator=g).float()
    return logits, torch.randint(0, classes, (n,), generator=g)


def all_correct(seed: int = 2, n: int = 20, classes: int = 4) -> tuple:
    g = _gen(seed)
    targets = torch.randint(0, classes, (n,), generator=g)
    logits = torch.rand(n, classes, generator=g) + 2 * torch.nn.functional.one_hot(targets, classes)
    return logits, targets


def batches(pair: tuple, sizes: tuple[int, ...]) -> list[tuple]:
    """``pair`` cut into uneven batches of these sizes."""
    outputs, targets = pair
    return list(zip(outputs.split(list(sizes)), targets.split(list(sizes)), strict=True))


def binary_scores_with_ties(seed: int = 3, n: int = 60) -> tuple:
    """Scores on a 0.1 grid (ties) and 0/1 targets."""
    g = _gen(seed)
    scores = torch.randint(0, 11, (n,), generator=g).float() / 10
    return scores, (torch.rand(n, generator=g) < scores * 0.8 + 0.1).long()


def multilabel(seed: int = 4, n: int = 36, labels: int = 4) -> tuple:
    """Scores (logits, beyond [0, 1]) and 0/1 targets; the last label is never set."""
    g = _gen(seed)
    scores = torch.randn(n, labels, generator=g) * 2
    targets = (torch.rand(n, labels, generator=g) < 0.5).float()
    targets[:, -1] = 0
    return scores, targets


def binary_labels(seed: int = 5, n: int = 50) -> tuple:
    g = _gen(seed)
    return torch.randint(0, 2, (n,), generator=g), torch.randint(0, 2, (n,), generator=g)


ADDITIVE_VALUES = (0.25, 1.75, -0.5, 2.125, 0.0)
ADDITIVE_SAMPLES = (3, 1, 7, 2, 5)
