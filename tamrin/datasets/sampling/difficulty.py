"""Difficulty scores: one number per training sample (low = easy), from an array, a column or a function."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np

from tamrin.configs import ConfigError

__all__ = ["LENGTH", "IndexedData", "difficulty_scores", "read_column"]

LENGTH = "length"
"""A built-in difficulty: a sample's length (its `input_ids`, else its first sequence), when no column has the name."""


class IndexedData(Protocol):
    """What difficulty scores are read from: a sized dataset indexed by position (or, for a Hugging Face
    dataset, by column name: hence the untyped index)."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: Any, /) -> Any: ...


def difficulty_scores(data: IndexedData, scores: Any) -> np.ndarray:
    """Per-sample difficulty (low = easy) as float64: an array of len(data), the name of a column
    of `data` (a task dataset's row column, read with `data.column(name)` and never passed to the
    model; a Hugging Face dataset column; or a key of each item), "length" (a column of that name,
    else each sample's length), or a function of one item. None gives equal scores (the order is
    then random, keyed by the seed).

    Raises:
        ConfigError: a missing column (the message lists the columns) or one that is not numeric.
        ValueError: wrong length, or a score that is not a finite number.
    """
    n = len(data)
    if scores is None:
        return np.zeros(n)
    values: Any
    if isinstance(scores, str):
        values = read_column(data, scores)
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


def read_column(data: Any, column: str) -> np.ndarray:
    """The numbers of `column` of `data`, one per sample (see `difficulty_scores`)."""
    columns = getattr(data, "column_names", None)
    if columns is not None and column in columns:
        values = data.column(column) if callable(getattr(data, "column", None)) else data[column]
    elif columns is None:
        values = [_item_value(data, index, column) for index in range(len(data))]
    elif column == LENGTH:
        values = [_length(data[index]) for index in range(len(data))]
    else:
        raise ConfigError(
            f"Difficulty column {column!r} is not in the training data (its columns: {list(columns)}). Name one "
            f"of them, `{LENGTH}` (each sample's length), or pass `scores` as numbers or a function of a sample."
        )
    try:
        return np.asarray(values if isinstance(values, np.ndarray) else list(values), dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"Difficulty column {column!r} must hold numbers: {err}.") from err


def _length(item: Any) -> float:
    """A sample's length: its `input_ids`, else its first value with a length."""
    if isinstance(item, Mapping):
        sequences = [item["input_ids"]] if "input_ids" in item else [v for v in item.values() if hasattr(v, "__len__")]
        if sequences:
            return float(len(sequences[0]))
    raise ConfigError(f"`scores: {LENGTH}` needs samples with a sequence (e.g. `input_ids`); one is {type(item)}.")


def _item_value(data: Any, index: int, column: str) -> float:
    """The number under `column` in item `index` of `data`."""
    item = data[index]
    if column == LENGTH and not (isinstance(item, Mapping) and column in item):
        return _length(item)
    if not isinstance(item, Mapping) or column not in item:
        keys = sorted(item) if isinstance(item, Mapping) else type(item).__name__
        raise ConfigError(
            f"Difficulty column {column!r} is not in sample {index} (it has {keys}). Name a numeric column, or "
            "pass a function of a sample, e.g. `lambda s: len(s['input_ids'])`."
        )
    return float(item[column])
