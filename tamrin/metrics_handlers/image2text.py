"""Metrics of image-to-text (OCR, captioning): character and word error rates."""

from __future__ import annotations

from tamrin.metrics_handlers._text import ErrorRateMetricsHandler
from tamrin.metrics_handlers.registry import register_metrics_handler

__all__ = ["Image2TextMetricsHandler"]


@register_metrics_handler("image2text")
class Image2TextMetricsHandler(ErrorRateMetricsHandler):
    """CER and WER (torchmetrics `CharErrorRate`, `WordErrorRate`) of the decoded texts.

    Context: `post_process(outputs) -> list[str]` (unless the outputs are strings already) and
    optionally `decode_labels(batch) -> list[str]` (default: `batch["texts"]`); see `TextMetricsHandler`.
    """
