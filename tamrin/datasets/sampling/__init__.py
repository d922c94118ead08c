"""Sampling: the order in which a dataset's samples are read, resumable mid-epoch in O(1).

`RangedSampler` (ranged_sampler.py) shuffles with a keyed permutation of the positions, a new
order every epoch, and resumes at any position without building an index list;
`CurriculumSampler` (curriculum.py) orders samples from easy to hard on the same machinery.
"""

from __future__ import annotations

from tamrin.datasets.sampling.curriculum import (
    EPOCH_MODES,
    PACINGS,
    CurriculumSampler,
    LinearPacing,
    Pacing,
    RootPacing,
    StepPacing,
    ThresholdPacing,
    build_pacing,
    difficulty_scores,
)
from tamrin.datasets.sampling.ranged_sampler import RangedSampler

__all__ = [
    "EPOCH_MODES",
    "PACINGS",
    "CurriculumSampler",
    "LinearPacing",
    "Pacing",
    "RangedSampler",
    "RootPacing",
    "StepPacing",
    "ThresholdPacing",
    "build_pacing",
    "difficulty_scores",
]
