"""Task metrics handlers (placeholder registry; the metrics work fills this package in)."""

from __future__ import annotations

METRICS_HANDLERS: dict[str, type] = {}

_BUILTIN_TASKS = (
    "text_classification",
    "sequence_labeling",
    "image2text",
    "speech_recognition",
    "text_generation",
    "image_classification",
    "regression",
)


def available_tasks() -> list[str]:
    """Names of the tasks that have a metrics handler."""
    return sorted(set(_BUILTIN_TASKS) | set(METRICS_HANDLERS))
