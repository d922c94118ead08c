"""`ModelConfig`, the base of every model config, and `MODELS`, the registry its `name` picks from.

The registry lives beside the config because a config's `name` is looked up in it (`validate`
checks the name's config class, `load` rebuilds it); `tamrin.models.registry` registers model
classes into it and builds models. Loading never imports anything a file names: `MODELS` holds
exactly the classes decorated with `@register_model` in code that has already been imported.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from tamrin.configs import Config
from tamrin.registry import Registry, load_registered_config

if TYPE_CHECKING:
    from tamrin.models.base import Model

__all__ = ["MODELS", "ModelConfig"]

MODELS: Registry[type[Model]] = Registry(
    "model", hint="Register new models with @register_model(name, config_class=...)."
)
"""Registry name -> `Model` class (each with its `config_class`)."""


@dataclass
class ModelConfig(Config):
    """Base of every model config; subclasses add the model's own fields.

    Attributes:
        name: the model's registry name (e.g. "crnn"); it picks the class `Model.load` builds.
    """

    config_filename: ClassVar[str] = "model_config.yaml"

    name: str = ""

    def validate(self) -> list[str | None]:
        if not self.name:
            return ["`name` must be the registry name of a model, e.g. 'crnn'."]
        registered = MODELS.get(self.name) if self.name in MODELS else None
        if registered is not None and not isinstance(self, registered.config_class):
            return [
                f"`name={self.name!r}` is registered with {registered.config_class.__name__}, "
                f"not {type(self).__name__}."
            ]
        return []

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        overrides: Any = None,
        *,
        filename: str | None = None,
        revision: str | None = None,
    ) -> ModelConfig:
        """Load a model config, rebuilding the subclass registered under the file's `name`.

        `ModelConfig.load(path)` returns e.g. a `CRNNConfig`; `CRNNConfig.load(path)` also checks
        that the file holds a CRNN config. See `Config.load` for the arguments.

        Raises:
            ConfigError: the file names no registered model, or a model of another kind.
        """
        return load_registered_config(
            cls, MODELS, path, overrides, root=ModelConfig, filename=filename, revision=revision
        )
