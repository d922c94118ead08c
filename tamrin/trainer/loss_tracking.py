"""The training loss between two logs: summed on the device, guarded against NaN / inf.

Each step adds its loss to a device tensor, so no step waits for the host; the mean is read only
at log steps. A checkpoint folds the device sum into the TrainerState (`loss_sum`, `loss_count`,
`nonfinite_losses`), so a resumed run logs the same mean as an uninterrupted one. Non-finite losses
are left out of the mean and recorded by a `NonFiniteGuard` (see nonfinite.py).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from tamrin.trainer.nonfinite import GuardRecord, NonFiniteGuard
from tamrin.trainer.state import TrainerState

__all__ = ["LossTracker"]


class LossTracker:
    """The running training loss of one process and the record of its non-finite values.

    Every host value an event needs (the running sum, the bad-loss count, the first bad step, the
    window flag) comes from one stacked read, kept until the next loss arrives: a log step that
    also checks for NaN, saves and closes an accumulation window still reads the device once.
    """

    def __init__(self, device: torch.device) -> None:
        self.running = torch.zeros((), device=device)
        self.guard = NonFiniteGuard(device)
        self._host: tuple[GuardRecord, list[float]] | None = None  # the last read; None once a loss came after it

    def add(self, loss: torch.Tensor, state: TrainerState) -> None:
        """Add the loss of the step `state` has just counted (no device op, no host sync)."""
        self._host = None
        if self.guard.observe(loss, state.global_step, state.epoch_step - 1):
            self._flush()
        state.loss_count += 1

    def _flush(self) -> None:
        self.running += self.guard.flush()

    def _read(self) -> tuple[GuardRecord, list[float]]:
        """The guard's record and the running sum on the host: one host sync, none while no loss came since."""
        if self._host is None:
            self._flush()
            self._host = self.guard.read(self.running)
        return self._host

    def _take_running(self) -> float:
        record, values = self._read()
        running = values[0]
        self.running.zero_()
        values[0] = 0.0
        return running

    def fold_into(self, state: TrainerState) -> None:
        """Move the device sum into `state` before it is saved (a host sync, shared with the event's others)."""
        state.loss_sum += self._take_running()
        state.nonfinite_losses += self.guard.take_bad_count(self._read()[0])

    def take_mean(self, state: TrainerState) -> float | None:
        """The mean finite loss since the last log (None if there was none), and start a new window."""
        state.nonfinite_losses += self.guard.take_bad_count(self._read()[0])
        finite_count = state.loss_count - state.nonfinite_losses
        running = self._take_running()
        mean = float(running + state.loss_sum) / finite_count if finite_count else None
        state.nonfinite_losses = 0
        state.loss_sum = 0.0
        state.loss_count = 0
        return mean

    def close_window(self) -> bool:
        """End an accumulation window; returns whether all its losses were finite (a host sync)."""
        record = self._read()[0]
        finite = self.guard.window_is_finite(record)
        self.guard.end_window(record)
        return finite

    def raise_if_nonfinite(self, checkpoint_hint: Callable[[], str]) -> None:
        """Raise NonFiniteLossError if any loss so far was NaN / inf (a host sync: call it at events)."""
        self.guard.raise_if_seen(checkpoint_hint, self._read()[0])
