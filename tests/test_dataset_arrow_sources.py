"""Rows from a Hugging Face `datasets.Dataset` and image-folder listings stay in Arrow (issue 17).

`from_hf` of a `datasets.Dataset` uses its Arrow table as the split's table (no Python list of its
rows), and an image folder's listing is an Arrow table with numpy label ids. Items are checked
against rows written by hand (a file the file readers read, or values computed here); peak memory
is measured in a child process (VmHWM, reset through /proc/self/clear_refs).
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from tamrin.configs import ConfigError
from tamrin.datasets import (
    SequenceLabelingConfig,
    SequenceLabelingDataset,
    TextClassificationConfig,
    TextClassificationDataset,
    TextGenerationDataset,
    build_dataset,
)
from tamrin.preprocessors.images import open_image

datasets = pytest.importorskip("datasets")

ROOT = Path(__file__).resolve().parents[1]
TEXTS = ["the movie was great", "the food was awful", "service was not good at all", "a quiet hotel room"]
LABEL_IDS = [1, 0, 0, 1]
NAMES = ["negative", "positive"]  # the ClassLabel's names: id 0 is "negative"
SENTENCES = [
    (["John", "lives", "in", "New", "York"], ["B-PER", "O", "O", "B-LOC", "I-LOC"]),
    (["we", "visited", "Paris"], ["O", "O", "B-LOC"]),
]
TAG_NAMES = ["O", "B-PER", "B-LOC", "I-LOC"]


def items(dataset: Any) -> list[dict[str, list[int]]]:
    return [{key: value.tolist() for key, value in item.items()} for item in dataset]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def labelled_texts() -> Any:
    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=NAMES)})
    return datasets.Dataset.from_dict({"text": TEXTS, "label": LABEL_IDS}, features=features)


# -- from_hf: the same items as the same rows written by hand --------------------------------------
def test_from_hf_of_a_class_label_dataset_gives_the_items_of_its_rows_written_with_names(tmp_path: Path) -> None:
    by_hand = [{"text": text, "label": NAMES[label]} for text, label in zip(TEXTS, LABEL_IDS)]
    config = TextClassificationConfig(vocab_size=60)
    from_file = TextClassificationDataset(
        config.merge({"files": {"train": str(write_jsonl(tmp_path / "t.jsonl", by_hand))}})
    )
    from_hf = TextClassificationDataset.from_hf(labelled_texts(), config)
    assert from_hf.preprocessor.labels == NAMES
    assert [item["labels"] for item in items(from_hf)] == LABEL_IDS  # sorted names: ids are the ClassLabel's
    assert items(from_hf) == items(from_file)
    assert list(from_hf.table["label"]) == [row["label"] for row in by_hand]


def test_from_hf_of_tag_class_labels_gives_the_items_of_its_rows_written_with_names(tmp_path: Path) -> None:
    features = datasets.Features(
        {"tokens": datasets.List(datasets.Value("string")), "tags": datasets.List(datasets.ClassLabel(names=TAG_NAMES))}
    )
    ids = {"tokens": [w for w, _ in SENTENCES], "tags": [[TAG_NAMES.index(t) for t in tags] for _, tags in SENTENCES]}
    hf = datasets.Dataset.from_dict(ids, features=features)
    config = SequenceLabelingConfig(vocab_size=80)
    path = write_jsonl(tmp_path / "ner.jsonl", [{"tokens": w, "tags": t} for w, t in SENTENCES])
    from_file = SequenceLabelingDataset(config.merge({"files": {"train": str(path)}}))
    from_hf = SequenceLabelingDataset.from_hf(hf, config)
    assert from_hf.preprocessor.labels == from_file.preprocessor.labels == ["O", "B-LOC", "B-PER", "I-LOC"]
    assert items(from_hf) == items(from_file)


def test_from_hf_of_a_text_generation_dataset_gives_the_items_of_the_same_rows_as_a_list() -> None:
    rows = [{"prompt": "rev ab:", "target": "b a"}, {"prompt": "rev cab:", "target": "b a c"}]
    from_list = TextGenerationDataset.from_hf(rows)
    from_hf = TextGenerationDataset.from_hf(datasets.Dataset.from_list(rows))
    assert from_hf.vocabulary == from_list.vocabulary
    assert items(from_hf) == items(from_list)
    bos, eos, vocabulary = 1, 2, from_hf.vocabulary  # BOS + prompt + target + EOS, labels on target + EOS
    first = items(from_hf)[0]
    assert first["input_ids"] == [bos, *vocabulary.encode("rev ab:"), *vocabulary.encode("b a"), eos]
    assert first["labels"] == [-100] * 8 + [*vocabulary.encode("b a"), eos]


def test_from_hf_uses_the_datasets_own_table_and_keeps_its_other_columns(tmp_path: Path) -> None:
    write_jsonl(
        tmp_path / "rows.jsonl",
        [{"text": t, "label": NAMES[i], "idx": n} for n, (t, i) in enumerate(zip(TEXTS, LABEL_IDS))],
    )
    hf = datasets.Dataset.from_json(str(tmp_path / "rows.jsonl"), cache_dir=str(tmp_path / "cache"))
    dataset = TextClassificationDataset.from_hf(hf, TextClassificationConfig(vocab_size=60))
    assert dataset.table.cache_files == hf.cache_files  # the same memory-mapped file, not a copy
    assert dataset.column("idx").tolist() == [0, 1, 2, 3]


def test_a_selection_or_a_torch_format_reads_the_selected_rows_as_values() -> None:
    hf = labelled_texts()
    config = TextClassificationConfig(vocab_size=60)
    selected = TextClassificationDataset.from_hf(hf.select([3, 0, 1]).with_format("torch"), config)
    assert list(selected.table["text"]) == [TEXTS[3], TEXTS[0], TEXTS[1]]
    assert list(selected.table["label"]) == ["positive", "positive", "negative"]
    no_text = hf.map(lambda row, i: {"text": "" if i == 0 else row["text"]}, with_indices=True)
    with pytest.raises(
        ConfigError, match=r"Hugging Face dataset Dataset: row 1 has no value for column\(s\) \['text'\]"
    ):
        TextClassificationDataset.from_hf(no_text.select([1, 0]), config)  # row 1 of the selection is row 0


def test_class_label_names_across_arrow_batches_match_a_python_lookup() -> None:
    from tamrin.datasets.hf_rows import name_class_labels

    rng = np.random.default_rng(0)
    tags = [None if i % 97 == 0 else rng.integers(0, 4, rng.integers(0, 5)).tolist() for i in range(25_000)]
    features = datasets.Features({"tags": datasets.List(datasets.ClassLabel(names=TAG_NAMES))})
    hf = datasets.Dataset.from_dict({"tags": tags}, features=features).shuffle(seed=1).select(range(3, 24_000))
    by_hand = [None if row is None else [TAG_NAMES[tag] for tag in row] for row in hf.with_format(None)["tags"]]
    assert list(name_class_labels(hf, "tags", TAG_NAMES)["tags"]) == by_hand  # 10,000 rows a batch: three batches


# -- from_hf: the errors users got from the list path ----------------------------------------------
def test_from_hf_errors_name_the_dataset_the_row_and_the_columns() -> None:
    config = TextClassificationConfig(vocab_size=60)
    with pytest.raises(
        ConfigError,
        match=r"^Hugging Face dataset Dataset: row 0 has no value for column\(s\) \['sentence'\]; every row needs "
        r"\['sentence', 'label'\] \(its columns: \['label', 'text'\]\)\.$",
    ):
        TextClassificationDataset.from_hf(labelled_texts(), config.merge({"text_column": "sentence"}))
    with pytest.raises(ConfigError, match=r"^The Hugging Face dataset Dataset holds no rows\.$"):
        TextClassificationDataset.from_hf(labelled_texts().select([]), config)
    gap = datasets.Dataset.from_list([{"text": "a", "label": "x"}, {"text": "b", "label": None}])
    with pytest.raises(
        ConfigError, match=r"^Hugging Face dataset Dataset: row 1 has no value for column\(s\) \['label'\]"
    ):
        TextClassificationDataset.from_hf(gap, config)
    unlabelled = datasets.Dataset.from_dict({"text": TEXTS[:2], "label": [1, -1]}, features=labelled_texts().features)
    with pytest.raises(
        ConfigError, match=r"row 1 has label=-1, outside the ClassLabel ids 0..1 \(\['negative', 'positive'\]\)"
    ):
        TextClassificationDataset.from_hf(unlabelled, config)
    with pytest.raises(ConfigError, match=r"row 1 has no value for column\(s\) \['target'\]"):
        TextGenerationDataset.from_hf(
            datasets.Dataset.from_list([{"prompt": "a", "target": "b"}, {"prompt": "c", "target": ""}])
        )


def test_an_out_of_range_tag_names_its_row() -> None:
    features = datasets.Features(
        {"tokens": datasets.List(datasets.Value("string")), "tags": datasets.List(datasets.ClassLabel(names=TAG_NAMES))}
    )
    hf = datasets.Dataset.from_dict({"tokens": [["a"], ["b", "c"]], "tags": [[0], [1, -1]]}, features=features)
    with pytest.raises(ConfigError, match=r"row 1 has tags=-1, outside the ClassLabel ids 0..3"):
        SequenceLabelingDataset.from_hf(hf, SequenceLabelingConfig(vocab_size=60))


# -- from_hf at scale: no list of the rows ---------------------------------------------------------
CHILD = r"""
import json, sys
from pathlib import Path

