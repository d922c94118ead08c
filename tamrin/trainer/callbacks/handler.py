"""CallbackHandler: calls the callbacks that implement an event, in order; saves and restores their state."""

from __future__ import annotations

import inspect
import warnings
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
        self._callbacks: list[Callback] = []
        self._handlers: dict[str, list[Callable[..., Any]]] = {}
        self._step_end: list[tuple[Callable[..., Any], bool]] = []  # (handler, whether it takes `loss`)
        for callback in callbacks:
            self._check(callback)
            self._callbacks.append(callback)
        self._index()

    @property
    def callbacks(self) -> tuple[Callback, ...]:
        """The callbacks, in order (a tuple: change the list with `add` / `remove`, which re-index the events)."""
        return tuple(self._callbacks)

    # -- the list ----------------------------------------------------------------------------------
    def add(self, callback: Callback) -> None:
        """Append `callback` (it runs after the others)."""
        self._check(callback)
        self._callbacks.append(callback)
        self._index()

    def remove(self, callback: Callback | type[Callback]) -> Callback:
        """Remove `callback` (an instance, or the first instance of a class); returns it.

        Raises:
            ValueError: no such callback (the message lists the trainer's callbacks).
        """
        for index, candidate in enumerate(self._callbacks):
            if candidate is callback or (isinstance(callback, type) and isinstance(candidate, callback)):
                del self._callbacks[index]
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
        self._step_end = [(h, _takes(h, "loss")) for h in self._handlers["on_step_end"]]

    # -- events ------------------------------------------------------------------------------------
    def fire(self, event: str, trainer: TrainerView, **kwargs: Any) -> None:
        """Run `event` on every callback that implements it."""
        for handler in self._handlers[event]:
            handler(trainer, **kwargs)

    def fire_step_end(self, trainer: TrainerView, loss: Any) -> None:
        """on_step_end, handing the step's loss to the callbacks whose handler takes `loss`."""
        for handler, takes_loss in self._step_end:
            if takes_loss:
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
    def stateful(self) -> dict[str, Callback]:
        """The callbacks that keep state (override `state_dict`), keyed by class name (`Name#2` for a second one)."""
        keyed: dict[str, Callback] = {}
        for callback in self.callbacks:
            if type(callback).state_dict is Callback.state_dict:
                continue
            name = type(callback).__name__
            key, count = name, 1
            while key in keyed:
                count += 1
                key = f"{name}#{count}"
            keyed[key] = callback
        return keyed

    def state_dict(self) -> dict[str, dict[str, Any]]:
        """The state of each stateful callback; callbacks without state are not recorded."""
        return {key: callback.state_dict() for key, callback in self.stateful().items()}

    def load_state_dict(self, state: dict[str, dict[str, Any]]) -> None:
        """Restore each stateful callback; callbacks without state may come and go between runs.

        Raises:
            ValueError: the checkpoint holds the state of a callback this trainer does not have (a
                resumed run without it would not continue the same run): the message names it.
        """
        state = _without_legacy_keys(state)
        current = self.stateful()
        missing = [key for key in state if key not in current]
        if missing:
            raise ValueError(
                f"The checkpoint holds the state of callback(s) {missing}, which this trainer does not have. "
                "Resume with them (in the same order among callbacks of their class), or start a new run."
            )
        fresh = [key for key in current if key not in state]
        if fresh:
            warnings.warn(f"Callback(s) {fresh} have no state in the checkpoint: they start fresh.", stacklevel=4)
        for key, callback in current.items():
            if key in state:
                callback.load_state_dict(state[key])


def _without_legacy_keys(state: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Checkpoints of earlier versions keyed every callback as "index:Name", with or without state."""
    if not any(":" in key for key in state):
        return state
    renamed: dict[str, dict[str, Any]] = {}
    for key, value in state.items():
        name = key.split(":", 1)[1] if ":" in key else key
        if value:
            count, unique = 1, name
            while unique in renamed:
                count += 1
                unique = f"{name}#{count}"
            renamed[unique] = value
    return renamed
