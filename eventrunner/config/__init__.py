"""YAML configs: a training run described as data, built into a runner and its train() arguments.

Objects are written as ``{_target_: pkg.mod.Name, key: value, ...}`` (see :func:`instantiate`);
subscribers by registered name or import path. Every error names the key path (the same path
``--set`` takes), what was expected and what was found, before any training starts.

A config is code: building it imports and calls what it names (``--dry-run`` too), so only
build configs you trust.

Example::

    experiment = build(load_config("digits.yaml", overrides=["train.num_epochs=3"]))
    print(experiment.describe())       # the composed pipeline, no training
    runner = experiment.run()
"""

from __future__ import annotations

import collections.abc
import contextlib
import copy
import difflib
import functools
import inspect
import os
import re
import sys
import types
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn
from torch.utils.data import DataLoader

from eventrunner import registry
from eventrunner.data.loaders import LOADER_PREFIXES, validate_loaders
from eventrunner.data.prefetch import MAX_PREFETCH
from eventrunner.events import Callback, EventBus, LoaderFilter
from eventrunner.rng import seed_everything
from eventrunner.runner import Runner
from eventrunner.settings import TrainSettings
from eventrunner.settings import field_names as settings_fields

TARGET = "_target_"
ARGS = "_args_"
PARTIAL = "_partial_"
SUBSCRIBER = "subscriber"
FILTER_KEYS = ("order", "loaders", "every")

#: Top-level sections of a config, in the order they are built.
SECTIONS = (
    "runner",
    "model",
    "criterion",
    "optimizer",
    "scheduler",
    "loaders",
    "callbacks",
    "train",
)
#: ``train()`` arguments that come from their own sections instead of ``train:``.
_FROM_SECTIONS = ("loaders", "model", "criterion", "optimizer", "scheduler", "callbacks")
_DEFAULT_RUNNER = "eventrunner.SupervisedRunner"


class ConfigError(ValueError):
    """A config that cannot be built: ``path`` is the key path (``loaders.valid.batch_size``)."""

    def __init__(
        self, path: str, expected: str, found: str, *, hint: str = "", message: str = ""
    ) -> None:
        self.path = path or "<config>"
        self.expected = expected
        self.found = found
        message = f"{self.path}: {message or f'expected {expected}, found {found}'}"
        super().__init__(f"{message}; {hint}" if hint else message)


def _found(value: Any) -> str:
    if value is None:
        return "null"
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__name__})"


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def _close(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=3, cutoff=0.6)
    return f"did you mean {', '.join(map(repr, close))}?" if close else ""


# ------------------------------------------------------------------ loading, overrides


def load_config(
    source: str | Path | Mapping[str, Any], overrides: Iterable[str] = ()
) -> dict[str, Any]:
    """Read a YAML file (``yaml.safe_load``), or copy a mapping, and apply ``--set`` overrides."""
    if isinstance(source, Mapping):
        config: Any = copy.deepcopy(dict(source))
        origin = "config"
    else:
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"config file {str(path)!r} not found")
        try:
            config = yaml.safe_load(path.read_text())
        except yaml.YAMLError as error:
            raise ConfigError(str(path), "valid YAML", f"a syntax error: {error}") from error
        origin = str(path)
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise ConfigError("<config>", f"a mapping of sections in {origin}", _found(config))
    for override in overrides:
        apply_override(config, override)
    check_sections(config)
    return config


