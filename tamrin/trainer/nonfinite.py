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
    """Device-side record of non-finite losses: first occurrence, per window, and since the last log.

    `observe` only queues the step's loss tensor (no device op, no host sync); the queue is checked
    in one batch of a few device ops by `flush`, which the owner calls at events and every
    `FLUSH_EVERY` steps (so the queue's memory stays bounded between rare events).
    """

    FLUSH_EVERY = 256

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.first_step = torch.full((), -1, dtype=torch.long, device=device)
        self.first_batch = torch.full((), -1, dtype=torch.long, device=device)
        self.window_bad = torch.zeros((), dtype=torch.bool, device=device)
        self.bad_since_log = torch.zeros((), dtype=torch.long, device=device)
        self._losses: list[torch.Tensor] = []
        self._positions: list[tuple[int, int]] = []

    def observe(self, loss: torch.Tensor, global_step: int, epoch_batch: int) -> bool:
        """Queue `loss` (of step `global_step`, batch `epoch_batch` of its epoch); True when a flush is due."""
        self._losses.append(loss.detach())
        self._positions.append((global_step, epoch_batch))
        return len(self._losses) >= self.FLUSH_EVERY

    def flush(self) -> torch.Tensor:
        """Check the queued losses: record the non-finite ones and return the sum of the finite ones."""
        if not self._losses:
            return torch.zeros((), device=self.device)
        losses = torch.stack(self._losses).float()
        bad = ~torch.isfinite(losses)
        positions = torch.tensor(self._positions, dtype=torch.long, device=self.device)
        self._losses, self._positions = [], []
        first = positions[bad.to(torch.uint8).argmax()]  # the first bad one (row 0 if none: masked below)
        record = bad.any() & (self.first_step < 0)
        self.first_step = torch.where(record, first[0], self.first_step)
        self.first_batch = torch.where(record, first[1], self.first_batch)
        self.window_bad |= bad.any()
        self.bad_since_log += bad.sum()
        return torch.where(bad, torch.zeros_like(losses), losses).sum()

    def raise_if_seen(self, checkpoint_hint: Callable[[], str]) -> None:
        """Raise NonFiniteLossError naming the first bad step (a host sync: call it only at events).

        `checkpoint_hint` is called only when raising (it may read the disk).
        """
        assert not self._losses, "flush() before raise_if_seen()"
        step = int(self.first_step.item())
        if step >= 0:
            raise NonFiniteLossError(
                f"The training loss was NaN or infinite at step {step} (batch index {int(self.first_batch.item())} of "
                f"its epoch); training stopped (nan_policy='stop') and nothing after that step was saved. "
                f"{checkpoint_hint()} To go on, lower the learning rate, set max_grad_norm, check that batch's data, "
                "or set nan_policy='skip' to drop updates with a non-finite loss."
            )

    def window_is_finite(self) -> bool:
        """Whether the current accumulation window's losses were all finite (a host sync; flush first)."""
        return not bool(self.window_bad.item())

    def end_window(self) -> None:
        self.window_bad.zero_()

    def take_bad_count(self) -> int:
        """Non-finite losses since the last call (read at log steps and saves)."""
        count = int(self.bad_since_log.item())
        self.bad_since_log.zero_()
        return count
