"""Metrics handlers: dataset-level evaluation metrics, one handler per task.

A handler is built from the task and the metric names of a `TrainerConfig`
(`build_metrics_handler(config.task, config.metrics, gather=..., **context)`), updated once per
evaluation batch and computed once per evaluation. Importing this package registers the built-in
tasks; torchmetrics itself is imported only when a handler first updates a metric.
"""

from __future__ import annotations

from tamrin.metrics_handlers.base import MetricConfig, MetricsHandler
from tamrin.metrics_handlers.image2text import Image2TextMetricsHandler
from tamrin.metrics_handlers.image_classification import ImageClassificationMetricsHandler
from tamrin.metrics_handlers.registry import (
    METRICS_HANDLERS,
    available_tasks,
    build_metrics_handler,
    check_metric_for_best_model,
    logged_metric_name,
    register_metrics_handler,
)
from tamrin.metrics_handlers.regression import RegressionMetricsHandler
from tamrin.metrics_handlers.sequence_labeling import SequenceLabelingMetricsHandler
from tamrin.metrics_handlers.speech_recognition import SpeechRecognitionMetricsHandler
from tamrin.metrics_handlers.text_classification import TextClassificationMetricsHandler
from tamrin.metrics_handlers.text_generation import TextGenerationMetricsHandler

__all__ = [
    "METRICS_HANDLERS",
    "Image2TextMetricsHandler",
    "ImageClassificationMetricsHandler",
    "MetricConfig",
    "MetricsHandler",
    "RegressionMetricsHandler",
    "SequenceLabelingMetricsHandler",
    "SpeechRecognitionMetricsHandler",
    "TextClassificationMetricsHandler",
    "TextGenerationMetricsHandler",
    "available_tasks",
    "build_metrics_handler",
    "check_metric_for_best_model",
    "logged_metric_name",
    "register_metrics_handler",
]
