"""Models: the `Model` base (config, safetensors, Hub), the registry, and built-in task models."""

from __future__ import annotations

from tamrin.models.base import Model, ModelConfig
from tamrin.models.crnn import CRNN, CRNNConfig  # importing it registers "crnn"
from tamrin.models.image_classifier import ImageClassifier, ImageClassifierConfig
from tamrin.models.registry import MODELS, build_model, get_model_class, register_model
from tamrin.models.sequence_labeler import SequenceLabeler, SequenceLabelerConfig  # registers "sequence_labeler"
from tamrin.models.text_classifier import TextClassifier, TextClassifierConfig  # registers "text_classifier"
from tamrin.models.text_generator import TextGenerator, TextGeneratorConfig
from tamrin.preprocessors import CharVocabulary, ImagePreprocessor  # re-exported: docs name them here

__all__ = [
    "CRNN",
    "CRNNConfig",
    "ImageClassifier",
    "ImageClassifierConfig",
    "ImagePreprocessor",
    "MODELS",
    "Model",
    "ModelConfig",
    "SequenceLabeler",
    "SequenceLabelerConfig",
    "TextClassifier",
    "TextClassifierConfig",
    "CharVocabulary",
    "TextGenerator",
    "TextGeneratorConfig",
    "build_model",
    "get_model_class",
    "register_model",
]
