"""`tamrin evaluate DIR_OR_RECIPE_OR_REPO [section.key=value ...] [--split S] [--revision R]`: evaluate a model.

DIR is a run's output_dir, or a model or checkpoint directory written by `tamrin train` (its run's
recipe.yaml names the data); RECIPE evaluates that recipe's final model (`{output_dir}/model`); REPO is
a Hub repo id that `tamrin push` filled from a `tamrin train` run: its model and its recipe.yaml are
fetched (at `--revision`), and the recipe's data is rebuilt here.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tamrin import hub
from tamrin.models.base import HUB_NON_MODEL_FILES
from tamrin.recipes import (
    RECIPE_FILENAME,
    available_recipes,
    evaluate_from_recipe,
    find_run_recipe,
    load_recipe,
    resolve_model_dir,
)

__all__ = ["register"]


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("evaluate", help="evaluate a saved model or checkpoint, a recipe's, or a Hub repo's")
    parser.add_argument("target", help="a model/checkpoint directory, a recipe (YAML file or packaged name), a repo id")
    parser.add_argument("overrides", nargs="*", metavar="section.key=value", help="recipe overrides")
    parser.add_argument("--split", default=None, help="the dataset split (default: the recipe's evaluation split)")
    parser.add_argument("--revision", default=None, help="the Hub revision (branch, tag or commit) of a repo id")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    target = Path(args.target)
    from_hub = not target.exists() and args.target not in available_recipes() and hub.is_repo_id(args.target)
    if args.revision is not None and not from_hub:
        raise FileNotFoundError(f"`--revision {args.revision}` is for a Hub repo id, not for {args.target!r}.")
    if target.is_dir():
        model_dir = resolve_model_dir(target)
        recipe = load_recipe(find_run_recipe(model_dir), args.overrides)
    elif from_hub:
        model_dir = _hub_model_dir(args.target, args.revision)
        recipe = load_recipe(model_dir / RECIPE_FILENAME, args.overrides)
    else:
        model_dir, recipe = None, load_recipe(args.target, args.overrides)
    metrics = evaluate_from_recipe(recipe, model_dir=model_dir, split=args.split)
    width = max(len(name) for name in metrics)
    for name, value in metrics.items():
        print(f"{name:<{width}}  {value:.6g}")
    return 0


def _hub_model_dir(repo_id: str, revision: str | None) -> Path:
    """The model files and recipe.yaml of a pushed run (its train/ state and logs stay on the Hub).

    Raises:
        FileNotFoundError: the repo holds no recipe.yaml (it was not pushed from a `tamrin train` run).
    """
    snapshot = hub.download(repo_id, revision=revision, ignore_patterns=list(HUB_NON_MODEL_FILES))
    if not (snapshot / RECIPE_FILENAME).is_file():
        raise FileNotFoundError(
            f"{repo_id!r} holds no {RECIPE_FILENAME}, so its evaluation data is unknown: push the run with "
            "`tamrin push OUTPUT_DIR REPO_ID` (it includes the recipe), or evaluate a recipe whose "
            "`trainer.output_dir` holds the model."
        )
    return snapshot
