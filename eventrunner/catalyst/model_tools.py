"""Catalyst 22.04's model post-processing helpers: tracing, quantization, pruning, ONNX export.

Thin wrappers over ``torch.jit.trace``, ``torch.ao.quantization.quantize_dynamic``,
``torch.nn.utils.prune`` and ``torch.onnx.export``, with Catalyst's names, arguments and
defaults. Each takes a model wrapped in DDP/DataParallel as well as a plain one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import nn
from torch.nn.utils import prune

from eventrunner.distributed import unwrap_model

__all__ = [
    "get_pruning_fn",
    "onnx_export",
    "prune_model",
    "quantize_model",
    "remove_reparametrization",
    "trace_model",
]


class _MethodAsForward(nn.Module):
    """Exposes one method of ``model`` as ``forward``, for tracers that only call ``forward``."""

    def __init__(self, model: nn.Module, method_name: str) -> None:
        super().__init__()
        if not callable(getattr(model, method_name, None)):
            raise AttributeError(f"{type(model).__name__} has no method {method_name!r} to export")
        self.model = model
        self.method_name = method_name

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return getattr(self.model, self.method_name)(*args, **kwargs)


def trace_model(
    model: nn.Module, batch: torch.Tensor | tuple[torch.Tensor, ...], method_name: str = "forward"
) -> torch.jit.ScriptModule:
    """``torch.jit.trace`` of ``model.<method_name>`` on the example ``batch``."""
    return torch.jit.trace(_MethodAsForward(unwrap_model(model), method_name), example_inputs=batch)


_QUANTIZED_DTYPES = {"qint8": torch.qint8, "quint8": torch.quint8}


def quantize_model(
    model: nn.Module, qconfig_spec: Mapping | set | None = None, dtype: str | torch.dtype = "qint8"
) -> nn.Module:
    """A dynamically quantized copy of ``model`` on the CPU (``quantize_dynamic``)."""
    if isinstance(dtype, str):
        if dtype not in _QUANTIZED_DTYPES:
            raise ValueError(
                f"quantize_model: dtype {dtype!r} is not one of {sorted(_QUANTIZED_DTYPES)}"
            )
        dtype = _QUANTIZED_DTYPES[dtype]
    net = unwrap_model(model).cpu()
    try:
        return torch.ao.quantization.quantize_dynamic(net, qconfig_spec=qconfig_spec, dtype=dtype)
    except RuntimeError:
        # Catalyst's fallback: builds without the default (fbgemm) kernels have qnnpack's.
        torch.backends.quantized.engine = "qnnpack"
        return torch.ao.quantization.quantize_dynamic(net, qconfig_spec=qconfig_spec, dtype=dtype)


_PRUNING_FNS: dict[str, Callable[..., Any]] = {
    "l1_unstructured": prune.l1_unstructured,
    "random_unstructured": prune.random_unstructured,
    "ln_structured": prune.ln_structured,
    "random_structured": prune.random_structured,
}


def get_pruning_fn(
    pruning_fn: str | Callable[..., Any], dim: int | None = None, l_norm: int | None = None
) -> Callable[..., Any]:
    """A ``fn(module, name, amount)`` from a ``torch.nn.utils.prune`` name or a callable.

    Structured methods need ``dim`` (and ``ln_structured`` also ``l_norm``)."""
    if not isinstance(pruning_fn, str):
        return pruning_fn
    if pruning_fn not in _PRUNING_FNS:
        raise ValueError(f"pruning_fn {pruning_fn!r} is not one of {sorted(_PRUNING_FNS)}")
    method = _PRUNING_FNS[pruning_fn]
    if pruning_fn.endswith("_unstructured"):
        return method
    if dim is None:
        raise ValueError(f"pruning_fn {pruning_fn!r} is structured: give dim=")
    if pruning_fn == "ln_structured":
        if l_norm is None:
            raise ValueError("pruning_fn 'ln_structured' needs l_norm=")
        return lambda module, name, amount: method(module, name, amount, n=l_norm, dim=dim)
    return lambda module, name, amount: method(module, name, amount, dim=dim)


def prune_model(
    model: nn.Module,
    pruning_fn: str | Callable[..., Any],
    amount: float | int,
    keys_to_prune: list[str] | None = None,
    layers_to_prune: list[str] | None = None,
    dim: int | None = None,
    l_norm: int | None = None,
) -> None:
    """Prunes ``keys_to_prune`` (default ``["weight"]``) of every module that has them, in place.

    With ``layers_to_prune``, only the modules of those names, and each must have the keys."""
    fn = get_pruning_fn(pruning_fn, dim=dim, l_norm=l_norm)
    keys = keys_to_prune or ["weight"]
    pruned = 0
    for name, module in unwrap_model(model).named_modules():
        if layers_to_prune is not None and name not in layers_to_prune:
            continue
        for key in keys:
            if not isinstance(getattr(module, key, None), torch.Tensor):
                if layers_to_prune is not None:
                    raise AttributeError(
                        f"prune_model: layer {name!r} has no tensor {key!r} to prune"
                    )
                break  # as Catalyst: a module without the key is skipped from that key on
            fn(module, name=key, amount=amount)
        else:
            pruned += 1
    if pruned == 0:
        raise ValueError(f"prune_model: no module of the model has {keys}")


def remove_reparametrization(
    model: nn.Module, keys_to_prune: list[str], layers_to_prune: list[str] | None = None
) -> None:
    """Makes pruning permanent: drops the masks and hooks ``prune_model`` added, in place."""
    for name, module in unwrap_model(model).named_modules():
        if layers_to_prune is not None and name not in layers_to_prune:
            continue
        for key in keys_to_prune:
            if prune.is_pruned(module) and hasattr(module, f"{key}_orig"):
                prune.remove(module, key)


def onnx_export(
    model: nn.Module,
    batch: torch.Tensor | tuple[torch.Tensor, ...],
    file: str,
    method_name: str = "forward",
    input_names: Iterable[str] | None = None,
    output_names: list[str] | None = None,
    dynamic_axes: Mapping[str, Any] | None = None,
    opset_version: int = 9,
    do_constant_folding: bool = False,
    return_model: bool = False,
    verbose: bool = False,
) -> Any:
    """Writes ``model.<method_name>`` traced on ``batch`` to ``file`` as ONNX; the onnx model with
    ``return_model``.

    Uses torch's TorchScript-based exporter (``dynamo=False``), the one Catalyst's arguments
    (``opset_version=9``, ``dynamic_axes``) were made for; it needs the ``onnx`` package
    (``pip install 'eventrunner[onnx]'``)."""
    try:
        import onnx
    except ImportError as error:
        raise ImportError(
            "utils.onnx_export needs the onnx package: pip install 'eventrunner[onnx]'"
        ) from error
    net = unwrap_model(model)
    if method_name != "forward":
        net = _MethodAsForward(net, method_name)
    torch.onnx.export(
        net,
        batch,
        file,
        verbose=verbose,
        input_names=list(input_names) if input_names is not None else None,
        output_names=output_names,
        dynamic_axes=dict(dynamic_axes) if dynamic_axes is not None else None,
        do_constant_folding=do_constant_folding,
        opset_version=opset_version,
        dynamo=False,
    )
    return onnx.load(file) if return_model else None
