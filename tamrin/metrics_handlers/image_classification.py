"""Metrics of image classification: accuracy, top-k accuracy, precision, recall, F1."""

from __future__ import annotations

from tamrin.metrics_handlers._classification import ClassificationMetricsHandler
from tamrin.metrics_handlers.registry import register_metrics_handler

__all__ = ["ImageClassificationMetricsHandler"]


@register_metrics_handler("image_classification")
class ImageClassificationMetricsHandler(ClassificationMetricsHandler):
    """Accuracy, top-k accuracy (`top_k`, default 5), precision, recall and F1 of an image classifier.

    See `ClassificationMetricsHandler` for what `update` reads. Context: `num_labels` or `id2label`
    (optional: else the logits' width), `multilabel` (default False).
    """

    valid_metrics = ("accuracy", "top_k_accuracy", "precision", "recall", "f1")
