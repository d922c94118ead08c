"""Curriculum learning: a sampler that draws the easiest samples first, paced by training progress.

A `CurriculumSampler` ranks the samples by a difficulty score (low = easy) and, at global step
``s`` of a run of ``T`` steps, draws only from the ``k(s) = ceil(pacing(s / T) * N)`` easiest ones.
The sample at a position is a pure function of (seed, epoch, position, scores, pacing, T), so the
sampler resumes in O(1) exactly as `RangedSampler` does, a prefetching DataLoader cannot see a
stale threshold, and ranks agree on the eligible set without talking to each other.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol

import numpy as np
import torch

from tamrin.configs import ConfigError, suggest
from tamrin.datasets.sampling.keyed_permutation import CHUNK, FIRST_CHUNK, MASK64, KeyedPermutation, splitmix64
from tamrin.datasets.sampling.ranged_sampler import RangedSampler

__all__ = [
    "PACINGS",
    "CurriculumSampler",
    "LinearPacing",
    "RootPacing",
    "StepPacing",
    "build_pacing",
    "difficulty_scores",
]

_TIEBREAK_KEY = 0x7FFF_FFFF  # keys the permutation that breaks ties between equal scores


@dataclasses.dataclass(frozen=True)
class LinearPacing:
    """Eligible fraction grows linearly from `start` to 1 at `duration` of the run, then stays 1."""

    start: float = 0.25
    duration: float = 0.8

    def __post_init__(self) -> None:
        if not 0 < self.start <= 1:
            raise ConfigError(f"`start={self.start!r}` must be a fraction in (0, 1].")
        if not 0 < self.duration <= 1:
            raise ConfigError(f"`duration={self.duration!r}` must be a fraction of the run in (0, 1].")

    def _ramp(self, progress: float) -> float:
        return min(max(progress, 0.0) / self.duration, 1.0)

    def __call__(self, progress: float) -> float:
        return self.start + (1.0 - self.start) * self._ramp(progress)


@dataclasses.dataclass(frozen=True)
class RootPacing(LinearPacing):
    """Competence-based pacing (Platanios et al., 2019): ``(start^p + (1 - start^p) * t)^(1/p)``.

    Grows fast at first and slowly later; `power=2` is the square root of the paper.
    """

    power: float = 2.0

    def __call__(self, progress: float) -> float:
        base = self.start**self.power
        return (base + (1.0 - base) * self._ramp(progress)) ** (1.0 / self.power)


@dataclasses.dataclass(frozen=True)
class StepPacing(LinearPacing):
    """`num_stages` equal plateaus from `start` up to 1 (the last one begins at `duration`)."""

    num_stages: int = 4

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.num_stages, int) or self.num_stages < 2:
            raise ConfigError(f"`num_stages={self.num_stages!r}` must be an int >= 2.")

    def __call__(self, progress: float) -> float:
        stages = self.num_stages
        stage = min(math.floor(self._ramp(progress) * (stages - 1) + 1e-9), stages - 1)
        return self.start + (1.0 - self.start) * stage / (stages - 1)


PACINGS: dict[str, type[LinearPacing]] = {"linear": LinearPacing, "root": RootPacing, "step": StepPacing}
Pacing = Callable[[float], float]


def build_pacing(pacing: str | Mapping[str, Any] | Pacing, **kwargs: Any) -> Pacing:
    """A pacing function: a name in PACINGS (with its keyword arguments), a {"name": ..., **kwargs}
    mapping (as a recipe writes it), or a callable of training progress in [0, 1] returned as is.

    Raises:
        ConfigError: unknown name or arguments.
    """
    if isinstance(pacing, Mapping):
        kwargs = {**{k: v for k, v in pacing.items() if k != "name"}, **kwargs}
        pacing = pacing.get("name", "")
    if callable(pacing) and not isinstance(pacing, str):
        if kwargs:
            raise ConfigError(f"Pacing arguments {kwargs} only apply to a named pacing ({', '.join(PACINGS)}).")
        return pacing
    if pacing not in PACINGS:
        raise ConfigError(
            f"Unknown pacing {pacing!r}.{suggest(str(pacing), PACINGS)} Valid: {', '.join(PACINGS)}, "
            "or a callable mapping training progress in [0, 1] to the eligible fraction."
        )
    try:
        return PACINGS[pacing](**kwargs)
    except TypeError as err:
        raise ConfigError(f"Pacing {pacing!r} does not take {kwargs}: {err}") from err


class IndexedData(Protocol):
    """What difficulty scores are read from: a sized dataset indexed by position (or, for a Hugging Face
    dataset, by column name: hence the untyped index)."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: Any, /) -> Any: ...


