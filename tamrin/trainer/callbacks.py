"""Callbacks: code that runs at named points of the loop and may change its flow.

A callback receives the trainer at each event. It may stop training, force a save or an
evaluation through `trainer.control`, or change the data between epochs. A callback with state
returns it from `state_dict()`; the trainer saves it in every checkpoint and hands it back through
`load_state_dict()` on resume, so a resumed run behaves exactly as an uninterrupted one.
Recipes name callbacks through the registry (`register_callback`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from tamrin.configs import ConfigError, suggest

if TYPE_CHECKING:
    from tamrin.trainer.trainer import Trainer

__all__ = [
    "Callback",
    "CallbackHandler",
    "TrainerControl",
    "EarlyStopping",
    "EVENTS",
    "CALLBACKS",
    "register_callback",
    "registered_callbacks",
    "build_callback",
]

EVENTS = (
    "on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end", "on_step_begin", "on_step_end",
    "on_optimizer_step", "on_evaluate", "on_log", "on_save", "on_load",
)  # fmt: skip


@dataclasses.dataclass
class TrainerControl:
    """Flags a callback sets to change the flow; the trainer clears each one when it acts on it."""

    should_stop: bool = False
    should_save: bool = False
    should_evaluate: bool = False


class Callback:
    """Base class: override the events you need. Each receives the trainer and event details.

    Events (in loop order): on_train_begin, on_epoch_begin, on_step_begin, on_optimizer_step,
    on_step_end, on_log(logs), on_evaluate(metrics), on_epoch_end, on_save(path), on_train_end;
    on_load(path) after a checkpoint was restored. on_epoch_end fires before the epoch's last
    checkpoint is written, so what a callback changes there is in that checkpoint.
    """

    def on_train_begin(self, trainer: Trainer) -> None: ...
    def on_train_end(self, trainer: Trainer) -> None: ...
    def on_epoch_begin(self, trainer: Trainer) -> None: ...
    def on_epoch_end(self, trainer: Trainer) -> None: ...
    def on_step_begin(self, trainer: Trainer) -> None: ...
    def on_step_end(self, trainer: Trainer) -> None: ...
    def on_optimizer_step(self, trainer: Trainer) -> None: ...
    def on_evaluate(self, trainer: Trainer, metrics: dict[str, float]) -> None: ...
    def on_log(self, trainer: Trainer, logs: dict[str, float]) -> None: ...
    def on_save(self, trainer: Trainer, path: str) -> None: ...
    def on_load(self, trainer: Trainer, path: str) -> None: ...

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint must hold to resume this callback exactly (plain values or tensors)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned."""


class CallbackHandler:
    """Calls every callback's handler for an event, in order, and saves/restores their state."""

    def __init__(self, callbacks: Iterable[Callback] = ()) -> None:
        self.callbacks: list[Callback] = list(callbacks)
        for callback in self.callbacks:
            if not isinstance(callback, Callback):
                raise TypeError(f"Callbacks must subclass tamrin.trainer.callbacks.Callback, got {callback!r}.")

    def fire(self, event: str, trainer: Trainer, **kwargs: Any) -> None:
        """Run `event` on every callback."""
        for callback in self.callbacks:
            getattr(callback, event)(trainer, **kwargs)

    def sampler_supplier(self) -> Callback | None:
        """The callback that supplies the training sampler (one with `create_train_sampler`), if any.

        Raises:
            ConfigError: several callbacks supply one (the trainer could not tell which order to use).
        """
        suppliers = [c for c in self.callbacks if callable(getattr(c, "create_train_sampler", None))]
        if len(suppliers) > 1:
            names = ", ".join(type(c).__name__ for c in suppliers)
            raise ConfigError(f"Several callbacks supply the training sampler ({names}); keep one of them.")
        return suppliers[0] if suppliers else None

    def state_dict(self) -> dict[str, dict[str, Any]]:
        """Each callback's state, keyed by position and class so a reordered list is caught."""
        return {self._key(i, c): c.state_dict() for i, c in enumerate(self.callbacks)}

    def load_state_dict(self, state: dict[str, dict[str, Any]]) -> None:
        """Restore each callback's state; a checkpoint of other callbacks is an error."""
        expected = [self._key(i, c) for i, c in enumerate(self.callbacks)]
        if sorted(state) != sorted(expected):
            raise ValueError(
                f"The checkpoint holds state for callbacks {sorted(state)}, but this trainer has "
                f"{expected}. Resume with the same callbacks, in the same order."
            )
        for index, callback in enumerate(self.callbacks):
            callback.load_state_dict(state[self._key(index, callback)])

    @staticmethod
    def _key(index: int, callback: Callback) -> str:
        return f"{index}:{type(callback).__name__}"


