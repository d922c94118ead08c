"""`tamrin verify-resume [RECIPE] [section.key=value ...] [--steps K] [--resume-at S]`: check exact resume.

Trains the recipe for K steps straight through, and again for S steps, saves, reloads in a fresh
process and resumes to K; then reports whether the weights, the optimizer state and the loss trace
match exactly and, if not, the first step and tensor where they part. It runs your own recipe
(your model and data), so shrink it with overrides to keep it quick, e.g.
`tamrin verify-resume my_recipe.yaml dataset.num_samples=256 --import my_models`.
Exit status: 0 when the runs match, 1 when they do not, 2 when they could not be run.
"""

from __future__ import annotations

import argparse
import sys

from tamrin.commands.train import split_recipe_and_overrides
from tamrin.tools.verify_resume import DEFAULT_STEPS, VerifyResumeError, verify_resume

__all__ = ["register", "run", "EXIT_MISMATCH"]

EXIT_MISMATCH = 1
EXIT_FAILED = 2


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "verify-resume",
        help="check that a recipe resumes bitwise exactly (straight run vs. save + reload + resume)",
        description=__doc__.split("\n\n", 1)[1],
    )
    parser.add_argument(
        "recipe", nargs="?", default=None, help="a recipe YAML file or a packaged recipe name (default: 'default')"
    )
    parser.add_argument(
        "overrides", nargs="*", metavar="section.key=value", help="e.g. dataset.num_samples=256 trainer.batch_size=16"
    )
    parser.add_argument("--steps", type=int, default=None, help="steps of each run (default: 8)")
    parser.add_argument("--resume-at", type=int, default=None, help="the step to save and resume at (default: half)")
    parser.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="a module to import first, in every run (one that registers your models or datasets); repeatable",
    )
    parser.add_argument("--workdir", default=None, help="keep the runs in this folder (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the runs' folders even when they match")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    recipe, overrides = split_recipe_and_overrides(args.recipe, args.overrides)
    try:
        result = verify_resume(
            recipe,
            overrides,
            steps=DEFAULT_STEPS if args.steps is None else args.steps,
            resume_step=args.resume_at,
            imports=args.imports,
            workdir=args.workdir,
            keep=args.keep,
        )
    except VerifyResumeError as err:
        print(f"tamrin verify-resume: error: {err}", file=sys.stderr)
        return EXIT_FAILED
    print(result.report())
    return 0 if result.match else EXIT_MISMATCH
