"""Progress output: a tqdm bar on a terminal, plain lines in CI logs, or nothing.

The running loss shown here is read from the device only at log steps (it is a host sync), so the
bar's loss refreshes every `log_steps` while its counter moves every step.
"""

from __future__ import annotations

import sys
from typing import Any

from tqdm.auto import tqdm

__all__ = ["Progress", "resolve_progress_mode"]


def resolve_progress_mode(mode: str, *, is_main_process: bool = True) -> str:
    """'auto' becomes 'bar' on a terminal and 'plain' otherwise; other processes print nothing."""
    if not is_main_process:
        return "none"
    if mode == "auto":
        return "bar" if sys.stderr.isatty() else "plain"
    return mode


class Progress:
    """One progress display (an epoch of training, or an evaluation)."""

    def __init__(self, mode: str, *, total: int, initial: int = 0, description: str = "") -> None:
        self.mode = mode
        self.total = total
        self.count = initial
        self.description = description
        self._bar = (
            tqdm(total=total, initial=initial, desc=description, dynamic_ncols=True, leave=True)
            if mode == "bar"
            else None
        )

    def update(self, steps: int = 1) -> None:
        """Advance by `steps` (cheap: no host sync, no printing in plain mode)."""
        self.count += steps
        if self._bar is not None:
            self._bar.update(steps)

    def show(self, values: dict[str, Any]) -> None:
        """Show values (loss, lr, metrics): as the bar's postfix, or as one plain line."""
        text = ", ".join(f"{key}={_format(value)}" for key, value in values.items())
        if self._bar is not None:
            self._bar.set_postfix_str(text, refresh=True)
        elif self.mode == "plain":
            print(f"{self.description} [{self.count}/{self.total}] {text}", flush=True)

    def close(self) -> None:
        """Close the bar (plain mode prints nothing more)."""
        if self._bar is not None:
            self._bar.close()


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
