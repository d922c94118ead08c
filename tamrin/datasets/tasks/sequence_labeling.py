"""Sequence labelling (NER, POS) datasets: one tag per word, read from files or a Hugging Face dataset.

Each word's tag goes on the word's first token and -100 (ignored by the loss and the metrics) on
its other tokens; words cut off by `max_length` are not scored. Reading, tokenizer training and
label maps are the text base's (`TextDataset`, text_classification.py).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tamrin.configs import ConfigError
from tamrin.datasets.base import register_dataset
from tamrin.datasets.collators import TokenLabelCollator
from tamrin.datasets.hf_rows import name_class_labels
from tamrin.datasets.readers import class_label_names
from tamrin.datasets.tables import read_table
from tamrin.datasets.tasks.text_classification import (
    IGNORE_INDEX,
    TextDataset,
    TextEncodingConfig,
    check_text_files,
)

__all__ = ["OUTSIDE_TAG", "SequenceLabelingConfig", "SequenceLabelingDataset", "align_labels"]

OUTSIDE_TAG = "O"


@dataclass
class SequenceLabelingConfig(TextEncodingConfig):
    """Configuration of `SequenceLabelingDataset` (see `TextEncodingConfig` for the tokenizer fields).

    Attributes:
        files: data file of each split, e.g. {train: train.jsonl, validation: dev.jsonl}.
        tokens_column: the column holding the words (a list, or one space-separated string in CSV).
        tags_column: the column holding one tag per word (IOB2 such as B-PER, I-PER, O), same form.
    """

    name: str = "sequence_labeling"
    task: str = "sequence_labeling"
    files: dict[str, str] = field(default_factory=dict)
    tokens_column: str = "tokens"
    tags_column: str = "tags"

    def validate(self) -> list[str | None]:
        return [*super().validate(), *check_text_files(self.files)]


@register_dataset("sequence_labeling", config_class=SequenceLabelingConfig)
class SequenceLabelingDataset(TextDataset):
    """One tag per word (e.g. IOB2 NER). Items: input_ids (L,), labels (L,) with -100 off first pieces.

    Tags are numbered with "O" first, then sorted. Batches by `TokenLabelCollator` (labels padded with -100).
    """

    config: SequenceLabelingConfig

    @property
    def tokens_column(self) -> str:
        """The column holding the words."""
        return self.config.tokens_column

    @property
    def tags_column(self) -> str:
        """The column holding the tags."""
        return self.config.tags_column

    @classmethod
    def required_columns(cls, config: Any) -> list[str]:
        return [config.tokens_column, config.tags_column]

    @classmethod
    def name_class_labels(cls, dataset: Any, table: Any, config: Any) -> Any:
        names = class_label_names(dataset, config.tags_column)
        return table if names is None else name_class_labels(table, config.tags_column, names)

    def load_rows(self) -> Any:
        return self.read_split(self.config.files)

    def read_file(self, path: Path) -> Any:
        # Values are checked per row in `words_and_tags` (a cell is a list, or a space-separated string).
        return read_table(path)

    def words_and_tags(self, row: dict[str, Any], where: str) -> tuple[list[str], list[str]]:
        """The row's words and tags (lists, or space-separated strings), checked to pair up."""
        values = []
        for column in (self.tokens_column, self.tags_column):
            value = _as_word_list(row.get(column), f"{where} (column {column!r})")
            if not value:
                raise ConfigError(
                    f"{where} has no value for column {column!r}: every row needs a non-empty list (or "
                    f"space-separated string) of words and of tags (its columns: {sorted(row)})."
                )
            values.append(value)
        words, tags = values
        if len(words) != len(tags):
            raise ConfigError(
                f"{where} has {len(words)} words in {self.tokens_column!r} but {len(tags)} tags in "
                f"{self.tags_column!r}; every word needs exactly one tag."
            )
        return words, tags

    def texts_of(self, rows: Iterable[dict[str, Any]]) -> Iterator[str]:
        return (" ".join(self.words_and_tags(row, self.where(i))[0]) for i, row in enumerate(rows))

    def labels_of(self, rows: Iterable[dict[str, Any]]) -> list[str]:
        tags = {tag for i, row in enumerate(rows) for tag in self.words_and_tags(row, self.where(i))[1]}
        return sorted(tags, key=lambda tag: (tag != OUTSIDE_TAG, tag))

    def encode_row(self, row: dict[str, Any], where: str) -> dict[str, Any]:
        words, tags = self.words_and_tags(row, where)
        tag_ids = [self.preprocessor.label_id(tag, f"{where} (column {self.tags_column!r})") for tag in tags]
        ids, word_ids = self.preprocessor.encode_words(words)
        if not ids:
            raise ConfigError(f"{where}: the words in column {self.tokens_column!r} have no tokens.")
        return {"input_ids": ids, "labels": align_labels(word_ids, tag_ids)}

    def default_data_collator(self) -> TokenLabelCollator:
        return TokenLabelCollator(pad_id=0, label_pad_value=IGNORE_INDEX)


def align_labels(word_ids: Sequence[int], tag_ids: Sequence[int]) -> list[int]:
    """Per-token labels: the word's tag on its first token, IGNORE_INDEX on the tokens after it."""
    labels, previous = [], None
    for word in word_ids:
        labels.append(tag_ids[word] if word != previous else IGNORE_INDEX)
        previous = word
    return labels


def _as_word_list(value: Any, where: str) -> list[str]:
    """A cell of words or tags as a list: a string is split on whitespace; a list (or array) is kept."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return []
    if isinstance(value, str):
        return value.split()
    if isinstance(value, Sequence) or hasattr(value, "tolist"):  # lists, tuples, numpy arrays (Parquet)
        items = value.tolist() if hasattr(value, "tolist") else list(value)
        return [str(item) for item in items]
    raise ConfigError(
        f"{where} must hold a list of words/tags or a space-separated string, got {type(value).__name__}: {value!r}."
    )
