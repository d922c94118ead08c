"""The callback registry: recipes name callbacks in YAML (`callbacks: [{name: early_stopping, patience: 3}]`)."""

from __future__ import annotations

from typing import Any

from tamrin.configs import ConfigError
from tamrin.registry import Registry
from tamrin.trainer.callbacks.base import Callback

__all__ = ["CALLBACKS", "build_callback", "register_callback", "registered_callbacks"]

CALLBACKS: Registry[type[Callback]] = Registry(
    "callback",
    builtin_modules=(  # they register on import; importing them here would be a cycle
        "tamrin.trainer.callbacks.early_stopping",
        "tamrin.trainer.callbacks.monitors",
        "tamrin.trainer.callbacks.curriculum",
    ),
    hint="Register one with @register_callback(name).",
)


def register_callback(name: str, *, replace: bool = False) -> Any:
    """Class decorator: register a Callback class under `name` so that recipes can name it in YAML."""
    return CALLBACKS.register(name, replace=replace)


def registered_callbacks() -> Registry[type[Callback]]:
    """Every registered callback, the built-in ones included."""
    return CALLBACKS


def build_callback(name: str, **kwargs: Any) -> Callback:
    """Build the registered callback `name` with `kwargs` (a recipe's `callbacks` entry).

    Raises:
        ConfigError: unknown name (with the registered names), or arguments the class does not take.
    """
    callback_class = CALLBACKS.get(name)
    try:
        return callback_class(**kwargs)
    except TypeError as err:
        raise ConfigError(f"Callback {name!r} does not take {kwargs}: {err}") from err
