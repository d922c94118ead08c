"""A small text classifier: token embeddings, a bidirectional GRU, masked mean+max pooling, a linear head.

Sized for CPU training from scratch on the user's own data (no pretrained weights, no download).
The GRU reads word order, which a bag of words cannot ("not good", "good but ..."); mean and max
pooling over the real tokens (padding masked out) give one vector per text.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

import torch
from torch import nn
from torch.nn import functional as F

from tamrin.configs import ConfigError, check_range
from tamrin.models.base import Model, ModelConfig
from tamrin.models.registry import register_model
from tamrin.preprocessors.padding import pad_token_ids
from tamrin.preprocessors.tokenizer import TextPreprocessor
from tamrin.transfer import host_to_device

__all__ = ["TextClassifier", "TextClassifierConfig", "check_label_fields", "load_text_preprocessor"]


def check_label_fields(num_labels: int, id2label: Mapping[int, str] | None, minimum: int) -> list[str | None]:
    """Problems with `num_labels` / `id2label`: too few labels, or a map that does not number 0..n-1."""
    problems = [check_range("num_labels", num_labels, minimum=minimum)]
    if id2label is not None:
        ids = sorted(int(key) for key in id2label)
        if ids != list(range(num_labels)):
            problems.append(
                f"`id2label` must name the ids 0..{num_labels - 1} (num_labels={num_labels}), got ids {ids}."
            )
    return problems


class LabelledTextConfig(Protocol):
    """What `load_text_preprocessor` reads from a text model's config (TextClassifierConfig, SequenceLabelerConfig)."""

    vocab_size: int
    num_labels: int
    id2label: dict[int, str] | None


def load_text_preprocessor(model: Model, directory: str | os.PathLike) -> None:
    """Restore a text model's `TextPreprocessor` from `directory`, checking it matches the config.

    A model saved without one (built without data) has nothing to restore and keeps None.

    Raises:
        ConfigError: the saved vocabulary or labels differ from the model config's.
    """
    if not TextPreprocessor.exists(directory):
        return
    preprocessor = TextPreprocessor.load(directory)
    config = cast(LabelledTextConfig, model.config)  # the text models' configs all have these fields
    problems = []
    if preprocessor.tokenizer.vocab_size != config.vocab_size:
        problems.append(
            f"its tokenizer has {preprocessor.tokenizer.vocab_size} ids, the config vocab_size={config.vocab_size}"
        )
    if config.id2label is not None and preprocessor.labels != [config.id2label[i] for i in range(config.num_labels)]:
        problems.append(f"its labels {preprocessor.labels} differ from the config's id2label {config.id2label}")
    if problems:
        raise ConfigError(f"The preprocessor saved in {directory} does not match the model: {'; '.join(problems)}.")
    model.preprocessor = preprocessor


def require_preprocessor(model: Model) -> Any:
    """The model's TextPreprocessor, or a clear error saying how a model gets one."""
    if model.preprocessor is None:
        raise ValueError(
            f"{type(model).__name__} has no preprocessor (tokenizer and labels), so it cannot read raw text: "
            "build it with a recipe / the training dataset's `preprocessor`, or load a saved model."
        )
    return model.preprocessor


def encode_batch(preprocessor: Any, sequences: Sequence[Sequence[int]]) -> dict[str, Any]:
    """Pad token-id lists into `input_ids`, `attention_mask` and `lengths` (as the text collators do)."""
    return pad_token_ids(sequences, preprocessor.tokenizer.pad_id)


@dataclass
class TextClassifierConfig(ModelConfig):
    """Configuration of `TextClassifier`. The training data sets vocab_size, num_labels and id2label.

    Attributes:
        vocab_size: rows of the embedding (the tokenizer's vocabulary, [PAD] = 0 included).
        num_labels: the number of classes.
        id2label: the class name of each id (e.g. {0: "negative", 1: "positive"}).
        embedding_dim: size of the token embeddings.
        hidden_size: hidden size of each GRU direction.
        num_layers: stacked GRU layers.
        dropout: dropout on the embeddings and before the head.
    """

    name: str = "text_classifier"
    vocab_size: int = 8000
    num_labels: int = 2
    id2label: dict[int, str] | None = None
    embedding_dim: int = 64
    hidden_size: int = 64
    num_layers: int = 1
    dropout: float = 0.1

    def validate(self) -> list[str | None]:
        return [
            *super().validate(),
            check_range("vocab_size", self.vocab_size, minimum=2),
            *check_label_fields(self.num_labels, self.id2label, minimum=2),
            check_range("embedding_dim", self.embedding_dim, minimum=1),
            check_range("hidden_size", self.hidden_size, minimum=1),
            check_range("num_layers", self.num_layers, minimum=1),
            check_range("dropout", self.dropout, minimum=0.0, maximum=1.0),
        ]