import datasets, numpy as np, pyarrow as pa, pyarrow.parquet as pq

import tamrin.datasets.tasks.text_generation as text_generation
from tamrin.datasets import TextClassificationConfig, TextClassificationDataset, TextGenerationDataset

rows, folder = int(sys.argv[1]), Path(sys.argv[2])
words = np.char.add("word", (np.arange(rows) % 997).astype(str))  # numpy strings: no Python object per row
pq.write_table(pa.table({"text": pa.array(words), "label": pa.array(np.arange(rows) % 2)}), folder / "rows.parquet")
features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"])})
hf = datasets.Dataset.from_parquet(str(folder / "rows.parquet"), features=features)
del words


class Reached(Exception):
    pass  # where the rows are taken and training the tokenizer or encoding (not measured here) would start


class Probe(TextClassificationDataset):
    def build_preprocessor(self, table):
        raise Reached(table)


def stop(table, *args):
    raise Reached(table)


text_generation.encode_rows = stop


def kib(field):
    return int(dict(l.split(":", 1) for l in Path("/proc/self/status").read_text().splitlines())[field].split()[0])


def peak_growth_mib(build, column):
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := the current RSS
    before = kib("VmRSS")
    try:
        build()
        raise AssertionError("the probe was not reached")
    except Reached as reached:
        table = reached.args[0]
    assert len(table) == rows and table[rows - 1][column] == ("pos" if column == "label" else "word" + str((rows - 1) % 997))
    return (kib("VmHWM") - before) / 1024


