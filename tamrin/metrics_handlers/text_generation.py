"""Metrics of text generation: corpus BLEU and ROUGE-1/2/L."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from tamrin.metrics_handlers._text import TextMetricsHandler
from tamrin.metrics_handlers.base import MetricConfig
from tamrin.metrics_handlers.registry import register_metrics_handler

if TYPE_CHECKING:
    from torchmetrics import Metric

__all__ = ["TextGenerationMetricsHandler"]

_ROUGE = ("rouge1", "rouge2", "rougeL")


@register_metrics_handler("text_generation")
class TextGenerationMetricsHandler(TextMetricsHandler):
    """BLEU (torchmetrics `BLEUScore`: 4-grams, whitespace tokens, no smoothing) and ROUGE F-measures.

    ROUGE-N/L is torchmetrics' (lower-cased alphanumeric tokens, no stemming, so no nltk data is
    needed) averaged over the samples; the state is a running sum, not a list of per-sample scores.
    With `evaluate_with_generate`, the outputs are `generate`'s token ids and `post_process` decodes
    them; see `TextMetricsHandler` for the contract of `update`.

    Context: `post_process(outputs) -> list[str]` (unless the outputs are strings already) and
    optionally `decode_labels(batch) -> list[str]` (default: `batch["texts"]`).
    """

    valid_metrics = ("bleu", *_ROUGE)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._rouge_sums = dict.fromkeys(self._rouge_keys, 0.0)
        self._rouge_count = 0

    @property
    def _rouge_keys(self) -> tuple[str, ...]:
        return tuple(name for name in self.metric_names if name in _ROUGE)

    def build_metric(self, config: MetricConfig) -> Metric:
        # torchmetrics: ~1.6 s to import, only when a handler first builds a metric
        from torchmetrics.text import BLEUScore

        return BLEUScore(n_gram=4, smooth=False)

    def update_texts(self, predictions: list[str], references: list[str]) -> None:
        if "bleu" in self.metric_configs:
            self.update_metric("bleu", predictions, [[reference] for reference in references])
        if self._rouge_keys:
            from torchmetrics.functional.text import rouge_score  # torchmetrics: ~1.6 s to import

            # rouge_score returns the batch mean of the per-sample scores; keep their sum.
            targets = [[reference] for reference in references]
            scores = rouge_score(predictions, targets, rouge_keys=self._rouge_keys)
            for key in self._rouge_keys:
                self._rouge_sums[key] += scores[f"{key}_fmeasure"].item() * len(predictions)
            self._rouge_count += len(predictions)

    def compute_metrics(self) -> dict[str, float]:
        results = super().compute_metrics()  # BLEU; the ROUGE entries are replaced below
        for name in self._rouge_keys:
            results[name] = self._rouge_sums[name] / self._rouge_count if self._rouge_count else math.nan
        return results

    def reset_metrics(self) -> None:
        super().reset_metrics()
        self._rouge_sums = dict.fromkeys(self._rouge_keys, 0.0)
        self._rouge_count = 0
