"""Metrics of sequence labeling (NER, POS): entity-level precision/recall/F1 as seqeval's, token accuracy."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from tamrin.configs import ConfigError
from tamrin.metrics_handlers._tagging import EntityDecoder
from tamrin.metrics_handlers.base import MetricConfig, MetricsHandler
from tamrin.metrics_handlers.registry import register_metrics_handler

__all__ = ["SequenceLabelingMetricsHandler", "entity_scores"]

_ENTITY_METRICS = ("precision", "recall", "f1")


@register_metrics_handler("sequence_labeling")
class SequenceLabelingMetricsHandler(MetricsHandler):
    """Entity-level precision, recall and F1 (seqeval's numbers) and token accuracy.

    `update` reads `outputs["logits"]` (or a tensor output): `[batch, seq_len, num_labels]` scores, or
    `[batch, seq_len]` predicted tag ids; and `batch["labels"]`: `[batch, seq_len]` tag ids, where -100
    marks positions to ignore (padding, sub-word continuations). Ignored positions are removed from
    both sequences before entities are read, as in Hugging Face's token-classification example.

    The state is a vector of counters: per entity type, true positives, predicted and gold entities
    (one block per scheme in use), plus correct and counted tokens. Each sample's counters are
    computed, gathered (so padded duplicates are dropped) and summed; memory does not grow with the
    evaluation set. Entities are read on the host, as seqeval reads them: one device-to-host copy of
    the predicted and gold ids per batch.

    Args:
        metrics: see `MetricsHandler`; precision/recall/f1 take `average` (default "micro", as seqeval)
            and `scheme` (None: seqeval's default mode; "IOB2" etc.: seqeval's strict mode).
        gather: see `MetricsHandler`.
        id2label: the tag of each id, e.g. {0: "O", 1: "B-PER", 2: "I-PER"}; needed by the entity metrics.
        **context: ignored.

    Raises:
        ConfigError: an entity metric without `id2label`, or tags the scheme cannot read.
    """

    valid_metrics = ("accuracy", "precision", "recall", "f1")
    metric_options = {name: ("average", "scheme") for name in _ENTITY_METRICS}
    ignore_index = -100

    def __init__(
        self,
        metrics: Sequence[str | Mapping[str, Any] | MetricConfig] | None = None,
        *,
        gather: Callable[[Any], Any] | None = None,
        id2label: Mapping[int, str] | Sequence[str] | None = None,
        **context: Any,
    ) -> None:
        super().__init__(metrics, gather=gather, **context)
        schemes = sorted(
            {c.scheme for c in self.metric_configs.values() if c.name in _ENTITY_METRICS},
            key=lambda scheme: scheme or "",
        )
        if schemes and id2label is None:
            raise ConfigError(
                "Entity-level precision/recall/f1 need the tag names: pass `id2label` (e.g. "
                "the model config's id2label) to the sequence_labeling metrics handler."
            )
        self.decoders = {scheme: EntityDecoder(id2label, scheme) for scheme in schemes} if id2label is not None else {}
        self.num_labels = len(id2label) if id2label is not None else None
        # Layout of the counter vector: [correct tokens, counted tokens, then per scheme tp | pred | gold].
        self._offsets: dict[str | None, int] = {}
        width = 2
        for scheme, decoder in self.decoders.items():
            self._offsets[scheme] = width
            width += 3 * len(decoder.types)
        self._width = width
        self._counts: torch.Tensor | None = None

    def update(self, outputs: Any, batch: Any) -> None:
        scores = self.logits(outputs).detach()
        gold = self.labels(batch).detach()
        predicted = scores.argmax(-1) if scores.is_floating_point() else scores
        if predicted.shape != gold.shape:
            raise ValueError(
                f"Predicted tags of shape {tuple(predicted.shape)} do not match labels of shape "
                f"{tuple(gold.shape)}; expected logits [batch, seq_len, num_labels]."
            )
        # Entities are read sequentially on the host, as seqeval does: this is a device sync point.
        rows = [self._sample_counts(p, g) for p, g in zip(predicted.tolist(), gold.tolist())]
        counts = torch.tensor(rows, dtype=torch.long, device=gold.device).reshape(len(rows), self._width)
        total = self.gather(counts).sum(0)
        self._counts = total if self._counts is None else self._counts.to(total.device) + total

    def _sample_counts(self, predicted: list[int], gold: list[int]) -> list[int]:
        pairs = [(p, g) for p, g in zip(predicted, gold) if g != self.ignore_index]
        row = [sum(p == g for p, g in pairs), len(pairs)]
        num_labels = self.num_labels
        if not self.decoders or num_labels is None:  # decoders come with id2label, hence with num_labels
            return row
        predicted, gold = [p for p, _ in pairs], [g for _, g in pairs]
        for ids, kind in ((predicted, "predicted"), (gold, "label")):
            if ids and (min(ids) < 0 or max(ids) >= num_labels):
                raise ValueError(
                    f"A {kind} tag id ({min(ids)} or {max(ids)}) is outside id2label (0.."
                    f"{num_labels - 1}); labels to ignore must be {self.ignore_index}."
                )
        for decoder in self.decoders.values():
            size = len(decoder.types)
            block = [0] * (3 * size)
            predicted_entities, gold_entities = decoder.entities(predicted), decoder.entities(gold)
            for entity in predicted_entities & gold_entities:
                block[entity[0]] += 1
            for entity in predicted_entities:
                block[size + entity[0]] += 1
            for entity in gold_entities:
                block[2 * size + entity[0]] += 1
            row += block
        return row

    def compute_metrics(self) -> dict[str, float]:
        if self._counts is None:
            return dict.fromkeys(self.metric_names, math.nan)
        counts = self._counts.tolist()
        results = {}
        for name, config in self.metric_configs.items():
            if name == "accuracy":
                results[name] = counts[0] / counts[1] if counts[1] else math.nan
                continue
            size, start = len(self.decoders[config.scheme].types), self._offsets[config.scheme]
            tp, predicted, gold = (counts[start + k * size : start + (k + 1) * size] for k in range(3))
            results[name] = entity_scores(tp, predicted, gold, config.average or "micro")[name]
        return results

    def reset_metrics(self) -> None:
        self._counts = None


def entity_scores(tp: Sequence[int], predicted: Sequence[int], gold: Sequence[int], average: str) -> dict[str, float]:
    """Precision, recall and F1 from per-type counts, as seqeval (zero division gives 0).

    Only the types that occur among the predicted or gold entities are averaged, as seqeval does.
    """
    seen = [k for k in range(len(tp)) if predicted[k] or gold[k]]
    tp, predicted, gold = ([values[k] for k in seen] for values in (tp, predicted, gold))
    if average == "micro":
        tp, predicted, gold = [sum(tp)], [sum(predicted)], [sum(gold)]
    precision = [t / p if p else 0.0 for t, p in zip(tp, predicted)]
    recall = [t / g if g else 0.0 for t, g in zip(tp, gold)]
    f1 = [2 * p * r / (p + r) if p + r else 0.0 for p, r in zip(precision, recall)]
    if average == "weighted":
        weights = gold if sum(gold) else [0] * len(gold)
    else:
        weights = [1] * len(tp)
    total = sum(weights)

    def mean(values: list[float]) -> float:
        return sum(w * v for w, v in zip(weights, values)) / total if total else 0.0

    return {"precision": mean(precision), "recall": mean(recall), "f1": mean(f1)}
