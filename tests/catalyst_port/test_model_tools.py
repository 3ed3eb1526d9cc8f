"""``utils.prune_model``/``quantize_model``/``trace_model``/``onnx_export`` and ``settings``
against catalyst 22.4.

Reference values computed by catalyst 22.4 (``benchmarks/peers/.venv``, torch 2.13.0 CPU),
calling ``catalyst.utils.<name>`` on the model and input built by ``_net()`` and ``_X``.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from eventrunner import utils
from eventrunner.catalyst.settings import IS_CUDA_AVAILABLE, NUM_CUDA_DEVICES, SETTINGS, Settings

_X = torch.linspace(-1, 1, 8).reshape(2, 4)


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))


def _close(actual: torch.Tensor, expected: list) -> bool:
    return torch.allclose(actual, torch.tensor(expected), atol=1e-6)


def test_prune_model_unstructured_as_catalyst():
    model = _net()
    utils.prune_model(model, "l1_unstructured", amount=0.5)
    # computed by catalyst 22.4: prune_model(_net(), "l1_unstructured", amount=0.5)
    assert model[0].weight_mask.tolist() == [
        [0.0, 1.0, 1.0, 1.0],
        [1.0, 0.0, 0.0, 1.0],
        [0.0, 0.0, 1.0, 0.0],
    ]
    assert model[2].weight_mask.tolist() == [[0.0, 0.0, 1.0], [1.0, 1.0, 0.0]]
    assert _close(
        model(_X),
        [[0.47942468523979187, -0.11881878226995468], [0.47942468523979187, -0.12832041084766388]],
    )

    model = _net()
    utils.prune_model(model, "l1_unstructured", amount=2, keys_to_prune=["weight", "bias"])
    # computed by catalyst 22.4: an int amount prunes that many entries of each tensor
    assert model[0].bias_mask.tolist() == [1.0, 0.0, 0.0]
    assert model[2].bias_mask.tolist() == [0.0, 0.0]


def test_prune_model_structured_and_remove_as_catalyst():
    model = _net()
    utils.prune_model(model, "ln_structured", amount=1, dim=0, l_norm=2, layers_to_prune=["0"])
    # computed by catalyst 22.4: the row of smallest L2 norm of layer "0" only
    assert model[0].weight_mask.tolist() == [[1.0] * 4, [1.0] * 4, [0.0] * 4]
    assert not hasattr(model[2], "weight_mask")
    utils.remove_reparametrization(model, keys_to_prune=["weight"])
    assert [name for name, _ in model.named_parameters()] == [
        "0.bias",
        "0.weight",
        "2.weight",
        "2.bias",
    ]
    assert _close(
        model(_X),
        [[0.47942468523979187, -0.11881878226995468], [0.4995512366294861, -0.14098821580410004]],
    )


def test_prune_model_bad_input_is_named():
    with pytest.raises(ValueError, match=r"\['nope'\]"):
        utils.prune_model(_net(), "l1_unstructured", amount=0.5, keys_to_prune=["nope"])
    with pytest.raises(ValueError, match="structured: give dim="):
        utils.prune_model(_net(), "random_structured", amount=0.5)
    with pytest.raises(ValueError, match="'l2' is not one of"):
        utils.get_pruning_fn("l2")
    with pytest.raises(AttributeError, match="layer '1' has no tensor 'weight'"):
        utils.prune_model(_net(), "l1_unstructured", amount=0.5, layers_to_prune=["1"])


def test_quantize_model_as_catalyst():
    quantized = utils.quantize_model(_net())
    assert type(quantized[0]).__name__ == "Linear" and type(quantized[0]) is not nn.Linear
    # computed by catalyst 22.4: quantize_model(_net())(_X)
    assert _close(
        quantized(_X),
        [[0.47942468523979187, -0.11881878226995468], [0.500395655632019, -0.1420568823814392]],
    )
    with pytest.raises(ValueError, match="dtype 'int4'"):
        utils.quantize_model(_net(), dtype="int4")


def test_trace_model_runs_the_named_method():
    class TwoHeads(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(4, 2)

        def forward(self, x):
            return self.lin(x)

        def doubled(self, x):
            return 2 * self.lin(x)

    model = TwoHeads()
    assert torch.equal(utils.trace_model(model, _X)(_X), model(_X))
    assert torch.equal(
        utils.trace_model(nn.DataParallel(model), _X, method_name="doubled")(_X), 2 * model(_X)
    )
    with pytest.raises(AttributeError, match="no method 'tripled'"):
        utils.trace_model(model, _X, method_name="tripled")


def test_onnx_export_writes_a_model_onnx_reads(tmp_path):
    import onnx  # the onnx extra, part of dev

    path = tmp_path / "model.onnx"
    loaded = utils.onnx_export(_net(), _X, str(path), input_names=["x"], return_model=True)
    assert path.stat().st_size > 0
    assert isinstance(loaded, onnx.ModelProto)
    assert [node.name for node in loaded.graph.input] == ["x"]
    assert loaded.opset_import[0].version == 9  # Catalyst's default opset


def test_settings_flags_follow_what_is_installed(monkeypatch):
    assert SETTINGS.pruning_required and SETTINGS.quantization_required and SETTINGS.amp_required
    assert SETTINGS.IS_CUDA_AVAILABLE is IS_CUDA_AVAILABLE is torch.cuda.is_available()
    assert torch.cuda.device_count() == NUM_CUDA_DEVICES
    assert Settings(pruning_required=False).pruning_required is False
    with pytest.raises(ImportError, match=r"deepspeed_required=True.*pip install deepspeed"):
        Settings(deepspeed_required=True)
    with pytest.raises(TypeError, match="unknown flags \\['gpu_required'\\]"):
        Settings(gpu_required=True)
    # Catalyst's defaults and environment variables for the extras flags
    assert (SETTINGS.log_batch_metrics, SETTINGS.log_epoch_metrics) == (False, True)
    monkeypatch.setenv("CATALYST_COMPUTE_PER_CLASS_METRICS", "1")
    assert Settings().compute_per_class_metrics is True
