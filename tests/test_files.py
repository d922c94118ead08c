"""Reading dataset rows from CSV / TSV / JSONL / Parquet files and Hugging Face datasets."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from tamrin.configs import ConfigError
from tamrin.datasets.readers import read_records, records_from_hf

ROWS = [{"text": "a good film", "label": "pos"}, {"text": "dull, slow", "label": "neg"}]


def write(path: Path, rows: list[dict]) -> Path:
    if path.suffix in (".csv", ".tsv"):
        pd.DataFrame(rows).to_csv(path, index=False, sep="\t" if path.suffix == ".tsv" else ",")
    elif path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    else:
        pd.DataFrame(rows).to_parquet(path)
    return path


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".parquet"])
def test_every_format_reads_the_same_rows(tmp_path: Path, suffix: str) -> None:
    assert read_records(write(tmp_path / f"data{suffix}", ROWS), ["text", "label"]) == ROWS


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_token_and_tag_sequences_stay_sequences_and_an_empty_one_is_missing(tmp_path: Path, suffix: str) -> None:
    rows = [{"tokens": ["John", "lives"], "tags": ["B-PER", "O"]}]
    read = read_records(write(tmp_path / f"ner{suffix}", rows), ["tokens", "tags"])
    assert [{key: list(value) for key, value in row.items()} for row in read] == rows
    empty = write(tmp_path / f"empty{suffix}", [*rows, {"tokens": [], "tags": []}])
    with pytest.raises(ConfigError, match=r"has no value for column\(s\) \['tokens', 'tags'\]"):
        read_records(empty, ["tokens", "tags"])


@pytest.mark.parametrize(("suffix", "where"), [(".csv", "line 3"), (".jsonl", "line 2"), (".parquet", "row 1")])
def test_a_row_missing_a_column_names_the_file_the_row_and_the_column(tmp_path: Path, suffix: str, where: str) -> None:
    path = write(tmp_path / f"data{suffix}", [ROWS[0], {"text": "no label here", "label": None}])
    with pytest.raises(ConfigError, match=rf"data{suffix}: {where} has no value for column\(s\) \['label'\]"):
        read_records(path, ["text", "label"])


def test_empty_files_unknown_suffixes_missing_files_and_bad_json_are_named(tmp_path: Path) -> None:
    (tmp_path / "empty.csv").write_text("text,label\n")
    with pytest.raises(ConfigError, match="empty.csv' holds no rows"):
        read_records(tmp_path / "empty.csv")
    (tmp_path / "data.xlsx").write_text("")
    with pytest.raises(ConfigError, match=r"suffix '.xlsx'; readable formats: .csv, .json, .jsonl, .parquet, .tsv"):
        read_records(tmp_path / "data.xlsx")
    with pytest.raises(FileNotFoundError, match="missing.csv' does not exist"):
        read_records(tmp_path / "missing.csv")
    (tmp_path / "bad.jsonl").write_text('{"text": "ok", "label": "pos"}\n{"text": oops}\n')
    with pytest.raises(ConfigError, match="bad.jsonl: line 2 is not valid JSON"):
        read_records(tmp_path / "bad.jsonl")


def test_hugging_face_style_datasets_are_rows_too() -> None:
    class FakeHFDataset:  # iterates over dicts, as datasets.Dataset does
        def __iter__(self):
            return iter(ROWS)

    assert records_from_hf(FakeHFDataset(), ["text", "label"]) == ROWS
    with pytest.raises(ConfigError, match="row 0 has no value for column"):
        records_from_hf(FakeHFDataset(), ["sentence"])


def test_a_real_hugging_face_dataset_reads_like_a_file() -> None:
    datasets = pytest.importorskip("datasets")
    hf = datasets.Dataset.from_list(ROWS)
    assert records_from_hf(hf, ["text", "label"]) == ROWS
    with pytest.raises(ConfigError, match=r"row 1 has no value for column\(s\) \['label'\]"):
        records_from_hf(datasets.Dataset.from_list([ROWS[0], {"text": "x", "label": None}]), ["label"])
