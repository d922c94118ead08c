"""Text generation data: (prompt, target) pairs for a character-level decoder such as `text_generator`.

An item is `BOS + prompt + target + EOS` with labels only on the target and EOS, so the loss and the
metrics count what the model writes, never what it is given. Two sources:

- `text_generation`: rows of a CSV / TSV / JSONL / Parquet file per split (`files`), or a
  Hugging Face `datasets.Dataset` (`TextGenerationDataset.from_hf`); a `prompt` and a `target`
  column, or one `text` column for plain language modelling (empty prompt, the text is the target).
- `synthetic_generation`: small string tasks generated on demand ("rev bdaf:" -> "f a d b"),
  deterministic by (seed, split, index), with splits that never share a prompt
  (tamrin.datasets.synthetic.generation, built on `PairDataset`).

The vocabulary (`CharVocabulary`, the dataset's `preprocessor`) comes from the train split;
other splits are built with `preprocessor=train.preprocessor`, and `model_config_overrides()`
hands its charset to the model.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from tamrin.configs import ConfigError, check_choice
from tamrin.datasets.base import Dataset, DatasetConfig, register_dataset
from tamrin.datasets.hf_rows import rows_from_hf
from tamrin.datasets.readers import FILE_FORMATS
from tamrin.datasets.tables import (
    ArrowColumn,
    check_no_missing,
    encode_rows,
    first_line_of,
    iter_rows,
    read_table,
    table_from_rows,
)
from tamrin.preprocessors.char_vocabulary import IGNORE_INDEX, CharVocabulary

__all__ = ["GenerationCollator", "PairDataset", "TextGenerationConfig", "TextGenerationDataset", "encode_pair"]


class GenerationCollator:
    """Pads (prompt, target) items so that every prompt ends at one column P (`generate` reads [:, :P]).

    Prompts are left-padded and targets right-padded (see tamrin.models.text_generator for the
    layout); the batch holds `input_ids`, `attention_mask`, `labels` (-100 on prompt and padding)
    and `prompt_lengths`.
    """

    def __init__(self, pad_id: int = CharVocabulary.PAD) -> None:
        self.pad_id = pad_id

    def __call__(self, items: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        if not items:
            raise ValueError("GenerationCollator got an empty list of items.")
        prompt_lengths = torch.tensor([int(item["prompt_length"]) for item in items])
        prompt_end = int(prompt_lengths.max())
        width = prompt_end + max(len(item["input_ids"]) - int(item["prompt_length"]) for item in items)
        input_ids = torch.full((len(items), width), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(items), width), dtype=torch.long)
        labels = torch.full((len(items), width), IGNORE_INDEX, dtype=torch.long)
        for row, (item, length) in enumerate(zip(items, prompt_lengths.tolist())):
            start = prompt_end - length
            end = start + len(item["input_ids"])
            input_ids[row, start:end] = item["input_ids"]
            attention_mask[row, start:end] = 1
            labels[row, start:end] = item["labels"]
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "labels": labels,
            "prompt_lengths": prompt_lengths,
        }


def encode_pair(vocabulary: CharVocabulary, prompt: str, target: str) -> dict[str, torch.Tensor]:
    """The item of one pair: input_ids = BOS + prompt + target + EOS, labels on target + EOS only."""
    prompt_ids = [CharVocabulary.BOS, *vocabulary.encode(prompt)]
    target_ids = [*vocabulary.encode(target), CharVocabulary.EOS]
    return {
        "input_ids": torch.tensor(prompt_ids + target_ids, dtype=torch.long),
        "labels": torch.tensor([IGNORE_INDEX] * len(prompt_ids) + target_ids, dtype=torch.long),
        "prompt_length": torch.tensor(len(prompt_ids)),
    }


class PairDataset(Dataset):
    """What both sources share: a vocabulary, items from `pair(index)`, the collator, the overrides."""

    def pair(self, index: int) -> tuple[str, str]:
        """The (prompt, target) strings of sample `index` (already range-checked)."""
        raise NotImplementedError(f"{type(self).__name__} must implement pair(index) -> (prompt, target).")

    @property
    def vocabulary(self) -> CharVocabulary:
        """The character vocabulary (the same object as `preprocessor`)."""
        return self.preprocessor

    def get_item(self, index: int) -> dict[str, torch.Tensor]:
        return encode_pair(self.vocabulary, *self.pair(index))

    def default_data_collator(self) -> GenerationCollator:
        return GenerationCollator()

    def model_config_overrides(self) -> dict[str, Any]:
        return {"charset": self.vocabulary.charset}

    def _check_preprocessor(self) -> None:
        if self.preprocessor is not None and not isinstance(self.preprocessor, CharVocabulary):
            raise ConfigError(
                f"{type(self).__name__} needs a CharVocabulary as `preprocessor` (the train split's), "
                f"got {type(self.preprocessor).__name__}."
            )


@dataclass
class TextGenerationConfig(DatasetConfig):
    """Configuration of `TextGenerationDataset`.

    Attributes:
        files: split name -> file (.csv, .tsv, .jsonl/.json, .parquet), e.g.
            {"train": "train.csv", "validation": "val.csv"}; unused by `from_hf`.
        prompt_column: the column of the text the model is given.
        target_column: the column of the text it must write.
        text_column: set for plain language modelling: one column, all of it the target
            (prompt_column and target_column are then unused).
        charset: the vocabulary's characters; None: every character of the train split.
    """

    name: str = "text_generation"
    task: str = "text_generation"
    files: dict[str, str] = field(default_factory=dict)
    prompt_column: str = "prompt"
    target_column: str = "target"
    text_column: str | None = None
    charset: str | None = None

    def validate(self) -> list[str | None]:
        problems = list(super().validate())
        problems += [
            f"`files.{split}={path!r}` has an unreadable suffix; use one of {', '.join(sorted(FILE_FORMATS))}."
            for split, path in self.files.items()
            if Path(path).suffix.lower() not in FILE_FORMATS
        ]
        problems += [
            f"`{name}` must name a column, got {value!r}."
            for name, value in [("prompt_column", self.prompt_column), ("target_column", self.target_column)]
            if not value
        ]
        return problems

    @property
    def columns(self) -> list[str]:
        """The columns every row must have."""
        return [self.text_column] if self.text_column else [self.prompt_column, self.target_column]


@register_dataset("text_generation", config_class=TextGenerationConfig)
class TextGenerationDataset(PairDataset):
    """(prompt, target) rows read from a file per split or from a Hugging Face dataset.

    Every row is checked and encoded when the dataset is built, so a missing value or a character
    outside the vocabulary fails at once, naming the row and the column.

    Args:
        config: the dataset config.
        split: a key of `config.files` (ignored when `records` are given).
        records: the rows themselves (`from_hf` passes them): a `datasets.Dataset`, or a list of row
            dicts; None: read `files[split]`.
        **kwargs: `preprocessor` (the train split's vocabulary) and `data_collator`.
    """

    config: TextGenerationConfig

    def __init__(
        self,
        config: TextGenerationConfig,
        split: str = "train",
        records: list[dict[str, Any]] | Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(config, split=split, **kwargs)
        self._check_preprocessor()
        self.source = f"split {split!r}"
        if records is None:
            table, self.source = self._read_split(split)
        else:
            table = records
        for index, row in enumerate(table if isinstance(table, list) else iter_rows(table, config.columns)):
            self._row_pair(row, index, self.source)  # every row checked before any is encoded
        if isinstance(table, list):
            if not table:
                raise ConfigError(f"The {self.source} of text_generation holds no rows: a dataset needs a sample.")
            table = table_from_rows(table)
        self.table = table
        """The split's rows: a `datasets.Dataset` (Arrow; memory-mapped when read from a file)."""
        if self.preprocessor is None:
            self.preprocessor = self._build_vocabulary()
        key = [
            f"{type(self).__module__}.{type(self).__qualname__}",
            self.vocabulary.charset,
            json.dumps(config.to_dict(), sort_keys=True, default=str),
            self.source,
        ]
        self.encoded = encode_rows(self.table, self._encode_row, key)
        """The encoded rows (input_ids, labels, prompt_length), a cached `map` of `table`."""
        self._columns = {name: ArrowColumn(self.encoded, name) for name in ("input_ids", "labels", "prompt_length")}

    @classmethod
    def from_hf(
        cls, dataset: Any, split: str = "train", *, preprocessor: CharVocabulary | None = None, **overrides: Any
    ) -> TextGenerationDataset:
        """Build from a Hugging Face `datasets.Dataset` (or any iterable of row dicts).

        A `datasets.Dataset` is the split's table as it is (Arrow, memory-mapped when it was loaded
        from the Hub or disk): its rows are checked and encoded in streaming passes, never held in a
        Python list. Any other iterable of row dicts is read into memory first (`rows_from_hf`).

        Example:
            `TextGenerationDataset.from_hf(load_dataset(...)["train"], prompt_column="question")`.
        """
        config = TextGenerationConfig.from_dict({**overrides, "name": "text_generation"})
        records = rows_from_hf(dataset, config.columns)
        return cls(config, split=split, records=records, preprocessor=preprocessor)

    def _read_split(self, split: str) -> tuple[Any, str]:
        files = self.config.files
        if split not in files:
            problem = (
                check_choice("split", split, sorted(files))
                if files
                else ("`files` is empty: map each split to a file, e.g. {train: train.csv, validation: dev.csv}.")
            )
            raise ConfigError(f"text_generation has no file for split {split!r}: {problem}")
        columns = self.config.columns
        table = read_table(files[split], columns)
        check_no_missing(table, columns, str(files[split]), first_line_of(files[split]))
        return table, str(files[split])

    def _row_pair(self, row: dict[str, Any], index: int, source: str) -> tuple[str, str]:
        values = []
        for column in self.config.columns:
            value = row.get(column)
            if not isinstance(value, str):
                raise ConfigError(
                    f"{source}: row {index} (counting from 0) needs a string in column {column!r}, got "
                    f"{type(value).__name__} {value!r}; every row needs {self.config.columns}."
                )
            values.append(value)
        return ("", values[0]) if self.config.text_column else (values[0], values[1])

    def _build_vocabulary(self) -> CharVocabulary:
        if self.config.charset is not None:
            return CharVocabulary(self.config.charset)
        rows = iter_rows(self.table, self.config.columns)
        return CharVocabulary.from_texts("".join(self._row_pair(row, 0, self.source)) for row in rows)

    def _encode_row(self, row: dict[str, Any], index: int) -> dict[str, Any]:
        prompt, target = self._row_pair(row, index, self.source)
        for column, text in zip(self.config.columns, (target,) if self.config.text_column else (prompt, target)):
            unknown = self.vocabulary.unknown(text)
            if unknown:
                raise ConfigError(
                    f"{self.source}: row {index} (counting from 0), column {column!r}: characters {unknown} are "
                    f"not in the vocabulary {self.vocabulary.charset!r} (built from the train split)."
                )
        item = encode_pair(self.vocabulary, prompt, target)
        return {name: value.tolist() for name, value in item.items()}

    def num_rows(self) -> int:
        return len(self.table)

    def pair(self, index: int) -> tuple[str, str]:
        return self._row_pair(self.table[index], index, self.source)

    def get_item(self, index: int) -> dict[str, torch.Tensor]:
        return {name: torch.tensor(column[index], dtype=torch.long) for name, column in self._columns.items()}

    def check_model(self, model: Any) -> None:
        """Name the longest row when it does not fit the model's `context_length` (rows are encoded already)."""
        context = getattr(getattr(model, "config", None), "context_length", None)
        if context is None or len(self) == 0:
            return
        import pyarrow.compute as pc

        lengths = pc.list_value_length(self.encoded.data.column("input_ids"))
        length = int(pc.max(lengths).as_py())
        longest = int(pc.index(lengths, length).as_py())
        if length > context:
            raise ConfigError(
                f"Row {longest} of the {self.split!r} split of text_generation is {length} tokens long (BOS, prompt, "
                f"target, EOS), more than the model's `context_length={context}`: raise `model.context_length` "
                "to at least that, or shorten or drop the longest rows."
            )
