"""Catching NaN / inf losses without a host sync on every step.

The guard records on the device the first step (and batch of its epoch) whose loss was not
finite. With `nan_policy="stop"` the Trainer reads that record before every log, evaluation and
save and at the end of training, so no checkpoint is ever written after a bad step and the error
names the step where it happened. With `nan_policy="skip"` the Trainer asks, once per optimizer
update, whether the accumulation window saw a bad loss (a host sync per update, which the user
opts into) and then drops that update instead of applying NaN gradients.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["NonFiniteGuard", "NonFiniteLossError"]


class NonFiniteLossError(FloatingPointError):
    """A training loss was NaN or infinite (nan_policy="stop")."""


class NonFiniteGuard:
    """Device-side record of non-finite losses: first occurrence, per window, and since the last log."""

    def __init__(self, device: torch.device) -> None:
        self.first_step = torch.full((), -1, dtype=torch.long, device=device)
        self.first_batch = torch.full((), -1, dtype=torch.long, device=device)
        self.window_bad = torch.zeros((), dtype=torch.bool, device=device)
        self.bad_since_log = torch.zeros((), dtype=torch.long, device=device)

    def observe(self, loss: torch.Tensor, global_step: int, epoch_batch: int) -> torch.Tensor:
        """Record `loss` (of step `global_step`, batch `epoch_batch` of its epoch); return it with 0 for nan/inf."""
        bad = ~torch.isfinite(loss)
        first = bad & (self.first_step < 0)
        self.first_step = torch.where(first, global_step, self.first_step)
        self.first_batch = torch.where(first, epoch_batch, self.first_batch)
        self.window_bad |= bad
        self.bad_since_log += bad.long()
        return torch.where(bad, torch.zeros_like(loss), loss)

    def raise_if_seen(self, checkpoint_hint: Callable[[], str]) -> None:
        """Raise NonFiniteLossError naming the first bad step (a host sync: call it only at events).

        `checkpoint_hint` is called only when raising (it may read the disk).
        """
        step = int(self.first_step.item())
        if step >= 0:
            raise NonFiniteLossError(
                f"The training loss was NaN or infinite at step {step} (batch index {int(self.first_batch.item())} of "
                f"its epoch); training stopped (nan_policy='stop') and nothing after that step was saved. "
                f"{checkpoint_hint()} To go on, lower the learning rate, set max_grad_norm, check that batch's data, "
                "or set nan_policy='skip' to drop updates with a non-finite loss."
            )

    def window_is_finite(self) -> bool:
        """Whether the current accumulation window's losses were all finite (a host sync)."""
        return not bool(self.window_bad.item())

    def end_window(self) -> None:
        self.window_bad.zero_()

    def take_bad_count(self) -> int:
        """Non-finite losses since the last call (read at log steps and saves)."""
        count = int(self.bad_since_log.item())
        self.bad_since_log.zero_()
        return count
