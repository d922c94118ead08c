"""Metrics of text classification: accuracy, precision, recall, F1 (single- or multi-label)."""

from __future__ import annotations

from tamrin.metrics_handlers._classification import ClassificationMetricsHandler
from tamrin.metrics_handlers.registry import register_metrics_handler

__all__ = ["TextClassificationMetricsHandler"]


@register_metrics_handler("text_classification")
class TextClassificationMetricsHandler(ClassificationMetricsHandler):
    """Accuracy, precision, recall and F1 of a text classifier; see `ClassificationMetricsHandler`.

    Context: `num_labels` or `id2label` (optional: else the logits' width), `multilabel` (default False).
    """

    valid_metrics = ("accuracy", "precision", "recall", "f1")
    metric_options = {name: ClassificationMetricsHandler.metric_options[name] for name in valid_metrics}
