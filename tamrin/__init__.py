"""tamrin: a small, exact, resumable PyTorch Trainer in the style of Hezar's."""

from __future__ import annotations

from tamrin.configs import Config, ConfigError
from tamrin.trainer.config import TrainerConfig

__version__ = "0.1.0"

__all__ = ["Config", "ConfigError", "TrainerConfig", "__version__"]