def parse_override(text: str) -> tuple[str, Any]:
    """``"a.b=value"`` -> ``("a.b", value)``, the value typed by ``yaml.safe_load``."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError("--set", "key.path=value", repr(text))
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        value = raw  # not YAML: keep the text as a string
    if isinstance(value, str) and _EXPONENT_FLOAT.match(value):
        value = float(value)  # YAML 1.1 leaves 1e-3 a string; on a command line it is a number
    return key, value


_EXPONENT_FLOAT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")


def _list_index(items: list[Any], key: str, path: str) -> int:
    if key.lstrip("-").isdigit():
        index = int(key)
        if index == len(items):  # one past the end appends: --set callbacks.2.subscriber=...
            items.append({})
        if not -len(items) <= index < len(items):
            raise ConfigError(path, f"an index up to {len(items)} ({len(items)} appends)", key)
        return index
    # A subscriber in the callbacks list can be addressed by its name.
    named = [
        i
        for i, item in enumerate(items)
        if item == key or (isinstance(item, Mapping) and item.get(SUBSCRIBER) == key)
    ]
    if len(named) != 1:
        expected = "a list index or the name of a subscriber listed once"
        raise ConfigError(path, expected, repr(key))
    return named[0]


def apply_override(config: dict[str, Any], override: str) -> None:
    """Set ``key.path=value`` in ``config``.

    List items are addressed by index (one past the end appends) or, for subscribers, by
    name; missing mappings on the way are created.
    """
    dotted, value = parse_override(override)
    keys = dotted.split(".")
    node: Any = config
    path = ""
    for i, key in enumerate(keys):
        last = i == len(keys) - 1
        path = _join(path, key)
        if isinstance(node, list):
            index = _list_index(node, key, path)
            if last:
                node[index] = value
                return
            if isinstance(node[index], str):  # "- early_stopping" grows into a mapping
                node[index] = {SUBSCRIBER: node[index]}
            node = node[index]
        elif isinstance(node, dict):
            if last:
                node[key] = value
                return
            if node.get(key) is None:
                node[key] = {}
            node = node[key]
        else:
            parent = path.rpartition(".")[0]
            raise ConfigError(parent, f"a mapping or list to set {dotted!r} in", _found(node))


def check_sections(config: Mapping[str, Any]) -> None:
    """Unknown top-level sections are refused, with close matches."""
    for key in config:
        if key not in SECTIONS:
            raise ConfigError(
                str(key),
                f"a section among {', '.join(SECTIONS)}",
                "an unknown key",
                hint=_close(str(key), SECTIONS),
            )


def example_names() -> list[str]:
    """Names of the example configs shipped in ``eventrunner/examples``."""
    folder = resources.files("eventrunner.examples")
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def example_path(name: str) -> Path:
    """The path of a shipped example config (``digits``)."""
    names = example_names()
    if name not in names:
        hint = _close(name, names)
        raise ValueError(
            f"unknown example {name!r}; available: {', '.join(names)}"
            + (f"; {hint}" if hint else "")
        )
    return Path(str(resources.files("eventrunner.examples") / f"{name}.yaml"))


@contextlib.contextmanager
def import_paths(source: str | Path | Mapping[str, Any] | None = None) -> Iterator[None]:
    """The config file's folder, then the working directory, first on ``sys.path`` meanwhile.

    ``python -m eventrunner`` has the working directory on ``sys.path`` and the console script
    does not; with this, both import a ``my_model.py`` that sits beside the config or in the
    working directory. Only the entries added here are removed afterwards.
    """
    folders = [Path.cwd()]
    if source is not None and not isinstance(source, Mapping):
        folders.insert(0, Path(source).resolve().parent)
    present = {os.path.abspath(entry or os.curdir) for entry in sys.path}
    added = []
    for folder in map(str, folders):
        if folder not in present and folder not in added:
            added.append(folder)
    sys.path[:0] = added
    try:
        yield
    finally:
        for entry in added:
            with contextlib.suppress(ValueError):
                sys.path.remove(entry)


# ------------------------------------------------------------------ type checks


def _decidable(hint: Any) -> bool:
    return hint in (bool, int, float, str, type(None), list, dict) or typing.get_origin(hint) in (
        list,
        tuple,
        dict,
        collections.abc.Sequence,
        collections.abc.Mapping,
        typing.Literal,
    )


def _matches(value: Any, hint: Any) -> bool | None:
    """Whether a config value fits a type hint; None where the hint is beyond simple types."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        results = [_matches(value, arg) for arg in typing.get_args(hint)]
        if any(r is True for r in results):
            return True
        return False if all(r is False for r in results) else None
    if hint is typing.Any or not _decidable(hint):
        # A built object (nested _target_) checked against its class; else: cannot tell.
        try:
            return True if inspect.isclass(hint) and isinstance(value, hint) else None
        except TypeError:  # protocols and other classes that refuse isinstance()
            return None
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    if hint is dict or origin in (dict, collections.abc.Mapping):
        return isinstance(value, Mapping)
    # list, tuple, Sequence: YAML gives lists (a string is a Sequence too, but not meant here)
    return isinstance(value, list | tuple)


