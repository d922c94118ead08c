"""`MetricConfig`: one metric of a metrics handler and its options, validated like every tamrin config."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tamrin.configs import Config, check_choice, check_range

__all__ = ["AVERAGES", "OBJECTIVES", "OPTIONS", "SCHEMES", "MetricConfig"]

AVERAGES = ("micro", "macro", "weighted")
SCHEMES = ("IOB1", "IOB2", "IOE2", "IOBES", "BILOU")
OBJECTIVES = ("minimize", "maximize")  # of a metric: which direction is better
OPTIONS = ("average", "top_k", "threshold", "scheme", "multilabel")


@dataclass
class MetricConfig(Config):
    """One metric of a handler and its options; an option left at None takes the handler's default.

    Attributes:
        name: the metric, one of the handler's `valid_metrics` (e.g. "f1").
        average: "micro", "macro" or "weighted", for precision, recall and f1.
        top_k: the k of "top_k_accuracy" (default 5).
        threshold: multi-label decision threshold: a label is predicted when sigmoid(logit) > threshold
            (default 0.5).
        scheme: sequence labeling's tagging scheme ("IOB1", "IOB2", "IOE2", "IOBES", "BILOU"): entities
            as seqeval's strict mode finds them. None: seqeval's default (conlleval) mode.
        multilabel: score classification as multi-label (sigmoid logits, multi-hot labels). None: the
            handler's `multilabel` context (default False).
    """

    name: str
    average: str | None = None
    top_k: int | None = None
    threshold: float | None = None
    scheme: str | None = None
    multilabel: bool | None = None

    def validate(self) -> list[str | None]:
        return [
            None if self.name else "`name` must name a metric, e.g. 'accuracy'.",
            check_choice("average", self.average, AVERAGES, optional=True),
            check_range("top_k", self.top_k, minimum=1, optional=True),
            check_range("threshold", self.threshold, minimum=0.0, maximum=1.0, optional=True),
            check_choice("scheme", self.scheme, SCHEMES, optional=True),
        ]

    def options(self) -> dict[str, Any]:
        """The options that were set (not None)."""
        return {key: getattr(self, key) for key in OPTIONS if getattr(self, key) is not None}
