"""Progress output: a tqdm bar on a terminal, plain lines in CI logs, or nothing.

The running loss shown here is read from the device only at log steps (it is a host sync), so the
bar's loss refreshes every `log_steps` while its counter moves every step.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from tqdm.auto import tqdm

if TYPE_CHECKING:
    from tamrin.trainer.steps import StepPlan

__all__ = ["Progress", "resolve_progress_mode", "describe_run"]


def resolve_progress_mode(mode: str, *, is_main_process: bool = True) -> str:
    """'auto' becomes 'bar' on a terminal and 'plain' otherwise; other processes print nothing."""
    if not is_main_process:
        return "none"
    if mode == "auto":
        return "bar" if sys.stderr.isatty() else "plain"
    return mode


def describe_run(
    plan: StepPlan,
    *,
    num_samples: int | None,
    batch_size: int,
    num_processes: int,
    start_step: int,
    lr_schedule: str = "",
) -> str:
    """One line of step arithmetic printed at the start: samples, global batch, steps, updates, LR cadence.

    It answers up front the question a surprising step count raises ("why 13 steps?"), and says when
    the LR scheduler steps (`lr_schedule`, from `optim.scheduler_cadence`).
    """
    global_batch = batch_size * num_processes * plan.accumulation
    start = f", resuming at step {start_step}" if start_step else ""
    samples = "a stream" if num_samples is None else f"{num_samples} samples"
    lengths = sorted(set(plan.epoch_steps))
    per_epoch = (
        "an epoch is one pass over it"
        if num_samples is None
        else f"{plan.steps_per_epoch} steps/epoch per process"
        if len(lengths) <= 1
        else "steps/epoch "
        + "/".join(str(n) for n in plan.epoch_steps[:8])  # a curriculum's admitted epochs
        + ("/..." if len(plan.epoch_steps) > 8 else "")
        + " per process"
    )
    return (
        f"Training on {samples}: global batch {global_batch} "
        f"(batch_size {batch_size} x {num_processes} process(es) x {plan.accumulation} accumulation), "
        f"{per_epoch}, {plan.total_steps} steps, "
        f"{plan.total_updates} optimizer updates{start}." + (f" {lr_schedule}." if lr_schedule else "")
    )


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

    def report(self, title: str, values: dict[str, Any]) -> None:
        """Print one line that stays (e.g. an evaluation's metrics), above the bar in bar mode."""
        if self.mode == "none":
            return
        line = f"{title}: " + ", ".join(f"{key}={_format(value)}" for key, value in values.items())
        if self._bar is not None:
            self._bar.write(line)
        else:
            print(line, flush=True)

    def close(self) -> None:
        """Close the bar (plain mode prints nothing more)."""
        if self._bar is not None:
            self._bar.close()


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