def _describe_hint(hint: Any) -> str:
    if hint is type(None):
        return "null"
    if inspect.isclass(hint) and typing.get_origin(hint) is None:
        return {
            "int": "an int",
            "float": "a float",
            "bool": "a bool (true/false)",
            "str": "a string",
            "list": "a list",
            "dict": "a mapping",
        }.get(hint.__name__, hint.__name__)
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe_hint(arg) for arg in typing.get_args(hint))
    if origin is typing.Literal:
        return "one of " + ", ".join(map(repr, typing.get_args(hint)))
    if origin in (list, tuple, collections.abc.Sequence):
        return "a list"
    if origin in (dict, collections.abc.Mapping):
        return "a mapping"
    return str(hint).replace("typing.", "")


def _type_hints(target: Any) -> dict[str, Any]:
    """Resolved parameter annotations; one that cannot be resolved is skipped, not fatal."""
    func = target.__init__ if inspect.isclass(target) else target
    try:
        return typing.get_type_hints(func)
    except Exception:
        pass
    # e.g. DataLoader's "Sampler | Iterable | None" names a type its module never imports
    namespace = getattr(inspect.unwrap(func), "__globals__", {})
    hints = {}
    for name, annotation in getattr(func, "__annotations__", {}).items():
        if not isinstance(annotation, str):
            hints[name] = annotation
            continue
        try:
            hints[name] = eval(annotation, dict(namespace), dict(vars(typing)))
        except Exception:
            continue
    return hints


def _check_type(path: str, value: Any, hint: Any) -> None:
    if _matches(value, hint) is not False:
        return
    raise ConfigError(path, _describe_hint(hint), _found(value))


def _check_number(path: str, value: Any, hint: Any) -> None:
    # YAML 1.1 reads 1e-3 (no dot) as a string; torch hints lr as float | Tensor, which the
    # simple check cannot decide, so a numeric string for a float parameter is caught here.
    if not isinstance(value, str) or _matches(1.0, hint) is not True or _matches(value, hint):
        return
    try:
        float(value)
    except ValueError:
        return
    raise ConfigError(
        path,
        _describe_hint(hint),
        _found(value),
        hint=f"YAML reads a number like 1e-3 as a string: write {_yaml_float(value)}",
    )


def _yaml_float(text: str) -> str:
    mantissa, _, exponent = text.lower().partition("e")
    if "." not in mantissa:
        mantissa += ".0"
    return f"{mantissa}e{exponent}" if exponent else mantissa


# ------------------------------------------------------------------ building objects


def _target_name(target: Any) -> str:
    return (
        getattr(target, "__qualname__", None) or getattr(target, "__name__", None) or repr(target)
    )


def _import_target(path: str, spec: Any) -> Any:
    if not isinstance(spec, str) or not spec:
        raise ConfigError(
            path, "an import path like 'torch.nn.Linear' or 'pkg.mod:Name'", _found(spec)
        )
    try:
        target = registry.import_object(spec)
    except ImportError as error:
        raise ConfigError(path, "an importable object", repr(spec), hint=str(error)) from error
    if not callable(target):
        raise ConfigError(path, "a class or function", f"{spec!r} ({type(target).__name__})")
    return target


