"""A small sequence labeller (NER, POS): token embeddings, a bidirectional LSTM or GRU, a per-token head.

Trained from scratch on CPU with the tokenizer the training data built. Each word's tag is read
from its first token, as the data labels it (continuation pieces and padding carry -100, which the
loss ignores), so `predict` returns one tag per word of the input.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from tamrin.configs import ConfigError, check_choice, check_range
from tamrin.models.base import Model, ModelConfig
from tamrin.models.registry import register_model
from tamrin.models.text_classifier import (
    PackedBiRNN,
    check_label_fields,
    encode_batch,
    load_text_preprocessor,
    require_preprocessor,
)

__all__ = ["SequenceLabeler", "SequenceLabelerConfig", "IGNORE_INDEX"]

IGNORE_INDEX = -100
UNK_ID = 1  # the tamrin Tokenizer's [UNK]
RNN_TYPES = ("lstm", "gru")


@dataclass
class SequenceLabelerConfig(ModelConfig):
    """Configuration of `SequenceLabeler`. The training data sets vocab_size, num_labels and id2label.

    Attributes:
        vocab_size: rows of the embedding (the tokenizer's vocabulary, [PAD] = 0 included).
        num_labels: the number of tags.
        id2label: the tag of each id (e.g. {0: "O", 1: "B-PER", 2: "I-PER"}); the metrics read entities from it.
        embedding_dim: size of the token embeddings.
        hidden_size: hidden size of each RNN direction.
        num_layers: stacked RNN layers.
        rnn_type: "lstm" or "gru" (bidirectional either way).
        dropout: dropout on the embeddings and before the head.
        word_dropout: in training, the share of tokens replaced by [UNK], so that the model learns to
            tag names it has never seen from their context instead of memorising name lists.
    """

    name: str = "sequence_labeler"
    vocab_size: int = 8000
    num_labels: int = 2
    id2label: dict[int, str] | None = None
    embedding_dim: int = 64
    hidden_size: int = 64
    num_layers: int = 1
    rnn_type: str = "lstm"
    dropout: float = 0.1
    word_dropout: float = 0.1

    def validate(self) -> list[str | None]:
        return [
            *super().validate(),
            check_range("vocab_size", self.vocab_size, minimum=2),
            *check_label_fields(self.num_labels, self.id2label, minimum=1),
            check_range("embedding_dim", self.embedding_dim, minimum=1),
            check_range("hidden_size", self.hidden_size, minimum=1),
            check_range("num_layers", self.num_layers, minimum=1),
            check_choice("rnn_type", self.rnn_type, RNN_TYPES),
            check_range("dropout", self.dropout, minimum=0.0, maximum=1.0),
            check_range("word_dropout", self.word_dropout, minimum=0.0, maximum=1.0),
        ]


@register_model("sequence_labeler", config_class=SequenceLabelerConfig)
class SequenceLabeler(Model):
    """Tags every token. `forward` returns {"logits": (B, L, num_labels)}; `post_process` gives tag names.

    `predict(["John lives in Paris"])` splits each text on whitespace (or takes a list of words),
    tokenizes the words like the training data and returns one tag per word:
    `[["B-PER", "O", "O", "B-LOC"]]`.
    """

    config: SequenceLabelerConfig

    def __init__(self, config: SequenceLabelerConfig) -> None:
        super().__init__(config)
        self.encoder = PackedBiRNN(
            config.vocab_size,
            config.embedding_dim,
            config.hidden_size,
            config.num_layers,
            config.dropout,
            rnn_type=config.rnn_type,
        )
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(2 * config.hidden_size, config.num_labels)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        word_ids: torch.Tensor | None = None,
        num_words: torch.Tensor | None = None,
        lengths: Sequence[int] | None = None,
        **_: Any,
    ) -> dict[str, torch.Tensor]:
        """Score each token.

        Args:
            input_ids: (B, L) token ids, right-padded with 0.
            attention_mask: (B, L), 1 on real tokens (None: every position is real).
            word_ids: (B, L) from `preprocess`: the word each token begins, -1 on other tokens.
            num_words: (B,) from `preprocess`: the number of words of each input.
                Both are passed through to the outputs, so that `post_process` gives one tag per word.
            lengths: the real tokens of each row, on the host (the collators give them; None: counted
                from the mask, a host sync on a GPU).

        Returns:
            {"logits": (B, L, num_labels)}, plus "word_ids" and "num_words" when given.
        """
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
            lengths = [input_ids.shape[1]] * input_ids.shape[0] if lengths is None else lengths
        if self.training and self.config.word_dropout > 0:
            dropped = torch.rand(input_ids.shape, device=input_ids.device) < self.config.word_dropout
            input_ids = input_ids.masked_fill(dropped & attention_mask.bool(), UNK_ID)
        states = self.encoder(input_ids, attention_mask, lengths)
        outputs = {"logits": self.head(self.dropout(states))}
        if word_ids is not None:
            outputs["word_ids"] = word_ids
        if num_words is not None:
            outputs["num_words"] = num_words
        return outputs

    def compute_loss(self, outputs: dict[str, torch.Tensor], batch: dict[str, Any]) -> torch.Tensor:
        """Token cross-entropy against `batch["labels"]` (B, L); -100 (padding, continuation pieces) is ignored."""
        logits = outputs["logits"].float()
        return F.cross_entropy(logits.flatten(0, 1), batch["labels"].flatten(), ignore_index=IGNORE_INDEX)

    def preprocess(self, inputs: Sequence[str | Sequence[str]]) -> dict[str, Any]:
        """Texts (split on whitespace) or lists of words -> input_ids, attention_mask, lengths, word_ids, num_words.

        `word_ids[b, t]` is the index of the word that token t begins, -1 on later pieces and padding.
        """
        if isinstance(inputs, str):
            inputs = [inputs]
        preprocessor = require_preprocessor(self)
        words = [text.split() if isinstance(text, str) else [str(word) for word in text] for text in inputs]
        empty = [index for index, sentence in enumerate(words) if not sentence]
        if empty:
            raise ConfigError(f"Inputs {empty} hold no words (empty or blank texts): there is nothing to tag.")
        encoded = [preprocessor.encode_words(sentence) for sentence in words]
        batch = encode_batch(preprocessor, [ids for ids, _ in encoded])
        starts = torch.full_like(batch["input_ids"], -1)
        for row, (_, word_ids) in enumerate(encoded):
            previous = None
            for position, word in enumerate(word_ids):
                if word != previous:
                    starts[row, position] = word
                previous = word
        batch["word_ids"] = starts
        batch["num_words"] = torch.tensor([len(sentence) for sentence in words], dtype=torch.long)
        return batch

    def post_process(self, outputs: dict[str, torch.Tensor] | torch.Tensor) -> list[list[str]]:
        """Tag names: one per word when `outputs` holds `preprocess`'s `word_ids`, else one per token.

        A word that has no token of its own (cut off by max_length) gets "O".
        """
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs
        id2label = self.config.id2label or {}
        predicted = logits.argmax(dim=-1).tolist()
        word_ids = outputs.get("word_ids") if isinstance(outputs, dict) else None
        if word_ids is None or not isinstance(outputs, dict):
            return [[id2label.get(tag, str(tag)) for tag in row] for row in predicted]
        counts = outputs["num_words"].tolist() if "num_words" in outputs else [None] * len(predicted)
        results = []
        for tags, words, count in zip(predicted, word_ids.tolist(), counts):
            by_word = {word: id2label.get(tag, str(tag)) for tag, word in zip(tags, words) if word >= 0}
            count = max(by_word, default=-1) + 1 if count is None else count
            results.append([by_word.get(index, "O") for index in range(count)])
        return results

    def load_preprocessor(self, directory: str | os.PathLike) -> None:
        """Restore the tokenizer and tag map saved beside the weights."""
        load_text_preprocessor(self, directory)
