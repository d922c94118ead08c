"""Threshold pacing: admit the samples whose score passes a threshold that moves each epoch or step.

The user's units: "admit confidence >= 0.90, lower it by 0.05 each epoch" is
``ThresholdPacing(start=0.9, change=-0.05, higher_is_easier=True)``; self-paced "admit loss <= t,
raise t" is ``ThresholdPacing(start=t0, change=+dt)`` over loss scores. The threshold is a pure
function of the epoch (or step), so the admitted set is too: resumable and the same on every rank.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from tamrin.configs import ConfigError

__all__ = ["PER_CHOICES", "ThresholdPacing", "count_admitted"]

PER_CHOICES = ("epoch", "step")


@dataclasses.dataclass(frozen=True)
class ThresholdPacing:
    """A schedule of score thresholds, one per epoch (or step), and the direction that admits.

    Give either `values` (a list indexed by epoch or step, the last one holding; or a function of
    the index) or `start` (+ `change` per epoch or step, never past `stop`).

    Args:
        start: the threshold of epoch (step) 0.
        change: added to the threshold at each epoch (step); it must widen what is admitted.
        stop: the threshold never goes past this value (e.g. 0.5 for "down to 0.5").
        values: explicit thresholds, or a callable of the epoch (step) index.
        higher_is_easier: True admits ``score >= threshold`` (a confidence); False admits
            ``score <= threshold`` (a loss, a length).
        per: "epoch" (the threshold moves at each epoch start) or "step".
    """

    start: float | None = None
    change: float = 0.0
    stop: float | None = None
    values: Sequence[float] | Callable[[int], float] | None = None
    higher_is_easier: bool = False
    per: str = "epoch"

    def __post_init__(self) -> None:
        if (self.start is None) == (self.values is None):
            raise ConfigError(
                "ThresholdPacing needs exactly one of `start` (with `change` per epoch/step) or `values` "
                f"(a list of thresholds); got start={self.start!r}, values={self.values!r}."
            )
        if self.per not in PER_CHOICES:
            raise ConfigError(f"`per={self.per!r}` is not valid. Valid: {', '.join(PER_CHOICES)}.")
        if not isinstance(self.higher_is_easier, bool):
            raise ConfigError(f"`higher_is_easier={self.higher_is_easier!r}` must be true or false.")
        widen = "lower" if self.higher_is_easier else "raise"
        sign = -1.0 if self.higher_is_easier else 1.0
        if self.start is not None and sign * self.change < 0:
            raise ConfigError(
                f"`change={self.change!r}` narrows the admitted set; with higher_is_easier={self.higher_is_easier} "
                f"each epoch must {widen} the threshold (a change of sign {'-' if sign < 0 else '+'} or 0)."
            )
        if isinstance(self.values, Sequence):
            if not self.values:
                raise ConfigError("`values` is empty: give at least one threshold.")
            steps = np.diff(np.asarray(self.values, dtype=np.float64)) * sign
            if steps.size and steps.min() < 0:
                bad = int(np.argmin(steps))
                raise ConfigError(
                    f"`values` narrows the admitted set at index {bad + 1} ({self.values[bad]} -> "
                    f"{self.values[bad + 1]}); with higher_is_easier={self.higher_is_easier} they must {widen}."
                )

    def threshold(self, index: int) -> float:
        """The threshold of epoch (or step) `index`, in the scores' units."""
        values = self.values
        if callable(values):
            value = float(values(index))
        elif values is not None:
            value = float(values[min(index, len(values) - 1)])
        else:
            assert self.start is not None
            value = self.start + self.change * index
            if self.stop is not None:
                value = max(value, self.stop) if self.higher_is_easier else min(value, self.stop)
        if math.isnan(value):
            raise ValueError(f"The threshold of {self.per} {index} is NaN.")
        return value

    def sort_key(self, scores: np.ndarray) -> np.ndarray:
        """Scores as difficulty, low = easy (a confidence is negated)."""
        return -scores if self.higher_is_easier else scores

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any]) -> ThresholdPacing:
        """Build from a recipe's mapping (`values` lists become tuples)."""
        options = dict(options)
        if isinstance(options.get("values"), Sequence):
            options["values"] = tuple(float(v) for v in options["values"])
        try:
            return cls(**options)
        except TypeError as err:
            fields = ", ".join(f.name for f in dataclasses.fields(cls))
            raise ConfigError(f"Pacing 'threshold' does not take {sorted(options)}: {err}. Valid: {fields}.") from err


def count_admitted(sorted_keys: np.ndarray, pacing: ThresholdPacing, threshold: float) -> int:
    """How many samples pass `threshold`, given their difficulty keys sorted ascending (O(log N))."""
    return int(np.searchsorted(sorted_keys, pacing.sort_key(np.float64(threshold)), side="right"))
