"""Evaluation and prediction with a trained runner: one ``valid`` pass, or outputs per batch.

Mixed into :class:`~eventrunner.runner.Runner` (Catalyst's ``evaluate_loader``,
``predict_batch`` and ``predict_loader``), apart from the training loop.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from eventrunner import components, precision
from eventrunner.catalyst.engines import engine_request
from eventrunner.checkpoint.state import load_weights
from eventrunner.events import Callback
from eventrunner.rng import seed_everything

if TYPE_CHECKING:
    from eventrunner.runner import Runner


class _NoSelection(Callback):
    """Stands in for the default model selection: one evaluation pass selects no epoch."""

    kind = "selection"
    writes = ()


class InferenceMixin:
    """``evaluate_loader``, ``predict_batch``, ``predict_loader`` for :class:`Runner`."""

    def evaluate_loader(
        self: Runner,
        loader: Iterable[Any],
        callbacks: Sequence[Callback] | Mapping[str, Callback] | None = None,
        model: nn.Module | None = None,
        engine: Any = None,
        *,
        seed: int | None = 42,
        verbose: bool = False,
    ) -> dict[str, Any]:
        """Run one ``valid`` pass over ``loader`` and return its loader metrics.

        ``engine`` (Catalyst's ``dl.CPUEngine()``, ...) picks the device as in ``train()``.
        """
        # Evaluating must not step the LR scheduler (the default one steps at epoch end).
        scheduler, self.scheduler = self.scheduler, None
        given = list(callbacks.values()) if isinstance(callbacks, Mapping) else callbacks or []
        try:
            self.train(
                model=model,
                engine=engine,
                loaders={"valid": loader},
                callbacks=[_NoSelection(), *given],
                num_epochs=1,
                seed=seed,
                verbose=verbose,
                console=False,
            )
        finally:
            self.scheduler = scheduler
        return dict(self.loader_metrics)

    def predict_batch(self: Runner, batch: Any) -> Any:
        """Forward one batch as the loader yields it and return ``self.output``.

        The batch goes through :meth:`to_dict_batch`, is moved to the device, and
        :meth:`handle_batch` runs without grad (under autocast with ``amp``). The model is
        used in the mode it is in: call ``runner.model.eval()`` first, as
        :meth:`predict_loader` does.
        """
        return self._predict_prepared(self._prepare_batch(batch))

    def _predict_prepared(self: Runner, batch: Any) -> Any:
        with torch.no_grad(), precision.autocast(self):
            self.batch = batch
            self.output = None
            self.batch_metrics = {}
            self.handle_batch(batch)
        return self.output

    def predict_loader(
        self: Runner,
        loader: Iterable[Any] | None = None,
        model: nn.Module | None = None,
        engine: Any = None,
        *,
        seed: int | None = 42,
        resume: str | Path | None = None,
        cpu: bool = False,
        fp16: bool = False,
        prefetch: int = 2,
    ) -> Iterator[Any]:
        """Yield the prediction of each batch of ``loader``, model in eval mode, no grad.

        The prediction is ``self.output`` after :meth:`handle_batch`, or what the subclass's
        own :meth:`predict_batch` returns (Catalyst's way). Batches are converted
        (:meth:`to_dict_batch`, once) and moved to the device ahead of the forward by the
        prefetcher; no subscriber runs. ``resume`` loads the weights of a checkpoint first;
        ``engine``/``cpu``/``fp16`` and ``seed`` are Catalyst's. Example::

            for output in runner.predict_loader(test_loader):
                predictions.append(output["logits"].argmax(dim=1).cpu())
        """
        if loader is None:
            raise TypeError("predict_loader() needs a loader: pass loader=...")
        if model is not None:
            self.model = components.as_model(model)
        if self.model is None:
            raise ValueError("predict_loader() needs a model: pass model=...")
        device, amp, _ = engine_request(engine, cpu, fp16)
        if device is not None:
            self.device = device
        if engine is not None:
            self.engine = engine.bind(self)
        self.amp_dtype = precision.resolve_amp(amp, self.device)
        if resume is not None:
            load_weights(self.model, resume)
        if seed is not None:
            seed_everything(seed)
        self.model.to(self.device).eval()
        self._set_loader("infer", loader)
        own_predict = type(self).predict_batch is not InferenceMixin.predict_batch
        with self._prefetcher.batches(
            loader, self.to_dict_batch, prefetch, self.device, "infer"
        ) as batches:
            for batch in batches:  # already converted and on the device
                self.loader_batch_step += 1
                if own_predict:
                    # Computed, then yielded: the caller's code runs outside no_grad.
                    with torch.no_grad(), precision.autocast(self):
                        prediction = self.predict_batch(batch)
                    yield prediction
                else:
                    yield self._predict_prepared(batch)
