"""``TrainSettings``: the arguments of ``train()``, as one frozen, validated dataclass.

One place for every argument's default, alias and check: ``Runner.train``/``atrain``/
``compose`` take its fields as keyword arguments, the YAML layer reads its fields to check a
config's ``train`` section, and the reference in ``docs/`` is generated from it. Creating one
raises before any batch runs, with the argument named.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from eventrunner.checks import is_int, positive_int, positive_number, require_loaders
from eventrunner.data.loaders import validate_loaders
from eventrunner.data.prefetch import check_prefetch
from eventrunner.distributed import DEFAULT_DDP_TIMEOUT_S, as_timeout

if TYPE_CHECKING:
    from eventrunner.events import Callback

DEFAULT_VALID_LOADER = "valid"
DEFAULT_MAIN_METRIC = "loss"


@dataclass(frozen=True)
class Selection:
    """Which loader's metric picks the best epoch, and whether the user named them."""

    loader: str
    metric: str
    minimize: bool
    loader_given: bool
    metric_given: bool


def _arg(default: Any, doc: str, *, group: str) -> Any:
    return field(default=default, metadata={"doc": doc, "group": group})


#: The order in which the reference lists the groups of arguments.
GROUPS = ("what", "selection", "run", "logdir", "scale", "catalyst")


