"""Splits of the generated datasets: a sample belongs to a split by a hash of what it shows.

Each sample is drawn from a generator seeded by (seed, split, index); draws whose content hashes
into another split are redrawn. So the splits never share a plate, a sentence or a prompt (80%
train, 10% validation, 10% test), and a sample depends only on its (seed, split, index).
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Callable
from typing import Any, TypeVar

from tamrin.configs import ConfigError, check_choice

__all__ = ["MAX_TRIES", "SPLITS", "draw_in_split", "draw_row", "in_split", "split_id", "split_rng"]

SPLITS = ("train", "validation", "test")
_BUCKETS = {"train": range(0, 8), "validation": range(8, 9), "test": range(9, 10)}  # of 10
MAX_TRIES = 1000  # redraws to land in the split (10 on average for a 10% split)

SampleT = TypeVar("SampleT")


def split_id(dataset_name: str, split: str) -> int:
    """The split's position in SPLITS (part of every sample's seed).

    Raises:
        ConfigError: `split` is not one of SPLITS (the message lists them).
    """
    problem = check_choice("split", split, SPLITS)
    if problem:
        raise ConfigError(f"{dataset_name} has no such split: {problem}")
    return SPLITS.index(split)


def in_split(key: str | bytes, split: str) -> bool:
    """Whether content with this key belongs to `split` (crc32: the same on every run and process)."""
    data = key.encode("utf-8") if isinstance(key, str) else key
    return zlib.crc32(data) % 10 in _BUCKETS[split]


def draw_in_split(
    draw: Callable[[], SampleT], key: Callable[[SampleT], str | bytes], split: str, what: str, hint: str
) -> SampleT:
    """Call `draw()` until its sample's `key` hashes into `split`.

    Raises:
        ConfigError: after MAX_TRIES draws that all fell elsewhere, naming `what` was drawn and `hint`.
    """
    for _ in range(MAX_TRIES):
        sample = draw()
        if in_split(key(sample), split):
            return sample
    raise ConfigError(f"Could not draw a {split!r} {what} in {MAX_TRIES} tries: {hint}")


def split_rng(seed: int, split: str, index: int) -> random.Random:
    """The generator of row `index` of `split`: a string seed is hashed with SHA-512, so the stream is
    the same on every run and platform."""
    return random.Random(f"{seed}:{split}:{index}")


def draw_row(split: str, make: Any, key: Any, rng: random.Random) -> Any:
    """Draw rows with `make(rng)` until one belongs to `split` (by the hash of `key(row)`)."""
    return draw_in_split(lambda: make(rng), key, split, "sentence", "too few distinct sentences.")
