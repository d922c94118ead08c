"""Rows in Arrow: reading data files into memory-mapped Hugging Face `datasets` tables, and O(1) reads.

A task dataset keeps its rows in a `datasets.Dataset` (an Arrow table memory-mapped from the
datasets cache), never in a Python list of all rows: a 10-million-row corpus costs the pages the
run touches, not tens of GB of dicts. Reading a file converts it to Arrow once (cached under
`HF_DATASETS_CACHE`, keyed by the file's path, size and modification time), so a second run skips it.

`ArrowColumn` reads one encoded row in O(1) from the table's chunks without copying the column,
which `datasets.Dataset.__getitem__` (a Python dict per row, ~50 µs) is too slow for.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from glob import glob
from pathlib import Path
from typing import Any

import numpy as np

from tamrin.configs import ConfigError
from tamrin.datasets.readers import FILE_FORMATS

__all__ = [
    "ArrowColumn",
    "check_no_missing",
    "column_values",
    "encode_rows",
    "data_files_of",
    "first_line_of",
    "first_true_index",
    "is_list_type",
    "iter_rows",
    "quiet_datasets",
    "read_table",
    "table_from_rows",
]

ROW_BATCH = 10_000  # rows per Arrow batch in streaming passes: bounded memory, few Python calls
WRITE_BATCH = 100_000
"""Rows per record batch in the Arrow files tamrin has `datasets` write (a read file's conversion, the
encoded cache). Opening a file touches every record batch's header, and the kernel maps the pages
around each touch into the process: with `datasets`' default of 1,000 rows a batch, opening the
1e7-row encoded cache mapped all 383 MiB of it; with 100,000 rows, 8 MiB (benchmarks/data_scale.py)."""


@contextmanager
def quiet_datasets() -> Iterator[None]:
    """Silence `datasets`' progress bars (they would interleave with the run's own) inside the block."""
    from datasets.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    was_disabled = are_progress_bars_disabled()
    disable_progress_bars()
    try:
        yield
    finally:
        if not was_disabled:
            enable_progress_bars()


def data_files_of(pattern: str | os.PathLike) -> list[Path]:
    """The files a data path names: one file, or the sorted matches of a glob (`data/train-*.parquet`).

    Raises:
        FileNotFoundError: nothing exists at the path or matches the pattern.
        ConfigError: a file has a suffix no reader reads, or the matches mix formats.
    """
    text = os.fspath(pattern)
    paths = sorted(Path(p) for p in glob(text)) if any(c in text for c in "*?[") else [Path(text)]
    paths = [path for path in paths if path.is_file()]
    if not paths:
        raise FileNotFoundError(f"Data file {text!r} does not exist.")
    suffixes = {path.suffix.lower() for path in paths}
    unknown = sorted(suffixes - set(FILE_FORMATS))
    if unknown:
        raise ConfigError(
            f"Data file {text!r} has suffix {unknown[0]!r}; readable formats: {', '.join(sorted(FILE_FORMATS))}."
        )
    if len({FILE_FORMATS[s] for s in suffixes}) > 1:
        raise ConfigError(f"Data files {text!r} mix formats ({sorted(suffixes)}); one split is one format.")
    return paths


def read_table(pattern: str | os.PathLike, required_columns: Sequence[str] = ()) -> Any:
    """A data file (CSV, TSV, JSONL or Parquet; or a glob of shards) as a memory-mapped `datasets.Dataset`.

    CSV/TSV cells stay strings, as a spreadsheet shows them ("007" is not 7; "NA" is text), and only an
    empty cell is missing. The columns must exist; their values are checked by `check_no_missing`.

    Raises:
        FileNotFoundError: no file; ConfigError: an unknown format, an empty file, a missing column.
    """
    import datasets

    paths = data_files_of(pattern)
    kind = FILE_FORMATS[paths[0].suffix.lower()]
    files = [str(path) for path in paths]
    source = str(pattern)
    try:
        with quiet_datasets():
            if kind in ("csv", "tsv"):
                sep = "," if kind == "csv" else "\t"
                table = datasets.Dataset.from_csv(
                    files,
                    sep=sep,
                    features=_string_features(paths[0], sep),
                    keep_default_na=False,
                    na_values=[""],
                    writer_batch_size=WRITE_BATCH,
                )
            elif kind == "jsonl":
                table = datasets.Dataset.from_json(files, writer_batch_size=WRITE_BATCH)
            else:
                table = datasets.Dataset.from_parquet(files, writer_batch_size=WRITE_BATCH)
    except (ValueError, TypeError, OSError) as err:
        if "corresponds to no data" in str(err):  # datasets' words for a file with a header and no rows
            raise ConfigError(f"Data file {source!r} holds no rows: a dataset needs at least one sample.") from err
        raise ConfigError(f"Could not read data file {source!r} ({kind}): {err}") from err
    except Exception as err:  # datasets wraps reader failures in DatasetGenerationError
        if type(err).__name__ != "DatasetGenerationError":
            raise
        raise ConfigError(f"Could not read data file {source!r} ({kind}): {err.__cause__ or err}") from err
    if len(table) == 0:
        raise ConfigError(f"Data file {source!r} holds no rows: a dataset needs at least one sample.")
    missing = [column for column in required_columns if column not in table.column_names]
    if missing:
        first_line = 2 if kind in ("csv", "tsv") else 1 if kind == "jsonl" else 0
        where = f"line {first_line}" if first_line else "row 0"
        raise ConfigError(
            f"{source}: {where} has no value for column(s) {missing}; every row needs {list(required_columns)} "
            f"(its columns: {sorted(table.column_names)})."
        )
    return table


def _string_features(path: Path, sep: str) -> Any:
    """Every column of a CSV/TSV header as a string column (the header row is read with the csv module)."""
    import csv

    import datasets

    with path.open(newline="", encoding="utf-8") as handle:
        header = next(csv.reader(handle, delimiter=sep), [])
    if not header:
        raise ConfigError(f"Data file {str(path)!r} holds no rows: a dataset needs at least one sample.")
    return datasets.Features({name: datasets.Value("string") for name in header})


def table_from_rows(rows: Sequence[dict[str, Any]]) -> Any:
    """Rows held in memory (generated data, a small list) as an in-memory `datasets.Dataset`."""
    import datasets

    return datasets.Dataset.from_list(list(rows))


def iter_rows(
    table: Any, columns: Sequence[str] | None = None, batch_size: int = ROW_BATCH
) -> Iterator[dict[str, Any]]:
    """Every row of `table` as a dict, read in Arrow batches: one streaming pass in bounded memory."""
    view = table.select_columns(list(columns)) if columns is not None else table
    for batch in view.iter(batch_size=batch_size):
        names = list(batch)
        for values in zip(*(batch[name] for name in names)):
            yield dict(zip(names, values))


def check_no_missing(table: Any, columns: Sequence[str], source: str, first_line: int) -> None:
    """Fail on the first row with no value (null, NaN or empty) in one of `columns`, naming row and columns.

    Vectorised over Arrow, one record batch at a time (bounded memory): a pass costs milliseconds per
    million rows. Emptiness is read from the offsets (`binary_length`), so a text column's characters
    are never touched: a memory-mapped column's text stays out of the process's resident pages.
    """
    first_bad: int | None = None
    for column in columns:
        index = _first_missing(table.data.column(column).chunks)
        if index is not None and (first_bad is None or index < first_bad):
            first_bad = index
    if first_bad is None:
        return
    row = table[first_bad]
    from tamrin.datasets.readers import is_missing

    empty = [column for column in columns if is_missing(row.get(column))]
    where = f"line {first_bad + first_line}" if first_line else f"row {first_bad}"
    raise ConfigError(
        f"{source}: {where} has no value for column(s) {empty}; every row needs {list(columns)} "
        f"(its columns: {sorted(row)})."
    )


def _first_missing(chunks: Sequence[Any]) -> int | None:
    """The index of the first null, NaN or empty (zero-length string or list) value across `chunks`."""
    import pyarrow.compute as pc

    start = 0
    for chunk in chunks:
        missing = pc.is_null(chunk, nan_is_null=True)
        if chunk.type in _STRING_TYPES:
            missing = pc.or_kleene(missing, pc.equal(pc.binary_length(chunk), 0))
        elif is_list_type(chunk.type):
            missing = pc.or_kleene(missing, pc.equal(pc.list_value_length(chunk), 0))
        index = first_true_index(missing)
        if index is not None:
            return start + index
        start += len(chunk)
    return None


def first_true_index(mask: Any) -> int | None:
    import pyarrow.compute as pc

    if not pc.any(mask).as_py():
        return None
    return int(pc.index(mask, True).as_py())


def is_list_type(arrow_type: Any) -> bool:
    import pyarrow as pa

    return bool(pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type))


def _string_types() -> tuple[Any, ...]:
    import pyarrow as pa

    return (pa.string(), pa.large_string())


_STRING_TYPES = _string_types()


def encode_rows(table: Any, encode_row: Callable[[dict[str, Any], int], dict[str, Any]], key: Sequence[str]) -> Any:
    """`encode_row(row, index)` of every row into a new Arrow table, cached: a cached `map` of `table`.

    `key` lists what the encoding depends on besides the rows (the encoder, its preprocessor, the
    config); with the table's own fingerprint it names the cache file, so a second run with the same
    data and settings reads the encoded rows instead of encoding them again. An error raised by
    `encode_row` (naming the row) propagates as it is.
    """

    def encode_batch(batch: dict[str, list[Any]], indices: list[int]) -> dict[str, list[Any]]:
        names = list(batch)
        encoded: dict[str, list[Any]] = {}
        for index, values in zip(indices, zip(*(batch[name] for name in names))):
            for column, value in encode_row(dict(zip(names, values)), index).items():
                encoded.setdefault(column, []).append(value)
        return {column: _as_int32(values) for column, values in encoded.items()}

    layout = f"int32-batch{WRITE_BATCH}"  # how the cache file is written: a change makes a new file
    fingerprint = hashlib.sha256("\x00".join([table._fingerprint, layout, *key]).encode()).hexdigest()[:32]
    with quiet_datasets():
        return table.map(
            encode_batch,
            batched=True,
            batch_size=WRITE_BATCH,  # `map` writes each batch the function returns as one record batch
            writer_batch_size=WRITE_BATCH,
            with_indices=True,
            remove_columns=table.column_names,
            new_fingerprint=fingerprint,
        )


def _as_int32(values: list[Any]) -> Any:
    """Encoded ids and labels stored as int32 (half of int64's bytes on disk and in mapped pages);
    items turn them back into int64 tensors."""
    if values and isinstance(values[0], (list, tuple)):
        return [np.asarray(value, dtype=np.int32) for value in values]
    return np.asarray(values, dtype=np.int32)


def column_values(table: Any, name: str) -> Any:
    """Column `name` of `table` as a numpy array, honouring a selection (`select`, `filter`) of its rows."""
    return table.with_format("arrow")[name].to_numpy(zero_copy_only=False)


class ArrowColumn:
    """O(1) reads of one column of an Arrow table: a list column row is a numpy slice, a scalar a number,
    a string a `str`.

    Keeps references to the table's (memory-mapped) chunks; nothing is copied but the row read (a
    string column stays in Arrow: numpy would hold a Python object per row).

    Args:
        table: a `datasets.Dataset`.
        name: the column to read.
    """

    def __init__(self, table: Any, name: str) -> None:
        if getattr(table, "_indices", None) is not None:  # a selection: `.data` would be every row before it
            table = table.flatten_indices()
        chunks = [chunk for chunk in table.data.column(name).chunks if len(chunk)]
        self.name = name
        self.is_list = bool(chunks) and is_list_type(chunks[0].type)
        self.is_string = bool(chunks) and chunks[0].type in _STRING_TYPES
        self._starts = np.cumsum([0] + [len(chunk) for chunk in chunks])
        if self.is_string:
            self._strings = chunks
        elif self.is_list:
            # `offsets` honours a chunk's slice offset; `values` is the whole child array it indexes.
            self._parts = [(chunk.offsets.to_numpy(), chunk.values.to_numpy(zero_copy_only=False)) for chunk in chunks]
        else:
            self._values = [chunk.to_numpy(zero_copy_only=False) for chunk in chunks]

    def __len__(self) -> int:
        return int(self._starts[-1])

    def __getitem__(self, index: int) -> Any:
        chunk = int(np.searchsorted(self._starts, index, side="right")) - 1
        position = index - int(self._starts[chunk])
        if self.is_string:
            return self._strings[chunk][position].as_py()  # ~1 µs
        if self.is_list:
            offsets, values = self._parts[chunk]
            return values[offsets[position] : offsets[position + 1]]
        return self._values[chunk][position]


def first_line_of(path: str | os.PathLike) -> int:
    """The line of a data file's first row as an editor shows it (CSV/TSV: 2, under the header;
    JSONL: 1), or 0 for a format without lines (Parquet), whose rows are named by their number."""
    return {"csv": 2, "tsv": 2, "jsonl": 1}.get(FILE_FORMATS.get(Path(path).suffix.lower(), ""), 0)
