"""Step arithmetic: how many steps, updates, and where to log, evaluate and save.

One place resolves every step setting (fractions of the run included) into integers, so the
Trainer never rewrites the user's config and every count means one thing (see TrainerState).
"""

from __future__ import annotations

import dataclasses
import math

from tamrin.trainer.config import TrainerConfig, resolve_steps

__all__ = ["StepPlan", "updates_in"]


def updates_in(steps: int, steps_per_epoch: int, accumulation: int) -> int:
    """Optimizer updates in the first `steps` steps: each epoch ends its last, partial window."""
    full_epochs, remainder = divmod(steps, steps_per_epoch)
    return full_epochs * math.ceil(steps_per_epoch / accumulation) + math.ceil(remainder / accumulation)


@dataclasses.dataclass(frozen=True)
class StepPlan:
    """The resolved step settings of a run.

    Attributes:
        steps_per_epoch: batches per epoch on each process.
        total_steps: steps of the whole run (max_steps when given), at this world size.
        max_steps: the resolved max_steps, or None (the run then ends with its last epoch, which
            stays true when a run is resumed with another number of processes).
        total_updates: optimizer updates of the whole run (what schedulers decay over).
        num_epochs: epochs the run will start (the last one may stop early at max_steps).
        log_steps / eval_steps / save_steps: intervals in steps; None means at each epoch end.
        warmup_steps: warmup in optimizer updates.
        accumulation: steps per optimizer update (gradient_accumulation_steps).
    """

    steps_per_epoch: int
    total_steps: int
    max_steps: int | None
    total_updates: int
    num_epochs: int
    log_steps: int | None
    eval_steps: int | None
    save_steps: int | None
    warmup_steps: int
    accumulation: int

    @classmethod
    def from_config(cls, config: TrainerConfig, steps_per_epoch: int) -> StepPlan:
        """Resolve `config`'s step settings for a data loader of `steps_per_epoch` batches."""
        if steps_per_epoch < 1:
            raise ValueError("The training data loader is empty: there is nothing to train on.")
        full_run = steps_per_epoch * config.num_epochs
        max_steps = resolve_steps(config.max_steps, full_run, "max_steps")
        total_steps = full_run if max_steps is None else max_steps
        accumulation = config.gradient_accumulation_steps
        total_updates = updates_in(total_steps, steps_per_epoch, accumulation)
        return cls(
            steps_per_epoch=steps_per_epoch,
            total_steps=total_steps,
            max_steps=max_steps,
            total_updates=total_updates,
            num_epochs=math.ceil(total_steps / steps_per_epoch),
            log_steps=resolve_steps(config.log_steps, total_steps, "log_steps"),
            eval_steps=resolve_steps(config.eval_steps, total_steps, "eval_steps"),
            save_steps=resolve_steps(config.save_steps, total_steps, "save_steps"),
            warmup_steps=resolve_steps(config.warmup_steps, total_updates, "warmup_steps") or 0,
            accumulation=accumulation,
        )

    def reached_max_steps(self, global_step: int) -> bool:
        """Whether `max_steps` (if set) is reached at `global_step`."""
        return self.max_steps is not None and global_step >= self.max_steps

    def is_update_step(self, epoch_step: int, global_step: int, *, last_batch: bool) -> bool:
        """Whether the `epoch_step`-th batch (1-based) of an epoch ends an accumulation window.

        A window also ends with the epoch (`last_batch`) and at max_steps, so no gradient is left
        unapplied.
        """
        return epoch_step % self.accumulation == 0 or last_batch or self.reached_max_steps(global_step)

    def due(self, interval: int | None, global_step: int, *, end_of_epoch: bool, end_of_run: bool) -> bool:
        """Whether an event with this interval (None: each epoch end) falls on `global_step`.

        Every event is also due at the end of the run, so the last step is always logged, evaluated
        and saved.
        """
        if interval is None:
            return end_of_epoch or end_of_run
        return global_step % interval == 0 or end_of_run
