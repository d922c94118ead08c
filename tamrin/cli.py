"""The `tamrin` command line; each sub-command lives in `tamrin/commands/`.

Errors a user can fix (a bad recipe, override, path or Hub call, a NaN loss, an output_dir that is
read-only, not writable or on a full disk) print one message and exit 2, without a traceback; this
is the one place that mapping lives (the library raises ConfigError and friends, the commands do not
catch them). Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import errno
import sys
import threading
from collections.abc import Callable, Sequence

from tamrin.commands import load_command_modules
from tamrin.configs import ConfigError
from tamrin.hub import HubError
from tamrin.trainer.interruption import RunInterrupted
from tamrin.trainer.nonfinite import NonFiniteLossError

__all__ = ["main", "build_parser", "EXIT_USAGE"]

EXIT_USAGE = 2
USER_ERRORS = (ConfigError, FileNotFoundError, HubError, NonFiniteLossError)
"""Errors a user can fix: one message and exit status 2, no traceback."""
USER_OS_ERRNOS = frozenset(
    {errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT, errno.ENOTDIR, errno.EISDIR, errno.EEXIST}
)
"""OSErrors from the user's disk (read-only, no permission, full, a file where a folder goes): exit 2 too."""


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
    default_thread_hook, threading.excepthook = threading.excepthook, _quiet_user_os_errors_in_threads
    try:
        return handler(args)
    except USER_ERRORS as err:
        print(f"tamrin {args.command}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as err:
        if err.errno not in USER_OS_ERRNOS:
            raise
        print(f"tamrin {args.command}: error: {describe_os_error(err)}", file=sys.stderr)
        return EXIT_USAGE
    except RunInterrupted as stop:  # SIGTERM / Ctrl-C: a checkpoint was saved; no traceback
        print(f"tamrin {args.command}: {stop}", file=sys.stderr)
        return stop.exit_code
    finally:
        threading.excepthook = default_thread_hook


def _quiet_user_os_errors_in_threads(args: threading.ExceptHookArgs) -> None:
    """A writer thread's full disk (TensorBoard's) is re-raised in the main thread, which prints it as
    one message; the thread's own traceback would only repeat it. Every other error keeps its traceback."""
    if isinstance(args.exc_value, OSError) and args.exc_value.errno in USER_OS_ERRNOS:
        return
    threading.__excepthook__(args)


def describe_os_error(err: OSError) -> str:
    """One line naming the path and the problem ("cannot write /x/recipe.yaml: Read-only file system")."""
    reason = err.strerror or str(err)
    if err.filename is None:
        return str(err)
    return f"{err.filename}: {reason}. Check the output_dir and the disk."


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
