"""Pacings: how many of the easiest samples a curriculum admits as training goes on.

A fraction pacing maps training progress in [0, 1] to the admitted fraction (`linear`, `root`,
`step`, or any callable); a `ThresholdPacing` admits by score, in the scores' own units.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any

from tamrin.configs import ConfigError, suggest
from tamrin.datasets.sampling.thresholds import ThresholdPacing

__all__ = ["PACINGS", "LinearPacing", "Pacing", "RootPacing", "StepPacing", "build_pacing"]


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
Pacing = Callable[[float], float] | ThresholdPacing


def build_pacing(pacing: str | Mapping[str, Any] | Pacing, **kwargs: Any) -> Pacing:
    """A pacing: a name in PACINGS (with its keyword arguments), "threshold" (a ThresholdPacing's
    arguments), a {"name": ..., **kwargs} mapping (as a recipe writes it), a ThresholdPacing, or a
    callable of training progress in [0, 1] returned as is.

    Raises:
        ConfigError: unknown name or arguments.
    """
    if isinstance(pacing, Mapping):
        kwargs = {**{k: v for k, v in pacing.items() if k != "name"}, **kwargs}
        pacing = pacing.get("name", "")
    if isinstance(pacing, ThresholdPacing) and not kwargs:
        return pacing
    if pacing == "threshold":
        return ThresholdPacing.from_mapping(kwargs)
    if callable(pacing) and not isinstance(pacing, str):
        if kwargs:
            raise ConfigError(f"Pacing arguments {kwargs} only apply to a named pacing ({', '.join(PACINGS)}).")
        return pacing
    if pacing not in PACINGS:
        raise ConfigError(
            f"Unknown pacing {pacing!r}.{suggest(str(pacing), [*PACINGS, 'threshold'])} Valid: "
            f"{', '.join(PACINGS)}, threshold, "
            "or a callable mapping training progress in [0, 1] to the eligible fraction."
        )
    try:
        return PACINGS[pacing](**kwargs)
    except TypeError as err:
        raise ConfigError(f"Pacing {pacing!r} does not take {kwargs}: {err}") from err
