"""Models: the `Model` base (config, safetensors, Hub), the registry, and built-in task models."""

from __future__ import annotations

from tamrin.models.base import Model, ModelConfig
from tamrin.models.crnn import CRNN, CRNNConfig  # importing it registers "crnn"
from tamrin.models.registry import MODELS, build_model, get_model_class, register_model

__all__ = [
    "CRNN",
    "CRNNConfig",
    "MODELS",
    "Model",
    "ModelConfig",
    "build_model",
    "get_model_class",
    "register_model",
]
