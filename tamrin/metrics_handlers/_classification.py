"""Classification metrics shared by text and image classification (single- and multi-label).

The states are torchmetrics stat scores (true/false positives/negatives per class), so memory does
not grow with the evaluation set, and the result equals scikit-learn's over the whole set.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import torch

from tamrin.configs import ConfigError
from tamrin.metrics_handlers.base import MetricConfig, MetricsHandler

if TYPE_CHECKING:
    from torchmetrics import Metric

__all__ = ["ClassificationMetricsHandler"]

_SCORES = ("precision", "recall", "f1")
# `MetricConfig.average` (a str: omegaconf fields cannot be Literal) as the Literal torchmetrics takes;
# `MetricConfig.validate` admits only these keys.
_AVERAGES: dict[str, Literal["micro", "macro", "weighted"]] = {
    "micro": "micro",
    "macro": "macro",
    "weighted": "weighted",
}


class ClassificationMetricsHandler(MetricsHandler):
    """Accuracy, top-k accuracy, precision, recall and F1 from class logits.

    `update` reads `outputs["logits"]` (or a tensor output): `[batch, num_labels]` scores, or
    `[batch]` predicted class ids; and `batch["labels"]`: class ids `[batch]`, or multi-hot
    `[batch, num_labels]` for multi-label. Multi-label predictions are `sigmoid(logits) > threshold`;
    multi-label accuracy is the exact-match (subset) accuracy, as scikit-learn's `accuracy_score`.
    Precision, recall and F1 default to the macro average over the classes present in the labels or
    predictions (multi-class) or over all labels (multi-label), as scikit-learn's.

    Args:
        metrics: see `MetricsHandler`.
        gather: see `MetricsHandler`.
        num_labels: the number of classes; None: `len(id2label)`, else the logits' last dimension.
        id2label: class names by id (only their number is used).
        multilabel: the default of `MetricConfig.multilabel`.
        **context: ignored (e.g. `post_process`: classification reads the logits).
    """

    valid_metrics: ClassVar[tuple[str, ...]] = ("accuracy", "top_k_accuracy", "precision", "recall", "f1")
    metric_options: ClassVar[Mapping[str, tuple[str, ...]]] = {
        "accuracy": ("threshold", "multilabel"),
        "top_k_accuracy": ("top_k",),
        **{name: ("average", "threshold", "multilabel") for name in _SCORES},
    }

    def __init__(
        self,
        metrics: Sequence[str | Mapping[str, Any] | MetricConfig] | None = None,
        *,
        gather: Callable[[Any], Any] | None = None,
        num_labels: int | None = None,
        id2label: Mapping[int, str] | Sequence[str] | None = None,
        multilabel: bool = False,
        **context: Any,
    ) -> None:
        super().__init__(metrics, gather=gather, **context)
        self.num_labels = num_labels if num_labels is not None else (len(id2label) if id2label else None)
        self.multilabel = bool(multilabel)
        problems = []
        if self.num_labels is not None and (isinstance(self.num_labels, bool) or self.num_labels < 2):
            problems.append(f"`num_labels={self.num_labels!r}` must be an int >= 2 for classification.")
        for name, config in self.metric_configs.items():
            if config.threshold is not None and not self.is_multilabel(config):
                problems.append(
                    f"`{name}`: `threshold` applies to multi-label classification only; set "
                    "`multilabel: true` on the metric or give the handler `multilabel=True`."
                )
            if name == "top_k_accuracy" and self.multilabel:
                problems.append("`top_k_accuracy` is for single-label classification; drop it for multi-label.")
        problems += self._check_top_k()
        if problems:
            config_name = f"metrics of task {self.task!r}" if len(problems) > 1 else None
            raise ConfigError(problems, config_name=config_name)

    def is_multilabel(self, config: MetricConfig) -> bool:
        """Whether `config`'s metric scores multi-label predictions."""
        return self.multilabel if config.multilabel is None else config.multilabel

    def _check_top_k(self) -> list[str]:
        config = self.metric_configs.get("top_k_accuracy")
        if config is None or self.num_labels is None or (config.top_k or 5) <= self.num_labels:
            return []
        return [
            f"`top_k_accuracy`: `top_k={config.top_k or 5}` must be <= the number of classes "
            f"({self.num_labels}); set `top_k` in the metric's options."
        ]

    def update(self, outputs: Any, batch: Any) -> None:
        scores = self.logits(outputs).detach()
        labels = self.labels(batch).detach()
        scores, labels = self.gather((scores, labels))
        self._check_shapes(scores, labels)
        labels = labels.long()
        if scores.is_floating_point():
            scores = scores.float()
        probabilities = None
        for name, config in self.metric_configs.items():
            if self.is_multilabel(config):
                # Our own sigmoid: torchmetrics applies one only when some value lies outside [0, 1].
                if probabilities is None:
                    probabilities = scores.sigmoid() if scores.is_floating_point() else scores
                self.update_metric(name, probabilities, labels)
            else:
                self.update_metric(name, scores, labels)

    def _check_shapes(self, scores: torch.Tensor, labels: torch.Tensor) -> None:
        if scores.is_floating_point() and scores.ndim == 2:
            if self.num_labels is None:
                self.num_labels = scores.shape[-1]
                if problems := self._check_top_k():
                    raise ConfigError(problems)
            if scores.shape[-1] != self.num_labels:
                raise ValueError(
                    f"The logits have {scores.shape[-1]} classes but the handler was built with "
                    f"num_labels={self.num_labels}."
                )
        elif scores.is_floating_point() or self.num_labels is None:
            raise ValueError(
                f"{type(self).__name__} needs logits of shape [batch, num_labels] (or predicted "
                f"class ids with `num_labels` given), got {scores.dtype} of shape "
                f"{tuple(scores.shape)}."
            )
        elif "top_k_accuracy" in self.metric_configs:
            raise ValueError("`top_k_accuracy` needs class scores, but the model returned class ids.")
        if scores.shape[0] != labels.shape[0]:
            raise ValueError(f"{scores.shape[0]} predictions but {labels.shape[0]} labels in the batch.")

    def build_metric(self, config: MetricConfig) -> Metric:
        # torchmetrics: ~1.6 s to import, only when a handler first builds a metric
        from torchmetrics import classification as tmc

        name = config.name
        num_labels = self._known_num_labels()
        average = _AVERAGES[config.average or "macro"]
        if self.is_multilabel(config):
            threshold = 0.5 if config.threshold is None else config.threshold
            if name == "accuracy":
                return tmc.MultilabelExactMatch(num_labels=num_labels, threshold=threshold)
            multilabel = {
                "precision": tmc.MultilabelPrecision,
                "recall": tmc.MultilabelRecall,
                "f1": tmc.MultilabelF1Score,
            }
            return multilabel[name](num_labels=num_labels, threshold=threshold, average=average)
        if name in ("accuracy", "top_k_accuracy"):
            top_k = 1 if name == "accuracy" else config.top_k or 5
            return tmc.MulticlassAccuracy(num_classes=num_labels, top_k=top_k, average="micro")
        multiclass = {"precision": tmc.MulticlassPrecision, "recall": tmc.MulticlassRecall, "f1": tmc.MulticlassF1Score}
        return multiclass[name](num_classes=num_labels, average=average)

    def _known_num_labels(self) -> int:
        """`num_labels`, which `update` learns from the first logits when the context did not give it."""
        if self.num_labels is None:
            raise ValueError(
                f"{type(self).__name__} builds its metrics once it knows the number of classes: give "
                "`num_labels` (or `id2label`), or `update` it with [batch, num_labels] logits first."
            )
        return self.num_labels
