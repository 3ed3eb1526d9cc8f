"""``catalyst.data`` pieces that Catalyst 22.04 programs import: ``BatchBalanceClassSampler``."""

from eventrunner.catalyst.data.sampler import BatchBalanceClassSampler

__all__ = ["BatchBalanceClassSampler"]
