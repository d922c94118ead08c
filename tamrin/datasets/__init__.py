"""Datasets: the `Dataset` base and registry, collators, samplers and built-in task datasets."""

from __future__ import annotations

from tamrin.datasets.base import (
    DATASETS,
    Dataset,
    DatasetConfig,
    build_dataset,
    get_dataset_class,
    register_dataset,
)
from tamrin.datasets.collators import CTCCollator, ImageCollator
from tamrin.datasets.plates import SyntheticPlatesConfig, SyntheticPlatesDataset
from tamrin.datasets.samplers import RangedSampler

__all__ = [
    "CTCCollator",
    "DATASETS",
    "Dataset",
    "DatasetConfig",
    "ImageCollator",
    "RangedSampler",
    "SyntheticPlatesConfig",
    "SyntheticPlatesDataset",
    "build_dataset",
    "get_dataset_class",
    "register_dataset",
]