def check_call(
    path: str,
    target: Any,
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    *,
    injected: Iterable[str] = (),
    partial: bool = False,
) -> None:
    """Refuse unknown keys, missing required arguments and values of the wrong simple type.

    ``injected`` are the leading arguments the builder fills in itself (an optimizer's
    ``params``); they are named in the message when given in the config. With ``partial``,
    required arguments may be left for later.
    """
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):
        return  # builtins without a signature: the call itself will tell
    name = _target_name(target)
    params = signature.parameters
    accepts_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    for key in kwargs:
        if key in injected:
            raise ConfigError(
                _join(path, key), f"no {key!r} key ({key} is filled in for you)", repr(kwargs[key])
            )
        if key not in params and not accepts_any:
            named = [
                p
                for p in params
                if params[p].kind
                not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
            ]
            raise ConfigError(
                _join(path, key),
                f"a parameter of {name} ({', '.join(named) or 'none'})",
                f"unknown key {key!r}",
                hint=_close(key, named),
            )
    try:
        (signature.bind_partial if partial else signature.bind)(*args, **kwargs)
    except TypeError as error:
        raise ConfigError(path, f"arguments that {name}{signature} accepts", str(error)) from None
    hints = _type_hints(target)
    for key, value in kwargs.items():
        if key in hints and key in params:
            _check_type(_join(path, key), value, hints[key])
            _check_number(_join(path, key), value, hints[key])