CALLBACKS: dict[str, type[Callback]] = {}


def register_callback(name: str) -> Callable[[type[Callback]], type[Callback]]:
    """Register a Callback class under `name` so that recipes can name it in YAML."""

    def decorator(cls: type[Callback]) -> type[Callback]:
        if name in CALLBACKS and CALLBACKS[name] is not cls:
            raise ValueError(f"A callback named {name!r} is already registered ({CALLBACKS[name].__name__}).")
        CALLBACKS[name] = cls
        return cls

    return decorator


_BUILTIN_CALLBACK_MODULES = ("tamrin.trainer.monitors", "tamrin.trainer.curriculum_callbacks")


def registered_callbacks() -> dict[str, type[Callback]]:
    """Every registered callback, the built-in modules (monitors, curriculum) included."""
    import importlib

    for module in _BUILTIN_CALLBACK_MODULES:
        importlib.import_module(module)
    return CALLBACKS


def build_callback(name: str, **kwargs: Any) -> Callback:
    """Build the registered callback `name` with `kwargs` (a recipe's `callbacks` entry)."""
    if name not in registered_callbacks():
        raise ConfigError(
            f"Unknown callback {name!r}.{suggest(name, CALLBACKS)} "
            f"Registered callbacks: {', '.join(sorted(CALLBACKS))}."
        )
    try:
        return CALLBACKS[name](**kwargs)
    except TypeError as err:
        raise ConfigError(f"Callback {name!r} does not take {kwargs}: {err}") from err


@register_callback("early_stopping")
class EarlyStopping(Callback):
    """Stop when `metric_for_best_model` has not improved by `min_delta` for `patience` evaluations.

    Args:
        patience: evaluations without improvement before training stops.
        min_delta: the smallest change that counts as an improvement.
        metric: the logged metric to watch (default: the trainer's metric_for_best_model).
    """

    def __init__(self, patience: int = 3, min_delta: float = 0.0, metric: str | None = None) -> None:
        if patience < 1:
            raise ConfigError(f"`patience={patience!r}` must be >= 1.")
        if min_delta < 0:
            raise ConfigError(f"`min_delta={min_delta!r}` must be >= 0.")
        self.patience = patience
        self.min_delta = min_delta
        self.metric = metric
        self.best: float | None = None
        self.evaluations_without_improvement = 0

    def on_evaluate(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        name = self.metric or trainer.config.metric_for_best_model
        value = metrics[name]
        maximize = trainer.metrics_handler.objective(name) == "maximize"
        improved = self.best is None or (
            value > self.best + self.min_delta if maximize else value < self.best - self.min_delta
        )
        if improved and not math.isnan(value):
            self.best = value
            self.evaluations_without_improvement = 0
        else:
            self.evaluations_without_improvement += 1
        if self.evaluations_without_improvement >= self.patience:
            trainer.control.should_stop = True

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "evaluations_without_improvement": self.evaluations_without_improvement}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = state["best"]
        self.evaluations_without_improvement = state["evaluations_without_improvement"]