print(json.dumps({
    "text_classification": peak_growth_mib(lambda: Probe.from_hf(hf, TextClassificationConfig()), "label"),
    "text_generation": peak_growth_mib(
        lambda: TextGenerationDataset.from_hf(hf, text_column="text", charset="word0123456789"), "text"
    ),
}))
"""


def run_child(script: str, *args: str, tmp_path: Path) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_DATASETS_CACHE": str(tmp_path / "hf"), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", script, *args], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="peak RSS is reset through Linux's procfs")
def test_from_hf_of_a_million_rows_holds_no_python_list_of_them(tmp_path: Path) -> None:
    # Measured (2 shared cores): ~21 MiB and ~1 MiB here; the list path took 515 and 350 MiB, 10 s each.
    growth = run_child(CHILD, str(1_000_000), str(tmp_path), tmp_path=tmp_path)
    assert growth["text_classification"] < 100, growth
    assert growth["text_generation"] < 100, growth


# -- image folders ---------------------------------------------------------------------------------
def image(path: Path, value: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (6, 6), (value, 255 - value, value // 2)).save(path, format="PNG")
    return path


def test_a_labels_file_gives_the_items_of_its_rows_read_by_hand(tmp_path: Path) -> None:
    absolute = image(tmp_path / "elsewhere" / "d.png", 200)
    rows = [("b.png", "dog", 0.5), ("sub/a.png", "cat", 0.25), ("c.png", "dog", 1.0), (str(absolute), "bird", 0.0)]
    for value, (name, _, _) in enumerate(rows[:3]):
        image(tmp_path / "train" / name, 40 * value)
    lines = "".join(f"{name},{label},{confidence}\n" for name, label, confidence in rows)
    (tmp_path / "train" / "labels.csv").write_text("file,label,confidence\n" + lines, encoding="utf-8")
    dataset = build_dataset("image_folder", data_dir=str(tmp_path), image_size=6)
    assert dataset.labels == ["bird", "cat", "dog"]
    assert dataset.table.cache_files  # memory-mapped from the datasets cache
    assert isinstance(dataset.label_ids, np.ndarray) and dataset.label_ids.tolist() == [2, 1, 2, 0]
    expected_paths = [
        tmp_path / "train" / "b.png",
        tmp_path / "train" / "sub" / "a.png",
        tmp_path / "train" / "c.png",
        absolute,
    ]
    assert list(dataset.files) == expected_paths and dataset.files[-1] == absolute
    for index, (path, label) in enumerate(zip(expected_paths, ["dog", "cat", "dog", "bird"])):
        item = dataset[index]
        assert torch.equal(item["pixel_values"], dataset.preprocessor.transform(open_image(path)))
        assert item["labels"].dtype == torch.long and int(item["labels"]) == dataset.labels.index(label)
    assert dataset.column("confidence").tolist() == ["0.5", "0.25", "1.0", "0.0"]  # CSV cells stay text


def test_numbers_in_a_jsonl_labels_file_are_labels_as_python_writes_them(tmp_path: Path) -> None:
    image(tmp_path / "train" / "7", 10)  # PNG files named by JSON numbers
    image(tmp_path / "train" / "8", 20)
    write_jsonl(tmp_path / "train" / "labels.jsonl", [{"file": 7, "label": 2.0}, {"file": 8, "label": 1.5}])
    dataset = build_dataset("image_folder", data_dir=str(tmp_path), image_size=6)
    assert dataset.labels == [str(1.5), str(2.0)] == ["1.5", "2.0"]
    assert list(dataset.files) == [tmp_path / "train" / "7", tmp_path / "train" / "8"]
    assert [int(item["labels"]) for item in dataset] == [1, 0]


def test_class_subfolders_are_listed_class_by_class_in_the_old_order(tmp_path: Path) -> None:
    names = {
        "cat": ["c2.png", "c1.png", "c3.PNG"],
        "ant": ["a1.jpg"],
        "dog": ["d1.png", "d2.png"],
        ".hidden": ["h.png"],
    }
    for value, (label, files) in enumerate(names.items()):
        for name in files:
            image(tmp_path / "train" / label / name, 30 * value)
    (tmp_path / "train" / "cat" / "notes.txt").write_text("not an image")
    (tmp_path / "train" / "empty").mkdir()
    dataset = build_dataset("image_folder", data_dir=str(tmp_path), image_size=6)
    per_class = [[(label, name) for name in sorted(names[label])] for label in ("ant", "cat", "dog")]
    by_hand = [row for group in itertools.zip_longest(*per_class) for row in group if row is not None]
    assert dataset.labels == ["ant", "cat", "dog"]
    assert list(dataset.files) == [tmp_path / "train" / label / name for label, name in by_hand]
    assert [int(item["labels"]) for item in dataset] == [dataset.labels.index(label) for label, _ in by_hand]
    assert list(dataset.column("label")) == [label for label, _ in by_hand]
    validation = tmp_path / "validation"
    image(validation / "cat" / "x.png", 1)
    image(validation / "eel" / "y.png", 2)
    with pytest.raises(ConfigError, match=r"eel/y.png: label 'eel' of the 'validation' split is not in the train"):
        build_dataset(
            "image_folder", split="validation", data_dir=str(tmp_path), image_size=6, preprocessor=dataset.preprocessor
        )


IMAGE_CHILD = r"""
import json, sys
from pathlib import Path

