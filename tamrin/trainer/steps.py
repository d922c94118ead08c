"""Step arithmetic: how many steps, updates, and where to log, evaluate and save.

One place resolves every step setting (fractions of the run included) into integers, so the
Trainer never rewrites the user's config and every count means one thing (see TrainerState).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from tamrin.configs import ConfigError
from tamrin.trainer.config import TrainerConfig, resolve_steps

if TYPE_CHECKING:
    from torch.utils.data import DataLoader

__all__ = [
    "EpochPosition",
    "Resumed",
    "SkippingEpochPosition",
    "StepPlan",
    "can_start_mid_epoch",
    "check_steps_per_epoch",
    "check_train_dataset",
    "updates_in",
]


def check_train_dataset(dataset: Any) -> None:
    """Refuse an empty training dataset by name when the Trainer is built (whatever loader it uses).

    Raises:
        ConfigError: the dataset has no samples.
    """
    if hasattr(dataset, "__len__") and len(dataset) == 0:
        raise ConfigError(
            f"`train_dataset` ({type(dataset).__name__}) is empty: 0 samples, so there is nothing to train on. "
            "Check the dataset's path, split and filters, or pass train_dataset=None to only evaluate."
        )


def check_steps_per_epoch(steps_per_epoch: int, *, dataset_size: int, batch_size: int, num_processes: int) -> None:
    """Refuse a training loader that yields no batch (an epoch of zero steps would train nothing).

    A `batch_size` above the dataset size is fine while the last, short batch is kept (one step per
    epoch, as in HF Trainer); a sampler that drops incomplete batches leaves no step at all.

    Raises:
        ConfigError: the loader yields no batch; the message names batch_size, the dataset size and the fix.
    """
    if steps_per_epoch >= 1:
        return
    per_process = dataset_size // num_processes
    raise ConfigError(
        f"`batch_size={batch_size}` gives 0 training steps per epoch: the training dataset has {dataset_size} "
        f"samples ({per_process} per process over {num_processes} process(es)) and the training sampler yields no "
        f"batch of them (it drops incomplete batches). Set batch_size to at most {max(per_process, 1)}, add "
        "training data, or use a sampler that keeps the last incomplete batch (RangedSampler's default, "
        "drop_last=False)."
    )


def updates_in(steps: int, steps_per_epoch: int, accumulation: int) -> int:
    """Optimizer updates in the first `steps` steps: each epoch ends its last, partial window."""
    full_epochs, remainder = divmod(steps, steps_per_epoch)
    return full_epochs * math.ceil(steps_per_epoch / accumulation) + math.ceil(remainder / accumulation)


@dataclasses.dataclass(frozen=True)
class Resumed:
    """Where a resumed run starts: the checkpoint's counters, `epoch_step` at this world size."""

    global_step: int = 0
    optimizer_steps: int = 0
    epoch: int = 0
    epoch_step: int = 0
    steps_left: int | None = None  # batches of the resumed epoch still to come (None: its length - epoch_step)


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
        epoch_steps: batches of each epoch on each process (they differ with a curriculum's
            epoch="admitted"; otherwise all `steps_per_epoch`).
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

    epoch_steps: tuple[int, ...] = ()

    @classmethod
    def from_config(
        cls,
        config: TrainerConfig,
        steps_per_epoch: int,
        *,
        epoch_steps: Callable[[int], int] | None = None,
        resumed: Resumed | None = None,
    ) -> StepPlan:
        """Resolve `config`'s step settings for a data loader of `steps_per_epoch` batches.

        `epoch_steps(e)` gives the steps of epoch `e` when epochs differ in length (a curriculum
        with epoch="admitted"). `resumed` counts the run from a checkpoint's point on: the steps
        and updates done plus those left at this world size, so a run resumed with another number
        of processes keeps its plan, scheduler and logs in the units its sampler draws in.
        """
        if steps_per_epoch < 1:
            raise ConfigError("The training data loader is empty: there is nothing to train on.")
        length = epoch_steps or (lambda epoch: steps_per_epoch)
        accumulation, epochs = config.gradient_accumulation_steps, config.num_epochs
        start = resumed or Resumed()
        lengths = [length(epoch) for epoch in range(max(epochs, start.epoch + 1))]
        first_left = lengths[start.epoch] - start.epoch_step if start.steps_left is None else start.steps_left
        full_run = start.global_step + (
            first_left + sum(lengths[start.epoch + 1 : epochs]) if start.epoch < epochs else 0
        )
        max_steps = resolve_steps(config.max_steps, full_run, "max_steps")
        total_steps = full_run if max_steps is None else max_steps
        steps, updates, epoch, done_in_epoch = start.global_step, start.optimizer_steps, start.epoch, start.epoch_step
        while steps < total_steps:  # walk the epochs left (max_steps may end one early or add more)
            if epoch >= len(lengths):
                lengths.append(length(epoch))
            take = min(first_left if epoch == start.epoch else lengths[epoch], total_steps - steps)
            updates += math.ceil((done_in_epoch + take) / accumulation) - done_in_epoch // accumulation
            steps, epoch, done_in_epoch = steps + take, epoch + 1, 0
        num_epochs = max(epoch, start.epoch + (1 if start.epoch_step else 0), 1) if resumed else epoch
        return cls(
            steps_per_epoch=steps_per_epoch,
            total_steps=total_steps,
            max_steps=max_steps,
            total_updates=max(updates, 1),
            num_epochs=num_epochs,
            log_steps=resolve_steps(config.log_steps, total_steps, "log_steps"),
            eval_steps=resolve_steps(config.eval_steps, total_steps, "eval_steps"),
            save_steps=resolve_steps(config.save_steps, total_steps, "save_steps"),
            warmup_steps=resolve_steps(config.warmup_steps, max(updates, 1), "warmup_steps") or 0,
            accumulation=accumulation,
            epoch_steps=tuple(lengths[:num_epochs]),
        )

    def steps_in_epoch(self, epoch: int) -> int:
        """Batches of `epoch` on each process (what a progress bar counts to)."""
        return self.epoch_steps[epoch] if epoch < len(self.epoch_steps) else self.steps_per_epoch

    @classmethod
    def for_stream(cls, config: TrainerConfig, dataset_name: str) -> StepPlan:
        """The plan of a run over a stream (no known length): `max_steps` steps, over as many passes as it takes.

        An epoch is one pass over the stream; its length is unknown until it ends, so the plan takes
        `max_steps` as the epoch's bound (no epoch has more steps than the run) and the run ends at
        max_steps, whichever epoch that falls in.

        Raises:
            ConfigError: `max_steps` is not set to a whole number of steps.
        """
        max_steps = config.max_steps
        if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
            raise ConfigError(
                f"`max_steps={max_steps!r}`: the training dataset ({dataset_name}) is a stream (an IterableDataset) "
                "with no known length, so the run's length cannot come from num_epochs or a fraction. Set "
                "`max_steps` to a number of steps (an int >= 1); each epoch is one pass over the stream."
            )
        accumulation = config.gradient_accumulation_steps
        total_updates = math.ceil(max_steps / accumulation)
        return cls(
            steps_per_epoch=max_steps,
            total_steps=max_steps,
            max_steps=max_steps,
            total_updates=total_updates,
            num_epochs=max_steps,  # every pass gives at least one step (an empty one is refused)
            log_steps=resolve_steps(config.log_steps, max_steps, "log_steps"),
            eval_steps=resolve_steps(config.eval_steps, max_steps, "eval_steps"),
            save_steps=resolve_steps(config.save_steps, max_steps, "save_steps"),
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

    def scheduler_steps(self, lr_scheduling_steps: int | None) -> int:
        """How often an epoch-style scheduler steps: each `lr_scheduling_steps` steps, else each epoch end."""
        every = lr_scheduling_steps or self.steps_per_epoch
        return max(1, self.total_steps // every)

    def window_size(self, epoch_step: int, last_epoch_step: int) -> int:
        """How many batches the accumulation window of the `epoch_step`-th batch (1-based) holds.

        Windows start every `accumulation` batches of an epoch; the last one of an epoch (or of the
        run, at max_steps) is cut short at `last_epoch_step`, the index of the epoch's final batch.
        """
        start = (epoch_step - 1) // self.accumulation * self.accumulation + 1
        return min(start + self.accumulation - 1, last_epoch_step) - start + 1

    def due(self, interval: int | None, global_step: int, *, end_of_epoch: bool, end_of_run: bool) -> bool:
        """Whether an event with this interval (None: each epoch end) falls on `global_step`.

        Every event is also due at the end of the run, so the last step is always logged, evaluated
        and saved.
        """
        if interval is None:
            return end_of_epoch or end_of_run
        return global_step % interval == 0 or end_of_run


class EpochPosition:
    """Where the training loader is in its epoch, counted from the sampler's (resumed) start.

    The sampler's positions are global (all processes together), so a run resumed with another
    number of processes continues at the same sample; `steps` counts batches since `start`.
    """

    def __init__(self) -> None:
        self.loader: Any = None  # the DataLoader of the epoch in progress
        self.steps = 0
        self.num_batches = 0
        self.last_step = 0

    def start(self, loader: DataLoader, *, epoch: int, position: int, seed: int, done_steps: int = 0) -> None:
        """Point the sampler at `epoch` and `position`, and reseed the loader's generator for the epoch.

        `done_steps` (batches of the epoch already trained) is for samplers that cannot start at a
        position (`SkippingEpochPosition`); a RangedSampler starts at `position` itself.
        """
        sampler: Any = loader.sampler  # a RangedSampler (or one with its interface)
        sampler.set_epoch(epoch)
        end = getattr(sampler, "end_index", None)
        if isinstance(end, int) and position > end:  # only a resumed epoch starts past 0
            raise ConfigError(
                f"The checkpoint stopped at sample {position} of epoch {epoch}, but the training dataset now "
                f"has {end} samples: it shrank since the checkpoint was saved. Resume with the data the run "
                "was trained on, or start a fresh run (another output_dir, or overwrite_output_dir=True)."
            )
        sampler.set_start_index(position)
        loader.generator.manual_seed(seed * 1_000_003 + epoch)
        self.loader = loader
        self.steps = 0
        self.num_batches = len(loader)
        self.last_step = self._first_step_at_end()  # fixed for the epoch; asked twice a step otherwise

    def batches(self) -> Iterable[Any]:
        """The batches of the epoch from the resumed position (the loader itself: it starts there)."""
        return self.loader

    def advance(self) -> int:
        """Count one batch; returns the global sample position after it."""
        self.steps += 1
        return self.loader.sampler.position_after(self.steps)

    def batches_left(self) -> int:
        """Batches of this epoch still to come, the next one included."""
        return self.last_step - self.steps

    def next_is_last(self) -> bool:
        """Whether the next batch is the epoch's last (its accumulation window must end with it)."""
        return self._ends_after(self.steps + 1)

    def at_end(self) -> bool:
        """Whether the batches counted so far finish the epoch."""
        return self._ends_after(self.steps)

    def _ends_after(self, steps: int) -> bool:
        return steps >= self.last_step

    def _first_step_at_end(self) -> int:
        """The batch count that ends the epoch: the sampler reaches `end_index`, or the loader runs out.

        A sampler that stops short of end_index (drop_last=True) ends the epoch with the loader.
        `position_after` only grows with the count, so a binary search finds it in O(log n).
        """
        sampler = self.loader.sampler
        low, high = 0, self.num_batches
        while low < high:
            middle = (low + high) // 2
            if sampler.position_after(middle) >= sampler.end_index:
                high = middle
            else:
                low = middle + 1
        return low


RESUMABLE_SAMPLER_METHODS = ("set_epoch", "set_start_index", "position_after", "end_index")
"""What the loop uses of a training sampler to start mid-epoch in O(1) (RangedSampler has them all)."""


def can_start_mid_epoch(sampler: Any) -> bool:
    """Whether `sampler` offers RangedSampler's interface (so a resume starts at a sample in O(1))."""
    return all(hasattr(sampler, name) for name in RESUMABLE_SAMPLER_METHODS)


class SkippingEpochPosition(EpochPosition):
    """The position of a loader whose sampler cannot start mid-epoch (a plain torch sampler).

    A resumed epoch skips its first `done_steps` batches by loading them, as the HF Trainer does
    (O(k), not O(1)). The order repeats, and the resume is exact, when the sampler's order depends
    only on the epoch: a `set_epoch` (DistributedSampler) or the loader's `generator`, which is
    reseeded per epoch here. A sampler that draws from the global RNG gives another order.
    """

    def __init__(self, note: str = "") -> None:
        super().__init__()
        self.note = note  # how this sampler resumes, in words (recorded in each checkpoint's manifest)
        self.skip = 0

    def start(self, loader: DataLoader, *, epoch: int, position: int, seed: int, done_steps: int = 0) -> None:
        set_epoch = getattr(loader.sampler, "set_epoch", None)
        if callable(set_epoch):
            set_epoch(epoch)
        if loader.generator is not None:
            loader.generator.manual_seed(seed * 1_000_003 + epoch)
        self.loader = loader
        self.skip = done_steps
        self.steps = 0
        self.num_batches = len(loader)
        self.last_step = self.num_batches - done_steps

    def batches(self) -> Iterable[Any]:
        return itertools.islice(self.loader, self.skip, None)

    def advance(self) -> int:
        self.steps += 1
        return (self.skip + self.steps) * (self.loader.batch_size or 1)