def difficulty_scores(data: IndexedData, scores: Any) -> np.ndarray:
    """Per-sample difficulty (low = easy) as float64: an array of len(data), the name of a column
    of `data` (a Hugging Face dataset column, or a key of each item), or a function of one item.
    None gives equal scores (the order is then random, keyed by the seed).

    Raises:
        ValueError: wrong length, a missing column, or a score that is not a finite number.
    """
    n = len(data)
    if scores is None:
        return np.zeros(n)
    if isinstance(scores, str):
        columns = getattr(data, "column_names", None)
        if columns is not None and scores in columns:
            values = list(data[scores])
        else:
            values = [_item_value(data, index, scores) for index in range(n)]
    elif callable(scores):
        values = [scores(data[index]) for index in range(n)]
    else:
        values = scores.detach().cpu().numpy() if hasattr(scores, "detach") else scores
    array = np.asarray(values, dtype=np.float64)
    if array.shape != (n,):
        raise ValueError(f"Difficulty scores have shape {array.shape}; expected one number per sample, ({n},).")
    bad = np.flatnonzero(~np.isfinite(array))
    if bad.size:
        raise ValueError(f"Difficulty score of sample {int(bad[0])} is {array[bad[0]]}; scores must be finite.")
    return array


def _item_value(data: Any, index: int, column: str) -> float:
    """The number under `column` in item `index` of `data`."""
    item = data[index]
    if not isinstance(item, Mapping) or column not in item:
        keys = sorted(item) if isinstance(item, Mapping) else type(item).__name__
        raise ValueError(
            f"Difficulty column {column!r} is not in sample {index} (it has {keys}). Name a numeric column, or "
            "pass a function of a sample, e.g. `lambda s: len(s['input_ids'])`."
        )
    return float(item[column])


