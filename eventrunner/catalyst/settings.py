"""Catalyst 22.04's ``catalyst.settings``: which optional packages this environment has.

Training scripts read it to skip the steps whose packages are missing
(``if SETTINGS.onnx_required: utils.onnx_export(...)``). Each ``*_required`` flag follows
Catalyst's rule: ``None`` means "use the package if it is installed", ``True`` insists on it
(a clear error when it is missing), ``False`` turns it off. On purpose different: Catalyst
also merges ``[catalyst]`` sections of ``setup.cfg``/``tox.ini``/``~/.catalyst``; here only
the constructor arguments and Catalyst's ``CATALYST_*`` environment variables count, and the
logging flags are informational (eventrunner's loggers are chosen with ``loggers=``).
"""

from __future__ import annotations

import importlib.util
import os

import torch

__all__ = ["IS_CUDA_AVAILABLE", "NUM_CUDA_DEVICES", "SETTINGS", "Settings"]

IS_CUDA_AVAILABLE: bool = torch.cuda.is_available()
NUM_CUDA_DEVICES: int = torch.cuda.device_count()

# flag -> the modules it needs (all of them) and what to install; Catalyst 22.04's groups.
_PACKAGES: dict[str, tuple[tuple[str, ...], str]] = {
    "cv": (
        ("cv2", "imageio", "skimage", "torchvision"),
        "opencv-python imageio scikit-image torchvision",
    ),
    "ml": (("matplotlib", "pandas", "scipy", "sklearn"), "matplotlib pandas scipy scikit-learn"),
    "optuna": (("optuna",), "optuna"),
    "amp": (("torch.amp",), "torch"),
    "apex": (("apex",), "apex"),
    "xla": (("torch_xla",), "torch_xla"),
    "fairscale": (("fairscale",), "fairscale"),
    "deepspeed": (("deepspeed",), "deepspeed"),
    "onnx": (("onnx", "onnxruntime"), "onnx onnxruntime"),
    "pruning": (("torch.nn.utils.prune",), "torch"),
    "quantization": (("torch.ao.quantization",), "torch"),
    "comet": (("comet_ml",), "comet_ml"),
    "mlflow": (("mlflow",), "mlflow"),
    "neptune": (("neptune",), "neptune-client"),
    "wandb": (("wandb",), "wandb"),
    "yaml": (("yaml",), "PyYAML"),
}


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package that is missing or broken
        return False


def _env_flag(name: str, default: str) -> bool:
    return os.environ.get(name, default) == "1"


class Settings:
    """The environment's optional packages (``<group>_required``) and Catalyst's extras flags."""

    def __init__(
        self,
        *,
        log_batch_metrics: bool | None = None,
        log_epoch_metrics: bool | None = None,
        compute_per_class_metrics: bool | None = None,
        use_lz4: bool | None = None,
        use_pyarrow: bool | None = None,
        use_libjpeg_turbo: bool | None = None,
        **required: bool | None,
    ) -> None:
        unknown = sorted(set(required) - {f"{group}_required" for group in _PACKAGES})
        if unknown:
            raise TypeError(
                f"Settings: unknown flags {unknown}; known: {sorted(_PACKAGES)} + '_required'"
            )
        for group, (modules, install) in _PACKAGES.items():
            wanted = required.get(f"{group}_required")
            available = all(_installed(module) for module in modules)
            if wanted and not available:
                raise ImportError(
                    f"Settings({group}_required=True): {group} needs `pip install {install}`"
                )
            setattr(self, f"{group}_required", available if wanted is None else bool(wanted))
        self.log_batch_metrics = log_batch_metrics or _env_flag("CATALYST_LOG_BATCH_METRICS", "0")
        self.log_epoch_metrics = log_epoch_metrics or _env_flag("CATALYST_LOG_EPOCH_METRICS", "1")
        self.compute_per_class_metrics = compute_per_class_metrics or _env_flag(
            "CATALYST_COMPUTE_PER_CLASS_METRICS", "0"
        )
        self.use_lz4 = use_lz4 or _env_flag("CATALYST_USE_LZ4", "0")
        self.use_pyarrow = use_pyarrow or _env_flag("CATALYST_USE_PYARROW", "0")
        self.use_libjpeg_turbo = use_libjpeg_turbo or _env_flag("CATALYST_USE_LIBJPEG_TURBO", "0")
        self.IS_CUDA_AVAILABLE = IS_CUDA_AVAILABLE
        self.NUM_CUDA_DEVICES = NUM_CUDA_DEVICES

    def __repr__(self) -> str:
        flags = ", ".join(f"{key}={value}" for key, value in vars(self).items())
        return f"Settings({flags})"


SETTINGS = Settings()
