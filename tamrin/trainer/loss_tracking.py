"""The training loss between two logs: summed on the device, guarded against NaN / inf.

Each step adds its loss to a device tensor, so no step waits for the host; the mean is read only
at log steps. A checkpoint folds the device sum into the TrainerState (`loss_sum`, `loss_count`,
`nonfinite_losses`), so a resumed run logs the same mean as an uninterrupted one. Non-finite losses
are left out of the mean and recorded by a `NonFiniteGuard` (see nonfinite.py).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from tamrin.trainer.nonfinite import NonFiniteGuard
from tamrin.trainer.state import TrainerState

__all__ = ["LossTracker"]


class LossTracker:
    """The running training loss of one process and the record of its non-finite values."""

    def __init__(self, device: torch.device) -> None:
        self.running = torch.zeros((), device=device)
        self.guard = NonFiniteGuard(device)

    def add(self, loss: torch.Tensor, state: TrainerState) -> None:
        """Add the loss of the step `state` has just counted (no device op, no host sync)."""
        if self.guard.observe(loss, state.global_step, state.epoch_step - 1):
            self._flush()
        state.loss_count += 1

    def _flush(self) -> None:
        self.running += self.guard.flush()

    def fold_into(self, state: TrainerState) -> None:
        """Move the device sum into `state` before it is saved (a host sync)."""
        self._flush()
        state.loss_sum += float(self.running.item())
        self.running.zero_()
        state.nonfinite_losses += self.guard.take_bad_count()

    def take_mean(self, state: TrainerState) -> float | None:
        """The mean finite loss since the last log (None if there was none), and start a new window."""
        self._flush()
        state.nonfinite_losses += self.guard.take_bad_count()
        finite_count = state.loss_count - state.nonfinite_losses
        mean = float(self.running.item() + state.loss_sum) / finite_count if finite_count else None
        state.nonfinite_losses = 0
        self.running.zero_()
        state.loss_sum = 0.0
        state.loss_count = 0
        return mean

    def close_window(self) -> bool:
        """End an accumulation window; returns whether all its losses were finite (a host sync)."""
        self._flush()
        finite = self.guard.window_is_finite()
        self.guard.end_window()
        return finite

    def raise_if_nonfinite(self, checkpoint_hint: Callable[[], str]) -> None:
        """Raise NonFiniteLossError if any loss so far was NaN / inf (a host sync: call it at events)."""
        self._flush()
        self.guard.raise_if_seen(checkpoint_hint)
