"""Registering model classes and building models: the only way a config becomes a model.

Loading never imports anything a file names: a config's `name` is looked up in `MODELS`, which
holds exactly the classes decorated with `@register_model` in code that has already been imported.
A repeated name follows `tamrin.registry.Registry`'s rule.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from tamrin.models.base import Model
from tamrin.models.config import MODELS, ModelConfig
from tamrin.registry import config_name_default

__all__ = ["MODELS", "register_model", "get_model_class", "build_model"]

ModelT = TypeVar("ModelT", bound=type[Model])


def register_model(name: str, config_class: type[ModelConfig], *, replace: bool = False) -> Callable[[ModelT], ModelT]:
    """Class decorator: register a `Model` subclass under `name` with its config class.

    Args:
        name: the registry name; it must equal the default of `config_class.name`.
        config_class: the `ModelConfig` subclass the model is built from.
        replace: replace another class registered under `name` (otherwise that is an error).

    Raises:
        TypeError: the class is not a `Model` or the config class not a `ModelConfig`.
        ValueError: `name` is taken by another class, or differs from the config's default name.
    """
    if not (isinstance(config_class, type) and issubclass(config_class, ModelConfig)):
        raise TypeError(f"config_class of model {name!r} must be a ModelConfig subclass, got {config_class!r}.")
    if config_name_default(config_class) != name:
        raise ValueError(
            f"{config_class.__name__}.name defaults to {config_name_default(config_class)!r}; "
            f"set `name: str = {name!r}` to register it as {name!r}."
        )

    def decorator(model_class: ModelT) -> ModelT:
        if not (isinstance(model_class, type) and issubclass(model_class, Model)):
            raise TypeError(f"@register_model({name!r}) needs a tamrin Model subclass, got {model_class!r}.")
        MODELS.add(name, model_class, replace=replace)
        model_class.config_class = config_class
        return model_class

    return decorator


def get_model_class(name: str) -> type[Model]:
    """Return the model class registered under `name`.

    Raises:
        ConfigError: no model is registered under `name` (the message lists the registered names).
    """
    return MODELS.get(name)


def build_model(name: str | ModelConfig, **overrides: Any) -> Model:
    """Build a fresh (randomly initialised) model by registry name, or from a `ModelConfig`.

    Args:
        name: a registered model name, or a config instance (its `name` picks the class).
        **overrides: config fields to set, e.g. `build_model("crnn", rnn_hidden_size=64)`.

    Raises:
        ConfigError: unknown name or invalid config values.
    """
    if isinstance(name, ModelConfig):
        config = name.merge(overrides) if overrides else name
        return get_model_class(config.name)(config)
    model_class = get_model_class(name)
    config = model_class.config_class.from_dict({**overrides, "name": name})
    return model_class(config)
