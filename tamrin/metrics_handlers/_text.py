"""Shared base of the handlers that score generated text against reference text.

Contract of `update(outputs, batch)`:

- predictions: `outputs` itself when it is already a list of strings (e.g. the Trainer decoded
  `generate`'s token ids), else `post_process(outputs)`, a context callable that turns the model's
  outputs (logits, or generated token ids when evaluating with `generate`) into a list of strings
  (a list of `{"text": ...}` dicts is accepted too);
- references: `decode_labels(batch)`, a context callable returning one string per sample; without
  it, the list of strings in `batch["texts"]`.

Strings are compared as they are (no lower-casing or normalisation). The (prediction, reference)
pairs go through `gather` as one list of objects, which accelerate gathers with `gather_object` and
still trims off the distributed sampler's padding.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from tamrin.metrics_handlers.base import MetricConfig, MetricsHandler

if TYPE_CHECKING:
    from torchmetrics import Metric

__all__ = ["ErrorRateMetricsHandler", "TextMetricsHandler"]


def _is_strings(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and all(isinstance(item, str) for item in value)


def _as_strings(value: Any, source: str) -> list[str]:
    if isinstance(value, (list, tuple)):
        items = [item["text"] if isinstance(item, Mapping) and "text" in item else item for item in value]
        if all(isinstance(item, str) for item in items):
            return items
    got = type(value).__name__ + (" of other items" if isinstance(value, (list, tuple)) else "")
    raise ValueError(f"`{source}` must return a list of strings (or of {{'text': ...}} dicts), got {got}.")


class TextMetricsHandler(MetricsHandler):
    """Decodes predictions and references to strings, gathers them, and feeds `update_texts`.

    Args:
        metrics: see `MetricsHandler`.
        gather: see `MetricsHandler`.
        post_process: `post_process(outputs) -> list[str]`, the model's decoding of its outputs.
        decode_labels: `decode_labels(batch) -> list[str]`, the references (default: `batch["texts"]`).
        **context: ignored.
    """

    texts_key: ClassVar[str] = "texts"

    def __init__(
        self,
        metrics: Sequence[str | Mapping[str, Any] | MetricConfig] | None = None,
        *,
        gather: Callable[[Any], Any] | None = None,
        post_process: Callable[[Any], Any] | None = None,
        decode_labels: Callable[[Any], Any] | None = None,
        **context: Any,
    ) -> None:
        super().__init__(metrics, gather=gather, **context)
        self.post_process = post_process
        self.decode_labels = decode_labels

    def predictions(self, outputs: Any) -> list[str]:
        """The predicted strings of a batch: `outputs` if already strings, else `post_process(outputs)`."""
        if _is_strings(outputs):
            return list(outputs)
        if self.post_process is None:
            raise ValueError(
                f"{type(self).__name__} scores strings: pass `post_process` (outputs -> list of "
                f"strings) in the handler's context, or give it decoded strings as outputs."
            )
        return _as_strings(self.post_process(outputs), "post_process(outputs)")

    def references(self, batch: Any) -> list[str]:
        """The reference strings of a batch: `decode_labels(batch)`, else `batch["texts"]`."""
        if self.decode_labels is not None:
            return _as_strings(self.decode_labels(batch), "decode_labels(batch)")
        if isinstance(batch, Mapping) and self.texts_key in batch:
            return _as_strings(batch[self.texts_key], f"batch[{self.texts_key!r}]")
        keys = list(batch) if isinstance(batch, Mapping) else type(batch).__name__
        raise ValueError(
            f"{type(self).__name__} needs the reference texts: pass `decode_labels` (batch -> "
            f"list of strings) in the handler's context, or put them in "
            f"`batch[{self.texts_key!r}]` (the batch has {keys})."
        )

    def update(self, outputs: Any, batch: Any) -> None:
        predictions, references = self.predictions(outputs), self.references(batch)
        if len(predictions) != len(references):
            raise ValueError(f"{len(predictions)} predicted texts but {len(references)} references in the batch.")
        pairs = self.gather(list(zip(predictions, references)))
        if len(pairs):
            predictions, references = (list(column) for column in zip(*pairs))
            self.update_texts(predictions, references)

    def update_texts(self, predictions: list[str], references: list[str]) -> None:
        """Add gathered (prediction, reference) strings to every metric."""
        for name in self.metric_names:
            self.update_metric(name, predictions, references)


class ErrorRateMetricsHandler(TextMetricsHandler):
    """Character and word error rates: total edit distance over total reference length."""

    valid_metrics = ("cer", "wer")
    objectives = {"cer": "minimize", "wer": "minimize"}

    def build_metric(self, config: MetricConfig) -> Metric:
        # torchmetrics: ~1.6 s to import, only when a handler first builds a metric
        from torchmetrics import text

        return text.CharErrorRate() if config.name == "cer" else text.WordErrorRate()
