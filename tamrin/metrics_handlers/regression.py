"""Metrics of regression: mean squared error, mean absolute error and R²."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tamrin.metrics_handlers.base import MetricConfig, MetricsHandler, accumulation_dtype
from tamrin.metrics_handlers.registry import register_metrics_handler

if TYPE_CHECKING:
    from torchmetrics import Metric

__all__ = ["RegressionMetricsHandler"]


@register_metrics_handler("regression")
class RegressionMetricsHandler(MetricsHandler):
    """MSE, MAE and R² over the whole evaluation set (running sums in float64; MPS: float32).

    `update` reads `outputs["logits"]` (or a tensor output) and `batch["labels"]`: `[batch]` or
    `[batch, num_outputs]` (a `[batch, 1]` prediction matches `[batch]` labels). With several outputs,
    MSE and MAE average over every element and R² is the mean of the per-output R², as
    scikit-learn's `multioutput="uniform_average"`. No context is needed.
    """

    valid_metrics = ("mse", "mae", "r2")
    objectives = {"mse": "minimize", "mae": "minimize", "r2": "maximize"}

    def update(self, outputs: Any, batch: Any) -> None:
        predictions = self.logits(outputs).detach()
        targets = self.labels(batch).detach()
        if predictions.shape != targets.shape:
            if predictions.numel() != targets.numel() or predictions.shape[0] != targets.shape[0]:
                raise ValueError(
                    f"Predictions of shape {tuple(predictions.shape)} do not match labels of "
                    f"shape {tuple(targets.shape)}."
                )
            predictions = predictions.reshape(targets.shape)
        predictions, targets = self.gather((predictions, targets))
        self._dtype = accumulation_dtype(predictions.device)
        predictions, targets = predictions.to(self._dtype), targets.to(self._dtype)
        for name in self.metric_names:
            self.update_metric(name, predictions, targets)

    def build_metric(self, config: MetricConfig) -> Metric:
        # torchmetrics: ~1.6 s to import, only when a handler first builds a metric
        from torchmetrics import regression as tmr

        metric = {"mse": tmr.MeanSquaredError, "mae": tmr.MeanAbsoluteError, "r2": tmr.R2Score}[config.name]()
        metric.set_dtype(self._dtype)
        return metric
