"""Catalyst 22.04's engines, mapped onto ``train()``'s ``device=``, ``amp=`` and ``ddp=``.

In Catalyst an engine (an ``accelerate.Accelerator``) decides the device, mixed precision and
distribution. Here those are ``train()`` arguments, so an engine is a request for them:
``CPUEngine()`` is ``device="cpu"``, ``GPUEngine(fp16=True)`` is ``device="cuda", amp="fp16"``,
``DistributedDataParallelEngine()`` is ``ddp=True`` (launch with ``torchrun``: the engine does
not spawn processes itself, as Catalyst's does). ``train(cpu=True, fp16=True, ddp=True)``
build the same request without an engine.

During a run, ``runner.engine`` is the engine, bound to the runner: ``engine.device``,
``engine.backward(loss)`` (with the fp16 grad scaler when there is one), ``engine.is_ddp``,
``engine.is_master_process``, ``engine.autocast()``, ``engine.unscale_gradients()``,
``engine.prepare(...)`` (returns its arguments: the runner already placed them),
``engine.sync_device(...)``, ``engine.wait_for_everyone()``, ``engine.mean_reduce_ddp_metrics``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
from torch import nn

from eventrunner.data.tensors import map_tensors
from eventrunner.distributed import barrier, get_local_rank, get_rank, get_world_size, is_dist_ready

if TYPE_CHECKING:
    from eventrunner.state import RunState

log = logging.getLogger("eventrunner")

#: ``accelerate.Accelerator`` arguments a Catalyst engine may be given that change nothing here.
_IGNORED_ACCELERATOR_ARGS = frozenset(
    {
        "device_placement",
        "split_batches",
        "dispatch_batches",
        "even_batches",
        "step_scheduler_with_optimizer",
    }
)
_MIXED_PRECISION = {"no": False, "fp16": "fp16", "bf16": "bf16"}


class Engine:
    """Where and how a run trains; Catalyst's engine interface over eventrunner's settings.

    ``cpu=True`` trains on the CPU; ``fp16=True`` (or ``mixed_precision="fp16"``/``"bf16"``)
    autocasts ``handle_batch`` (``train(amp=...)``); ``ddp=True`` trains data-parallel under
    ``torchrun``. ``device`` names a device explicitly (``"cuda:1"``).
    """

    #: The device type this engine asks for; None lets the run choose (CUDA when available).
    device_type: str | None = None
    #: Whether this engine trains data-parallel (``train(ddp=True)``).
    distributed: bool = False

    def __init__(
        self,
        *args: Any,
        cpu: bool | None = None,
        fp16: bool = False,
        mixed_precision: str | None = None,
        device: str | torch.device | None = None,
        **kwargs: Any,
    ) -> None:
        name = type(self).__name__
        if args:
            raise TypeError(
                f"{name}() takes keyword arguments (cpu=, fp16=, mixed_precision=, device=), "
                f"got positional {args!r}"
            )
        unknown = sorted(set(kwargs) - _IGNORED_ACCELERATOR_ARGS)
        if unknown:
            raise TypeError(
                f"{name}() got unknown arguments {unknown}: it takes cpu=, fp16=, "
                "mixed_precision= ('no', 'fp16', 'bf16') and device="
            )
        if mixed_precision is not None and mixed_precision not in _MIXED_PRECISION:
            raise ValueError(
                f"{name}(mixed_precision={mixed_precision!r}): expected 'no', 'fp16' or 'bf16'"
            )
        if cpu:
            self.device_type = "cpu"
        self._device = torch.device(device) if device is not None else None
        self.amp: bool | str = "fp16" if fp16 else _MIXED_PRECISION.get(mixed_precision or "no")
        self._runner: RunState | None = None

    # ---------------------------------------------------------------- the request

    def requested_device(self) -> torch.device | None:
        """The device this engine asks for; None: the run's default."""
        if self._device is not None:
            return self._device
        if self.device_type == "cuda" and not torch.cuda.is_available():
            log.warning(
                "eventrunner: %s asks for a GPU but CUDA is not available; training on the CPU",
                type(self).__name__,
            )
            return torch.device("cpu")
        return torch.device(self.device_type) if self.device_type else None

    def bind(self, runner: RunState) -> Engine:
        """Attach the engine to the run it trains (``runner.engine``)."""
        self._runner = runner
        return self

    def prepare_model(self, model: nn.Module) -> nn.Module:
        """The model as the run trains it (``DataParallelEngine`` wraps it)."""
        return model

    # ------------------------------------------------------------- during a run

    @property
    def device(self) -> torch.device:
        if self._runner is not None:
            return self._runner.device
        requested = self.requested_device()
        if requested is not None:
            return requested
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")

    @property
    def is_ddp(self) -> bool:
        return is_dist_ready() and get_world_size() > 1

    @property
    def is_master_process(self) -> bool:
        return get_rank() == 0

    is_main_process = is_master_process

    @property
    def is_local_main_process(self) -> bool:
        return get_local_rank() == 0

    @property
    def num_processes(self) -> int:
        return get_world_size()

    @property
    def process_index(self) -> int:
        return get_rank()

    def backward(self, loss: torch.Tensor, **kwargs: Any) -> None:
        """``loss.backward()``, scaled by the run's fp16 grad scaler when it has one."""
        scaler = self._runner.scaler if self._runner is not None else None
        (scaler.scale(loss) if scaler is not None else loss).backward(**kwargs)

    def unscale_gradients(self, optimizer: torch.optim.Optimizer | None = None) -> None:
        """Unscale the gradients of an fp16 run before clipping them (no-op otherwise)."""
        runner = self._runner
        if runner is None or runner.scaler is None:
            return
        optimizer = optimizer if optimizer is not None else runner.optimizer
        optimizers = optimizer.values() if isinstance(optimizer, Mapping) else [optimizer]
        for each in optimizers:
            runner.scaler.unscale_(each)

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        """The run's autocast context (handle_batch already runs inside it)."""
        runner = self._runner
        dtype = runner.amp_dtype if runner is not None else None
        with torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None):
            yield

    def prepare(self, *objects: Any) -> Any:
        """Catalyst/accelerate's ``prepare``: the run already placed everything; returned as is."""
        return objects[0] if len(objects) == 1 else objects

    def sync_device(self, value: Any) -> Any:
        """Move tensors (in dicts, lists, tuples) or a module to the run's device."""
        if isinstance(value, nn.Module):
            return value.to(self.device)
        return map_tensors(lambda tensor: tensor.to(self.device), value)

    def wait_for_everyone(self) -> None:
        barrier()

    def print(self, *args: Any, **kwargs: Any) -> None:
        if self.is_master_process:
            print(*args, **kwargs)

    def mean_reduce_ddp_metrics(self, metrics: dict[str, Any]) -> dict[str, Any]:
        """The metrics averaged over the ranks (as they are outside DDP)."""
        if not self.is_ddp:
            return metrics
        reduced = {}
        for key, value in metrics.items():
            tensor = torch.as_tensor(value, dtype=torch.float64, device=self.device)
            dist.all_reduce(tensor)
            reduced[key] = float(tensor) / get_world_size()
        return reduced

    def spawn(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    def setup(self, local_rank: int, world_size: int) -> None:
        """Catalyst's process set-up hook; ``torchrun`` and ``train()`` do it here."""

    def cleanup(self) -> None:
        """Catalyst's process clean-up hook; ``train()`` does it here."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(device={self.requested_device()}, amp={self.amp!r})"


class CPUEngine(Engine):
    """Train on the CPU."""

    device_type = "cpu"


class GPUEngine(Engine):
    """Train on one GPU (``device="cuda:1"`` picks another); the CPU when there is none."""

    device_type = "cuda"


class DataParallelEngine(GPUEngine):
    """``nn.DataParallel`` over the visible GPUs (one GPU or none: the model as it is)."""

    def prepare_model(self, model: nn.Module) -> nn.Module:
        if torch.cuda.device_count() > 1 and not isinstance(model, nn.DataParallel):
            return nn.DataParallel(model)
        return model


class DistributedDataParallelEngine(Engine):
    """Data-parallel training: ``train(ddp=True)``; launch the script with ``torchrun``.

    Catalyst's ``address``/``port``/``world_size``/... are torchrun's job here
    (``MASTER_ADDR``, ``MASTER_PORT``, ``--nproc_per_node``); they are accepted and unused.
    """

    distributed = True

    def __init__(
        self,
        *args: Any,
        address: str | None = None,
        port: str | int | None = None,
        world_size: int | None = None,
        workers_dist_rank: int = 0,
        num_node_workers: int | None = None,
        process_group_kwargs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        if torch.cuda.is_available() and self._device is None and self.device_type is None:
            self.device_type = "cuda"


#: Catalyst's short name for the DDP engine.
DDPEngine = DistributedDataParallelEngine


def get_available_engine(cpu: bool = False, fp16: bool = False, ddp: bool = False) -> Engine:
    """Catalyst's engine for ``train(cpu=, fp16=, ddp=)``."""
    if ddp:
        return DistributedDataParallelEngine(cpu=cpu, fp16=fp16)
    if cpu or not torch.cuda.is_available():
        return CPUEngine(fp16=fp16)
    if torch.cuda.device_count() > 1:
        return DataParallelEngine(fp16=fp16)
    return GPUEngine(fp16=fp16)


def engine_request(
    engine: Engine | None, cpu: bool, fp16: bool
) -> tuple[torch.device | None, bool | str, bool]:
    """The ``(device, amp, ddp)`` that ``engine`` (or ``cpu=``/``fp16=``) asks ``train()`` for."""
    if engine is None:
        if not (cpu or fp16):
            return None, False, False
        return (torch.device("cpu") if cpu else None), ("fp16" if fp16 else False), False
    if not isinstance(engine, Engine):
        raise TypeError(
            f"engine must be an engine (dl.CPUEngine(), dl.GPUEngine(), "
            f"dl.DistributedDataParallelEngine(), ...), got {type(engine).__name__}"
        )
    amp = engine.amp or ("fp16" if fp16 else False)
    device = torch.device("cpu") if cpu else engine.requested_device()
    return device, amp, engine.distributed
