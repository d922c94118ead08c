"""Loading a recipe: one YAML file that names the task, model, data, trainer settings and callbacks.

A recipe has the sections `task`, `model`, `dataset`, `trainer` and optionally `eval_dataset` and
`callbacks`. `key=value` overrides address them by section (`trainer.batch_size=64`). The packaged
recipes live beside this file; `tamrin train` with no recipe runs `default.yaml`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from tamrin.configs import ConfigError, merge_dict_configs, plain_dict, suggest
from tamrin.datasets import Dataset, DatasetConfig, build_dataset, get_dataset_class
from tamrin.models import get_model_class
from tamrin.trainer.callbacks import registered_callbacks
from tamrin.trainer.config import TrainerConfig

__all__ = [
    "RECIPE_SECTIONS",
    "available_recipes",
    "recipe_path",
    "load_recipe",
    "dataset_spec",
    "validate_recipe",
    "DEFAULT_RECIPE",
]

RECIPE_SECTIONS = ("task", "model", "dataset", "eval_dataset", "trainer", "callbacks")
REQUIRED_SECTIONS = ("task", "model", "dataset", "trainer")
DEFAULT_RECIPE = "default"
_PACKAGE_DIR = Path(__file__).parent


def available_recipes() -> list[str]:
    """Names of the packaged recipes (usable as `tamrin train NAME`)."""
    return sorted(path.stem for path in _PACKAGE_DIR.glob("*.yaml"))


def recipe_path(name_or_path: str | os.PathLike | None = None) -> Path:
    """Find a recipe: a YAML path, or the name of a packaged recipe (None: the default one)."""
    if name_or_path is None:
        name_or_path = DEFAULT_RECIPE
    path = Path(name_or_path)
    if path.is_file():
        return path
    packaged = _PACKAGE_DIR / f"{path.name.removesuffix('.yaml')}.yaml"
    if path.parent == Path(".") and packaged.is_file():
        return packaged
    names = available_recipes()
    raise ConfigError(
        f"Recipe {str(name_or_path)!r} is neither a YAML file nor a packaged recipe."
        f"{suggest(str(name_or_path), names)} Packaged recipes: {', '.join(names)}."
    )


def load_recipe(name_or_path: str | os.PathLike | None = None, overrides: Sequence[str] = ()) -> DictConfig:
    """Load a recipe, apply `section.key=value` overrides and validate every section.

    Returns:
        The resolved recipe (interpolations resolved); `recipe.trainer.task` equals `recipe.task`.

    Raises:
        ConfigError: an unknown section, a bad override, or an invalid section.
    """
    path = recipe_path(name_or_path)
    try:
        recipe = OmegaConf.load(path)
    except (OSError, OmegaConfBaseException, ValueError) as err:
        raise ConfigError(f"Could not read recipe {path}: {err}") from err
    if not isinstance(recipe, DictConfig):
        raise ConfigError(f"Recipe {path} must be a mapping with sections {', '.join(RECIPE_SECTIONS)}.")
    recipe = merge_dict_configs(recipe, _parse_overrides(overrides))
    _check_sections(recipe, path)
    try:
        resolved = plain_dict(recipe)
    except OmegaConfBaseException as err:
        raise ConfigError(f"Recipe {path}: {err}") from None
    _sync_task(resolved, path)
    validate_recipe(resolved)
    return OmegaConf.create(resolved)


def _parse_overrides(overrides: Sequence[str]) -> DictConfig:
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"Override {item!r} must look like `section.key=value`, e.g. `trainer.batch_size=64`.")
        section = item.split("=", 1)[0].split(".", 1)[0]
        if section not in RECIPE_SECTIONS:
            raise ConfigError(
                f"Override {item!r} addresses an unknown section `{section}`.{suggest(section, RECIPE_SECTIONS)} "
                f"Sections: {', '.join(RECIPE_SECTIONS)}."
            )
    try:
        return OmegaConf.from_dotlist(list(overrides))
    except OmegaConfBaseException as err:
        raise ConfigError(f"Could not parse overrides {list(overrides)}: {err}") from None


def _check_sections(recipe: DictConfig, path: Path) -> None:
    problems = [
        f"Unknown section `{key}` in recipe {path}.{suggest(key, RECIPE_SECTIONS)} "
        f"Sections: {', '.join(RECIPE_SECTIONS)}."
        for key in map(str, recipe)  # YAML admits non-string keys (`1: x`); none is a section
        if key not in RECIPE_SECTIONS
    ]
    problems += [f"Recipe {path} has no `{name}` section." for name in REQUIRED_SECTIONS if name not in recipe]
    problems += [
        f"`{name}={recipe[name]!r}` in recipe {path}: the `{name}` section must be a mapping of its fields "
        f"(e.g. `{name}.<field>=value`)."
        for name in ("model", "dataset", "eval_dataset", "trainer")
        if name in recipe and recipe[name] is not None and not isinstance(recipe[name], DictConfig)
    ]
    if problems:
        raise ConfigError(problems, config_name=f"recipe {path}" if len(problems) > 1 else None)


def _sync_task(recipe: dict[str, Any], path: Path) -> None:
    """The top-level `task` is the trainer's task; a different `trainer.task` is a mistake."""
    trainer = recipe.setdefault("trainer", {}) or {}
    recipe["trainer"] = trainer
    if "task" in trainer and trainer["task"] != recipe["task"]:
        raise ConfigError(
            f"Recipe {path}: `trainer.task={trainer['task']!r}` differs from `task={recipe['task']!r}`; "
            "set the task once, at the top."
        )
    trainer["task"] = recipe["task"]


