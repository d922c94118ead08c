"""Callbacks: the base class, the handler the Trainer holds, the registry and the built-in callbacks."""

from tamrin.trainer.callbacks.base import EVENTS, Callback, TrainerControl, TrainerView
from tamrin.trainer.callbacks.early_stopping import EarlyStopping
from tamrin.trainer.callbacks.handler import CallbackHandler
from tamrin.trainer.callbacks.registry import CALLBACKS, build_callback, register_callback, registered_callbacks

__all__ = [
    "CALLBACKS",
    "EVENTS",
    "Callback",
    "CallbackHandler",
    "EarlyStopping",
    "TrainerControl",
    "TrainerView",
    "build_callback",
    "register_callback",
    "registered_callbacks",
]
