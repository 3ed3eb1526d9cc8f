"""``SupervisedRunner``: (input, target) tuples to dicts, model called on named keys."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from eventrunner import components
from eventrunner.catalyst.criterion import CriterionCallback
from eventrunner.events import Callback
from eventrunner.runner import Runner

KeyOrKeys = str | Sequence[str] | None


def _keys(value: KeyOrKeys, name: str) -> str | list[str] | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, Sequence) and value and all(isinstance(k, str) for k in value):
        return list(value)
    raise TypeError(f"{name} must be a key, a list of keys or None, got {value!r}")


class SupervisedRunner(Runner):
    """A runner for ``model(features) -> logits`` and ``criterion(logits, targets)``.

    Tuple/list batches of two elements become ``{input_key: x, target_key: y}``. A list
    ``input_key`` calls ``model(**{k: batch[k]})``; ``None`` calls ``model(**batch)``. A list
    ``output_key`` names the elements of a returned tuple; ``None`` expects a dict.
    With a criterion, ``batch_metrics[loss_key]`` holds ``criterion(output[k], batch[target_key])``,
    computed by a default ``CriterionCallback`` at batch end (as in Catalyst, so a subclass's
    own ``handle_batch`` still gets its loss); a ``CriterionCallback`` of yours replaces it.

    Example::

        runner = SupervisedRunner(input_key="features", output_key="logits")
        runner.train(model=model, criterion=nn.CrossEntropyLoss(), optimizer=optimizer,
                     loaders={"train": train_loader, "valid": valid_loader})
    """

    def __init__(
        self,
        model: nn.Module | None = None,
        *,
        input_key: KeyOrKeys = "features",
        output_key: KeyOrKeys = "logits",
        target_key: str = "targets",
        loss_key: str = "loss",
        criterion: Any = None,
        optimizer: torch.optim.Optimizer | None = None,
        scheduler: Any = None,
        device: str | torch.device | None = None,
    ) -> None:
        super().__init__(
            model, criterion=criterion, optimizer=optimizer, scheduler=scheduler, device=device
        )
        self.input_key = _keys(input_key, "input_key")
        self.output_key = _keys(output_key, "output_key")
        self.target_key = target_key
        self.loss_key = loss_key
        if isinstance(self.output_key, list):
            self._loss_input_key = self.output_key[0]
        else:
            self._loss_input_key = self.output_key or "logits"

    def to_dict_batch(self, batch: Any) -> dict[str, Any]:
        if type(batch) is dict:
            return batch
        if isinstance(batch, Mapping):
            return dict(batch)
        if isinstance(batch, tuple | list):
            if not isinstance(self.input_key, str):
                raise ValueError(
                    f"loader {self.loader_key!r} yielded a {type(batch).__name__} batch, but "
                    f"input_key={self.input_key!r} needs dict batches with those keys"
                )
            if len(batch) != 2:
                raise ValueError(
                    f"loader {self.loader_key!r} yielded a {type(batch).__name__} of "
                    f"{len(batch)} elements; SupervisedRunner turns (input, target) pairs "
                    "into dicts: expected 2 elements"
                )
            return {self.input_key: batch[0], self.target_key: batch[1]}
        return super().to_dict_batch(batch)

    def forward(self, batch: Mapping[str, Any], **kwargs: Any) -> dict[str, Any]:
        """Call the model on the batch's input key(s) and name its output(s)."""
        if self.input_key is None:
            result = self.model(**batch, **kwargs)
        elif isinstance(self.input_key, str):
            result = self.model(batch[self.input_key], **kwargs)
        else:
            result = self.model(**{key: batch[key] for key in self.input_key}, **kwargs)
        return self._name_output(result)

    def _name_output(self, result: Any) -> dict[str, Any]:
        if isinstance(self.output_key, str):
            return {self.output_key: result}
        if self.output_key is None:
            if not isinstance(result, Mapping):
                raise TypeError(
                    "output_key=None expects the model to return a dict, "
                    f"got {type(result).__name__}"
                )
            return dict(result)
        if not isinstance(result, tuple | list) or len(result) != len(self.output_key):
            got = len(result) if isinstance(result, tuple | list) else type(result).__name__
            raise ValueError(
                f"output_key={self.output_key} expects a tuple of {len(self.output_key)} "
                f"outputs from the model, got {got}"
            )
        return dict(zip(self.output_key, result, strict=True))

    # Catalyst's SupervisedRunner keeps its keys as _input_key, ...; subclasses read them.
    @property
    def _input_key(self) -> str | list[str] | None:
        return self.input_key

    @property
    def _output_key(self) -> str | list[str] | None:
        return self.output_key

    @property
    def _target_key(self) -> str:
        return self.target_key

    @property
    def _loss_key(self) -> str:
        return self.loss_key

    def default_callbacks(self, settings: Any) -> list[Callback]:
        """The loss as Catalyst computes it: a ``CriterionCallback`` (kind "criterion") on the
        first output key and the target, unless the run has one of its own; none for a dict
        of criteria, which only such callbacks use (``criterion_key=``)."""
        if self.criterion is None or components.is_dict(self.criterion):
            return []
        return [CriterionCallback(self._loss_input_key, self.target_key, self.loss_key)]

    def handle_batch(self, batch: dict[str, Any]) -> None:
        output = self.forward(batch)
        # Catalyst 22's runner.batch holds the outputs too (runner.batch["logits"]).
        self.output = output
        self.batch = {**batch, **output}

    def predict_batch(self, batch: Any) -> dict[str, Any]:
        with torch.no_grad():
            batch = self._prepare_batch(batch)
            self.batch = batch
            self.output = self.forward(batch)
        return self.output
