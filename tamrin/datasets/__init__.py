"""Datasets: the `Dataset` base and registry, collators, samplers, task datasets and synthetic data.

The layers, each in its own place:

    base.py        Dataset, DatasetConfig, the DATASETS registry, build_dataset
    collators.py   items -> batches
    readers.py     rows from CSV / TSV / JSONL / Parquet files or a Hugging Face dataset
    sampling/      RangedSampler, CurriculumSampler and the keyed permutation they shuffle with
    tasks/         the user's own data for each built-in task (text, tags, generation, image folders)
    synthetic/     generated demo data (plates, shapes, sentences, string tasks)

Importing this package registers every built-in dataset. Tokenizers, vocabularies and image
transforms are `tamrin.preprocessors` (re-exported here where the docs name them).
"""

from __future__ import annotations

from tamrin.datasets.base import (
    DATASETS,
    Dataset,
    DatasetConfig,
    build_dataset,
    get_dataset_class,
    register_dataset,
)
from tamrin.datasets.collators import CTCCollator, ImageCollator, TextCollator, TokenLabelCollator
from tamrin.datasets.sampling.ranged_sampler import RangedSampler
from tamrin.datasets.synthetic.generation import SyntheticGenerationConfig, SyntheticGenerationDataset
from tamrin.datasets.synthetic.ner import SyntheticNERConfig, SyntheticNERDataset  # registers "synthetic_ner"
from tamrin.datasets.synthetic.plates import SyntheticPlatesConfig, SyntheticPlatesDataset
from tamrin.datasets.synthetic.sentiment import (  # registers "synthetic_sentiment"
    SyntheticSentimentConfig,
    SyntheticSentimentDataset,
)
from tamrin.datasets.synthetic.shapes import SyntheticShapesConfig, SyntheticShapesDataset
from tamrin.datasets.tasks.image_classification import ImageFolderConfig, ImageFolderDataset
from tamrin.datasets.tasks.ocr import OCRConfig, OCRDataset  # registers "ocr"
from tamrin.datasets.tasks.sequence_labeling import (  # registers "sequence_labeling"
    SequenceLabelingConfig,
    SequenceLabelingDataset,
)
from tamrin.datasets.tasks.text_classification import (  # registers "text_classification"
    TextClassificationConfig,
    TextClassificationDataset,
)
from tamrin.datasets.tasks.text_generation import GenerationCollator, TextGenerationConfig, TextGenerationDataset
from tamrin.preprocessors.tokenizer import TextPreprocessor, Tokenizer

__all__ = [
    "CTCCollator",
    "DATASETS",
    "Dataset",
    "DatasetConfig",
    "GenerationCollator",
    "SyntheticGenerationConfig",
    "SyntheticGenerationDataset",
    "TextGenerationConfig",
    "TextGenerationDataset",
    "ImageCollator",
    "ImageFolderConfig",
    "ImageFolderDataset",
    "OCRConfig",
    "OCRDataset",
    "RangedSampler",
    "SyntheticPlatesConfig",
    "SyntheticPlatesDataset",
    "SyntheticShapesConfig",
    "SyntheticShapesDataset",
    "build_dataset",
    "get_dataset_class",
    "register_dataset",
    "SequenceLabelingConfig",
    "SequenceLabelingDataset",
    "SyntheticNERConfig",
    "SyntheticNERDataset",
    "SyntheticSentimentConfig",
    "SyntheticSentimentDataset",
    "TextClassificationConfig",
    "TextClassificationDataset",
    "TextCollator",
    "TextPreprocessor",
    "TokenLabelCollator",
    "Tokenizer",
]
