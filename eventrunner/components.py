"""A run's components: one model, criterion, optimizer, scheduler, or a dict of them by name.

A GAN has a generator and a discriminator, each with its optimizer: ``train(model={"generator":
g, "discriminator": d}, optimizer={"generator": opt_g, "discriminator": opt_d})``. A dict of
models becomes an ``nn.ModuleDict`` (``runner.model["generator"]``, one ``state_dict``); the
other dicts stay dicts, and subscribers pick one by key (``OptimizerCallback(optimizer_key=)``,
``CriterionCallback(criterion_key=)``, ``SchedulerCallback(scheduler_key=)``). Their states are
saved and restored per key.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from torch import nn


def as_model(model: Any) -> nn.Module:
    """The model, or a dict of models as one ``nn.ModuleDict``."""
    if isinstance(model, nn.Module):
        return model
    if isinstance(model, Mapping):
        for key, value in model.items():
            if not isinstance(key, str) or not isinstance(value, nn.Module):
                raise TypeError(
                    f"model: a dict of models maps names to nn.Module, got {key!r}: "
                    f"{type(value).__name__}"
                )
        return nn.ModuleDict(dict(model))
    raise TypeError(f"model must be an nn.Module or a dict of them, got {type(model).__name__}")


def as_components(value: Any, name: str) -> Any:
    """A criterion/optimizer/scheduler, or a dict of them (a plain ``dict``, keys checked)."""
    if isinstance(value, Mapping) and not isinstance(value, nn.Module):
        for key in value:
            if not isinstance(key, str):
                raise TypeError(f"{name}: a dict of {name}s is keyed by name, got key {key!r}")
        return dict(value)
    return value


def is_dict(value: Any) -> bool:
    """Whether a component is a dict of components by name."""
    return isinstance(value, Mapping) and not isinstance(value, nn.Module)


def each(value: Any) -> Iterator[Any]:
    """The components themselves: the values of a dict, or the one component (none for None)."""
    if is_dict(value):
        yield from value.values()
    elif value is not None:
        yield value


def pick(runner: Any, name: str, key: str | None, owner: str) -> Any:
    """``runner.<name>``, or its entry ``key`` when it is a dict; a clear error otherwise."""
    value = getattr(runner, name)
    if key is None:
        if is_dict(value):
            raise ValueError(
                f"{owner}: the runner's {name} is a dict ({sorted(value)}): pass {name}_key= "
                "to pick one"
            )
        if value is None:
            raise ValueError(f"{owner}: the runner has no {name}; pass {name}=... to train()")
        return value
    if not is_dict(value):
        raise ValueError(
            f"{owner}: {name}_key={key!r} picks from a dict of {name}s, but the runner's {name} "
            f"is {type(value).__name__}"
        )
    if key not in value:
        raise KeyError(f"{owner}: {name}_key={key!r} is not among the {name}s {sorted(value)}")
    return value[key]


def state_dicts(value: Any) -> Any:
    """The state of a component (``state_dict()``) or of each one of a dict; None without one."""
    if is_dict(value):
        return {key: each_.state_dict() for key, each_ in value.items() if _stateful(each_)}
    return value.state_dict() if _stateful(value) else None


def load_state_dicts(value: Any, state: Any, name: str) -> None:
    """Load what :func:`state_dicts` saved into the component(s); a clear error on a mismatch."""
    if state is None:
        return
    if is_dict(value):
        if not isinstance(state, Mapping) or set(state) != {
            key for key, each_ in value.items() if _stateful(each_)
        }:
            got = sorted(state) if isinstance(state, Mapping) else type(state).__name__
            raise ValueError(
                f"the checkpoint's {name} states ({got}) do not match the run's {name}s "
                f"({sorted(value)})"
            )
        for key, each_ in value.items():
            if _stateful(each_):
                each_.load_state_dict(state[key])
        return
    if value is not None:
        value.load_state_dict(state)


def _stateful(value: Any) -> bool:
    return hasattr(value, "state_dict") and hasattr(value, "load_state_dict")