class PackedBiRNN(nn.Module):
    """Token embeddings and a bidirectional GRU or LSTM over the real tokens of each padded sequence.

    Shared by the text classifier and the sequence labeller.
    """

    def __init__(
        self, vocab_size: int, embedding_dim: int, hidden_size: int, num_layers: int, dropout: float, rnn_type: str
    ) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=0)
        self.dropout = nn.Dropout(dropout)
        rnn_class = nn.LSTM if rnn_type == "lstm" else nn.GRU
        self.rnn = rnn_class(
            embedding_dim,
            hidden_size,
            num_layers=num_layers,
            bidirectional=True,
            batch_first=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, lengths: Sequence[int] | None = None
    ) -> torch.Tensor:
        """(B, L) ids and mask -> (B, L, 2 * hidden_size) states (zero on padding).

        Args:
            input_ids: (B, L) token ids, right-padded.
            attention_mask: (B, L), 1 on real tokens.
            lengths: the real tokens of each row, on the host (the text collators' `lengths`). None:
                counted from `attention_mask`, which on a GPU waits for the device (a host sync).
        """
        # Packing keeps the backward direction from starting on padding; an empty text reads one [PAD].
        # pack_padded_sequence wants the lengths on the host and sorted: both are done here, on the
        # host, so that only a pinned non-blocking copy of the order goes to the device.
        if lengths is None or isinstance(lengths, torch.Tensor):
            lengths = (attention_mask.sum(dim=1) if lengths is None else lengths).tolist()
        if len(lengths) != input_ids.shape[0]:
            raise ValueError(f"`lengths` has {len(lengths)} entries for a batch of {input_ids.shape[0]} rows.")
        host_lengths = torch.tensor([max(int(length), 1) for length in lengths], dtype=torch.long)
        sorted_lengths, order = torch.sort(host_lengths, descending=True)  # as pack_padded_sequence sorts
        inverse = torch.empty_like(order).scatter_(0, order, torch.arange(len(order)))
        order, inverse = host_to_device(torch.stack([order, inverse]), input_ids.device)
        embedded = self.dropout(self.embedding(input_ids)).index_select(0, order)
        packed = nn.utils.rnn.pack_padded_sequence(embedded, sorted_lengths, batch_first=True)
        states, _ = self.rnn(packed)
        states, _ = nn.utils.rnn.pad_packed_sequence(states, batch_first=True, total_length=input_ids.shape[1])
        return states.index_select(0, inverse)


@register_model("text_classifier", config_class=TextClassifierConfig)
class TextClassifier(Model):
    """Classifies texts. `forward` returns {"logits": (B, num_labels)}; `post_process` gives label names.

    `predict(["some text"])` tokenizes with the preprocessor (tokenizer + label map) that the
    training data handed the model and returns one label name per text.
    """

    config: TextClassifierConfig

    def __init__(self, config: TextClassifierConfig) -> None:
        super().__init__(config)
        self.encoder = PackedBiRNN(
            config.vocab_size,
            config.embedding_dim,
            config.hidden_size,
            config.num_layers,
            config.dropout,
            rnn_type="gru",
        )
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(4 * config.hidden_size, config.num_labels)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        lengths: Sequence[int] | None = None,
        **_: Any,
    ) -> dict[str, torch.Tensor]:
        """Score each text.

        Args:
            input_ids: (B, L) token ids, right-padded with 0.
            attention_mask: (B, L), 1 on real tokens (None: every position is real).
            lengths: the real tokens of each row, on the host (the collators give them; None: counted
                from the mask, a host sync on a GPU).

        Returns:
            {"logits": (B, num_labels)}.
        """
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
            lengths = [input_ids.shape[1]] * input_ids.shape[0] if lengths is None else lengths
        states = self.encoder(input_ids, attention_mask, lengths)
        mask = attention_mask.unsqueeze(-1).to(states.dtype)
        mean = (states * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        maximum = states.masked_fill(mask == 0, float("-inf")).amax(dim=1)
        maximum = torch.where(torch.isfinite(maximum), maximum, torch.zeros_like(maximum))  # empty texts
        return {"logits": self.head(self.dropout(torch.cat([mean, maximum], dim=-1)))}

    def compute_loss(self, outputs: dict[str, torch.Tensor], batch: dict[str, Any]) -> torch.Tensor:
        """Cross-entropy of the logits against `batch["labels"]` (B,) class ids."""
        return F.cross_entropy(outputs["logits"].float(), batch["labels"])

    def preprocess(self, inputs: Sequence[str]) -> dict[str, Any]:
        """Texts -> {"input_ids", "attention_mask", "lengths"}, tokenized and cut like the training data."""
        if isinstance(inputs, str):
            inputs = [inputs]
        preprocessor = require_preprocessor(self)
        sequences = [preprocessor.encode(text) for text in inputs]
        empty = [index for index, ids in enumerate(sequences) if not ids]
        if empty:
            raise ConfigError(f"Inputs {empty} hold no tokens (empty or blank texts): there is nothing to classify.")
        return encode_batch(preprocessor, sequences)

    def post_process(self, outputs: dict[str, torch.Tensor] | torch.Tensor) -> list[str]:
        """The label name of each text's highest score (the id itself when there is no id2label)."""
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs
        id2label = self.config.id2label or {}
        return [id2label.get(index, str(index)) for index in logits.argmax(dim=-1).tolist()]

    def load_preprocessor(self, directory: str | os.PathLike) -> None:
        """Restore the tokenizer and label map saved beside the weights."""
        load_text_preprocessor(self, directory)
