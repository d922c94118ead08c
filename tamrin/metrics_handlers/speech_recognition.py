"""Metrics of speech recognition: character and word error rates."""

from __future__ import annotations

from tamrin.metrics_handlers._text import ErrorRateMetricsHandler
from tamrin.metrics_handlers.registry import register_metrics_handler

__all__ = ["SpeechRecognitionMetricsHandler"]


@register_metrics_handler("speech_recognition")
class SpeechRecognitionMetricsHandler(ErrorRateMetricsHandler):
    """CER and WER (torchmetrics `CharErrorRate`, `WordErrorRate`) of the transcripts.

    Context: `post_process(outputs) -> list[str]` (unless the outputs are strings already) and
    optionally `decode_labels(batch) -> list[str]` (default: `batch["texts"]`); see `TextMetricsHandler`.
    """