@dataclass(frozen=True, kw_only=True)
class TrainSettings:
    """Everything ``train()`` is told; see each field's ``metadata["doc"]``."""

    loaders: Mapping[str, Iterable[Any]] = _arg(
        None,
        "Loader name -> iterable of batches; names start with train, valid or infer.",
        group="what",
    )
    model: nn.Module | None = _arg(
        None, "The model; None keeps the one the runner holds.", group="what"
    )
    criterion: Any = _arg(None, "The loss function; None keeps the runner's.", group="what")
    optimizer: torch.optim.Optimizer | None = _arg(
        None,
        "The optimizer; None keeps the runner's (none: no backward, no step).",
        group="what",
    )
    scheduler: Any = _arg(
        None, "An LR scheduler, stepped once per epoch; None keeps the runner's.", group="what"
    )
    callbacks: Sequence[Callback] | Mapping[str, Callback] | None = _arg(
        None,
        "Subscribers added to the defaults; one of a default's kind replaces it.",
        group="what",
    )
    num_epochs: int = _arg(
        1, "Epochs to run (a resumed run counts those already run).", group="run"
    )
    valid_loader: str | None = _arg(
        None,
        "The loader whose metric picks the best epoch (default: 'valid').",
        group="selection",
    )
    main_metric: str | None = _arg(
        None, "The metric that picks the best epoch (default: 'loss').", group="selection"
    )
    minimize_metric: bool | None = _arg(
        None, "Whether a lower main_metric is better (default: True).", group="selection"
    )
    valid_metric: str | None = _arg(None, "Catalyst 22's name for main_metric.", group="selection")
    minimize_valid_metric: bool | None = _arg(
        None, "Catalyst 22's name for minimize_metric.", group="selection"
    )
    logdir: str | Path | None = _arg(
        None, "Folder for checkpoints and logs; None keeps nothing on disk.", group="logdir"
    )
    overfit: bool = _arg(False, "Run one batch per loader (a smoke test).", group="run")
    load_best_on_end: bool = _arg(
        False,
        "Load the best epoch's weights into the model when the run ends.",
        group="selection",
    )
    seed: int | None = _arg(42, "Seeds Python, NumPy and torch; None leaves them.", group="run")
    verbose: bool = _arg(False, "Show a progress bar per loader.", group="run")
    console: bool = _arg(True, "Print one line of metrics per loader per epoch.", group="run")
    device: str | torch.device | None = _arg(
        None, "Where to train; None: CUDA when available, else the CPU.", group="run"
    )
    resume: str | Path | None = _arg(
        None,
        "A checkpoint to continue from (counters, states, RNG); 'auto': logdir's newest, if any.",
        group="logdir",
    )
    checkpoint_every_n_batches: int | None = _arg(
        None,
        "Also write last.pth every N batches of each train pass (resume goes on from there; "
        "needs a logdir).",
        group="logdir",
    )
    checkpoint_every_seconds: float | None = _arg(
        None,
        "Also write last.pth inside train passes every S seconds (needs a logdir).",
        group="logdir",
    )
    overwrite: bool = _arg(
        False, "Let a new run replace the files of a previous run in logdir.", group="logdir"
    )
    prefetch: int = _arg(
        2, "Batches fetched ahead of the loop (0: off; at most 1024).", group="run"
    )
    profile: bool = _arg(
        False, "Time every subscriber and batch phase; print a table at the end.", group="run"
    )
    ddp: bool | None = _arg(
        None, "Train data-parallel; None: when launched by torchrun.", group="scale"
    )
    ddp_kwargs: Mapping[str, Any] | None = _arg(
        None, "Keyword arguments for DistributedDataParallel.", group="scale"
    )
    ddp_timeout: float | timedelta = _arg(
        DEFAULT_DDP_TIMEOUT_S,
        "Seconds (or a timedelta) before a stuck rank ends the run.",
        group="scale",
    )
    amp: bool | str | torch.dtype = _arg(
        False,
        "Autocast: True (bf16 on CPU, fp16 + GradScaler on CUDA), 'fp16' or 'bf16'.",
        group="scale",
    )
    accumulation_steps: int = _arg(1, "Batches per optimizer step.", group="scale")
    grad_clip_norm: float | None = _arg(
        None, "Clip the gradients' total norm to this before each step.", group="scale"
    )
    grad_clip_value: float | None = _arg(
        None, "Clamp each gradient element to [-v, v] before each step.", group="scale"
    )

    engine: Any = _arg(
        None,
        "Catalyst's engine (dl.CPUEngine(), dl.GPUEngine(fp16=True), ...): sets device, amp, ddp.",
        group="catalyst",
    )
    cpu: bool = _arg(False, "Catalyst's flag for device='cpu'.", group="catalyst")
    fp16: bool = _arg(False, "Catalyst's flag for amp='fp16'.", group="catalyst")
    loggers: Mapping[str, Any] | None = _arg(
        None,
        "Catalyst's loggers by name (dl.CSVLogger(...), ...); they replace the default loggers.",
        group="catalyst",
    )
    hparams: Mapping[str, Any] | None = _arg(
        None, "Hyperparameters the loggers record at the start.", group="catalyst"
    )
    timeit: bool = _arg(
        False, "Catalyst's TimerCallback: batch, data and model times as metrics.", group="catalyst"
    )
    check: bool = _arg(
        False, "Catalyst's check run: 3 epochs of 3 batches per loader.", group="catalyst"
    )

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: normalise once, here
        for name in ("cpu", "fp16", "timeit", "check"):
            _check_bool(name, getattr(self, name))
        if self.hparams is not None and not isinstance(self.hparams, Mapping):
            raise TypeError(f"hparams must be a mapping, got {self.hparams!r}")
        if self.loggers is not None and not isinstance(self.loggers, Mapping):
            raise TypeError(f"loggers must be a mapping of name -> logger, got {self.loggers!r}")
        self._apply_engine()
        set_(self, "loaders", validate_loaders(self.loaders))
        positive_int(self.num_epochs, "num_epochs")
        check_prefetch(self.prefetch)
        positive_int(self.accumulation_steps, "accumulation_steps")
        positive_int(self.checkpoint_every_n_batches, "checkpoint_every_n_batches", optional=True)
        positive_number(self.checkpoint_every_seconds, "checkpoint_every_seconds", optional=True)
        if self.resume is not None and not isinstance(self.resume, str | Path):
            raise TypeError(f"resume must be a path or 'auto', got {self.resume!r}")
        if isinstance(self.resume, str) and not self.resume.strip():
            raise ValueError("resume must be a path or 'auto', got an empty string")
        for name in ("overfit", "load_best_on_end", "verbose", "console", "overwrite", "profile"):
            _check_bool(name, getattr(self, name))
        for name in ("ddp", "minimize_metric", "minimize_valid_metric"):
            _check_bool(name, getattr(self, name), optional=True)
        for name in ("valid_loader", "main_metric", "valid_metric"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise TypeError(f"{name} must be a name (a non-empty str), got {value!r}")
        for name in ("grad_clip_norm", "grad_clip_value"):
            positive_number(getattr(self, name), name, optional=True)
        if self.seed is not None and not is_int(self.seed):
            raise TypeError(f"seed must be an int or None, got {self.seed!r}")
        if self.ddp_kwargs is not None and not isinstance(self.ddp_kwargs, Mapping):
            raise TypeError(f"ddp_kwargs must be a mapping, got {self.ddp_kwargs!r}")
        as_timeout(self.ddp_timeout)
        set_(
            self,
            "main_metric",
            _alias("main_metric", self.main_metric, "valid_metric", self.valid_metric),
        )
        set_(
            self,
            "minimize_metric",
            _alias(
                "minimize_metric",
                self.minimize_metric,
                "minimize_valid_metric",
                self.minimize_valid_metric,
            ),
        )
        if self.valid_loader is not None:
            require_loaders((self.valid_loader,), self.loaders, "valid_loader")

    def _apply_engine(self) -> None:
        """``engine=``/``cpu=``/``fp16=`` as the ``device``/``amp``/``ddp`` they ask for."""
        from eventrunner.catalyst.engines import engine_request

        device, amp, ddp = engine_request(self.engine, self.cpu, self.fp16)
        for name, wanted, unset in (
            ("device", device, None),
            ("amp", amp, False),
            ("ddp", ddp or None, None),
        ):
            if wanted is None or wanted is False:
                continue
            given = getattr(self, name)
            if given is unset:
                object.__setattr__(self, name, wanted)
            elif given != wanted and not (name == "device" and _same_device(given, wanted)):
                raise ValueError(
                    f"{name}={given!r} disagrees with the engine's request ({name}={wanted!r}); "
                    "pass one of them"
                )

    @classmethod
    def from_kwargs(cls, kwargs: Mapping[str, Any], where: str = "train()") -> TrainSettings:
        """``TrainSettings(**kwargs)`` with an error that names an unknown argument."""
        names = field_names()
        for key in kwargs:
            if key not in names:
                close = difflib.get_close_matches(str(key), names, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise TypeError(f"{where} got an unknown argument {key!r}{hint}")
        return cls(**kwargs)

    @property
    def selection(self) -> Selection:
        return Selection(
            loader=self.valid_loader or DEFAULT_VALID_LOADER,
            metric=self.main_metric or DEFAULT_MAIN_METRIC,
            minimize=True if self.minimize_metric is None else self.minimize_metric,
            loader_given=self.valid_loader is not None,
            metric_given=self.main_metric is not None,
        )

    @property
    def timeout(self) -> timedelta:
        return as_timeout(self.ddp_timeout)

    def replace(self, **changes: Any) -> TrainSettings:
        """A copy with ``changes`` (validated again)."""
        return dataclasses.replace(self, **changes)


def field_names() -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(TrainSettings))


def signature() -> inspect.Signature:
    """``train(*, loaders, model=None, ...)``: the signature ``Runner.train`` shows."""
    return inspect.Signature(
        [
            inspect.Parameter(
                f.name,
                inspect.Parameter.KEYWORD_ONLY,
                default=inspect.Parameter.empty if f.name == "loaders" else f.default,
                annotation=f.type,
            )
            for f in dataclasses.fields(TrainSettings)
        ],
        return_annotation=None,
    )


def _same_device(given: Any, wanted: torch.device) -> bool:
    given = torch.device(given)
    return given.type == wanted.type and wanted.index in (None, given.index)


def _check_bool(name: str, value: Any, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, bool):
        allowed = "True, False or None" if optional else "True or False"
        raise TypeError(f"{name} must be {allowed}, got {value!r}")


def _alias(name: str, value: Any, alias: str, alias_value: Any) -> Any:
    if alias_value is None:
        return value
    if value is not None and value != alias_value:
        raise ValueError(f"{name}={value!r} and its alias {alias}={alias_value!r} disagree")
    return alias_value
