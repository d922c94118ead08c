"""Recipes: one YAML file that names the task, model, data, trainer settings and callbacks, and running it.

    loading.py   find, load, override and validate a recipe (`load_recipe`)
    building.py  build the Trainer it describes: datasets, the model fitted to them, callbacks
    running.py   train it, evaluate a trained model, find a run's files (`train_from_recipe`)

The packaged recipes (*.yaml) live beside these modules; `tamrin train` with no recipe runs
`default.yaml`. This is what the `tamrin` commands call; a script can run a recipe the same way.
"""

from __future__ import annotations

from tamrin.recipes.building import build_model_for_data, build_trainer, check_recipe_data
from tamrin.recipes.loading import (
    DEFAULT_RECIPE,
    RECIPE_SECTIONS,
    available_recipes,
    dataset_spec,
    load_recipe,
    recipe_path,
    validate_recipe,
)
from tamrin.recipes.running import (
    FINAL_MODEL_DIR,
    RECIPE_FILENAME,
    evaluate_from_recipe,
    find_run_recipe,
    resolve_model_dir,
    save_recipe,
    train_from_recipe,
)

__all__ = [
    "DEFAULT_RECIPE",
    "FINAL_MODEL_DIR",
    "RECIPE_FILENAME",
    "RECIPE_SECTIONS",
    "available_recipes",
    "build_model_for_data",
    "build_trainer",
    "check_recipe_data",
    "dataset_spec",
    "evaluate_from_recipe",
    "find_run_recipe",
    "load_recipe",
    "recipe_path",
    "resolve_model_dir",
    "save_recipe",
    "train_from_recipe",
    "validate_recipe",
]
