"""CallbackHandler: calls the callbacks that implement an event, in order; saves and restores their state."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Any

from tamrin.configs import ConfigError
from tamrin.trainer.callbacks.base import EVENTS, Callback, TrainerView

__all__ = ["CallbackHandler"]


def _implements(callback: Callback, event: str) -> bool:
    """Whether `callback` overrides `event` (the base class's empty handlers are never called)."""
    return getattr(type(callback), event) is not getattr(Callback, event)


def _takes(handler: Callable[..., Any], name: str) -> bool:
    """Whether `handler` accepts the keyword `name` (explicitly or through **kwargs)."""
    parameters = inspect.signature(handler).parameters.values()
    return any(p.name == name or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


class CallbackHandler:
    """The trainer's callbacks. `fire` calls, per event, only the callbacks that implement it.

    The per-event handler lists are built when the list changes (`add` / `remove`), not at each
    event: a step with callbacks that do not use its events costs no Python calls (~1 µs an event).
    """

    def __init__(self, callbacks: Iterable[Callback] = ()) -> None:
        self.callbacks: list[Callback] = []
        self._handlers: dict[str, list[Callable[..., Any]]] = {}
        self._loss_takers: list[Callable[..., Any]] = []
        for callback in callbacks:
            self._check(callback)
            self.callbacks.append(callback)
        self._index()

    # -- the list ----------------------------------------------------------------------------------
    def add(self, callback: Callback) -> None:
        """Append `callback` (it runs after the others)."""
        self._check(callback)
        self.callbacks.append(callback)
        self._index()

    def remove(self, callback: Callback | type[Callback]) -> Callback:
        """Remove `callback` (an instance, or the first instance of a class); returns it.

        Raises:
            ValueError: no such callback (the message lists the trainer's callbacks).
        """
        for index, candidate in enumerate(self.callbacks):
            if candidate is callback or (isinstance(callback, type) and isinstance(candidate, callback)):
                del self.callbacks[index]
                self._index()
                return candidate
        names = ", ".join(type(c).__name__ for c in self.callbacks) or "(none)"
        raise ValueError(f"{callback!r} is not one of the trainer's callbacks: {names}.")

    @staticmethod
    def _check(callback: Any) -> None:
        if not isinstance(callback, Callback):
            raise TypeError(f"Callbacks must subclass tamrin.trainer.callbacks.Callback, got {callback!r}.")

    def _index(self) -> None:
        self._handlers = {
            event: [getattr(c, event) for c in self.callbacks if _implements(c, event)] for event in EVENTS
        }
        self._loss_takers = [h for h in self._handlers["on_step_end"] if _takes(h, "loss")]

    # -- events ------------------------------------------------------------------------------------
    def fire(self, event: str, trainer: TrainerView, **kwargs: Any) -> None:
        """Run `event` on every callback that implements it."""
        for handler in self._handlers[event]:
            handler(trainer, **kwargs)

    def fire_step_end(self, trainer: TrainerView, loss: Any) -> None:
        """on_step_end, handing the step's loss to the callbacks whose handler takes `loss`."""
        for handler in self._handlers["on_step_end"]:
            if handler in self._loss_takers:
                handler(trainer, loss=loss)
            else:
                handler(trainer)

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

    # -- state -------------------------------------------------------------------------------------
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