import datasets, pandas, pyarrow.csv  # imported before the measure: what is measured is the listing
from PIL import Image

from tamrin.datasets import build_dataset

rows, folder = int(sys.argv[1]), Path(sys.argv[2])
(folder / "train").mkdir(parents=True)
Image.new("RGB", (4, 4)).save(folder / "train" / "a.png")
with open(folder / "train" / "labels.csv", "w") as handle:
    handle.write("file,label\n" + "".join(f"a.png,c{i % 7}\n" for i in range(rows)))


def kib(field):
    return int(dict(l.split(":", 1) for l in Path("/proc/self/status").read_text().splitlines())[field].split()[0])


Path("/proc/self/clear_refs").write_text("5")  # VmHWM := the current RSS
before = kib("VmRSS")
dataset = build_dataset("image_folder", data_dir=str(folder))
assert len(dataset) == rows and int(dataset[rows - 1]["labels"]) == (rows - 1) % 7
print(json.dumps({"image_folder": (kib("VmHWM") - before) / 1024}))
"""


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="peak RSS is reset through Linux's procfs")
def test_an_image_folder_of_300_thousand_rows_holds_no_python_list_of_them(tmp_path: Path) -> None:
    # Measured (2 shared cores): ~30 MiB peak here, most of it the CSV's conversion to Arrow; the list
    # path peaked at 227 MiB (at 1e6 rows: 58 against 696 MiB).
    growth = run_child(IMAGE_CHILD, str(300_000), str(tmp_path / "data"), tmp_path=tmp_path)
    assert growth["image_folder"] < 90, growth
