"""The `tamrin` command line: train, evaluate, predict, logs and push.

Errors a user can fix (a bad recipe, override, path or Hub call) print one message and exit 2,
without a traceback; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from tamrin.configs import ConfigError

__all__ = ["main", "build_parser"]

EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command."""
    parser = argparse.ArgumentParser(
        prog="tamrin",
        description="Train, evaluate and review PyTorch models with tamrin's Trainer.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    train = commands.add_parser("train", help="train from a recipe (default: the packaged OCR recipe)")
    train.add_argument(
        "recipe", nargs="?", default=None, help="a recipe YAML file or a packaged recipe name (default: 'default')"
    )
    train.add_argument(
        "overrides",
        nargs="*",
        metavar="section.key=value",
        help="overrides, e.g. trainer.batch_size=64 trainer.num_epochs=3",
    )
    train.add_argument("--dry-run", action="store_true", help="validate and print the resolved recipe, then exit")
    train.set_defaults(handler=_run_train)
    return parser


def _split_recipe_and_overrides(args: argparse.Namespace) -> tuple[str | None, list[str]]:
    """argparse cannot tell `RECIPE` from a first override; a token with '=' is an override."""
    overrides = list(args.overrides)
    recipe = args.recipe
    if recipe is not None and "=" in recipe:
        overrides.insert(0, recipe)
        recipe = None
    return recipe, overrides


def _run_train(args: argparse.Namespace) -> int:
    from omegaconf import OmegaConf

    from tamrin.recipes import load_recipe

    recipe_name, overrides = _split_recipe_and_overrides(args)
    recipe = load_recipe(recipe_name, overrides)
    if args.dry_run:
        print(OmegaConf.to_yaml(recipe), end="")
        return 0
    from tamrin.runner import train_from_recipe

    train_from_recipe(recipe)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (the console script exits with it)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except (ConfigError, FileNotFoundError) as err:
        print(f"tamrin {args.command}: error: {err}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
