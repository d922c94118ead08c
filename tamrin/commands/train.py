"""`tamrin train [RECIPE] [section.key=value ...] [--dry-run]`: train from a recipe."""

from __future__ import annotations

import argparse
import os
import sys

from omegaconf import OmegaConf

from tamrin.recipes import check_recipe_data, load_recipe, train_from_recipe

__all__ = ["register"]


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("train", help="train from a recipe (default: the packaged OCR recipe)")
    parser.add_argument(
        "recipe", nargs="?", default=None, help="a recipe YAML file or a packaged recipe name (default: 'default')"
    )
    parser.add_argument(
        "overrides", nargs="*", metavar="section.key=value", help="e.g. trainer.batch_size=64 trainer.num_epochs=3"
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="validate and print the resolved recipe (its callbacks, the data columns they read), then exit",
    )
    parser.set_defaults(handler=run)


def split_recipe_and_overrides(recipe: str | None, overrides: list[str]) -> tuple[str | None, list[str]]:
    """argparse cannot tell `RECIPE` from a first override; a token with '=' is an override."""
    overrides = list(overrides)
    if recipe is not None and "=" in recipe:
        return None, [recipe, *overrides]
    return recipe, overrides


def run(args: argparse.Namespace) -> int:
    recipe_name, overrides = split_recipe_and_overrides(args.recipe, args.overrides)
    recipe = load_recipe(recipe_name, overrides)
    if args.dry_run:
        check_recipe_data(recipe)  # the callbacks build; a column they read from the data exists
        print(OmegaConf.to_yaml(recipe), end="")
        return 0
    train_from_recipe(recipe)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # A multi-process run ends here without the interpreter's shutdown: about 1 in 30 two-process
        # gloo runs abort there after a correct finish ("terminate called without an active exception":
        # a gloo worker thread frees a finished collective while the interpreter tears down). Every
        # process has left the process group (train_from_recipe) and its files are written.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0