def _call(path: str, target: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    try:
        return target(*args, **kwargs)
    except ConfigError:
        raise
    except Exception as error:
        name = _target_name(target)
        raise ConfigError(
            path,
            f"arguments that {name} accepts",
            f"{type(error).__name__}: {error}",
            message=f"{name}(...) failed: {type(error).__name__}: {error}",
        ) from error


def instantiate(
    node: Any, path: str = "", *, args: tuple[Any, ...] = (), injected: Iterable[str] = ()
) -> Any:
    """Build the objects a config node describes, depth first.

    A mapping with ``_target_`` (``pkg.mod.Name`` or ``pkg.mod:Name``) is called with its other
    keys as keyword arguments, after ``args`` (what the builder injects) and the optional
    ``_args_`` list; ``_partial_: true`` returns a ``functools.partial`` instead of calling.
    Other mappings and lists are walked; scalars are returned as they are.
    """
    if isinstance(node, list):
        return [instantiate(item, _join(path, i)) for i, item in enumerate(node)]
    if not isinstance(node, Mapping):
        return node
    if TARGET not in node:
        return {key: instantiate(value, _join(path, key)) for key, value in node.items()}
    target = _import_target(_join(path, TARGET), node[TARGET])
    extra = node.get(ARGS, [])
    if not isinstance(extra, list):
        raise ConfigError(_join(path, ARGS), "a list of positional arguments", _found(extra))
    partial = node.get(PARTIAL, False)
    if not isinstance(partial, bool):
        raise ConfigError(_join(path, PARTIAL), "true or false", _found(partial))
    positional = (*args, *instantiate(extra, _join(path, ARGS)))
    kwargs = {
        key: instantiate(value, _join(path, key))
        for key, value in node.items()
        if key not in (TARGET, ARGS, PARTIAL)
    }
    for key in kwargs:
        if not isinstance(key, str):
            raise ConfigError(_join(path, key), "a string key", _found(key))
    check_call(path, target, positional, kwargs, injected=injected, partial=partial)
    if partial:
        return functools.partial(target, *positional, **kwargs)
    return _call(path, target, positional, kwargs)


def _require_target(path: str, node: Any, what: str) -> None:
    if not isinstance(node, Mapping):
        raise ConfigError(
            path, f"a mapping with _target_: the {what}'s class or factory", _found(node)
        )
    if TARGET not in node:
        raise ConfigError(
            _join(path, TARGET), f"the {what}'s import path (like 'torch.nn.Linear')", "nothing"
        )


def _require_built(
    path: str, node: Any, built: Any, expected: str, accepted: Callable[[Any], bool]
) -> None:
    """A section's object must be of the kind train() takes; else name what it built."""
    if accepted(built):
        return
    if isinstance(node, Mapping) and TARGET in node:
        found = f"{type(built).__name__} (built by {node[TARGET]!r})"
    else:
        found = _found(built)
    raise ConfigError(path, expected, found)


def _is_module(obj: Any) -> bool:
    return isinstance(obj, nn.Module)


def _is_optimizer(obj: Any) -> bool:
    return isinstance(obj, torch.optim.Optimizer)


def _is_scheduler(obj: Any) -> bool:
    return callable(getattr(obj, "step", None))


def _is_dataset(obj: Any) -> bool:
    # DataLoader takes anything and fails at the first batch; a dataset indexes or iterates.
    return not isinstance(obj, str | bytes) and (
        hasattr(type(obj), "__getitem__") or hasattr(type(obj), "__iter__")
    )


# ------------------------------------------------------------------ sections


def build_runner(node: Any) -> Runner:
    """``runner:`` — a :class:`Runner` subclass and its keys (default ``SupervisedRunner``)."""
    node = {} if node is None else node
    if not isinstance(node, Mapping):
        raise ConfigError("runner", "a mapping (_target_ and the runner's keys)", _found(node))
    node = {TARGET: _DEFAULT_RUNNER, **node}
    for key in _FROM_SECTIONS:
        if key in node:
            raise ConfigError(
                f"runner.{key}", f"no {key!r} here (it has its own top-level section)", repr(key)
            )
    target = _import_target(f"runner.{TARGET}", node[TARGET])
    if not (inspect.isclass(target) and issubclass(target, Runner)):
        raise ConfigError(
            f"runner.{TARGET}", "a subclass of eventrunner.Runner", repr(node[TARGET])
        )
    return instantiate(node, "runner")


def build_loaders(node: Any) -> dict[str, Any]:
    """``loaders:`` — per loader name (order kept), a ``dataset`` and DataLoader arguments,
    or a whole loader object given by ``_target_``."""
    if not isinstance(node, Mapping) or not node:
        raise ConfigError(
            "loaders", "a mapping of loader name to {dataset: ..., batch_size: ...}", _found(node)
        )
    loaders = {}
    for name, spec in node.items():
        path = f"loaders.{name}"
        if not isinstance(name, str) or not name.startswith(LOADER_PREFIXES):
            raise ConfigError(
                path,
                "a loader name starting with train, valid or infer",
                _found(name),
                hint="train* runs backward, valid*/infer* run forward only",
            )
        if not isinstance(spec, Mapping):
            raise ConfigError(
                path, "a mapping with a dataset and DataLoader arguments", _found(spec)
            )
        if TARGET in spec:
            loaders[name] = _check_loader(path, name, instantiate(spec, path))
            continue
        if "dataset" not in spec:
            raise ConfigError(
                f"{path}.dataset", "the loader's dataset (a mapping with _target_)", "nothing"
            )
        _check_loader_numbers(path, spec)
        dataset = instantiate(spec["dataset"], f"{path}.dataset")
        _require_built(
            f"{path}.dataset",
            spec["dataset"],
            dataset,
            "a dataset of samples (indexable or iterable, e.g. a torch Dataset)",
            _is_dataset,
        )
        kwargs = {
            key: instantiate(value, _join(path, key))
            for key, value in spec.items()
            if key != "dataset"
        }
        check_call(path, DataLoader, (dataset,), kwargs)
        loaders[name] = _call(path, DataLoader, (dataset,), kwargs)
    return loaders


def _check_loader(path: str, name: str, loader: Any) -> Any:
    """A loader given by ``_target_`` gets the loop's own checks, reported at its key path."""
    try:
        validate_loaders({name: loader})
    except (TypeError, ValueError) as error:
        raise ConfigError(
            path,
            "an iterable of batches (a DataLoader; or dataset: with batch_size: to make one)",
            f"{type(loader).__name__}",
            hint=str(error),
        ) from error
    return loader


def _check_loader_numbers(path: str, spec: Mapping[str, Any]) -> None:
    # DataLoader's own errors do not say which loader; these are the usual slips.
    size = spec.get("batch_size", 1)
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        raise ConfigError(f"{path}.batch_size", "a positive int (or null)", _found(size))
    workers = spec.get("num_workers", 0)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ConfigError(f"{path}.num_workers", "an int >= 0", _found(workers))


def build_callbacks(node: Any) -> list[Callback]:
    """``callbacks:`` — subscribers in order: a name, or ``{subscriber: NAME, arg: ...}``."""
    if node is None:
        return []
    if not isinstance(node, list):
        raise ConfigError(
            "callbacks", "a list of subscribers (names or {subscriber: NAME, ...})", _found(node)
        )
    return [_build_callback(f"callbacks.{i}", item) for i, item in enumerate(node)]


def _build_callback(path: str, item: Any) -> Callback:
    if isinstance(item, str):
        item = {SUBSCRIBER: item}
    if not isinstance(item, Mapping):
        raise ConfigError(
            path, "a subscriber name or {subscriber: NAME, arg: value, ...}", _found(item)
        )
    if SUBSCRIBER in item and TARGET in item:
        raise ConfigError(path, "one of 'subscriber' or '_target_'", "both")
    key = SUBSCRIBER if SUBSCRIBER in item else TARGET
    name = item.get(key)
    if not isinstance(name, str) or not name:
        raise ConfigError(
            _join(path, SUBSCRIBER),
            "a registered subscriber name (see `eventrunner plugins`) or an import path",
            _found(name) if key in item else "nothing",
        )
    try:
        factory = registry.resolve(name)
    except (ValueError, TypeError) as error:
        raise ConfigError(
            _join(path, key),
            "a registered subscriber name or an import path",
            repr(name),
            hint=str(error),
        ) from error
    kwargs = {k: instantiate(v, _join(path, k)) for k, v in item.items() if k != key}
    filters = {}
    try:
        accepted = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        accepted = {}
    takes_any = any(p.kind is p.VAR_KEYWORD for p in accepted.values())
    for filter_key in FILTER_KEYS:
        if filter_key in kwargs and filter_key not in accepted and not takes_any:
            filters[filter_key] = kwargs.pop(filter_key)
    check_call(path, factory, (), kwargs)
    callback = _call(path, factory, (), kwargs)
    if not isinstance(callback, Callback):
        raise ConfigError(
            path, "an eventrunner Callback", f"{name!r} built a {type(callback).__name__}"
        )
    _apply_filters(path, callback, filters)
    return callback


def _apply_filters(path: str, callback: Callback, filters: Mapping[str, Any]) -> None:
    """Set ``order``/``loaders``/``every`` on subscribers whose constructor does not take them."""
    if "order" in filters:
        order = filters["order"]
        if isinstance(order, bool) or not isinstance(order, int):
            raise ConfigError(f"{path}.order", "an int (see eventrunner.Order)", _found(order))
        callback.order = order
    if "loaders" in filters:
        loaders = filters["loaders"]
        if loaders is not None and not isinstance(loaders, str | list):
            raise ConfigError(
                f"{path}.loaders", "a loader name, a list or 'prefix*'", _found(loaders)
            )
        try:
            callback.loader_filter = LoaderFilter(loaders)
        except TypeError as error:
            raise ConfigError(f"{path}.loaders", "loader names", _found(loaders)) from error
    if "every" in filters:
        every = filters["every"]
        if every is not None and (
            isinstance(every, bool) or not isinstance(every, int) or every < 1
        ):
            raise ConfigError(f"{path}.every", "a positive int (or null)", _found(every))
        callback.every = every


def check_train(node: Any, runner: Runner, loader_names: Iterable[str]) -> dict[str, Any]:
    """``train:`` — the keyword arguments of ``runner.train()`` other than the built objects."""
    node = {} if node is None else node
    if not isinstance(node, Mapping):
        raise ConfigError("train", "a mapping of runner.train() arguments", _found(node))
    allowed = [name for name in settings_fields() if name not in _FROM_SECTIONS]
    for key in node:
        if key in _FROM_SECTIONS:
            raise ConfigError(
                f"train.{key}", f"no {key!r} here (it has its own top-level section)", repr(key)
            )
        if key not in allowed:
            raise ConfigError(
                f"train.{key}",
                f"an argument of train() ({', '.join(allowed)})",
                f"unknown key {key!r}",
                hint=_close(str(key), allowed),
            )
    hints = _type_hints(TrainSettings)
    for key, value in node.items():
        if key in hints:
            _check_type(f"train.{key}", value, hints[key])
    epochs = node.get("num_epochs", 1)
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ConfigError("train.num_epochs", "a positive int", _found(epochs))
    prefetch = node.get("prefetch", 2)
    if (
        isinstance(prefetch, bool)
        or not isinstance(prefetch, int)
        or not 0 <= prefetch <= MAX_PREFETCH
    ):
        raise ConfigError(
            "train.prefetch",
            f"an int from 0 to {MAX_PREFETCH} (batches fetched ahead)",
            _found(prefetch),
        )
    names = list(loader_names)
    if "valid_loader" in node and node["valid_loader"] not in names:
        raise ConfigError(
            "train.valid_loader",
            f"one of the loaders ({', '.join(names)})",
            _found(node["valid_loader"]),
        )
    return dict(node)


# ------------------------------------------------------------------ the experiment


@dataclass
class Experiment:
    """A built config: the runner, its ``train()`` arguments, and the config they came from."""

    runner: Runner
    train_kwargs: dict[str, Any]
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def loaders(self) -> dict[str, Any]:
        return self.train_kwargs["loaders"]

    def compose(self) -> EventBus:
        """Compose the run as ``train()`` would, without training; returns the bus."""
        try:
            return self.runner.compose(**self.train_kwargs)
        except (ValueError, TypeError) as error:
            if isinstance(error, ConfigError):
                raise
            raise ConfigError("train", "arguments that compose a run", str(error)) from error

    def describe(self) -> str:
        """A summary of the built objects and the composed pipeline (each event, in order)."""
        bus = self.compose()
        return f"{self.summary()}\n\n{bus.describe()}"

    def summary(self) -> str:
        """Runner, model, data and optimisation in a few lines."""
        kw = self.train_kwargs
        model = kw["model"]
        n_params = sum(p.numel() for p in model.parameters())
        lines = [
            f"runner:    {type(self.runner).__name__}{_runner_keys(self.runner)} "
            f"on {self.runner.device}",
            f"model:     {type(model).__name__} ({n_params:,} parameters)",
        ]
        for name, loader in self.loaders.items():
            lines.append(f"loader:    {name}: {_loader_text(loader)}")
        for key in ("criterion", "optimizer", "scheduler"):
            if kw.get(key) is not None:
                lines.append(f"{key + ':':<10} {_object_text(kw[key])}")
        selection = self.runner.selection
        direction = "min" if selection.minimize else "max"
        lines.append(
            f"train:     {self.runner.num_epochs} epochs, best epoch by "
            f"{selection.loader} {selection.metric} ({direction})"
            + (f", logdir {self.runner.logdir}" if self.runner.logdir else "")
        )
        return "\n".join(lines)

    def run(self) -> Runner:
        """Train (compose errors surface as :class:`ConfigError` before the first batch)."""
        self.compose()  # validate and name config errors; train() composes again, the same way
        self.runner.train(**self.train_kwargs)
        return self.runner


def _runner_keys(runner: Runner) -> str:
    keys = [
        f"{name}={getattr(runner, name)!r}"
        for name in ("input_key", "output_key", "target_key")
        if hasattr(runner, name)
    ]
    return f"({', '.join(keys)})" if keys else ""


def _object_text(obj: Any) -> str:
    if hasattr(obj, "defaults") and isinstance(obj.defaults, dict):  # an optimizer
        shown = {k: v for k, v in obj.defaults.items() if k in ("lr", "momentum", "weight_decay")}
        return f"{type(obj).__name__}({', '.join(f'{k}={v}' for k, v in shown.items())})"
    return type(obj).__name__


def _loader_text(loader: Any) -> str:
    parts = [type(loader).__name__]
    dataset = getattr(loader, "dataset", None)
    if dataset is not None:
        with contextlib.suppress(TypeError):
            parts.append(f"{len(dataset):,} samples")
    with contextlib.suppress(TypeError):
        parts.append(f"{len(loader):,} batches")
    size = getattr(loader, "batch_size", None)
    if size is not None:
        parts.append(f"batch_size {size}")
    return ", ".join(parts)


def build(config: Mapping[str, Any]) -> Experiment:
    """Build every object a (loaded) config describes; nothing trains yet.

    ``train.seed`` (default 42, as in ``train()``) seeds before anything is built, so model
    initialisation is reproducible, and again when training starts.
    """
    check_sections(config)
    train_node = config.get("train") or {}
    seed = train_node.get("seed", 42) if isinstance(train_node, Mapping) else 42
    if seed is not None:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ConfigError("train.seed", "an int (or null)", _found(seed))
        seed_everything(seed)
    runner = build_runner(config.get("runner"))
    _require_target("model", config.get("model"), "model")
    model = instantiate(config["model"], "model")
    _require_built("model", config["model"], model, "a torch.nn.Module", _is_module)
    criterion = instantiate(config.get("criterion"), "criterion")
    _require_built(
        "criterion",
        config.get("criterion"),
        criterion,
        "a callable loss such as torch.nn.CrossEntropyLoss (a mapping with _target_), or null",
        lambda built: built is None or callable(built),
    )
    optimizer = None
    if config.get("optimizer") is not None:
        _require_target("optimizer", config["optimizer"], "optimizer")
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = instantiate(
            config["optimizer"], "optimizer", args=(params,), injected=("params",)
        )
        _require_built(
            "optimizer", config["optimizer"], optimizer, "a torch.optim.Optimizer", _is_optimizer
        )
    scheduler = None
    if config.get("scheduler") is not None:
        if optimizer is None:
            raise ConfigError("optimizer", "an optimizer for the scheduler to drive", "nothing")
        _require_target("scheduler", config["scheduler"], "scheduler")
        scheduler = instantiate(
            config["scheduler"], "scheduler", args=(optimizer,), injected=("optimizer",)
        )
        _require_built(
            "scheduler",
            config["scheduler"],
            scheduler,
            "a learning-rate scheduler (torch.optim.lr_scheduler.*, or anything with step())",
            _is_scheduler,
        )
    if "loaders" not in config:
        raise ConfigError(
            "loaders", "a mapping of loader name to dataset and batch_size", "nothing"
        )
    loaders = build_loaders(config["loaders"])
    callbacks = build_callbacks(config.get("callbacks"))
    train_kwargs = check_train(train_node, runner, loaders)
    train_kwargs.update(
        loaders=loaders,
        model=model,
        criterion=criterion,
        optimizer=optimizer,
        scheduler=scheduler,
        callbacks=callbacks,
    )
    return Experiment(runner=runner, train_kwargs=train_kwargs, config=dict(config))


def run_config(source: str | Path | Mapping[str, Any], overrides: Iterable[str] = ()) -> Runner:
    """Load, build and train a config; returns the trained runner.

    Meanwhile the config file's folder and the working directory are on ``sys.path``
    (:func:`import_paths`), as with ``eventrunner run``.
    """
    with import_paths(source):
        return build(load_config(source, overrides)).run()