def dataset_spec(recipe: dict[str, Any] | DictConfig, section: str) -> tuple[dict[str, Any], str]:
    """A dataset section's config fields and split; `eval_dataset` inherits `dataset`'s fields."""
    base = dict(recipe["dataset"])
    spec = base if section == "dataset" else {**base, **dict(recipe.get(section) or {})}
    split = spec.pop("split", "train" if section == "dataset" else "validation")
    spec.setdefault("task", recipe["task"])
    return spec, split


def build_section_dataset(spec: dict[str, Any], split: str, preprocessor: Any = None) -> Any:
    """A recipe dataset section's split: by `path` (a dataset folder or Hub dataset repo, read with
    `Dataset.load`; `revision` picks a Hub revision) or by `name` (a registered dataset built from the
    section's fields). The other fields override the dataset's config either way.
    """
    spec = dict(spec)
    if spec.get("path") is not None:
        _check_path_or_name(spec)
        path, revision = spec.pop("path"), spec.pop("revision", None)
        return Dataset.load(path, split=split, preprocessor=preprocessor, revision=revision, **spec)
    return build_dataset(spec.pop("name"), split=split, preprocessor=preprocessor, **spec)


def validate_recipe(recipe: dict[str, Any]) -> None:
    """Validate each section with its config class, so a bad recipe fails before any work."""
    TrainerConfig.from_dict(recipe["trainer"])
    for section in ("model", "dataset", "eval_dataset"):
        if recipe.get(section) is None:
            continue
        spec = dict(recipe[section]) if section == "model" else dataset_spec(recipe, section)[0]
        if section != "model" and spec.get("path") is not None:
            _validate_dataset_folder(spec)
            continue
        if "name" not in spec:
            raise ConfigError(f"Recipe section `{section}` needs a `name` (a registered {section.split('_')[-1]}).")
        lookup = get_model_class if section == "model" else get_dataset_class
        lookup(spec["name"]).config_class.from_dict(spec)
    callbacks = registered_callbacks()
    for entry in recipe.get("callbacks") or []:
        name = entry.get("name") if isinstance(entry, dict) else entry
        if name not in callbacks:
            raise ConfigError(
                f"Unknown callback {name!r} in the recipe.{suggest(str(name), callbacks)} "
                f"Registered callbacks: {', '.join(sorted(callbacks))}."
            )


def _validate_dataset_folder(spec: dict[str, Any]) -> None:
    """Check a `path` dataset section's overrides against a local folder's config (a Hub repo is checked when read)."""
    _check_path_or_name(spec)
    folder = Path(str(spec["path"])).expanduser()
    if not folder.is_dir():
        return
    overrides = {key: value for key, value in spec.items() if key not in ("path", "revision")}
    DatasetConfig.load(folder, overrides or None)


def _check_path_or_name(spec: dict[str, Any]) -> None:
    if spec.get("name") is not None:
        raise ConfigError(
            f"A dataset section takes `path` (a dataset folder or Hub dataset repo, whose dataset_config.yaml names "
            f"the dataset) or `name` (a registered dataset), not both: got path={spec['path']!r} and "
            f"name={spec['name']!r}. Drop `name`."
        )
