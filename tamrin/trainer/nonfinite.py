"""Catching NaN / inf losses without a host sync on every step.

The guard records on the device the first step (and batch of its epoch) whose loss was not
finite. With `nan_policy="stop"` the Trainer reads that record before every log, evaluation and
save and at the end of training, so no checkpoint is ever written after a bad step and the error
names the step where it happened. With `nan_policy="skip"` the Trainer asks, once per optimizer
update, whether the accumulation window saw a bad loss (a host sync per update, which the user
opts into) and then drops that update instead of applying NaN gradients.

The whole record comes to the host in one read (`read`), so that an owner holding more device
values (the LossTracker's running sum) reads everything an event needs at once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch

from tamrin.transfer import host_to_device

__all__ = ["GuardRecord", "NonFiniteGuard", "NonFiniteLossError"]


class NonFiniteLossError(FloatingPointError):
    """A training loss was NaN or infinite (nan_policy="stop")."""


@dataclasses.dataclass
class GuardRecord:
    """The guard's device record as read on the host (kept up to date by the guard's own resets)."""

    first_step: int  # -1: no bad loss yet
    first_batch: int
    bad_count: int  # non-finite losses since the count was last taken
    window_bad: bool  # the current accumulation window saw one


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
        # Built on the host, copied pinned and non-blocking: a blocking copy would wait for the GPU.
        positions = host_to_device(torch.tensor(self._positions, dtype=torch.long), self.device)
        self._losses, self._positions = [], []
        first_index = bad.to(torch.uint8).argmax().reshape(1)  # the first bad one (row 0 if none: masked below)
        first = positions.index_select(0, first_index)[0]  # index_select: a 0-d index would be read on the host
        record = bad.any() & (self.first_step < 0)
        self.first_step = torch.where(record, first[0], self.first_step)
        self.first_batch = torch.where(record, first[1], self.first_batch)
        self.window_bad |= bad.any()
        self.bad_since_log += bad.sum()
        return torch.where(bad, torch.zeros_like(losses), losses).sum()

    def read(self, *extra: torch.Tensor) -> tuple[GuardRecord, list[float]]:
        """The record and the device scalars `extra` on the host, in one host sync (flush first).

        Returns:
            The GuardRecord and the values of `extra`, as floats.
        """
        assert not self._losses, "flush() before read()"
        fields = [self.first_step, self.first_batch, self.bad_since_log, self.window_bad, *extra]
        if self.device.type == "mps":  # no float64 there to carry step numbers and float32 sums exactly
            values = [value.item() for value in fields]
        else:
            values = torch.stack([value.double() for value in fields]).tolist()
        step, batch, count, window_bad = values[:4]
        return GuardRecord(int(step), int(batch), int(count), bool(window_bad)), values[4:]

    def raise_if_seen(self, checkpoint_hint: Callable[[], str], record: GuardRecord | None = None) -> None:
        """Raise NonFiniteLossError naming the first bad step.

        Args:
            checkpoint_hint: called only when raising (it may read the disk).
            record: this guard's record from `read` (default: read it here, a host sync).
        """
        record = record or self.read()[0]
        if record.first_step >= 0:
            raise NonFiniteLossError(
                f"The training loss was NaN or infinite at step {record.first_step} (batch index "
                f"{record.first_batch} of its epoch); training stopped (nan_policy='stop') and nothing after that "
                f"step was saved. {checkpoint_hint()} To go on, lower the learning rate, set max_grad_norm, check "
                "that batch's data, or set nan_policy='skip' to drop updates with a non-finite loss."
            )

    def window_is_finite(self, record: GuardRecord | None = None) -> bool:
        """Whether the current accumulation window's losses were all finite (`record`: as in raise_if_seen)."""
        return not (record or self.read()[0]).window_bad

    def end_window(self, record: GuardRecord | None = None) -> None:
        """Start a new accumulation window (and mark `record`, if given, accordingly)."""
        self.window_bad.zero_()
        if record is not None:
            record.window_bad = False

    def take_bad_count(self, record: GuardRecord | None = None) -> int:
        """Non-finite losses since the last call (`record`: as in raise_if_seen, and reset with the count)."""
        record = record or self.read()[0]
        count = record.bad_count
        self.bad_since_log.zero_()
        record.bad_count = 0
        return count
