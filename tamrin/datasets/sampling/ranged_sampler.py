"""RangedSampler: a shuffling, shardable sampler that resumes mid-epoch in O(1).

The order of an epoch is a keyed pseudo-random permutation of ``[0, len(data))``, evaluated on
demand from a sample's position, so starting at position ``k`` costs the same for any ``k`` and
any dataset size: no index list of the dataset's length is ever built (not even a randperm).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sized
from typing import Any

import numpy as np
from torch.utils.data import Sampler

from tamrin.datasets.sampling.keyed_permutation import CHUNK, FIRST_CHUNK, KeyedPermutation

__all__ = ["RangedSampler"]

_STATE_KEYS = ("epoch", "start_index", "seed", "shuffle")


def _check_int(name: str, value: Any, low: int, high: int | None = None, hint: str = "") -> int:
    """Return ``value`` if it is an int in ``[low, high]``, else raise a ValueError naming it."""
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    if not ok or value < low or (high is not None and value > high):
        valid = f"an int >= {low}" if high is None else f"an int in [{low}, {high}]"
        raise ValueError(f"`{name}={value!r}` must be {valid}{hint}")
    return int(value)


class RangedSampler(Sampler[int]):
    """Sample positions ``[start_index, end_index)`` of a seeded, per-epoch order, sharded.

    **Order.** The epoch's global order is ``0..N-1`` (``N = len(data)``) when ``shuffle`` is
    False, else a keyed permutation of it that depends only on ``(seed, epoch, N)``: the same on
    every run, process and resume, different in every epoch. The global RNGs are never touched.

    **Positions are global.** ``start_index`` counts the samples of this epoch already consumed
    by all processes together; ``end_index`` (default ``N``) is where the epoch's order ends.
    Position ``p`` goes to rank ``p % num_replicas`` (interleaved, like DistributedSampler), so
    a run resumed at position ``k`` -- with any number of processes -- continues with exactly
    the samples the interrupted run had not consumed, in the same order.

    **Length.** With ``M = end_index - start_index`` and ``R = num_replicas``, every rank yields
    the same count, ``len(sampler)``:

    - ``drop_last=False``: ``ceil(M / R)``. The last ``< R`` slots past ``end_index`` are padded
      by wrapping around to the start of the epoch's order (position ``end_index + i`` reads
      position ``i % end_index``), as DistributedSampler pads.
    - ``drop_last=True``: ``floor(M / R)`` rounded down to a multiple of ``batch_size``; the
      tail that cannot fill a whole per-process batch on every rank is dropped (as Hezar drops
      the last incomplete batch).

    **Resuming.** A position belongs to its epoch: ``set_epoch`` to a *different* epoch restarts
    at position 0, so call ``set_epoch`` before ``set_start_index`` (``load_state_dict`` sets
    both). The sampler cannot tell how many yielded indices were trained on (DataLoader
    prefetches), so the caller records progress, e.g. with :meth:`position_after`.

    Args:
        data: Anything with ``len()``; only its length is used, the sampler never iterates it.
        batch_size: Per-process batch size (only used by ``drop_last``).
        start_index: Global position in the epoch's order to start at. None means 0.
        end_index: Exclusive global end position. None means ``len(data)``.
        drop_last: Drop the tail instead of padding it (see Length).
        shuffle: Permute the order (per epoch) instead of ``0..N-1``.
        seed: Key of the permutation; None means 0. Any int, taken modulo 2**64.
        num_replicas: Number of processes sharing the epoch.
        rank: This process's rank in ``[0, num_replicas)``.

    Raises:
        TypeError: ``data`` has no ``len()``.
        ValueError: ``data`` is empty, or an argument is out of range (the message names it).
    """

    def __init__(
        self,
        data: Sized,
        batch_size: int,
        start_index: int | None = None,
        end_index: int | None = None,
        drop_last: bool = False,
        shuffle: bool = False,
        seed: int | None = None,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        super().__init__()
        if not hasattr(data, "__len__"):
            raise TypeError(f"`data` must have a len(); got {type(data).__name__}")
        self.data_length = len(data)
        if self.data_length == 0:
            raise ValueError("`data` is empty (len(data) == 0); RangedSampler needs >= 1 sample")
        self.batch_size = _check_int("batch_size", batch_size, 1)
        self.num_replicas = _check_int("num_replicas", num_replicas, 1)
        self.rank = _check_int("rank", rank, 0, self.num_replicas - 1, f" (num_replicas={self.num_replicas})")
        end = self.data_length if end_index is None else end_index
        self.end_index = _check_int("end_index", end, 0, self.data_length, f" (len(data)={self.data_length})")
        if seed is not None and (not isinstance(seed, (int, np.integer)) or isinstance(seed, bool)):
            raise ValueError(f"`seed={seed!r}` must be an int or None (None means 0)")
        self.seed = 0 if seed is None else int(seed)
        self.drop_last = bool(drop_last)
        self.shuffle = bool(shuffle)
        self.epoch = 0
        self.start_index = 0
        self.set_start_index(0 if start_index is None else start_index)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch's order; a different epoch than the current one starts at 0."""
        epoch = _check_int("epoch", epoch, 0)
        if epoch != self.epoch:
            self.start_index = 0
        self.epoch = epoch

    def set_start_index(self, position: int) -> None:
        """Start the current epoch at global ``position`` (samples consumed by all ranks)."""
        self.start_index = _check_int("start_index", position, 0, self.end_index, f" (end_index={self.end_index})")

    def position_after(self, num_batches: int) -> int:
        """Return the global position reached once every rank drew ``num_batches`` batches.

        Each batch takes ``batch_size`` positions on each of ``num_replicas`` ranks; the
        result is capped at ``end_index`` because positions past it are padding.
        """
        num_batches = _check_int("num_batches", num_batches, 0)
        step = self.batch_size * self.num_replicas
        return min(self.start_index + num_batches * step, self.end_index)

    def state_dict(self) -> dict[str, int | bool]:
        """Return the epoch, start position, seed and shuffle flag as plain Python values."""
        return {"epoch": self.epoch, "start_index": self.start_index, "seed": self.seed, "shuffle": self.shuffle}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`. The saved seed and shuffle win over the constructor's.

        Raises:
            ValueError: Keys are missing or unknown, or a value is out of range.
        """
        missing = [k for k in _STATE_KEYS if k not in state]
        unknown = [k for k in state if k not in _STATE_KEYS]
        if missing or unknown:
            raise ValueError(
                f"RangedSampler state has missing keys {missing} and unknown keys "
                f"{unknown}; expected exactly {list(_STATE_KEYS)}"
            )
        for key in ("seed", "shuffle"):
            if state[key] != getattr(self, key):
                # the saved value wins: only it reproduces the interrupted run's order
                warnings.warn(
                    f"RangedSampler: checkpoint has {key}={state[key]!r} but the "
                    f"sampler was built with {key}={getattr(self, key)!r}; using "
                    f"{state[key]!r} from the checkpoint",
                    stacklevel=2,
                )
        self.seed = int(state["seed"])
        self.shuffle = bool(state["shuffle"])
        self.set_epoch(state["epoch"])
        self.set_start_index(state["start_index"])

    def __len__(self) -> int:
        """Return how many indices ``__iter__`` yields on this rank (the same on every rank)."""
        remaining = self.end_index - self.start_index
        if self.drop_last:
            per_rank = remaining // self.num_replicas
            return per_rank - per_rank % self.batch_size
        return -(-remaining // self.num_replicas)

    def __iter__(self) -> Iterator[int]:
        """Yield this rank's dataset indices, computed a chunk of positions at a time."""
        count, stride, end = len(self), self.num_replicas, self.end_index
        # first position >= start_index that belongs to this rank; consecutive rounds of
        # `stride` positions then hold one position of every rank, so all ranks get `count`
        first = self.start_index + (self.rank - self.start_index) % stride
        permute = KeyedPermutation(self.data_length, self.seed, self.epoch) if self.shuffle else None
        offsets = np.arange(min(count, CHUNK), dtype=np.uint64) * np.uint64(stride)
        done, chunk = 0, FIRST_CHUNK
        while done < count:
            size = min(chunk, count - done)
            begin = first + done * stride
            positions = offsets[:size] + np.uint64(begin)
            if begin + (size - 1) * stride >= end:  # padding: wrap to the epoch's start
                wrap = positions >= end
                positions[wrap] = (positions[wrap] - np.uint64(end)) % np.uint64(end)
            yield from (permute(positions) if permute else positions).tolist()
            done += size
            chunk = min(2 * chunk, CHUNK)
