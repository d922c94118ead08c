"""Build what a recipe describes: its datasets, its model (fitted to the data), callbacks and Trainer."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from tamrin.configs import ConfigError, plain_dict
from tamrin.models import build_model
from tamrin.recipes.loading import build_section_dataset, dataset_spec
from tamrin.trainer.callbacks import build_callback
from tamrin.trainer.config import TrainerConfig
from tamrin.trainer.modeling import adopt_data_preprocessor
from tamrin.trainer.runtime import seed_everything
from tamrin.trainer.trainer import Trainer

__all__ = ["build_model_for_data", "build_trainer"]


def build_trainer(recipe: DictConfig | dict[str, Any]) -> Any:
    """Build the Trainer a (validated) recipe describes."""
    if isinstance(recipe, DictConfig):
        recipe = plain_dict(recipe)
    config = TrainerConfig.from_dict(recipe["trainer"])
    seed_everything(config.seed)  # before the model draws its initial weights: a recipe reproduces itself
    spec, split = dataset_spec(recipe, "dataset")
    train_dataset = build_section_dataset(spec, split)
    model = build_model_for_data(recipe["model"], train_dataset)
    eval_dataset = None
    if recipe.get("eval_dataset") is not None:
        spec, split = dataset_spec(recipe, "eval_dataset")
        eval_dataset = build_section_dataset(spec, split, preprocessor=train_dataset.preprocessor)
    callbacks = [_build_callback_entry(entry) for entry in recipe.get("callbacks") or []]
    return Trainer(
        model=model, config=config, train_dataset=train_dataset, eval_dataset=eval_dataset, callbacks=callbacks
    )


def build_model_for_data(model_section: dict[str, Any], train_dataset: Any) -> Any:
    """Build the recipe's model with what the data decides (vocabulary, labels) and its preprocessor.

    Raises:
        ConfigError: the recipe sets a model field to a value the data contradicts.
    """
    spec = dict(model_section)
    name = spec.pop("name")
    for key, value in train_dataset.model_config_overrides().items():
        if key in spec and spec[key] != value:
            raise ConfigError(
                f"Recipe sets `model.{key}={spec[key]!r}` but the training data gives {value!r}; "
                f"remove `model.{key}` from the recipe (the data decides it)."
            )
        spec[key] = value
    model = build_model(name, **spec)
    adopt_data_preprocessor(model, train_dataset.preprocessor)  # the Trainer's rule, applied before it is built
    return model


def _build_callback_entry(entry: Any) -> Any:
    """A recipe's `callbacks` entry: a registered name, or a mapping of its name and arguments."""
    if isinstance(entry, str):
        return build_callback(entry)
    entry = dict(entry)
    return build_callback(entry.pop("name"), **entry)
