"""One module per `tamrin` sub-command; each exposes `register(subparsers)`.

A command's handler takes the parsed arguments and returns the exit code. The CLI turns errors a
user can fix (ConfigError, FileNotFoundError, HubError) into one message and exit status 2.
"""

from __future__ import annotations

import importlib

__all__ = ["COMMAND_MODULES", "load_command_modules"]

COMMAND_MODULES = ("train", "evaluate", "predict", "logs", "push", "verify_resume", "export")
"""Sub-command modules, in the order `tamrin --help` lists them."""


def load_command_modules() -> list:
    """Import each command module (the parser needs every command's `register`)."""
    return [importlib.import_module(f"tamrin.commands.{name}") for name in COMMAND_MODULES]