class CurriculumSampler(RangedSampler):
    """A RangedSampler whose draws are restricted to the easiest samples, a share set by a pacing.

    **Pacing.** The position ``p`` of epoch ``e`` belongs to the global batch ``p // G`` (``G =
    batch_size * num_replicas``), i.e. global step ``s = e * steps_per_epoch + p // G``; the same
    step the Trainer counts. Its eligible set is the ``eligible_count(s)`` easiest samples, with
    ``eligible_count(s) = ceil(pacing(s / total_steps) * N)``, never below one global batch. The
    pacing must not decrease.

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
        scores: difficulty per sample, as `difficulty_scores` accepts; low = easy.
        pacing: the eligible fraction as a function of progress in [0, 1]; see `build_pacing`.
        total_steps: steps of the whole run (progress = step / total_steps); the Curriculum
            callback sets it from the Trainer's plan. Required before iterating.
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
        self.total_steps: int | None = None
        self._stage_starts: dict[tuple[int, int], int] = {}
        if total_steps is not None:
            self.set_total_steps(total_steps)
        self.set_scores(difficulty_scores(data, scores))

    def set_total_steps(self, total_steps: int) -> None:
        """Set the run's length in steps (what progress 1.0 means)."""
        if not isinstance(total_steps, int) or total_steps < 1:
            raise ValueError(f"`total_steps={total_steps!r}` must be an int >= 1.")
        self.total_steps = total_steps
        self._stage_starts.clear()

    def set_scores(self, scores: Any) -> None:
        """Replace the difficulty scores (call it between epochs, before the loader iterates)."""
        self.scores = difficulty_scores(range(self.data_length), scores)
        tiebreak = KeyedPermutation(self.data_length, self.seed, _TIEBREAK_KEY)(
            np.arange(self.data_length, dtype=np.uint64)
        )
        self.order = np.lexsort((tiebreak, self.scores))  # easiest first; ties in a seeded random order

    @property
    def steps_per_epoch(self) -> int:
        """Batches per epoch on each process (as the Trainer's DataLoader counts them)."""
        per_rank = self.end_index // self.num_replicas if self.drop_last else -(-self.end_index // self.num_replicas)
        return per_rank // self.batch_size if self.drop_last else -(-per_rank // self.batch_size)

    def fraction(self, step: int) -> float:
        """The pacing's eligible fraction at global step `step` (0-based), clipped to [0, 1]."""
        if self.total_steps is None:
            raise ValueError(
                "CurriculumSampler needs the run's length to pace it: pass `total_steps=` or call "
                "`set_total_steps()` (the Curriculum callback does this from the Trainer's plan)."
            )
        value = float(self.pacing(min(step / self.total_steps, 1.0)))
        if math.isnan(value):
            raise ValueError(f"The pacing returned NaN at step {step}.")
        return min(max(value, 0.0), 1.0)

    def eligible_count(self, step: int) -> int:
        """How many of the easiest samples may be drawn at global step `step` (0-based)."""
        n = self.data_length
        floor = min(n, self.batch_size * self.num_replicas)
        return max(math.ceil(round(self.fraction(step) * n, 9)), floor, 1)

    def threshold(self, step: int) -> float:
        """The difficulty of the hardest sample eligible at global step `step`."""
        return float(self.scores[self.order[self.eligible_count(step) - 1]])

    def _stage_start(self, epoch: int, step: int, count: int) -> int:
        """The first step of this epoch with eligible count `count` (binary search: the pacing grows)."""
        key = (epoch, count)
        if key not in self._stage_starts:
            low, high = epoch * self.steps_per_epoch, step
            while low < high:
                middle = (low + high) // 2
                if self.eligible_count(middle) >= count:
                    high = middle
                else:
                    low = middle + 1
            self._stage_starts[key] = low
        return self._stage_starts[key]

    def _sample_indices(self, positions: np.ndarray) -> np.ndarray:
        """Dataset indices at global `positions` of the current epoch (pure: no iteration state)."""
        global_batch = self.batch_size * self.num_replicas
        first_step = self.epoch * self.steps_per_epoch
        steps = positions // np.uint64(global_batch)
        ranks = np.empty_like(positions)
        cuts = np.flatnonzero(steps[1:] != steps[:-1]) + 1
        for run in np.split(np.arange(positions.size), cuts):
            step = first_step + int(steps[run[0]])
            count = self.eligible_count(step)
            stage = self._stage_start(self.epoch, step, count)
            offsets = positions[run] - np.uint64((stage - first_step) * global_batch)
            cycles, within = offsets // np.uint64(count), offsets % np.uint64(count)
            if not self.shuffle:
                ranks[run] = within
                continue
            key = splitmix64(splitmix64(splitmix64(self.seed & MASK64) ^ self.epoch) ^ stage)
            for cycle in np.unique(cycles).tolist():
                mask = cycles == cycle
                ranks[run[mask]] = KeyedPermutation(count, key, cycle)(within[mask])
        return self.order[ranks.astype(np.int64)]

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
        global_batch, first_step = self.batch_size * self.num_replicas, self.epoch * self.steps_per_epoch
        for step in range(first_step + first // global_batch, first_step + last // global_batch + 1):
            count = self.eligible_count(step)
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
        super().load_state_dict(state)
        self.set_scores(scores)
        if total_steps is not None:
            self.set_total_steps(int(total_steps))
