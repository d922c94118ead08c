"""The `tamrin` command line; each sub-command lives in `tamrin/commands/`.

Errors a user can fix (a bad recipe, override, path or Hub call) print one message and exit 2,
without a traceback; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from tamrin.commands import load_command_modules
from tamrin.configs import ConfigError
from tamrin.hub import HubError
from tamrin.trainer.interruption import RunInterrupted

__all__ = ["main", "build_parser", "EXIT_USAGE"]

EXIT_USAGE = 2
USER_ERRORS = (ConfigError, FileNotFoundError, HubError)
"""Errors a user can fix: one message and exit status 2, no traceback."""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command."""
    parser = argparse.ArgumentParser(
        prog="tamrin", description="Train, evaluate and review PyTorch models with tamrin's Trainer."
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in load_command_modules():
        module.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (the console script exits with it)."""
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except USER_ERRORS as err:
        print(f"tamrin {args.command}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except RunInterrupted as stop:  # SIGTERM / Ctrl-C: a checkpoint was saved; no traceback
        print(f"tamrin {args.command}: {stop}", file=sys.stderr)
        return stop.exit_code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
