"""Text datasets read from files or a Hugging Face dataset: the shared base, and text classification.

Rows come from the file (or glob of shards) that `files[split]` names (CSV, TSV, JSONL or Parquet),
or from a Hugging Face `datasets.Dataset` passed to `from_hf`. They stay in Arrow (tables.py): the
file is converted once into the datasets cache and memory-mapped, the tokenizer is trained and the
label map built in a streaming pass over it, and the encoded rows are a cached `map` of it, so a
second run with the same data and preprocessor skips the encoding. The training split, built
without a preprocessor, trains a tokenizer on its own texts and builds the label map; the other
splits must be given the training split's `preprocessor`, so that ids mean the same thing
everywhere, and a label they hold outside that map is an error naming the row.

Sequence labelling, built on the same base (`TextDataset`), is in sequence_labeling.py.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from tamrin.configs import ConfigError, check_choice, check_range
from tamrin.datasets.base import Dataset, DatasetConfig, register_dataset
from tamrin.datasets.collators import TextCollator
from tamrin.datasets.hf_rows import name_class_labels, rows_from_hf
from tamrin.datasets.readers import FILE_FORMATS, class_label_names, is_missing
from tamrin.datasets.tables import (
    ArrowColumn,
    check_no_missing,
    encode_rows,
    first_line_of,
    iter_rows,
    read_table,
    table_from_rows,
)
from tamrin.preprocessors.tokenizer import (
    PREPROCESSOR_FILENAME,
    TOKENIZER_FILENAME,
    TOKENIZER_MODELS,
    TextPreprocessor,
    Tokenizer,
)

__all__ = [
    "IGNORE_INDEX",
    "TextClassificationConfig",
    "TextClassificationDataset",
    "TextDataset",
    "TextEncodingConfig",
    "check_text_files",
]

IGNORE_INDEX = -100  # the label of tokens that carry no tag: continuation pieces and padding


@dataclass
class TextEncodingConfig(DatasetConfig):
    """How text becomes token ids; the tokenizer is trained on the training split's texts.

    Attributes:
        max_length: texts (sentences) are cut to this many tokens.
        vocab_size: the largest tokenizer vocabulary, [PAD] and [UNK] included.
        tokenizer_model: "wordpiece" (unseen words read as known pieces) or "word" (one id per word).
        lowercase: lowercase texts before tokenizing.
        min_frequency: tokens seen fewer times in the training texts are left out of the vocabulary.
    """

    max_length: int = 128
    vocab_size: int = 8000
    tokenizer_model: str = "wordpiece"
    lowercase: bool = True
    min_frequency: int = 1

    def validate(self) -> list[str | None]:
        return [
            *super().validate(),
            check_range("max_length", self.max_length, minimum=1),
            check_range("vocab_size", self.vocab_size, minimum=3),
            check_choice("tokenizer_model", self.tokenizer_model, TOKENIZER_MODELS),
            check_range("min_frequency", self.min_frequency, minimum=1),
        ]


def check_text_files(files: dict[str, str]) -> list[str | None]:
    """Problems with the `files` of a text config: a split whose file has a suffix no reader reads."""
    # An empty `files` is valid (rows may come from `from_hf`); a split without a file fails when built.
    return [
        None
        if Path(path).suffix.lower() in FILE_FORMATS
        else f"`files.{split}={path!r}` has an unreadable suffix; use one of {', '.join(sorted(FILE_FORMATS))}."
        for split, path in files.items()
    ]


@dataclass
class TextClassificationConfig(TextEncodingConfig):
    """Configuration of `TextClassificationDataset` (see `TextEncodingConfig` for the tokenizer fields).

    Attributes:
        files: data file of each split, e.g. {train: train.csv, validation: dev.jsonl}.
        text_column: the column holding the text.
        label_column: the column holding the label (any value; compared as a string).
    """

    name: str = "text_classification"
    task: str = "text_classification"
    files: dict[str, str] = field(default_factory=dict)
    text_column: str = "text"
    label_column: str = "label"

    def validate(self) -> list[str | None]:
        return [*super().validate(), *check_text_files(self.files)]


class TextDataset(Dataset):
    """Shared machinery: load rows, build or take the preprocessor, encode every row once.

    Subclasses define `columns`, `read_file(path)`, `labels_of(rows)` (the label map's entries),
    `encode_row(row, where)` and `load_rows()` (`read_split(files)` reads a file; the synthetic datasets generate rows).
    """

    config: TextEncodingConfig

    def __init__(
        self,
        config: TextEncodingConfig,
        split: str = "train",
        *,
        rows: list[dict[str, Any]] | Any = None,
        source: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(config, split=split, **kwargs)
        self.source = source or f"{config.name} ({split} split)"
        self._first_line = 0
        loaded = self.load_rows() if rows is None else rows
        if isinstance(loaded, list):
            loaded = table_from_rows(loaded) if loaded else None
        if loaded is None or len(loaded) == 0:
            raise ConfigError(f"The {split!r} split of {self.source} holds no rows: a dataset needs samples.")
        if config.max_size is not None and config.max_size < len(loaded):
            loaded = loaded.select(range(config.max_size))
        self.table = loaded
        """The split's raw rows: a `datasets.Dataset` (Arrow; memory-mapped when read from files)."""
        self.preprocessor = self._resolve_preprocessor(self.table)
        self.encoded = self.encode_table(self.table)
        """The encoded rows (input_ids, labels), a cached `map` of `table`."""
        self._input_ids = ArrowColumn(self.encoded, "input_ids")
        self._labels = ArrowColumn(self.encoded, "labels")

    @classmethod
    def from_hf(
        cls, dataset: Any, config: TextEncodingConfig, split: str = "train", *, preprocessor: Any = None
    ) -> TextDataset:
        """A split read from a Hugging Face `datasets.Dataset` (or any iterable of row dicts).

        A `datasets.Dataset` is the split's table as it is: its Arrow rows (memory-mapped when it was
        loaded from the Hub or disk) are checked and encoded without becoming Python objects. Any
        other iterable of row dicts is read into memory first (`rows_from_hf`). `config.files` is
        not read. Integer labels of a `ClassLabel` column become their names (a cached Arrow map).
        """
        rows = rows_from_hf(dataset, cls.required_columns(config))
        table = table_from_rows(rows) if isinstance(rows, list) else rows
        table = cls.name_class_labels(dataset, table, config)
        source = f"Hugging Face dataset {type(dataset).__name__}"
        return cls(config, split=split, rows=table, source=source, preprocessor=preprocessor)

    # -- what subclasses define ----------------------------------------------------------------
    @classmethod
    def required_columns(cls, config: Any) -> list[str]:
        """The columns every row must hold."""
        raise NotImplementedError

    @classmethod
    def name_class_labels(cls, dataset: Any, table: Any, config: Any) -> Any:
        """`table` with the `ClassLabel` ids of a Hugging Face `dataset` replaced by their names
        (default: unchanged; `hf_rows.name_class_labels` does it for one column)."""
        return table

    def labels_of(self, rows: Iterable[dict[str, Any]]) -> list[str]:
        """The label map of the training rows (one streaming pass), in id order."""
        raise NotImplementedError

    def encode_row(self, row: dict[str, Any], where: str) -> dict[str, list[int] | int]:
        """One row as {"input_ids": [...], "labels": ...}; `where` locates the row in errors."""
        raise NotImplementedError

    def texts_of(self, rows: Iterable[dict[str, Any]]) -> Iterable[str]:
        """The texts the tokenizer is trained on (a generator: one streaming pass)."""
        raise NotImplementedError

    # -- loading -------------------------------------------------------------------------------
    @classmethod
    def load_preprocessor(cls, path_or_repo_id: str | os.PathLike) -> TextPreprocessor:
        """The tokenizer and label map saved in a folder or a Hub model repo (a trained text model's)."""
        folder = Path(path_or_repo_id).expanduser()
        if not folder.is_dir():
            from tamrin import hub  # huggingface_hub: imported only for the Hub

            if not hub.is_repo_id(os.fspath(path_or_repo_id)):
                raise FileNotFoundError(f"No folder or Hub repo id at {os.fspath(path_or_repo_id)!r}.")
            wanted = [TOKENIZER_FILENAME, PREPROCESSOR_FILENAME]
            folder = hub.download(os.fspath(path_or_repo_id), allow_patterns=wanted)
        if not TextPreprocessor.exists(folder):
            raise FileNotFoundError(
                f"{folder} holds no text preprocessor ({PREPROCESSOR_FILENAME} and {TOKENIZER_FILENAME}, which a "
                "trained text model saves beside its weights)."
            )
        return TextPreprocessor.load(folder)

    def load_rows(self) -> Any:
        """The split's rows: a file dataset reads them with `read_split` (Arrow), a synthetic one generates a list."""
        raise NotImplementedError(
            f"{type(self).__name__} must implement `load_rows()`, e.g. `return self.read_split(self.config.files)`."
        )

    def read_split(self, files: Mapping[str, str]) -> Any:
        """The rows of `files[split]` (`files`: the config's data file of each split)."""
        if self.split not in files:
            raise ConfigError(
                f"{self.config.name} has no file for split {self.split!r}: `files` names the splits "
                f"{sorted(files)}. Add `files.{self.split}: PATH` or pick one of those splits."
            )
        path = Path(files[self.split])
        self.source = str(path)
        self._first_line = first_line_of(path)
        return self.read_file(path)

    def read_file(self, path: Path) -> Any:
        """Read a data file into Arrow, checking that the required columns hold a value in every row."""
        required = self.required_columns(self.config)
        table = read_table(path, required)
        check_no_missing(table, required, str(path), self._first_line)
        return table

    def where(self, index: int) -> str:
        """Where row `index` is, as an error message names it: a file line, or a row number."""
        if self._first_line:
            return f"{self.source}: line {index + self._first_line}"
        return f"{self.source}: row {index}"

    def _resolve_preprocessor(self, table: Any) -> TextPreprocessor:
        if self.preprocessor is not None:
            if not isinstance(self.preprocessor, TextPreprocessor):
                raise TypeError(
                    f"{type(self).__name__} needs a TextPreprocessor (the training split's `preprocessor`), "
                    f"got {type(self.preprocessor).__name__}."
                )
            if self.preprocessor.max_length != self.config.max_length:
                raise ConfigError(
                    f"The {self.split!r} split sets `max_length={self.config.max_length}`, but the training split's "
                    f"preprocessor (the model's) cuts texts at {self.preprocessor.max_length} tokens; the tokenizer "
                    f"settings come from training: set `max_length={self.preprocessor.max_length}` or drop it."
                )
            return self.preprocessor
        if self.split != "train":
            raise ConfigError(
                f"The {self.split!r} split of {self.config.name} needs the training split's preprocessor, "
                "so that token and label ids match it: build it with `preprocessor=train_dataset.preprocessor`."
            )
        return self.build_preprocessor(table)

    def build_preprocessor(self, table: Any) -> TextPreprocessor:
        """Train a tokenizer on the rows' texts and build their label map, streaming over the table twice.

        For rows read from files the result is cached beside the Arrow data (`HF_DATASETS_CACHE`), keyed
        by the rows and the tokenizer settings, so that a second run on the same data skips both passes.
        """
        cache = self._preprocessor_cache(table)
        if cache is not None and TextPreprocessor.exists(cache):
            return TextPreprocessor.load(cache)
        preprocessor = self._train_preprocessor(table)
        if cache is not None:
            preprocessor.save(cache)  # each file written atomically; `exists` checks the last one written
        return preprocessor

    def _preprocessor_cache(self, table: Any) -> Path | None:
        if not table.cache_files:  # rows in memory: nothing to key a cache on across runs
            return None
        import datasets.config

        settings = json.dumps(
            [type(self).__qualname__, self.config.to_dict(), self.source, self._first_line], sort_keys=True, default=str
        )
        key = hashlib.sha256(f"{table._fingerprint}\x00{settings}".encode()).hexdigest()[:32]
        return Path(datasets.config.HF_DATASETS_CACHE) / "tamrin-preprocessors" / key

    def _train_preprocessor(self, table: Any) -> TextPreprocessor:
        config = self.config
        tokenizer = Tokenizer.train(
            self.texts_of(iter_rows(table)),
            config.vocab_size,
            model=config.tokenizer_model,
            lowercase=config.lowercase,
            min_frequency=config.min_frequency,
        )
        return TextPreprocessor(tokenizer, self.labels_of(iter_rows(table)), config.max_length)

    def encode_table(self, table: Any) -> Any:
        """Every row encoded (`encode_row`) into an Arrow table, cached by data + preprocessor + config.

        A table read from files is encoded once into the datasets cache: a second run with the same
        data, tokenizer, labels and settings reads the cached file instead of encoding again.
        """
        preprocessor = self.preprocessor
        key = [
            f"{type(self).__module__}.{type(self).__qualname__}",
            preprocessor.tokenizer.backend.to_str(),
            json.dumps([preprocessor.labels, preprocessor.max_length]),
            json.dumps(self.config.to_dict(), sort_keys=True, default=str),
            self.source,
            str(self._first_line),
        ]
        return encode_rows(table, lambda row, index: self.encode_row(row, self.where(index)), key)

    # -- the Dataset interface -----------------------------------------------------------------
    def num_rows(self) -> int:
        return len(self._input_ids)

    def get_item(self, index: int) -> dict[str, torch.Tensor]:
        return {
            "input_ids": torch.tensor(self._input_ids[index], dtype=torch.long),
            "labels": torch.tensor(self._labels[index], dtype=torch.long),
        }

    def model_config_overrides(self) -> dict[str, Any]:
        """The vocabulary size and labels of the data, so that the model is built to match."""
        return {
            "vocab_size": self.preprocessor.tokenizer.vocab_size,
            "num_labels": len(self.preprocessor.labels),
            "id2label": self.preprocessor.id2label,
        }


@register_dataset("text_classification", config_class=TextClassificationConfig)
class TextClassificationDataset(TextDataset):
    """One label per text. Items: input_ids (L,) and labels () int64; batches by `TextCollator`.

    Labels are compared as strings and numbered in sorted order (`"neg"` 0, `"pos"` 1).
    """

    config: TextClassificationConfig

    @property
    def text_column(self) -> str:
        """The column holding the text."""
        return self.config.text_column

    @property
    def label_column(self) -> str:
        """The column holding the label."""
        return self.config.label_column

    @classmethod
    def required_columns(cls, config: Any) -> list[str]:
        return [config.text_column, config.label_column]

    def load_rows(self) -> Any:
        return self.read_split(self.config.files)

    @classmethod
    def name_class_labels(cls, dataset: Any, table: Any, config: Any) -> Any:
        names = class_label_names(dataset, config.label_column)
        return table if names is None else name_class_labels(table, config.label_column, names)

    def texts_of(self, rows: Iterable[dict[str, Any]]) -> Iterator[str]:
        return (str(row[self.text_column]) for row in rows)

    def labels_of(self, rows: Iterable[dict[str, Any]]) -> list[str]:
        labels = sorted({str(row[self.label_column]) for row in rows})
        if len(labels) < 2:
            raise ConfigError(
                f"{self.source}: column {self.label_column!r} holds only the label(s) {labels}; "
                "classification needs at least two."
            )
        return labels

    def encode_row(self, row: dict[str, Any], where: str) -> dict[str, Any]:
        text_column, label_column = self.text_column, self.label_column
        for column in (text_column, label_column):
            if is_missing(row.get(column)):
                raise ConfigError(f"{where} has no value for column {column!r} (its columns: {sorted(row)}).")
        ids = self.preprocessor.encode(str(row[text_column]))
        if not ids:
            raise ConfigError(f"{where}: the text in column {text_column!r} has no tokens ({row[text_column]!r}).")
        label = self.preprocessor.label_id(row[label_column], f"{where} (column {label_column!r})")
        return {"input_ids": ids, "labels": label}

    def default_data_collator(self) -> TextCollator:
        return TextCollator(pad_id=0)
