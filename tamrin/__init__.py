"""tamrin: a small, exact, resumable PyTorch Trainer in the style of Hezar's."""

from __future__ import annotations

from tamrin.configs import Config, ConfigError  # noqa: E402
from tamrin.trainer.config import TrainerConfig  # noqa: E402
from tamrin.trainer.logs.logger import load_logs  # noqa: E402
from tamrin.trainer.logs.review import plot_logs  # noqa: E402
from tamrin.trainer.trainer import Trainer  # noqa: E402
from tamrin.version import __version__  # noqa: E402

__all__ = ["Config", "ConfigError", "Trainer", "TrainerConfig", "__version__", "load_logs", "plot_logs"]
