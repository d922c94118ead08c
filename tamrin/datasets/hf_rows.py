"""Rows that are Arrow already: a Hugging Face `datasets.Dataset` used as a split's table, without a copy.

`from_hf` of a task dataset reads its rows here: the dataset's own (memory-mapped) table, checked,
and its `ClassLabel` ids renamed to their names by a cached Arrow `map`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from tamrin.configs import ConfigError
from tamrin.datasets.readers import records_from_hf
from tamrin.datasets.tables import WRITE_BATCH, check_no_missing, first_true_index, is_list_type, quiet_datasets

__all__ = ["is_arrow_dataset", "name_class_labels", "rows_from_hf"]


def is_arrow_dataset(rows: Any) -> bool:
    """Whether `rows` is a Hugging Face `datasets.Dataset`: an Arrow table already, used without a copy."""
    import datasets

    return isinstance(rows, datasets.Dataset)


def rows_from_hf(dataset: Any, required_columns: Sequence[str]) -> Any:
    """The rows of a Hugging Face dataset, checked: every required column present and holding a value.

    A `datasets.Dataset` is an Arrow table already (memory-mapped when it was loaded from the Hub or
    from disk), so it is returned as it is, every column kept: no row becomes a Python object. Its
    format is reset (a `with_format("torch")` dataset yields plain values) and a selection (`select`,
    `shuffle`, `filter`) is written out once into its own table (`flatten_indices`), so that row
    numbers in errors are the dataset's. Any other iterable of row dicts (a list, a
    `datasets.IterableDataset`) is read into a list by `records_from_hf`: such rows are held in
    memory; for data that does not fit, build a `datasets.Dataset` first (`Dataset.from_generator`).

    Raises:
        ConfigError: the dataset holds no rows, lacks a required column, or a row holds no value in
            one (the message names the row, counting from 0, and the columns).
    """
    if not is_arrow_dataset(dataset):
        return records_from_hf(dataset, required_columns)
    source = f"Hugging Face dataset {type(dataset).__name__}"
    if len(dataset) == 0:
        raise ConfigError(f"The {source} holds no rows.")
    table = dataset.with_format(None)
    missing = [column for column in required_columns if column not in table.column_names]
    if missing:
        raise ConfigError(
            f"{source}: row 0 has no value for column(s) {missing}; every row needs {list(required_columns)} "
            f"(its columns: {sorted(table.column_names)})."
        )
    if getattr(table, "_indices", None) is not None:  # `.data` would be every row before the selection
        with quiet_datasets():
            table = table.flatten_indices()
    check_no_missing(table, required_columns, source, first_line=0)
    return table


def name_class_labels(table: Any, column: str, names: Sequence[str]) -> Any:
    """Column `column` of `ClassLabel` ids (or of lists of them, e.g. NER tags) replaced by their names.

    A cached `map` over Arrow batches (a vectorised `take` per batch, no Python value per row); an id
    outside `0..len(names) - 1` (-1 is Hugging Face's "no label") fails, naming its row.
    """
    import datasets
    import pyarrow as pa
    import pyarrow.compute as pc

    from tamrin.datasets.readers import class_label_name

    name_array = pa.array(list(names), pa.string())

    def rename(batch: Any, indices: list[int]) -> Any:
        ids = batch.column(column).combine_chunks()
        nested = is_list_type(ids.type)
        flat = pc.list_flatten(ids) if nested else ids
        bad = first_true_index(pc.or_(pc.less(flat, 0), pc.greater_equal(flat, len(names))))
        if bad is not None:
            row = int(pc.list_parent_indices(ids)[bad].as_py()) if nested else bad
            class_label_name(list(names), flat[bad].as_py(), indices[row], column)  # raises, naming the row
        named = pc.take(name_array, flat)
        if nested:
            offsets = pc.subtract(ids.offsets, ids.offsets[0])
            named = type(ids).from_arrays(offsets, named, mask=ids.is_null() if ids.null_count else None)
        return batch.set_column(batch.schema.get_field_index(column), column, named)

    features = table.features.copy()
    string = datasets.Value("string")
    features[column] = datasets.List(string) if is_list_type(table.data.schema.field(column).type) else string
    key = "\x00".join([table._fingerprint, "class-label-names", column, *names])
    with quiet_datasets():
        named = table.with_format(
            "arrow"
        ).map(
            rename,
            batched=True,
            batch_size=WRITE_BATCH,
            writer_batch_size=WRITE_BATCH,  # few record batches: see WRITE_BATCH
            with_indices=True,
            features=features,
            new_fingerprint=hashlib.sha256(key.encode()).hexdigest()[:32],
        )
    return named.with_format(None)
