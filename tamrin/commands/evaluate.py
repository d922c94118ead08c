"""`tamrin evaluate DIR_OR_RECIPE [section.key=value ...] [--split S]`: evaluate a trained model.

DIR is a run's output_dir, or a model or checkpoint directory written by `tamrin train` (its run's
recipe.yaml names the data); RECIPE evaluates that recipe's final model (`{output_dir}/model`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tamrin.recipes import evaluate_from_recipe, find_run_recipe, load_recipe, resolve_model_dir

__all__ = ["register"]


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("evaluate", help="evaluate a saved model, checkpoint or a recipe's final model")
    parser.add_argument("target", help="a model/checkpoint directory, or a recipe (YAML file or packaged name)")
    parser.add_argument("overrides", nargs="*", metavar="section.key=value", help="recipe overrides")
    parser.add_argument("--split", default=None, help="the dataset split (default: the recipe's evaluation split)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    target = Path(args.target)
    if target.is_dir():
        model_dir = resolve_model_dir(target)
        recipe = load_recipe(find_run_recipe(model_dir), args.overrides)
        metrics = evaluate_from_recipe(recipe, model_dir=model_dir, split=args.split)
    else:
        recipe = load_recipe(args.target, args.overrides)
        metrics = evaluate_from_recipe(recipe, split=args.split)
    width = max(len(name) for name in metrics)
    for name, value in metrics.items():
        print(f"{name:<{width}}  {value:.6g}")
    return 0
