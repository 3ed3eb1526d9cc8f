"""torch.distributed helpers: rank checks, process-group set-up and tear-down, samplers, reductions.

Every function is safe in a single process (no process group): the rank is then the one torchrun
set in the environment, else 0 of 1. The distributed engine is torch.distributed itself; this
package only decides when to start it (:mod:`.group`), which rank this is (:mod:`.ranks`), how
loaders are split between ranks (:mod:`.sharding`), what the subscribers reduce over them
(:mod:`.collectives`) and how the model is wrapped for it (:mod:`.wrap`).
"""

from __future__ import annotations

from eventrunner.distributed.collectives import (
    all_reduce_gradients,
    all_reduce_means,
    any_rank,
    broadcast_value,
    gather_objects,
    metric_names_mismatch,
)
from eventrunner.distributed.group import (
    DEFAULT_DDP_TIMEOUT_S,
    as_timeout,
    ddp_active,
    init_process_group,
    process_group_scope,
    shutdown_process_group,
)
from eventrunner.distributed.ranks import (
    barrier,
    get_local_rank,
    get_rank,
    get_world_size,
    is_dist_ready,
    is_main_process,
    launched_by_torchrun,
)
from eventrunner.distributed.sharding import (
    UnpaddedDistributedSampler,
    distributed_loader,
    find_sampler,
)
from eventrunner.distributed.wrap import unwrap_model, without_ddp, wrap_ddp

__all__ = [
    "DEFAULT_DDP_TIMEOUT_S",
    "UnpaddedDistributedSampler",
    "all_reduce_gradients",
    "all_reduce_means",
    "any_rank",
    "as_timeout",
    "barrier",
    "broadcast_value",
    "ddp_active",
    "distributed_loader",
    "find_sampler",
    "gather_objects",
    "get_local_rank",
    "get_rank",
    "get_world_size",
    "init_process_group",
    "is_dist_ready",
    "is_main_process",
    "launched_by_torchrun",
    "metric_names_mismatch",
    "process_group_scope",
    "shutdown_process_group",
    "unwrap_model",
    "without_ddp",
    "wrap_ddp",
]
