"""Curriculum learning: a sampler that draws the easiest samples first, paced by training progress.

A `CurriculumSampler` ranks the samples by a difficulty score (low = easy) and, at global step
``s`` of a run of ``T`` steps, draws only from the ``k(s) = ceil(pacing(s / T) * N)`` easiest ones.
The sample at a position is a pure function of (seed, epoch, position, scores, pacing, T), so the
sampler resumes in O(1) exactly as `RangedSampler` does, a prefetching DataLoader cannot see a
stale threshold, and ranks agree on the eligible set without talking to each other.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch

from tamrin.configs import ConfigError
from tamrin.datasets.sampling.difficulty import IndexedData, difficulty_scores
from tamrin.datasets.sampling.keyed_permutation import CHUNK, FIRST_CHUNK, MASK64, KeyedPermutation, splitmix64
from tamrin.datasets.sampling.pacing import PACINGS, LinearPacing, Pacing, RootPacing, StepPacing, build_pacing
from tamrin.datasets.sampling.ranged_sampler import RangedSampler
from tamrin.datasets.sampling.thresholds import ThresholdPacing, count_admitted

__all__ = [
    "EPOCH_MODES",
    "PACINGS",
    "Pacing",
    "CurriculumSampler",
    "LinearPacing",
    "RootPacing",
    "StepPacing",
    "ThresholdPacing",
    "build_pacing",
    "check_epoch_mode",
    "difficulty_scores",
]

_TIEBREAK_KEY = 0x7FFF_FFFF  # keys the permutation that breaks ties between equal scores
EPOCH_MODES = ("full", "admitted")
"""What an epoch is: `full` = len(data) draws (easy samples repeat); `admitted` = one pass over the admitted set."""


class CurriculumSampler(RangedSampler):
    """A RangedSampler whose draws are restricted to the easiest samples, a share set by a pacing.

    **Pacing.** The position ``p`` of epoch ``e`` belongs to the global batch ``p // G`` (``G =
    batch_size * num_replicas``), i.e. global step ``s = e * steps_per_epoch + p // G``; the same
    step the Trainer counts (`set_step_anchor` keeps it so after a resume with another number of
    processes). A fraction pacing admits the ``ceil(pacing(s / total_steps) * N)`` easiest samples;
    a `ThresholdPacing` admits those whose score passes the threshold of the epoch (or step). Never
    fewer than one global batch. The admitted set must not shrink within an epoch.

    **Epochs.** ``epoch="full"``: an epoch has ``N`` draws (easy samples repeat while few are
    admitted). ``epoch="admitted"`` (per-epoch thresholds only): an epoch is one shuffled pass over
    the samples admitted at its start, so its length changes; `epoch_steps` gives the lengths.

    **Order.** A *stage* is a run of steps of one epoch with the same eligible count ``k``. Inside
    a stage the positions walk through keyed permutations of the ``k`` easiest samples (a new one
    each time all ``k`` were drawn), so no sample repeats before every eligible one was seen; once
    ``k = N`` for a whole epoch, the epoch is a plain permutation of the data. With
    ``shuffle=False`` the stage walks the eligible samples from easiest to hardest instead.

    **Resume, sharding, length.** As RangedSampler: global positions, rank ``p % num_replicas``,
    the same ``len()``, ``position_after`` and ``end_index``. Sorting the scores (once, at
    construction or `set_scores`) is O(N log N); starting at any position costs O(log steps).

    Args:
        data: the dataset (iterated only to read a column or run a scoring function).
        batch_size: per-process batch size.
        scores: difficulty per sample, as `difficulty_scores` accepts; low = easy, unless a
            ThresholdPacing says `higher_is_easier`.
        pacing: see `build_pacing`.
        total_steps: steps of the whole run (progress = step / total_steps) for a fraction pacing;
            the Curriculum callback sets it from the Trainer's plan.
        epoch: "full" or "admitted" (see Epochs).
        start_index, end_index, drop_last, shuffle, seed, num_replicas, rank: as RangedSampler.
    """

    def __init__(
        self,
        data: IndexedData,
        batch_size: int,
        scores: Any = None,
        pacing: str | Mapping[str, Any] | Pacing = "linear",
        total_steps: int | None = None,
        *,
        epoch: str = "full",
        start_index: int | None = None,
        end_index: int | None = None,
        drop_last: bool = False,
        shuffle: bool = True,
        seed: int | None = None,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        super().__init__(data, batch_size, start_index, end_index, drop_last, shuffle, seed, num_replicas, rank)
        self.pacing = build_pacing(pacing)
        self.epoch_mode = check_epoch_mode(epoch, self.pacing)
        self.total_steps: int | None = None
        self._anchor = (0, 0, 0)  # (global step, epoch, position) where the Trainer's step count meets ours
        self._stage_starts: dict[tuple[int, int], int] = {}
        if total_steps is not None:
            self.set_total_steps(total_steps)
        self.set_scores(difficulty_scores(data, scores))

    @property
    def thresholds(self) -> ThresholdPacing | None:
        """The threshold pacing, or None for a fraction pacing."""
        return self.pacing if isinstance(self.pacing, ThresholdPacing) else None

    def set_total_steps(self, total_steps: int) -> None:
        """Set the run's length in steps (what progress 1.0 means)."""
        if not isinstance(total_steps, int) or total_steps < 1:
            raise ValueError(f"`total_steps={total_steps!r}` must be an int >= 1.")
        self.total_steps = total_steps
        self._stage_starts.clear()

    def set_step_anchor(self, step: int, epoch: int, position: int) -> None:
        """Count steps as the Trainer does from its resume point: global `step` is at `position` of `epoch`.

        Without a change of world size this changes nothing; after one, the steps of the resumed
        epoch are batches of the new global batch from `position`, as the Trainer counts them.
        """
        self._anchor = (step, epoch, position)
        self._stage_starts.clear()

    def set_scores(self, scores: Any) -> None:
        """Replace the difficulty scores (call it between epochs, before the loader iterates)."""
        self.scores = difficulty_scores(range(self.data_length), scores)
        tiebreak = KeyedPermutation(self.data_length, self.seed, _TIEBREAK_KEY)(
            np.arange(self.data_length, dtype=np.uint64)
        )
        keys = self.thresholds.sort_key(self.scores) if self.thresholds else self.scores
        self.order = np.lexsort((tiebreak, keys))  # easiest first; ties in a seeded random order
        self._sorted_keys = keys[self.order]
        self._stage_starts.clear()
        if self.epoch_mode == "admitted":
            self._fit_epoch()

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch; with epoch="admitted" its end is the count admitted at its start."""
        super().set_epoch(epoch)
        if self.epoch_mode == "admitted" and hasattr(self, "order"):
            self._fit_epoch()

    def _fit_epoch(self) -> None:
        self.end_index = self.admitted_in_epoch(self.epoch)
        self.start_index = min(self.start_index, self.end_index)

    def admitted_in_epoch(self, epoch: int) -> int:
        """Samples drawn in `epoch` with epoch="admitted" (the per-epoch threshold's count, floored)."""
        thresholds = self.thresholds
        assert thresholds is not None, "epoch='admitted' is checked to have a ThresholdPacing"
        return self._floored(count_admitted(self._sorted_keys, thresholds, thresholds.threshold(epoch)))

    def _batches_in(self, samples: int) -> int:
        """Per-process batches that `samples` global positions make (as len(loader) counts them)."""
        per_rank = samples // self.num_replicas if self.drop_last else -(-samples // self.num_replicas)
        return per_rank // self.batch_size if self.drop_last else -(-per_rank // self.batch_size)

    @property
    def steps_per_epoch(self) -> int:
        """Batches per epoch on each process (as the Trainer's DataLoader counts them); the current epoch's."""
        return self._batches_in(self.end_index)

    def steps_in_epoch(self, epoch: int) -> int:
        """Steps of `epoch` with the current scores (all the same with epoch="full")."""
        samples = self.data_length if self.epoch_mode == "full" else self.admitted_in_epoch(epoch)
        return self._batches_in(samples)

    @property
    def full_epoch_steps(self) -> int:
        """Steps of an epoch of len(data) draws (epoch="full"; the bound of an admitted one)."""
        return self._batches_in(self.data_length)

    def first_step(self, epoch: int) -> int:
        """The global step at position 0 of `epoch` (for the anchor's epoch, where it would have been)."""
        anchor_step, anchor_epoch, anchor_position = self._anchor
        full = self._batches_in(self.data_length)
        if self.epoch_mode == "admitted":  # epochs of their admitted sets' lengths (as planned before the run)
            return sum(self.steps_in_epoch(earlier) for earlier in range(epoch))
        if anchor_step == 0 or epoch < anchor_epoch:
            return epoch * full
        if epoch == anchor_epoch:
            return anchor_step - anchor_position // (self.batch_size * self.num_replicas)
        left = self._batches_in(self.data_length - anchor_position)  # batches of the anchor's epoch after it
        return anchor_step + left + (epoch - anchor_epoch - 1) * full

    def step_at(self, epoch: int, position: int) -> int:
        """The global step (as the Trainer counts it) that draws `position` of `epoch`."""
        global_batch = self.batch_size * self.num_replicas
        anchor_step, anchor_epoch, anchor_position = self._anchor
        if epoch == anchor_epoch and anchor_step:
            return anchor_step + (position - anchor_position) // global_batch
        return self.first_step(epoch) + position // global_batch

    def _floored(self, count: int) -> int:
        return max(count, min(self.data_length, self.batch_size * self.num_replicas), 1)

    def fraction(self, step: int, epoch: int | None = None) -> float:
        """The eligible fraction at global step `step` (0-based) of `epoch` (default: the step's)."""
        if self.thresholds is not None:
            return self.eligible_count(step, epoch) / self.data_length
        if self.total_steps is None:
            raise ValueError(
                "CurriculumSampler needs the run's length to pace it: pass `total_steps=` or call "
                "`set_total_steps()` (the Curriculum callback does this from the Trainer's plan)."
            )
        value = float(self.pacing(min(step / self.total_steps, 1.0)))  # type: ignore[operator]
        if math.isnan(value):
            raise ValueError(f"The pacing returned NaN at step {step}.")
        return min(max(value, 0.0), 1.0)

    def admitted_count(self, step: int, epoch: int | None = None) -> int:
        """Samples that pass the pacing at `step` before the one-global-batch floor."""
        thresholds = self.thresholds
        if thresholds is None:
            return math.ceil(round(self.fraction(step) * self.data_length, 9))
        return count_admitted(self._sorted_keys, thresholds, self.user_threshold(step, epoch))

    def user_threshold(self, step: int, epoch: int | None = None) -> float:
        """A ThresholdPacing's threshold at `step` of `epoch`, in the scores' units."""
        assert self.thresholds is not None
        if self.thresholds.per == "step":
            return self.thresholds.threshold(step)
        return self.thresholds.threshold(self._epoch_of(step) if epoch is None else epoch)

    def _epoch_of(self, step: int) -> int:
        epoch = max(self._anchor[1], 0)
        while self.first_step(epoch + 1) <= step:
            epoch += 1
        while epoch > 0 and self.first_step(epoch) > step:
            epoch -= 1
        return epoch

    def eligible_count(self, step: int, epoch: int | None = None) -> int:
        """How many of the easiest samples may be drawn at global step `step` (0-based)."""
        if self.epoch_mode == "admitted":
            return self.admitted_in_epoch(self._epoch_of(step) if epoch is None else epoch)
        return self._floored(self.admitted_count(step, epoch))

    def threshold(self, step: int, epoch: int | None = None) -> float:
        """The user's threshold (ThresholdPacing), else the difficulty of the hardest eligible sample."""
        if self.thresholds is not None:
            return self.user_threshold(step, epoch)
        return float(self.scores[self.order[self.eligible_count(step) - 1]])

    def _stage_start(self, epoch: int, step: int, count: int) -> int:
        """The first step of this epoch with eligible count `count` (binary search: the pacing grows)."""
        key = (epoch, count)
        if key not in self._stage_starts:
            low, high = min(self.first_step(epoch), step), step
            while low < high:
                middle = (low + high) // 2
                if self.eligible_count(middle, epoch) >= count:
                    high = middle
                else:
                    low = middle + 1
            self._stage_starts[key] = low
        return self._stage_starts[key]

    def _position_of(self, epoch: int, step: int) -> int:
        """The first position of `epoch` drawn at `step` (inverse of `step_at`)."""
        global_batch = self.batch_size * self.num_replicas
        anchor_step, anchor_epoch, anchor_position = self._anchor
        if epoch == anchor_epoch and anchor_step:
            return anchor_position + (step - anchor_step) * global_batch
        return (step - self.first_step(epoch)) * global_batch

    def _sample_indices(self, positions: np.ndarray) -> np.ndarray:
        """Dataset indices at global `positions` of the current epoch (pure: no iteration state)."""
        if self.epoch_mode == "admitted":  # one stage: a permutation of the epoch's admitted samples
            ranks = positions
            if self.shuffle:
                key = splitmix64(splitmix64(self.seed & MASK64) ^ self.epoch)
                ranks = KeyedPermutation(self.end_index, key, 0)(positions)
            return self.order[ranks.astype(np.int64)]
        ranks = np.empty_like(positions)
        steps = self._steps_of(positions)
        cuts = np.flatnonzero(steps[1:] != steps[:-1]) + 1
        for run in np.split(np.arange(positions.size), cuts):
            step = int(steps[run[0]])
            count = self.eligible_count(step, self.epoch)
            stage = self._stage_start(self.epoch, step, count)
            offsets = positions[run] - np.uint64(max(self._position_of(self.epoch, stage), 0))
            cycles, within = offsets // np.uint64(count), offsets % np.uint64(count)
            if not self.shuffle:
                ranks[run] = within
                continue
            key = splitmix64(splitmix64(splitmix64(self.seed & MASK64) ^ self.epoch) ^ stage)
            for cycle in np.unique(cycles).tolist():
                mask = cycles == cycle
                ranks[run[mask]] = KeyedPermutation(count, key, cycle)(within[mask])
        return self.order[ranks.astype(np.int64)]

    def _steps_of(self, positions: np.ndarray) -> np.ndarray:
        """The global step of each position of the current epoch (vectorised `step_at`)."""
        global_batch = self.batch_size * self.num_replicas
        anchor_step, anchor_epoch, anchor_position = self._anchor
        values = positions.astype(np.int64)
        if self.epoch == anchor_epoch and anchor_step:
            return anchor_step + (values - anchor_position) // global_batch
        return self.first_step(self.epoch) + values // global_batch

    def __iter__(self) -> Iterator[int]:
        """Yield this rank's dataset indices, a chunk of positions at a time (as RangedSampler)."""
        count, stride, end = len(self), self.num_replicas, self.end_index
        first = self.start_index + (self.rank - self.start_index) % stride
        offsets = np.arange(min(count, CHUNK), dtype=np.uint64) * np.uint64(stride)
        done, chunk, last_count = 0, FIRST_CHUNK, 0
        while done < count:
            size = min(chunk, count - done)
            begin = first + done * stride
            positions = offsets[:size] + np.uint64(begin)
            last_count = self._check_growth(begin, min(begin + (size - 1) * stride, end - 1), last_count)
            if begin + (size - 1) * stride >= end:  # padding: wrap to the epoch's start
                wrap = positions >= end
                positions[wrap] = (positions[wrap] - np.uint64(end)) % np.uint64(end)
            yield from self._sample_indices(positions).tolist()
            done += size
            chunk = min(2 * chunk, CHUNK)

    def _check_growth(self, first: int, last: int, previous: int) -> int:
        """Raise if the eligible count shrinks between the steps of positions `first`..`last`."""
        if self.epoch_mode == "admitted":
            return previous
        for step in range(self.step_at(self.epoch, first), self.step_at(self.epoch, last) + 1):
            count = self.eligible_count(step, self.epoch)
            if count < previous:
                raise ValueError(
                    f"The pacing decreased at step {step} ({previous} -> {count} eligible samples); "
                    "a curriculum's pacing must not decrease."
                )
            previous = count
        return previous

    def state_dict(self) -> dict[str, Any]:
        """RangedSampler's state plus the run length and the scores (a float64 tensor)."""
        return {**super().state_dict(), "total_steps": self.total_steps, "scores": torch.from_numpy(self.scores.copy())}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a `state_dict` (strict: missing or unknown keys are an error)."""
        state = dict(state)
        if "total_steps" not in state or "scores" not in state:
            raise ValueError(f"CurriculumSampler state needs `total_steps` and `scores`; it has {sorted(state)}.")
        total_steps, scores = state.pop("total_steps"), state.pop("scores")
        self.set_scores(scores)
        super().load_state_dict(state)
        self.set_scores(scores)  # the saved seed keys the tie-break order
        if total_steps is not None:
            self.set_total_steps(int(total_steps))


def check_epoch_mode(epoch: str, pacing: Pacing) -> str:
    """`epoch` if valid for `pacing` (epoch="admitted" needs thresholds that move per epoch).

    Raises:
        ConfigError: an unknown mode, or "admitted" with a fraction or per-step pacing.
    """
    if epoch not in EPOCH_MODES:
        raise ConfigError(f"`epoch={epoch!r}` is not valid. Valid: {', '.join(EPOCH_MODES)}.")
    if epoch == "admitted" and not (isinstance(pacing, ThresholdPacing) and pacing.per == "epoch"):
        raise ConfigError(
            "`epoch='admitted'` (one pass over the admitted set) needs a threshold pacing that moves per epoch "
            "(pacing: {name: threshold, per: epoch, ...}); a fraction or per-step pacing changes the set "
            "within an epoch. Use epoch='full' with it."
        )
    return epoch
