"""Reading dataset rows from local files (CSV, JSONL, Parquet) or a Hugging Face `datasets` object.

Every reader returns a list of row dicts after checking that each row has the required columns,
so a task dataset never meets a half-filled row: the error names the file, the row (1-based, as an
editor shows it: the CSV header is line 1) and the columns that are missing.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tamrin.configs import ConfigError

__all__ = ["FILE_FORMATS", "class_label_name", "class_label_names", "is_missing", "read_records", "records_from_hf"]

FILE_FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet"}
"""File suffix -> reader; `.json` files hold one JSON object per line (JSON Lines)."""


def read_records(path: str | os.PathLike, required_columns: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Read every row of a CSV / TSV / JSONL / Parquet file as a dict, checking the required columns.

    Raises:
        FileNotFoundError: `path` does not exist.
        ConfigError: the suffix is not a known format, the file is empty, or a row lacks a column
            (or holds an empty value in it); the message names the file, the row and the column.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Data file {str(path)!r} does not exist.")
    kind = FILE_FORMATS.get(path.suffix.lower())
    if kind is None:
        raise ConfigError(
            f"Data file {str(path)!r} has suffix {path.suffix!r}; readable formats: {', '.join(sorted(FILE_FORMATS))}."
        )
    rows, first_line = _READERS[kind](path)
    if not rows:
        raise ConfigError(f"Data file {str(path)!r} holds no rows: a dataset needs at least one sample.")
    _check_columns(rows, required_columns, str(path), first_line)
    return rows


def records_from_hf(dataset: Any, required_columns: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Rows of any object iterating over dicts, as a list, columns checked.

    The task datasets read a `datasets.Dataset` without this list (`hf_rows.rows_from_hf` keeps its
    Arrow table); this reads the other iterables, whose rows are then held in memory.
    """
    rows = [dict(row) for row in dataset]
    if not rows:
        raise ConfigError(f"The Hugging Face dataset {type(dataset).__name__} holds no rows.")
    _check_columns(rows, required_columns, f"Hugging Face dataset {type(dataset).__name__}", first_line=0)
    return rows


def _read_delimited(path: Path, delimiter: str) -> tuple[list[dict[str, Any]], int]:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle, delimiter=delimiter)
        rows = [{k: v for k, v in row.items() if k is not None} for row in reader]
    return rows, 2  # line 1 is the header


def _read_csv(path: Path) -> tuple[list[dict[str, Any]], int]:
    return _read_delimited(path, ",")


def _read_tsv(path: Path) -> tuple[list[dict[str, Any]], int]:
    return _read_delimited(path, "\t")


def _read_jsonl(path: Path) -> tuple[list[dict[str, Any]], int]:
    rows = []
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise ConfigError(f"{path}: line {line_number} is not valid JSON: {err.msg}.") from err
            if not isinstance(row, dict):
                raise ConfigError(f"{path}: line {line_number} must be a JSON object, got {type(row).__name__}.")
            rows.append(row)
    return rows, 1


def _read_parquet(path: Path) -> tuple[list[dict[str, Any]], int]:
    import pandas as pd  # pandas: ~0.25 s to import, needed only for Parquet files

    try:
        frame = pd.read_parquet(path)
    except ImportError as err:
        raise ConfigError(f"Reading {path} needs pyarrow: `pip install pyarrow` ({err}).") from err
    return frame.to_dict(orient="records"), 0


_READERS = {"csv": _read_csv, "tsv": _read_tsv, "jsonl": _read_jsonl, "parquet": _read_parquet}


def is_missing(value: Any) -> bool:
    """Whether a cell holds no value: None, NaN, an empty string or an empty sequence."""
    if isinstance(value, (list, tuple)) or getattr(value, "ndim", 0) > 0:  # a token or tag sequence (Parquet: ndarray)
        return len(value) == 0
    return value is None or (isinstance(value, str) and not value) or (isinstance(value, float) and math.isnan(value))


def _check_columns(rows: list[dict[str, Any]], required: Sequence[str], source: str, first_line: int) -> None:
    for index, row in enumerate(rows):
        missing = [column for column in required if is_missing(row.get(column))]
        if missing:
            where = f"line {index + first_line}" if first_line else f"row {index}"
            raise ConfigError(
                f"{source}: {where} has no value for column(s) {missing}; every row needs "
                f"{list(required)} (its columns: {sorted(row)})."
            )


def class_label_names(dataset: Any, column: str) -> list[str] | None:
    """The names of a Hugging Face `ClassLabel` column (or a sequence of them), else None."""
    feature = (getattr(dataset, "features", None) or {}).get(column)
    feature = getattr(feature, "feature", feature)  # Sequence(ClassLabel) -> ClassLabel
    names = getattr(feature, "names", None)
    return list(names) if names else None


def class_label_name(names: list[str], value: Any, row: int, column: str) -> str:
    """The name of a `ClassLabel` id; -1 (Hugging Face's "no label", e.g. GLUE test splits) is refused."""
    label = int(value)
    if not 0 <= label < len(names):
        raise ConfigError(
            f"Hugging Face dataset: row {row} has {column}={label}, outside the ClassLabel ids 0..{len(names) - 1} "
            f"({names}); -1 marks an unlabelled row (a test split?), which cannot be trained or evaluated on."
        )
    return names[label]
