"""Difficulty scores: one number per training sample (low = easy), from an array, a column or a function."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np

__all__ = ["IndexedData", "difficulty_scores"]


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
