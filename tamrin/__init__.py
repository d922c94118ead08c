"""tamrin: a small, exact, resumable PyTorch Trainer in the style of Hezar's."""

from __future__ import annotations

__version__ = "0.1.0"

from tamrin.configs import Config, ConfigError  # noqa: E402
from tamrin.trainer.config import TrainerConfig  # noqa: E402
from tamrin.trainer.logs.logger import load_logs  # noqa: E402
from tamrin.trainer.logs.review import plot_logs  # noqa: E402
from tamrin.trainer.trainer import Trainer  # noqa: E402

__all__ = ["Config", "ConfigError", "Trainer", "TrainerConfig", "__version__", "load_logs", "plot_logs"]
