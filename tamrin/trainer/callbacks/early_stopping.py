"""EarlyStopping: stop when the watched metric stops improving (`early_stopping_patience` in the config)."""

from __future__ import annotations

import math
from typing import Any

from tamrin.configs import ConfigError
from tamrin.metrics_handlers import logged_metric_name
from tamrin.trainer.callbacks.base import Callback, TrainerView
from tamrin.trainer.callbacks.registry import register_callback

__all__ = ["EarlyStopping"]


@register_callback("early_stopping")
class EarlyStopping(Callback):
    """Stop when `metric_for_best_model` has not improved by `min_delta` for `patience` evaluations.

    It watches every log row that carries the metric: evaluations, or the log steps for `train.loss`.

    Args:
        patience: evaluations (log rows with the metric) without improvement before training stops.
        min_delta: the smallest change that counts as an improvement.
        metric: the logged metric to watch (default: the trainer's metric_for_best_model).
    """

    def __init__(self, patience: int = 3, min_delta: float = 0.0, metric: str | None = None) -> None:
        if patience < 1:
            raise ConfigError(f"`patience={patience!r}` must be >= 1.")
        if min_delta < 0:
            raise ConfigError(f"`min_delta={min_delta!r}` must be >= 0.")
        self.patience = patience
        self.min_delta = min_delta
        self.metric = metric
        self.best: float | None = None
        self.evaluations_without_improvement = 0

    def on_log(self, trainer: TrainerView, logs: dict[str, float]) -> None:
        """Count the logs that carry the watched metric (evaluations; log steps for `train.loss`)."""
        name = logged_metric_name(self.metric) if self.metric else trainer.metric_for_best_model
        if name not in logs:
            return
        value = logs[name]
        maximize = trainer.metrics_handler.objective(name) == "maximize"
        improved = self.best is None or (
            value > self.best + self.min_delta if maximize else value < self.best - self.min_delta
        )
        if improved and not math.isnan(value):
            self.best = value
            self.evaluations_without_improvement = 0
        else:
            self.evaluations_without_improvement += 1
        if self.evaluations_without_improvement >= self.patience:
            trainer.control.should_stop = True

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "evaluations_without_improvement": self.evaluations_without_improvement}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = state["best"]
        self.evaluations_without_improvement = state["evaluations_without_improvement"]
