"""Catalyst 22.04's ``IRunner``: a run described by ``get_*`` methods, started with ``run()``.

A subclass says what to train by overriding ``get_loaders`` (required), ``get_model``,
``get_criterion``, ``get_optimizer(model)``, ``get_scheduler(optimizer)``, ``get_callbacks``,
``get_loggers``, ``get_engine`` and the ``num_epochs``/``seed``/``hparams`` properties, and
writes ``handle_batch`` as for :class:`~eventrunner.Runner`; ``run()`` calls them in Catalyst's
order and trains. As in Catalyst, only the callbacks it returns run, besides eventrunner's
defaults (metric means, selection, and backward/step when ``get_optimizer`` gives one
optimizer and no callback of that kind is returned).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from eventrunner.events import Callback
from eventrunner.runner import Runner


class IRunnerError(Exception):
    """Catalyst's error for a runner that is used wrongly."""


class IRunner(Runner):
    """Override the ``get_*`` methods and ``handle_batch``, then call :meth:`run`.

    Example::

        class MyRunner(IRunner):
            @property
            def num_epochs(self):
                return 3

            def get_loaders(self):
                return {"train": train_loader, "valid": valid_loader}

            def get_model(self):
                return nn.Linear(10, 2)

            def get_optimizer(self, model):
                return torch.optim.Adam(model.parameters())

            def handle_batch(self, batch):
                x, y = batch
                self.batch_metrics["loss"] = F.cross_entropy(self.model(x), y)

        MyRunner().run()
    """

    def __init__(self, model: nn.Module | None = None, engine: Any = None, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        self._num_epochs = 1  # Catalyst's default; a subclass may make num_epochs a property
        self._engine = engine
        self._logdir: str | None = None

    @property
    def seed(self) -> int:
        """The run's seed (Catalyst's default, 42)."""
        return 42

    @property
    def hparams(self) -> dict[str, Any]:
        """Hyperparameters the loggers record."""
        return {}

    def get_engine(self) -> Any:
        return self._engine

    def get_loggers(self) -> Mapping[str, Any]:
        return {}

    def get_loaders(self) -> Mapping[str, Any]:
        raise NotImplementedError(
            f"{type(self).__name__}.get_loaders() is not written: return a dict of loaders "
            '({"train": ..., "valid": ...})'
        )

    def get_model(self) -> nn.Module | Mapping[str, nn.Module]:
        if self.model is None:
            raise NotImplementedError(
                f"{type(self).__name__}.get_model() is not written and the runner holds no "
                "model: return the model to train"
            )
        return self.model

    def get_criterion(self) -> Any:
        return None

    def get_optimizer(self, model: Any) -> Any:
        return None

    def get_scheduler(self, optimizer: Any) -> Any:
        return None

    def get_callbacks(self) -> Mapping[str, Callback] | list[Callback]:
        return {}

    def run(self) -> None:
        """Build the run from the ``get_*`` methods (in Catalyst's order) and train it."""
        engine = self.get_engine()
        loggers = self.get_loggers()
        loaders = self.get_loaders()
        model = self.get_model()
        criterion = self.get_criterion()
        optimizer = self.get_optimizer(model)
        scheduler = self.get_scheduler(optimizer)
        callbacks = self.get_callbacks()
        hparams = self.hparams
        self.train(
            loaders=loaders,
            model=model,
            engine=engine,
            criterion=criterion,
            optimizer=optimizer,
            scheduler=scheduler,
            callbacks=callbacks or None,
            loggers=loggers,
            hparams=hparams or None,
            num_epochs=self.num_epochs,
            seed=self.seed,
        )
